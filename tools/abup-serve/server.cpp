// abup-serve's HTTP side on Boost.Beast: one thread per connection (a long image download never
// holds up an Omaha request), keep-alive, the Omaha endpoint, and file downloads with single and
// multiple ranges (multipart/byteranges).
#include "tools/abup-serve/server.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <charconv>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <thread>

#include "abup/bytes.hpp"
#include "abup/fs.hpp"
#include "update-protocol/omaha/omaha.hpp"

namespace abup::serve {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = boost::asio::ip::tcp;

constexpr std::size_t kMaxRequestBody = 1 << 20;

struct ByteRange {
  std::uint64_t first = 0, last = 0;
};

// Multi-range requests beyond this many ranges are answered with the whole file (RFC 9110
// allows ignoring Range): a client cannot make the server emit endless part headers.
constexpr std::size_t kMaxRanges = 256;
constexpr std::string_view kBoundary = "abup-serve-byteranges-7f3a9c";

bool number(std::string_view s, std::uint64_t& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return !s.empty() && ec == std::errc() && p == s.data() + s.size();
}

// "bytes=a-b,c-,-n,...". nullopt: no usable Range (serve the whole file, as RFC 9110 allows for
// syntax it does not support); an empty list: none satisfiable (416). Unsatisfiable ranges
// among satisfiable ones are left out, as RFC 9110 §14.2 says.
std::optional<std::vector<ByteRange>> parse_ranges(std::string_view header, std::uint64_t size) {
  constexpr std::string_view prefix = "bytes=";
  if (!header.starts_with(prefix)) return std::nullopt;
  header.remove_prefix(prefix.size());
  std::vector<ByteRange> out;
  for (std::size_t count = 0; !header.empty(); ++count) {
    if (count == kMaxRanges) return std::nullopt;
    auto comma = header.find(',');
    std::string_view spec = header.substr(0, comma);
    header = comma == std::string_view::npos ? std::string_view() : header.substr(comma + 1);
    while (!spec.empty() && spec.front() == ' ') spec.remove_prefix(1);
    while (!spec.empty() && spec.back() == ' ') spec.remove_suffix(1);
    auto dash = spec.find('-');
    if (dash == std::string_view::npos) return std::nullopt;
    std::string_view a = spec.substr(0, dash), b = spec.substr(dash + 1);
    std::uint64_t first = 0, last = 0;
    if (a.empty()) {  // suffix: the last n bytes
      if (!number(b, last)) return std::nullopt;
      if (last > 0 && size > 0) out.push_back({size - std::min(last, size), size - 1});
      continue;
    }
    if (!number(a, first)) return std::nullopt;
    if (b.empty()) {
      last = size ? size - 1 : 0;
    } else if (!number(b, last) || last < first) {
      return std::nullopt;
    }
    if (first < size) out.push_back({first, std::min(last, size - 1)});
  }
  return out;
}

std::string content_range(const ByteRange& r, std::uint64_t size) {
  return "bytes " + std::to_string(r.first) + "-" + std::to_string(r.last) + "/" +
         std::to_string(size);
}

// The part headers before range i of a multipart/byteranges body (and after the last one the
// closing delimiter, for i == ranges.size()).
std::string part_head(const std::vector<ByteRange>& ranges, std::size_t i, std::uint64_t size) {
  std::string out = "\r\n--" + std::string(kBoundary);
  if (i == ranges.size()) return out + "--\r\n";
  return out + "\r\nContent-Type: application/octet-stream\r\nContent-Range: " +
         content_range(ranges[i], size) + "\r\n\r\n";
}

class Connection {
 public:
  Connection(tcp::socket socket, Server& server) : socket_(std::move(socket)), server_(server) {}

  void run() {
    beast::flat_buffer buffer;
    for (;;) {
      beast::error_code ec;
      http::request_parser<http::string_body> parser;
      parser.body_limit(kMaxRequestBody);
      http::read(socket_, buffer, parser, ec);
      if (ec) return;  // closed, reset, or a request we cannot read
      auto& req = parser.get();
      bool keep = handle(req);
      if (!keep || !req.keep_alive()) break;
    }
    beast::error_code ec;
    socket_.shutdown(tcp::socket::shutdown_send, ec);
  }

 private:
  using Request = http::request<http::string_body>;

  bool send_text(const Request& req, http::status status, const std::string& body,
                 const std::string& type = "text/plain",
                 const std::vector<std::pair<std::string, std::string>>& headers = {}) {
    http::response<http::string_body> res{status, req.version()};
    res.set(http::field::server, "abup-serve");
    res.set(http::field::content_type, type);
    for (const auto& [k, v] : headers) res.set(k, v);
    res.keep_alive(req.keep_alive());
    res.body() = req.method() == http::verb::head ? std::string() : body;
    res.content_length(body.size());
    beast::error_code ec;
    if (req.method() == http::verb::head) {
      http::response_serializer<http::string_body> sr{res};
      http::write_header(socket_, sr, ec);
    } else {
      http::write(socket_, res, ec);
    }
    return !ec;
  }

  bool handle(const Request& req) {
    std::string target(req.target());
    if (auto q = target.find('?'); q != std::string::npos) target.resize(q);
    if (target == "/v1/update" || target == "/v1/update/") {
      if (req.method() != http::verb::post)
        return send_text(req, http::status::method_not_allowed, "POST an Omaha request here\n",
                         "text/plain", {{"Allow", "POST"}});
      return omaha(req);
    }
    if (req.method() != http::verb::get && req.method() != http::verb::head)
      return send_text(req, http::status::method_not_allowed, "GET or HEAD\n", "text/plain",
                       {{"Allow", "GET, HEAD"}});
    return file(req, target);
  }

  bool omaha(const Request& req) {
    auto request = protocol::omaha::parse_request(req.body());
    if (!request) {
      std::fprintf(stderr, "abup-serve: bad Omaha request: %s\n", request.error().message.c_str());
      return send_text(req, http::status::bad_request, request.error().message + "\n");
    }
    server_.log_request(*request);
    return send_text(req, http::status::ok, server_.catalog().reply(*request), "text/xml");
  }

  bool file(const Request& req, const std::string& target) {
    // Only plain relative names inside the directory: no "..", no hidden files.
    std::string name = target.substr(1);
    bool bad = name.empty() || name.find("/.") != std::string::npos || name.starts_with(".") ||
               name.find('%') != std::string::npos || name.find("//") != std::string::npos;
    const auto path = server_.catalog().dir() / name;
    Fd fd;
    if (!bad) {
      auto f = open_file(path, O_RDONLY);
      if (f) fd = std::move(*f);
    }
    struct stat st {};
    if (!fd.valid() || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode))
      return send_text(req, http::status::not_found, "not found\n");
    const auto size = static_cast<std::uint64_t>(st.st_size);
    std::vector<ByteRange> ranges{{0, size ? size - 1 : 0}};
    bool partial = false;
    if (auto header = req[http::field::range]; !header.empty()) {
      auto r = parse_ranges(std::string_view(header.data(), header.size()), size);
      if (r && r->empty())
        return send_text(req, http::status::range_not_satisfiable, "", "text/plain",
                         {{"Content-Range", "bytes */" + std::to_string(size)}});
      if (r) ranges = std::move(*r), partial = true;
    }
    const bool multipart = ranges.size() > 1;
    std::uint64_t length = 0;
    for (std::size_t i = 0; i < ranges.size() && size > 0; ++i)
      length += ranges[i].last - ranges[i].first + 1 +
                (multipart ? part_head(ranges, i, size).size() : 0);
    if (multipart) length += part_head(ranges, ranges.size(), size).size();
    http::response<http::buffer_body> res{
        partial ? http::status::partial_content : http::status::ok, req.version()};
    res.set(http::field::server, "abup-serve");
    res.set(http::field::content_type,
            multipart ? "multipart/byteranges; boundary=" + std::string(kBoundary)
                      : std::string("application/octet-stream"));
    res.set(http::field::accept_ranges, "bytes");
    if (partial && !multipart) res.set(http::field::content_range, content_range(ranges[0], size));
    res.keep_alive(req.keep_alive());
    res.content_length(length);
    res.body().data = nullptr;
    res.body().more = true;
    http::response_serializer<http::buffer_body> sr{res};
    beast::error_code ec;
    http::write_header(socket_, sr, ec);
    if (ec) return false;
    if (req.method() == http::verb::head) return true;
    auto write = [&](const char* data, std::size_t n) {
      res.body().data = const_cast<char*>(data);
      res.body().size = n;
      res.body().more = true;
      http::write(socket_, sr, ec);
      if (ec == http::error::need_buffer) ec = {};
      return !ec;
    };
    std::vector<char> buf(1 << 20);
    for (std::size_t i = 0; i < ranges.size() && size > 0; ++i) {
      if (multipart) {
        auto head = part_head(ranges, i, size);
        if (!write(head.data(), head.size())) return false;
      }
      std::uint64_t offset = ranges[i].first, left = ranges[i].last - ranges[i].first + 1;
      while (left > 0) {
        const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(left, buf.size()));
        ssize_t n = ::pread(fd.get(), buf.data(), want, static_cast<off_t>(offset));
        if (n <= 0) return false;  // the file shrank under us: drop the connection
        if (!write(buf.data(), static_cast<std::size_t>(n))) return false;
        offset += static_cast<std::uint64_t>(n);
        left -= static_cast<std::uint64_t>(n);
      }
    }
    if (multipart) {
      auto tail = part_head(ranges, ranges.size(), size);
      if (!write(tail.data(), tail.size())) return false;
    }
    res.body().data = nullptr;
    res.body().more = false;
    http::write(socket_, sr, ec);
    return !ec;
  }

  tcp::socket socket_;
  Server& server_;
};

}  // namespace

Server::Server(Catalog& catalog, std::string events_log, std::string requests_log)
    : catalog_(catalog),
      events_log_(std::move(events_log)),
      requests_log_(std::move(requests_log)) {}

void Server::append(const std::string& path, const std::string& line) {
  if (path.empty()) return;
  std::lock_guard lock(log_mutex_);
  // Opened per line (O_APPEND): a test reads whole lines at any moment.
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (!fd.valid()) {
    std::fprintf(stderr, "abup-serve: %s: %s\n", path.c_str(), errno_text(errno).c_str());
    return;
  }
  std::string text = line + "\n";
  if (auto st = write_all(fd.get(), as_bytes(text), path); !st)
    std::fprintf(stderr, "abup-serve: %s\n", st.error().message.c_str());
}

void Server::log_request(const protocol::omaha::Request& request) {
  const auto& who = request.who;
  nlohmann::json base = {{"appid", who.app_id},
                         {"version", who.version},
                         {"track", who.track},
                         {"machineid", who.machine_id},
                         {"bootid", who.boot_id},
                         {"arch", request.os_arch},
                         {"board", who.board},
                         {"installsource", who.install_source},
                         {"sessionid", request.session_id}};
  nlohmann::json r = base;
  r["updatecheck"] = request.update_check;
  r["ping"] = request.ping;
  r["events"] = request.events.size();
  append(requests_log_, r.dump());
  for (const auto& e : request.events) {
    nlohmann::json j = base;
    j["eventtype"] = e.type;
    j["eventresult"] = e.result;
    if (e.error_code) j["errorcode"] = *e.error_code;
    if (!e.previous_version.empty()) j["previousversion"] = e.previous_version;
    append(events_log_, j.dump());
  }
}

Status Server::serve(const std::string& host, std::uint16_t port, const ReadyCallback& ready) {
  try {
    boost::asio::io_context io;
    auto address = boost::asio::ip::make_address(host);
    tcp::acceptor acceptor(io, tcp::endpoint(address, port));
    ready(acceptor.local_endpoint().port());
    for (;;) {
      tcp::socket socket(io);
      boost::system::error_code ec;
      acceptor.accept(socket, ec);
      if (ec) continue;
      std::thread([this, s = std::move(socket)]() mutable {
        try {
          Connection(std::move(s), *this).run();
        } catch (const std::exception& e) {
          std::fprintf(stderr, "abup-serve: connection: %s\n", e.what());
        }
      }).detach();
    }
  } catch (const std::exception& e) {
    return make_error(Errc::io, "listen on " + host + ":" + std::to_string(port) + ": " + e.what());
  }
}

}  // namespace abup::serve
