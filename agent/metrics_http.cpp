// MetricsServer on Boost.Beast: one acceptor, one coroutine-free session per connection, each
// answering requests until the client closes or stalls.
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <mutex>
#include <set>
#include <thread>

#include "agent/metrics.hpp"

namespace abup::agent {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

// A scraper uses one connection; a few more cover overlapping scrapes and a person with curl.
constexpr std::size_t kMaxConnections = 16;

Result<tcp::endpoint> parse_listen(std::string_view listen) {
  auto bad = [&](const std::string& why) {
    return make_error(Errc::invalid_input,
                      "[Metrics] Listen=" + std::string(listen) + ": " + why +
                          " (expected IP:PORT, e.g. 127.0.0.1:9478 or [::1]:9478)");
  };
  auto colon = listen.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return bad("no port");
  std::string host(listen.substr(0, colon));
  std::string port_text(listen.substr(colon + 1));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  unsigned long port = 0;
  if (port_text.empty() || port_text.size() > 5 ||
      port_text.find_first_not_of("0123456789") != std::string::npos ||
      (port = std::stoul(port_text)) > 65535)
    return bad("bad port '" + port_text + "'");
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec) return bad("'" + host + "' is not an IP address");
  return tcp::endpoint(addr, static_cast<unsigned short>(port));
}

}  // namespace

struct MetricsServer::Impl : std::enable_shared_from_this<MetricsServer::Impl> {
  asio::io_context* io = nullptr;
  std::unique_ptr<asio::io_context> own_io;
  std::thread thread;
  std::optional<tcp::acceptor> acceptor;
  std::uint16_t port = 0;
  std::mutex mu;
  std::string text;
  std::set<std::shared_ptr<beast::tcp_stream>> open;  // guarded by the loop's strand (one thread)
  bool stopped = false;

  std::string body() {
    std::lock_guard lock(mu);
    return text;
  }

  void accept() {
    acceptor->async_accept(
        [self = shared_from_this()](boost::system::error_code ec, tcp::socket socket) {
          if (ec || self->stopped) return;
          if (self->open.size() >= kMaxConnections) {
            // Any local user can connect: past the cap a connection is closed unread, so
            // idle sockets cannot take the daemon's file descriptors.
            boost::system::error_code ignored;
            socket.close(ignored);
            return self->accept();
          }
          auto stream = std::make_shared<beast::tcp_stream>(std::move(socket));
          self->open.insert(stream);
          self->read(stream, std::make_shared<beast::flat_buffer>());
          self->accept();
        });
  }

  void close(const std::shared_ptr<beast::tcp_stream>& stream) {
    boost::system::error_code ignored;
    stream->socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream->socket().close(ignored);
    open.erase(stream);
  }

  void read(std::shared_ptr<beast::tcp_stream> stream, std::shared_ptr<beast::flat_buffer> buf) {
    auto req = std::make_shared<http::request<http::string_body>>();
    stream->expires_after(std::chrono::seconds(10));
    http::async_read(
        *stream, *buf, *req,
        [self = shared_from_this(), stream, buf, req](boost::system::error_code ec, std::size_t) {
          if (ec) return self->close(stream);
          self->respond(stream, buf, *req);
        });
  }

  void respond(std::shared_ptr<beast::tcp_stream> stream, std::shared_ptr<beast::flat_buffer> buf,
               const http::request<http::string_body>& req) {
    auto res = std::make_shared<http::response<http::string_body>>();
    res->version(req.version());
    res->keep_alive(req.keep_alive());
    res->set(http::field::server, "abup");
    auto target = req.target();
    bool known = target == "/metrics" || target == "/";
    if (!known) {
      res->result(http::status::not_found);
      res->set(http::field::content_type, "text/plain; charset=utf-8");
      res->body() = "not found: metrics are at /metrics\n";
    } else if (req.method() != http::verb::get && req.method() != http::verb::head) {
      res->result(http::status::method_not_allowed);
      res->set(http::field::allow, "GET, HEAD");
      res->set(http::field::content_type, "text/plain; charset=utf-8");
      res->body() = "method not allowed\n";
    } else {
      res->result(http::status::ok);
      res->set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
      res->body() = body();
    }
    res->prepare_payload();
    if (req.method() == http::verb::head) res->body().clear();  // Content-Length kept
    stream->expires_after(std::chrono::seconds(10));
    http::async_write(
        *stream, *res,
        [self = shared_from_this(), stream, buf, res](boost::system::error_code ec, std::size_t) {
          if (ec || !res->keep_alive()) return self->close(stream);
          self->read(stream, buf);
        });
  }

  void shutdown() {
    stopped = true;
    boost::system::error_code ignored;
    if (acceptor) acceptor->close(ignored);
    auto streams = open;
    for (const auto& s : streams) close(s);
  }
};

MetricsServer::MetricsServer(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

MetricsServer::~MetricsServer() {
  stop();
}

namespace {

Status open_acceptor(MetricsServer::Impl& impl, std::string_view listen) {
  ABUP_TRY(auto ep, parse_listen(listen));
  boost::system::error_code ec;
  auto& a = impl.acceptor.emplace(*impl.io);
  a.open(ep.protocol(), ec);
  if (!ec) a.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) a.bind(ep, ec);
  if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    return make_error(Errc::io, "metrics endpoint " + std::string(listen) + ": " + ec.message());
  impl.port = a.local_endpoint().port();
  return {};
}

}  // namespace

Result<std::unique_ptr<MetricsServer>> MetricsServer::start(asio::io_context& io,
                                                            std::string_view listen) {
  auto impl = std::make_shared<Impl>();
  impl->io = &io;
  ABUP_CHECK(open_acceptor(*impl, listen));
  impl->accept();
  return std::unique_ptr<MetricsServer>(new MetricsServer(std::move(impl)));
}

Result<std::unique_ptr<MetricsServer>> MetricsServer::start_thread(std::string_view listen) {
  auto impl = std::make_shared<Impl>();
  impl->own_io = std::make_unique<asio::io_context>(1);
  impl->io = impl->own_io.get();
  ABUP_CHECK(open_acceptor(*impl, listen));
  impl->accept();
  impl->thread = std::thread([io = impl->io] { io->run(); });
  return std::unique_ptr<MetricsServer>(new MetricsServer(std::move(impl)));
}

void MetricsServer::update(std::string text) {
  std::lock_guard lock(impl_->mu);
  impl_->text = std::move(text);
}

std::uint16_t MetricsServer::port() const {
  return impl_->port;
}

void MetricsServer::stop() {
  if (!impl_ || impl_->stopped) return;
  if (impl_->own_io) {
    impl_->own_io->stop();
    if (impl_->thread.joinable()) impl_->thread.join();
    impl_->shutdown();
    // Let the aborted handlers run: they hold the Impl, which owns the loop.
    impl_->own_io->restart();
    impl_->own_io->run();
  } else {
    impl_->shutdown();
  }
}

}  // namespace abup::agent
