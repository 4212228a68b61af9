// The Omaha client and abup check against canned replies from a small real server
// (tests/support/fault_server.py answers a POST to /NAME with the file NAME, /status/C/ with C),
// and against no server at all.
#include <doctest/doctest.h>

#include "serve.hpp"
#include "support/fault_server.hpp"
#include "support/world.hpp"
#include "update-protocol/omaha/omaha.hpp"

namespace omaha = abup::protocol::omaha;
using abup::Errc;
using namespace abup::test;

namespace {

std::string app_reply(const std::string& app_status, const std::string& inner) {
  return std::string(
             R"(<?xml version="1.0" encoding="UTF-8"?><response protocol="3.0" server="nebraska">)") +
         R"(<daystart elapsed_seconds="0"></daystart><app appid=")" + kAppId + R"(" status=")" +
         app_status + "\">" + inner + "</app></response>";
}

struct Canned {
  TempDir dir;
  Canned() {
    write_file(dir / "noupdate.xml",
               app_reply("ok", R"(<event status="ok"></event><ping status="ok"></ping>)"
                               R"(<updatecheck status="noupdate"></updatecheck>)"));
    write_file(
        dir / "update.xml",
        app_reply(
            "ok",
            R"(<updatecheck status="ok"><urls><url codebase="https://cdn.example/acl"/></urls>)"
            R"(<manifest version="202607.02.0"><packages><package name="acl.cosi" size="1234" hash="aGFzaA=="/>)"
            R"(</packages></manifest></updatecheck>)"));
    write_file(dir / "malformed.xml", app_reply("ok", "<updatecheck status=\"ok\">"));
    write_file(dir / "app-error.xml",
               app_reply("error-updateInProgressOnInstance", R"(<event status="ok"/>)"));
    write_file(dir / "check-error.xml",
               app_reply("ok", R"(<updatecheck status="error-internal"/>)"));
    write_file(dir / "two-acks.xml",
               app_reply("ok", R"(<event status="ok"/><event status="ok"/>)"));
    write_file(dir / "one-ack.xml",
               app_reply("ok", R"(<event status="ok"/><event status="error"/>)"));
  }
};

}  // namespace

TEST_CASE("canned replies: no update, update, app status error, malformed, updatecheck error") {
  Canned c;
  FaultServer server(c.dir.path());

  auto none = omaha::check(test_identity(server.url("noupdate.xml")), {}, plain_http());
  REQUIRE(none.has_value());
  CHECK(none->kind == omaha::CheckResult::Kind::no_update);

  auto update = omaha::check(test_identity(server.url("update.xml")), {}, plain_http());
  REQUIRE(update.has_value());
  CHECK(update->kind == omaha::CheckResult::Kind::update);
  CHECK(update->offer->url == "https://cdn.example/acl/acl.cosi");
  CHECK(update->offer->size == 1234);

  auto later = omaha::check(test_identity(server.url("app-error.xml")), {}, plain_http());
  REQUIRE(later.has_value());
  CHECK(later->kind == omaha::CheckResult::Kind::not_now);
  CHECK(later->app_status == "error-updateInProgressOnInstance");

  auto bad = omaha::check(test_identity(server.url("malformed.xml")), {}, plain_http());
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().code == Errc::invalid_input);
  CHECK(bad.error().message.find("not well-formed") != std::string::npos);
  CHECK(bad.error().message.find(server.url("malformed.xml")) != std::string::npos);

  auto failed = omaha::check(test_identity(server.url("check-error.xml")), {}, plain_http());
  REQUIRE_FALSE(failed.has_value());
  CHECK(failed.error().message.find("error-internal") != std::string::npos);

  // Each check was one POST of its own.
  auto requests = server.requests();
  REQUIRE(requests.size() == 5);
  for (const auto& r : requests) CHECK(r.starts_with("POST /"));
}

TEST_CASE("5xx and a server that is not there are Errc::network, other statuses are not") {
  Canned c;
  FaultServer server(c.dir.path());
  for (const char* code : {"500", "502", "503"}) {
    CAPTURE(code);
    auto r = omaha::check(test_identity(server.url(std::string("status/") + code + "/x")), {},
                          plain_http());
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == Errc::network);
    CHECK(r.error().message.find(std::string("HTTP ") + code) != std::string::npos);
  }
  auto missing = omaha::check(test_identity(server.url("status/404/x")), {}, plain_http());
  REQUIRE_FALSE(missing.has_value());
  CHECK(missing.error().code != Errc::network);
  CHECK(missing.error().message.find("full Omaha endpoint") != std::string::npos);

  auto down =
      omaha::check(test_identity("http://127.0.0.1:" + std::to_string(free_port()) + "/v1/update"),
                   {}, plain_http());
  REQUIRE_FALSE(down.has_value());
  CHECK(down.error().code == Errc::network);
  auto events = omaha::send_events(
      test_identity("http://127.0.0.1:" + std::to_string(free_port()) + "/v1/update"),
      {{13, 1, {}, {}}}, plain_http());
  REQUIRE_FALSE(events.has_value());
  CHECK(events.error().code == Errc::network);
}

TEST_CASE("events: every one acknowledged is success, fewer is an error to retry") {
  Canned c;
  FaultServer server(c.dir.path());
  const std::vector<omaha::Event> two = {omaha::Event::download_started(),
                                         omaha::Event::download_finished()};
  CHECK(
      omaha::send_events(test_identity(server.url("two-acks.xml")), two, plain_http()).has_value());
  auto partial = omaha::send_events(test_identity(server.url("one-ack.xml")), two, plain_http());
  REQUIRE_FALSE(partial.has_value());
  CHECK(partial.error().code == Errc::network);
  CHECK(partial.error().message.find("1 of 2 events acknowledged") != std::string::npos);
  auto refused = omaha::send_events(test_identity(server.url("app-error.xml")), two, plain_http());
  REQUIRE_FALSE(refused.has_value());
  CHECK(refused.error().message.find("error-updateInProgressOnInstance") != std::string::npos);
  // Nothing to send is not a request.
  CHECK(
      omaha::send_events(test_identity(server.url("two-acks.xml")), {}, plain_http()).has_value());
  CHECK(server.requests().size() == 3);
}

TEST_CASE("abup check prints not now, and fails clearly on 5xx, nonsense and no server") {
  Canned c;
  FaultServer server(c.dir.path());
  TempDir t;
  make_root(t / "root", 'A', "202601.01.0");
  const auto root = t / "root";

  write_omaha_config(root, server.url("app-error.xml"));
  auto later = abup_check(root);
  CHECK(later.exit_code == 0);
  CHECK(later.out.find("not now: the server answered app status "
                       "'error-updateInProgressOnInstance'") != std::string::npos);

  write_omaha_config(root, server.url("status/503/x"));
  auto busy = abup_check(root);
  CHECK(busy.exit_code == 1);
  CHECK(busy.out.find("HTTP 503") != std::string::npos);

  write_omaha_config(root, server.url("malformed.xml"));
  auto bad = abup_check(root, "--json");
  CHECK(bad.exit_code == 1);
  CHECK(bad.out.find("Omaha response: not well-formed XML") != std::string::npos);

  write_omaha_config(root, "http://127.0.0.1:" + std::to_string(free_port()) + "/v1/update");
  auto down = abup_check(root);
  CHECK(down.exit_code == 1);
  CHECK(down.out.find("abup: Omaha http://127.0.0.1:") != std::string::npos);

  write_omaha_config(root, "");
  auto unset = abup_check(root);
  CHECK(unset.exit_code == 2);
  CHECK(unset.out.find("[Update] Server=") != std::string::npos);
}
