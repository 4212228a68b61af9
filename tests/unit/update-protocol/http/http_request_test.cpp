// http_request: small exchanges, the retry rules per method, the body cap.
#include <doctest/doctest.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "fixture.hpp"
#include "support/fault_server.hpp"

namespace abup::protocol::test {

using abup::test::FaultServer;

TEST_CASE("http_request GET returns status, lower-cased headers and body") {
  Docroot d;
  FaultServer fault(d.root);
  auto r =
      http_request("GET", fault.url("echo/x?y=1"), {{"X-Abup-Test", "yes"}}, "", fast_options());
  REQUIRE_MESSAGE(r.has_value(), (r ? "" : r.error().message));
  CHECK(r->status == 200);
  CHECK(r->headers.at("content-type") == "application/json");
  auto j = nlohmann::json::parse(r->body);
  CHECK(j["method"] == "GET");
  CHECK(j["path"] == "/echo/x?y=1");
  CHECK(j["headers"]["x-abup-test"] == "yes");
  CHECK(j["headers"]["user-agent"] == "abup/0.1");

  auto missing = http_request("GET", fault.url("status/404/x"), {}, "", fast_options());
  REQUIRE(missing.has_value());  // an HTTP status is an answer, not a transport error
  CHECK(missing->status == 404);
  CHECK(missing->body == "status 404\n");
}

TEST_CASE("http_request goes through TransportOptions::proxy when set") {
  Docroot d;
  FaultServer proxy(d.root);  // answers anything; what matters is what it was asked
  auto o = fast_options();
  o.proxy = proxy.url("");
  // A name that cannot resolve: only the proxy can have answered.
  auto r = http_request("GET", "http://abup-proxied.invalid/echo/x", {}, "", o);
  REQUIRE_MESSAGE(r.has_value(), (r ? "" : r.error().message));
  const auto seen = proxy.requests();
  REQUIRE(seen.size() == 1);
  CHECK(seen[0] == "GET http://abup-proxied.invalid/echo/x -");  // absolute-form: a proxy request

  o.proxy.clear();  // the environment again (none set here): a direct, failing lookup
  auto direct = http_request("GET", "http://abup-proxied.invalid/echo/x", {}, "", o);
  CHECK_FALSE(direct.has_value());
  CHECK(proxy.requests().size() == 1);
}

TEST_CASE("http_request POST sends the body and headers") {
  Docroot d;
  FaultServer fault(d.root);
  const std::string body = R"({"hello":"omaha"})";
  auto r = http_request("POST", fault.url("echo/v1/update"), {{"Content-Type", "application/json"}},
                        body, fast_options());
  REQUIRE_MESSAGE(r.has_value(), (r ? "" : r.error().message));
  auto j = nlohmann::json::parse(r->body);
  CHECK(j["method"] == "POST");
  CHECK(j["body"] == body);
  CHECK(j["headers"]["content-type"] == "application/json");
  CHECK(j["headers"].count("expect") == 0);
}

TEST_CASE("http_request retries 5xx for idempotent methods only") {
  Docroot d;
  FaultServer fault(d.root);
  auto options = fast_options();
  options.max_retries = 2;
  auto get = http_request("GET", fault.url("status/503/a"), {}, "", options);
  REQUIRE(get.has_value());  // retries ran out: the last answer is returned
  CHECK(get->status == 503);
  auto post = http_request("POST", fault.url("status/503/b"), {}, "{}", options);
  REQUIRE(post.has_value());
  CHECK(post->status == 503);
  auto log = fault.requests();
  CHECK(std::count(log.begin(), log.end(), "GET /status/503/a -") == 3);
  CHECK(std::count(log.begin(), log.end(), "POST /status/503/b -") == 1);

  auto flaky = http_request("GET", fault.url("flaky/1/small.txt"), {}, "", options);
  REQUIRE(flaky.has_value());
  CHECK(flaky->status == 200);
  CHECK(flaky->body == "hello, abup\n");
}

TEST_CASE("http_request refuses a body over max_body") {
  Docroot d;
  FaultServer fault(d.root);
  auto r = http_request("GET", fault.url("image.bin"), {}, "", fast_options(), 1 << 20);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == Errc::invalid_input);
  CHECK(r.error().message == fault.url("image.bin") + ": response body larger than 1048576 bytes");
  auto ok = http_request("GET", fault.url("small.txt"), {}, "", fast_options(), 12);
  REQUIRE(ok.has_value());
  CHECK(ok->body == "hello, abup\n");
}

TEST_CASE("http_request reports a refused connection after retrying") {
  auto options = fast_options();
  options.max_retries = 1;
  auto url = "http://127.0.0.1:" + std::to_string(abup::test::free_port()) + "/x";
  auto r = http_request("POST", url, {}, "{}", options);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == Errc::network);
  CHECK(r.error().message.starts_with(url + ": Couldn't connect to server"));
  CHECK(r.error().message.find("gave up after 2 attempts") != std::string::npos);
}

}  // namespace abup::protocol::test
