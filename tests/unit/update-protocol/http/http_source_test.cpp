// The HTTP Source against real servers: nginx for correct behaviour, the fault server for the rest.
#include <doctest/doctest.h>

#include <atomic>
#include <set>
#include <sstream>
#include <thread>

#include "http_helpers.hpp"

namespace abup::protocol::test {
namespace {

using abup::test::FaultServer;
using abup::test::NginxServer;

std::vector<std::string> words(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

// Ranges asked for in a request log ("METHOD PATH RANGE" lines), as their first byte.
std::vector<std::uint64_t> range_starts(const std::vector<std::string>& log) {
  std::vector<std::uint64_t> starts;
  for (const auto& line : log) {
    auto w = words(line);
    if (w.size() >= 3 && w[0] == "GET" && w[2].starts_with("bytes="))
      starts.push_back(std::stoull(w[2].substr(6)));
  }
  return starts;
}

// The error of a 100-byte read_at(offset) of the fault server's `path`, which delivers nothing.
std::string refused_read(const FaultServer& fault, const std::string& path, std::uint64_t offset) {
  auto src = open_ok(fault.url(path), fast_options());
  std::vector<std::uint8_t> buf(100);
  auto st = src->read_at(offset, buf);
  CHECK(src->bytes_fetched() == 0);
  return error_of(st);
}

}  // namespace

TEST_CASE_FIXTURE(OnNginx, "the size comes from HEAD and nothing is downloaded for it") {
  auto src = open_ok(nginx.url("image.bin"), fast_options());
  CHECK(src->size() == kImageSize);
  CHECK(src->bytes_fetched() == 0);
  CHECK(src->describe() == nginx.url("image.bin"));
  auto log = nginx.access_log(1);
  REQUIRE(log.size() == 1);
  CHECK(log[0].starts_with("HEAD /image.bin - 200"));
}

TEST_CASE_FIXTURE(OnNginx,
                  "read_at and read_range return the file's bytes over one reused connection") {
  auto src = open_ok(nginx.url("image.bin"), fast_options());

  std::vector<std::uint8_t> buf(4096);
  for (std::uint64_t offset : {std::uint64_t{0}, std::uint64_t{1234567}, kImageSize - 4096}) {
    REQUIRE(src->read_at(offset, buf).has_value());
    CHECK(std::string(buf.begin(), buf.end()) == d.image.substr(offset, buf.size()));
  }
  std::vector<std::uint8_t> one(1);
  REQUIRE(src->read_at(kImageSize - 1, one).has_value());
  CHECK(static_cast<char>(one[0]) == d.image.back());

  CHECK(read_all(*src, 0, kImageSize) == d.image);
  CHECK(read_all(*src, 777, 3 << 20) == d.image.substr(777, 3 << 20));
  CHECK(src->bytes_fetched() == 3 * 4096 + 1 + kImageSize + (3 << 20));

  auto log = nginx.access_log(7);
  REQUIRE(log.size() == 7);
  CHECK(words(log[1])[2] == "bytes=0-4095");
  CHECK(words(log[6])[2] == "bytes=777-" + std::to_string(777 + (3 << 20) - 1));
  std::set<std::string> connections;
  for (const auto& line : log) {
    CHECK(words(line)[3] == (words(line)[0] == "HEAD" ? "200" : "206"));
    connections.insert(words(line).back());
  }
  CHECK(connections.size() == 1);
}

TEST_CASE_FIXTURE(OnNginx, "reads past the end are refused without a request") {
  auto src = open_ok(nginx.url("image.bin"), fast_options());
  std::vector<std::uint8_t> buf(10);
  auto st = src->read_at(kImageSize - 5, buf);
  CHECK(error_of(st).find("past the end") != std::string::npos);
  CHECK(st.error().code == Errc::invalid_input);
  CHECK(nginx.access_log(1).size() == 1);
}

TEST_CASE_FIXTURE(OnNginx, "a missing file is not_found, naming the URL and the status") {
  auto r = open_http_source(nginx.url("nope.bin"), fast_options());
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == Errc::not_found);
  CHECK(r.error().message == nginx.url("nope.bin") + ": HTTP 404 Not Found");
}

TEST_CASE("a server that ignores Range (200 instead of 206) is refused") {
  Docroot d;
  SUBCASE("nginx max_ranges 0: found by the 1-byte probe when opening") {
    NginxServer nginx(d.root);
    auto r = open_http_source(nginx.url("norange/image.bin"), fast_options());
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == Errc::invalid_input);
    CHECK(r.error().message == nginx.url("norange/image.bin") +
                                   ": server ignored the Range request (HTTP 200 instead of 206)");
    auto log = nginx.access_log(2);
    REQUIRE(log.size() == 2);  // HEAD without Accept-Ranges, then GET bytes=0-0; no retries
    CHECK(log[1].starts_with("GET /norange/image.bin bytes=0-0 200"));
  }
  SUBCASE("a server advertising ranges but answering 200: found at the first read") {
    FaultServer fault(d.root);
    CHECK(refused_read(fault, "norange/image.bin", 1000) ==
          fault.url("norange/image.bin") +
              ": server ignored the Range request (HTTP 200 instead of 206)");
    CHECK(fault.requests().size() == 2);
  }
}

TEST_CASE_FIXTURE(OnFaultServer, "a body longer than the range asked for is refused") {
  auto src = open_ok(fault.url("extra/image.bin"), fast_options());
  std::uint64_t delivered = 0;
  auto st = src->read_range(100, 1000, [&](std::span<const std::uint8_t> piece) -> Status {
    delivered += piece.size();
    return {};
  });
  CHECK(error_of(st).find("server sent more than the 1000 bytes asked for (range 100-1099)") !=
        std::string::npos);
  CHECK(st.error().code == Errc::invalid_input);
  CHECK(delivered <= 1000);
  CHECK(fault.requests().size() == 2);  // not retried
}

TEST_CASE_FIXTURE(OnFaultServer, "a Content-Range for other bytes is refused") {
  CHECK(refused_read(fault, "wrongrange/image.bin", 5000) ==
        fault.url("wrongrange/image.bin") +
            ": server answered range 5001-5100 to a request for range 5000-5099");
}

TEST_CASE_FIXTURE(
    OnFaultServer,
    "dropped connections are resumed from the next byte, never delivering one twice") {
  auto options = fast_options();
  options.max_retries = 2;  // fewer than the drops: progress resets the count
  auto src = open_ok(fault.url("drop/1000000/image.bin"), options);

  std::string got = read_all(*src, 10, kImageSize - 10);
  CHECK(got.size() == kImageSize - 10);
  CHECK(got == d.image.substr(10));
  CHECK(src->bytes_fetched() == kImageSize - 10);

  auto starts = range_starts(fault.requests());
  REQUIRE(starts.size() == 6);
  for (std::size_t i = 0; i < starts.size(); ++i) CHECK(starts[i] == 10 + i * 1000000);

  std::vector<std::uint8_t> buf(2500000);
  REQUIRE(src->read_at(100, buf).has_value());
  CHECK(std::string(buf.begin(), buf.end()) == d.image.substr(100, buf.size()));
}

TEST_CASE_FIXTURE(OnFaultServer,
                  "a reply that is not HTTP (a stray byte on a kept-alive connection) is retried") {
  auto src = open_ok(fault.url("straybyte/image.bin"), fast_options());
  std::vector<std::uint8_t> buf(4096);
  for (std::uint64_t offset : {std::uint64_t{0}, std::uint64_t{5000}}) {
    auto st = src->read_at(offset, buf);
    REQUIRE_MESSAGE(st.has_value(), (st ? "" : st.error().message));
    CHECK(std::string(buf.begin(), buf.end()) == d.image.substr(offset, buf.size()));
  }
  // The second range was asked twice: the reply on the old connection began with the stray
  // byte, the retry on a new one was clean.
  CHECK(range_starts(fault.requests()) == std::vector<std::uint64_t>{0, 5000, 5000});
}

TEST_CASE_FIXTURE(OnFaultServer, "503s are retried, then the source works") {
  auto src = open_ok(fault.url("flaky/2/image.bin"), fast_options());
  CHECK(src->size() == kImageSize);
  CHECK(read_all(*src, 4096, 8192) == d.image.substr(4096, 8192));
  auto log = fault.requests();
  REQUIRE(log.size() == 6);  // HEAD ×3 (two 503s), GET ×3 (two 503s)
  for (std::size_t i = 0; i < 3; ++i) CHECK(log[i] == "HEAD /flaky/2/image.bin -");
  for (std::size_t i = 3; i < 6; ++i) CHECK(log[i] == "GET /flaky/2/image.bin bytes=4096-12287");
}

TEST_CASE_FIXTURE(OnFaultServer,
                  "when retries run out the error names the URL, the status and the attempts") {
  auto options = fast_options();
  options.max_retries = 2;
  auto r = open_http_source(fault.url("flaky/100/image.bin"), options);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == Errc::network);
  CHECK(r.error().message == fault.url("flaky/100/image.bin") +
                                 ": HTTP 503 Service Unavailable (gave up after 3 attempts)");
  CHECK(fault.requests().size() == 3);
}

TEST_CASE_FIXTURE(OnFaultServer, "redirects are followed up to the cap, and refused beyond it") {
  auto options = fast_options();
  options.max_redirects = 4;
  auto src = open_ok(fault.url("redirect/4/image.bin"), options);
  CHECK(src->size() == kImageSize);
  CHECK(read_all(*src, 0, 1000) == d.image.substr(0, 1000));

  auto r = open_http_source(fault.url("redirect/5/image.bin"), options);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().message.find("more than 4 redirects") != std::string::npos);
  CHECK(r.error().message.starts_with(fault.url("redirect/5/image.bin") + ": "));
}

TEST_CASE_FIXTURE(OnNginx, "plain http:// is refused unless allowed") {
  auto options = fast_options();
  options.allow_http = false;
  auto r = open_http_source(nginx.url("image.bin"), options);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == Errc::refused);
  CHECK(r.error().message.find("--allow-http") != std::string::npos);
  auto h = http_request("GET", nginx.url("small.txt"), {}, "", options);
  REQUIRE_FALSE(h.has_value());
  CHECK(h.error().code == Errc::refused);
  CHECK(nginx.access_log().empty());
}

TEST_CASE_FIXTURE(OnNginx, "a sink's error stops the transfer and comes back unchanged") {
  auto src = open_ok(nginx.url("image.bin"), fast_options());
  int calls = 0;
  auto st = src->read_range(0, kImageSize, [&](std::span<const std::uint8_t>) -> Status {
    if (++calls == 2) return make_error(Errc::io, "write /dev/sdz: no space left");
    return {};
  });
  REQUIRE_FALSE(st.has_value());
  CHECK(st.error().code == Errc::io);
  CHECK(st.error().message == "write /dev/sdz: no space left");
  CHECK(calls == 2);
  CHECK(src->bytes_fetched() < kImageSize);
}

TEST_CASE_FIXTURE(OnFaultServer, "a trickling server is aborted as too slow, and retried") {
  auto options = fast_options();
  options.max_retries = 1;
  options.low_speed_limit = 1000;
  options.low_speed_time = 1s;
  auto src = open_ok(fault.url("slow/image.bin"), options);
  std::vector<std::uint8_t> buf(100000);  // ~100 s at the trickle's rate, were it not aborted
  auto st = src->read_at(0, buf);
  CHECK(error_of(st).find("transfer slower than 1000 bytes/s for 1 s") != std::string::npos);
  CHECK(error_of(st).find("[Network] LowSpeedLimitBytes= and LowSpeedTimeSec=") !=
        std::string::npos);
  CHECK(st.error().code == Errc::network);
  auto starts = range_starts(fault.requests());
  REQUIRE(starts.size() == 2);
  CHECK(starts[1] > 0);  // the retry resumed after the bytes that did arrive
}

TEST_CASE_FIXTURE(OnNginx, "a sink that blocks (back-pressure) is not taken for a slow link") {
  auto options = fast_options();
  options.max_retries = 0;
  options.low_speed_limit = 10 << 20;
  options.low_speed_time = 1s;
  auto src = open_ok(nginx.url("image.bin"), options);
  int calls = 0;
  std::string got;
  auto st = src->read_range(0, kImageSize, [&](std::span<const std::uint8_t> piece) -> Status {
    if (++calls <= 6) std::this_thread::sleep_for(300ms);  // 1.8 s blocked, little received
    got.append(reinterpret_cast<const char*>(piece.data()), piece.size());
    return {};
  });
  REQUIRE_MESSAGE(st.has_value(), (st ? "" : st.error().message));
  CHECK(got == d.image);
}

TEST_CASE_FIXTURE(OnFaultServer, "when HEAD is refused the size comes from a 1-byte range GET") {
  auto src = open_ok(fault.url("nohead/image.bin"), fast_options());
  CHECK(src->size() == kImageSize);
  auto log = fault.requests();
  REQUIRE(log.size() == 2);
  CHECK(log[0] == "HEAD /nohead/image.bin -");
  CHECK(log[1] == "GET /nohead/image.bin bytes=0-0");
  CHECK(read_all(*src, kImageSize - 10, 10) == d.image.substr(kImageSize - 10));
}

TEST_CASE_FIXTURE(OnFaultServer, "a cancel flag stops retry waits") {
  std::atomic<bool> cancel{false};
  auto options = fast_options();
  // Waits of an hour: unless the cancel flag ends the wait, this test hangs until ctest's
  // timeout fails it (tests assert behaviour, not wall-clock times).
  options.retry_base = 3600s;
  options.retry_max = 3600s;
  options.cancel = &cancel;
  std::thread canceller([&] {
    std::this_thread::sleep_for(300ms);
    cancel = true;
  });
  auto r = open_http_source(fault.url("flaky/100/image.bin"), options);
  canceller.join();
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == Errc::cancelled);
  CHECK(fault.requests().size() == 1);  // cancelled in the first wait, no second attempt
}

TEST_CASE_FIXTURE(OnNginx, "open_source picks the source by the location's form") {
  auto path = (d.root / "small.txt").string();
  for (const std::string& location : {path, "file://" + path, nginx.url("small.txt")}) {
    INFO(location);
    auto r = open_source(location, fast_options());
    REQUIRE(r.has_value());
    CHECK((*r)->size() == 12);
    CHECK(read_all(**r, 0, 12) == "hello, abup\n");
  }
  auto bad = open_source("ftp://example.com/x", fast_options());
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().message.find("unsupported URL scheme") != std::string::npos);
}

}  // namespace abup::protocol::test
