// A dead server fails within the configured limits, and the error says which limit was hit and
// which setting moves it. Real loopback sockets; no wall-clock assertions.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http_helpers.hpp"

namespace abup::protocol::test {
namespace {

// A loopback port whose SYNs go unanswered: a listener with a zero backlog that never accepts,
// its one queue slot taken by a connection of our own. Linux drops further SYNs while the accept
// queue is full, so a client's connect hangs like one to a dead host.
class BlackHole {
 public:
  BlackHole() {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(listener_, 0) == 0);
    socklen_t len = sizeof a;
    REQUIRE(::getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    port_ = ntohs(a.sin_port);
    filler_ = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(::connect(filler_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  }
  ~BlackHole() {
    ::close(filler_);
    ::close(listener_);
  }
  BlackHole(const BlackHole&) = delete;
  BlackHole& operator=(const BlackHole&) = delete;
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + "/" + path;
  }

 private:
  int listener_ = -1, filler_ = -1;
  std::uint16_t port_ = 0;
};

// Opening a Source on `url` fails as a network error whose message begins "<url>: <what>"; the
// message.
std::string source_failure(const std::string& url, const TransportOptions& options,
                           const std::string& what) {
  auto r = open_http_source(url, options);
  const Error& e = failure_of(r);
  INFO(e.message);
  CHECK(e.code == Errc::network);
  CHECK(e.message.starts_with(url + ": " + what));
  return e.message;
}

}  // namespace

TEST_CASE("a server that never completes the handshake fails on the connect timeout, named") {
  BlackHole hole;
  auto options = fast_options();
  options.max_retries = 1;
  options.connect_timeout = 1s;
  auto url = hole.url("image.bin");
  SUBCASE("a Source") {
    auto message = source_failure(
        url, options,
        "no connection within 1 s: the connect timeout, [Network] ConnectTimeoutSec=");
    INFO(message);
    CHECK(message.find("gave up after 2 attempts") != std::string::npos);
  }
  SUBCASE("a POST (Omaha, FleetLock, Kubernetes): it never left, so it is retried too") {
    auto r = http_request("POST", url, {}, "{}", options);
    const std::string& message = failure_of(r).message;
    INFO(message);
    CHECK(message.find("[Network] ConnectTimeoutSec=") != std::string::npos);
    CHECK(message.find("gave up after 2 attempts") != std::string::npos);
  }
}

TEST_CASE_FIXTURE(OnFaultServer,
                  "a server that accepts and never answers fails on the low-speed limit, named") {
  auto options = fast_options();
  options.max_retries = 0;
  options.low_speed_limit = 1024;
  options.low_speed_time = 1s;
  auto url = fault.url("hang/image.bin");
  SUBCASE("a Source") {
    source_failure(url, options,
                   "no answer: under 1024 bytes/s for 1 s: the low-speed limit, [Network] "
                   "LowSpeedLimitBytes= and LowSpeedTimeSec=");
  }
  SUBCASE("a small request") {
    auto r = http_request("GET", url, {}, "", options);
    const std::string& message = failure_of(r).message;
    INFO(message);
    CHECK(message.find("[Network] LowSpeedLimitBytes= and LowSpeedTimeSec=") != std::string::npos);
  }
}

TEST_CASE("the defaults bound a dead server: 30 s to connect, 30 s under 1 KiB/s") {
  TransportOptions o;
  CHECK(o.connect_timeout == 30s);
  CHECK(o.low_speed_limit == 1024);
  CHECK(o.low_speed_time == 30s);
}

}  // namespace abup::protocol::test
