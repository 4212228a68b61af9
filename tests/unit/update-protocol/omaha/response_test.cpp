// The Omaha reply parser against canned documents: the examples of docs/reference/omaha.md, the
// same with reordered attributes and unknown elements, and every way a reply can be wrong.
#include <doctest/doctest.h>

#include <string>

#include "update-protocol/omaha/omaha.hpp"
#include "update-protocol/omaha/omaha_internal.hpp"

using namespace abup::protocol::omaha;
using abup::Errc;

namespace {

constexpr const char* kApp = "{b0ec8f0d-1c13-4bf4-9efd-ea54464a7098}";

const std::string kNoUpdate = R"(<response protocol="3.0" server="nebraska">
  <daystart elapsed_seconds="0"></daystart>
  <app appid="{b0ec8f0d-1c13-4bf4-9efd-ea54464a7098}" status="ok">
    <event status="ok"></event>
    <ping status="ok"></ping>
    <updatecheck status="noupdate"></updatecheck>
  </app>
</response>)";

const std::string kUpdate = R"(<response protocol="3.0" server="nebraska">
  <daystart elapsed_seconds="0"></daystart>
  <app appid="{b0ec8f0d-1c13-4bf4-9efd-ea54464a7098}" status="ok">
    <ping status="ok"></ping>
    <updatecheck status="ok">
      <urls><url codebase="https://images.example.net/acl/202607.02.0/"></url></urls>
      <manifest version="202607.02.0">
        <packages>
          <package name="acl-202607.02.0.cosi" hash="q2y4oXtX2wlXz3mGv1Jt8xq7j1oK9m3dV0bTqzF5m0Y5x8oQ1Zl4nS2rT6uW7vA" size="734003200" required="true"></package>
        </packages>
        <actions>
          <action event="postinstall" sha256="jCDzzy0AMdBpnpuDkOdVI18Vgd2j0nh0IicfIxbMLRA="></action>
        </actions>
      </manifest>
    </updatecheck>
  </app>
</response>)";

// The update document with `from` replaced by `to` (once; the test fails if `from` is absent).
std::string edited(std::string doc, const std::string& from, const std::string& to) {
  auto pos = doc.find(from);
  REQUIRE_MESSAGE(pos != std::string::npos, from);
  return doc.replace(pos, from.size(), to);
}

std::string error_of(const std::string& xml, const char* app = kApp) {
  auto r = parse_response(xml, app);
  REQUIRE_FALSE(r.has_value());
  return r.error().message;
}

}  // namespace

TEST_CASE("the no-update example parses as no update with its event acknowledged") {
  auto r = parse_response(kNoUpdate, kApp);
  REQUIRE(r.has_value());
  CHECK(r->kind == CheckResult::Kind::no_update);
  CHECK_FALSE(r->offer.has_value());
  CHECK(r->app_status == "ok");
  CHECK(r->events_acknowledged == 1);
}

TEST_CASE("the update example gives version, URL, size and both hashes") {
  auto r = parse_response(kUpdate, kApp);
  REQUIRE(r.has_value());
  CHECK(r->kind == CheckResult::Kind::update);
  REQUIRE(r->offer.has_value());
  CHECK(r->offer->version == "202607.02.0");
  CHECK(r->offer->url == "https://images.example.net/acl/202607.02.0/acl-202607.02.0.cosi");
  CHECK(r->offer->size == 734003200);
  CHECK(r->offer->package_hash ==
        "q2y4oXtX2wlXz3mGv1Jt8xq7j1oK9m3dV0bTqzF5m0Y5x8oQ1Zl4nS2rT6uW7vA");
  CHECK(r->offer->sha256 == "jCDzzy0AMdBpnpuDkOdVI18Vgd2j0nh0IicfIxbMLRA=");
  CHECK(r->events_acknowledged == 0);
}

TEST_CASE("attribute order, unknown elements, single quotes and an XML declaration do not matter") {
  const std::string xml = R"(<?xml version="1.0" encoding="UTF-8"?>
<response server='other' protocol='3.0'>
  <extension><app appid="{b0ec8f0d-1c13-4bf4-9efd-ea54464a7098}" status="error-x"/></extension>
  <app status='ok' extra="1" appid='{B0EC8F0D-1C13-4BF4-9EFD-EA54464A7098}'>
    <future thing="1"><nested/></future>
    <updatecheck future="yes" status="ok">
      <urls><url extra="x" codebase="https://a.example/dir"/><url codebase="https://b.example/"/></urls>
      <manifest version="202607.10.0" other="x">
        <packages><package size="0" name="img.cosi" required="true"/><package name="extra" size="1"/></packages>
        <actions><action sha256="abc=" event="preinstall"/><action sha256="def=" event="postinstall"/></actions>
      </manifest>
    </updatecheck>
    <event status="ok"/><event status="ok"/><event status="error"/>
  </app>
</response>)";
  auto r = parse_response(xml, kApp);
  REQUIRE_MESSAGE(r.has_value(), (r ? "" : r.error().message));
  CHECK(r->kind == CheckResult::Kind::update);
  CHECK(r->offer->url == "https://a.example/dir/img.cosi");
  CHECK(r->offer->size == 0);
  CHECK(r->offer->version == "202607.10.0");
  CHECK(r->offer->sha256 == "def=");
  CHECK(r->offer->package_hash.empty());
  CHECK(r->events_acknowledged == 2);
}

TEST_CASE("an absolute package name is the URL") {
  auto r = parse_response(edited(kUpdate, R"(name="acl-202607.02.0.cosi")",
                                 R"(name="https://cdn.example.org/x/acl.cosi")"),
                          kApp);
  REQUIRE(r.has_value());
  CHECK(r->offer->url == "https://cdn.example.org/x/acl.cosi");
  CHECK(resolve_url("http://h/a", "b") == "http://h/a/b");
  CHECK(resolve_url("http://h/a/", "/b") == "http://h/a/b");
}

TEST_CASE("an app status other than ok is not now, whatever else the reply says") {
  auto r = parse_response(edited(kUpdate, R"(status="ok">
    <ping)",
                                 R"(status="error-updateInProgressOnInstance">
    <ping)"),
                          kApp);
  REQUIRE(r.has_value());
  CHECK(r->kind == CheckResult::Kind::not_now);
  CHECK(r->app_status == "error-updateInProgressOnInstance");
  CHECK_FALSE(r->offer.has_value());
}

TEST_CASE("an updatecheck status other than ok or noupdate is an error naming it") {
  auto r = parse_response(edited(kNoUpdate, "noupdate", "error-internal"), kApp);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().message.find("error-internal") != std::string::npos);
  CHECK(r.error().message.find("updatecheck") != std::string::npos);
}

TEST_CASE("what an offer needs is checked, each failure naming the element or attribute") {
  struct Case {
    const char* from;
    const char* to;
    const char* expect;
  };
  const Case cases[] = {
      {R"(<urls><url codebase="https://images.example.net/acl/202607.02.0/"></url></urls>)", "",
       "<urls><url codebase"},
      {R"(codebase="https://images.example.net/acl/202607.02.0/")", "", "<url> has no codebase"},
      {R"(size="734003200")", "", "has no size"},
      {R"(size="734003200")", R"(size="12ab")", "<package size=\"12ab\">"},
      {R"(size="734003200")", R"(size="-1")", "<package size=\"-1\">"},
      {R"(size="734003200")", R"(size="99999999999999999999999")", "expected a number"},
      {R"(name="acl-202607.02.0.cosi")", "", "<package> has no name"},
      {R"(<manifest version="202607.02.0">)", "<manifest>", "<manifest> has no version"},
      {R"(<manifest version="202607.02.0">)", R"(<manifest version="latest">)",
       "<manifest version>"},
      {R"( status="ok">
      <urls>)",
       R"(>
      <urls>)",
       "<updatecheck> has no status"},
      {R"(appid="{b0ec8f0d-1c13-4bf4-9efd-ea54464a7098}" status="ok")",
       R"(appid="{b0ec8f0d-1c13-4bf4-9efd-ea54464a7098}")", "<app> has no status"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.from);
    auto message = error_of(edited(kUpdate, c.from, c.to));
    CHECK_MESSAGE(message.find(c.expect) != std::string::npos, message);
    CHECK(message.starts_with("Omaha response: "));
  }
  auto no_packages = edited(edited(kUpdate, "<packages>", "<pkgs>"), "</packages>", "</pkgs>");
  CHECK(error_of(no_packages).find("lists no <packages><package>") != std::string::npos);
}

TEST_CASE("a reply for another app, or with no app, is an error naming the app id") {
  auto message = error_of(kNoUpdate, "{00000000-0000-0000-0000-000000000000}");
  CHECK(message.find("{00000000-0000-0000-0000-000000000000}") != std::string::npos);
  CHECK(message.find("{b0ec8f0d-1c13-4bf4-9efd-ea54464a7098}") != std::string::npos);
  CHECK(error_of(R"(<response protocol="3.0"></response>)").find("no <app> at all") !=
        std::string::npos);
  CHECK(error_of(R"(<response><app appid="{b0ec8f0d-1c13-4bf4-9efd-ea54464a7098}" status="ok"/>
    </response>)")
            .find("no <updatecheck>") != std::string::npos);
}

TEST_CASE("not well-formed XML and other documents are errors with a position") {
  CHECK(error_of("").find("not well-formed") != std::string::npos);
  CHECK(error_of("<response><app></response>").find("line 1") != std::string::npos);
  CHECK(error_of(kNoUpdate.substr(0, kNoUpdate.size() / 2)).find("not well-formed") !=
        std::string::npos);
  CHECK(error_of("<html><body>502 Bad Gateway</body></html>").find("<html>") != std::string::npos);
  CHECK(error_of(kNoUpdate + "<response/>").find("not well-formed") != std::string::npos);
  CHECK(error_of(R"(<response><app appid="x" appid="y"/></response>)").find("duplicate") !=
        std::string::npos);
  CHECK(error_of(std::string(2 << 20, ' ')).find("more than") != std::string::npos);
  auto two = edited(kUpdate, "</updatecheck>", "</updatecheck><updatecheck status=\"noupdate\"/>");
  CHECK(error_of(two).find("more than one <updatecheck>") != std::string::npos);
}

TEST_CASE("entity tricks are refused: external entities, billion laughs, any DOCTYPE") {
  const std::string external = R"(<?xml version="1.0"?>
<!DOCTYPE response [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<response><app appid="{b0ec8f0d-1c13-4bf4-9efd-ea54464a7098}" status="&x;"/></response>)";
  CHECK(error_of(external).find("DOCTYPE") != std::string::npos);
  std::string laughs = R"(<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">)";
  for (int i = 1; i < 10; ++i)
    laughs += "<!ENTITY lol" + std::to_string(i) + " \"" + [&] {
      std::string s;
      for (int k = 0; k < 10; ++k)
        s += "&lol" + (i == 1 ? std::string() : std::to_string(i - 1)) + ";";
      return s;
    }() + "\">";
  laughs += "]><response><app appid=\"&lol9;\"/></response>";
  CHECK(error_of(laughs).find("DOCTYPE") != std::string::npos);
  // Without a DTD an undeclared entity is simply not well-formed.
  CHECK(
      error_of(R"(<response><app appid="&x;" status="ok"/></response>)").find("undefined entity") !=
      std::string::npos);
  // The five predefined entities and character references are fine.
  auto r = parse_response(
      edited(kUpdate, R"(name="acl-202607.02.0.cosi")", R"(name="a&amp;b&#x41;&lt;.cosi")"), kApp);
  REQUIRE(r.has_value());
  CHECK(r->offer->url == "https://images.example.net/acl/202607.02.0/a&bA<.cosi");
}
