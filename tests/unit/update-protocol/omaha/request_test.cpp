// Omaha request documents: exactly the shape of docs/reference/omaha.md, every value escaped, and
// read back by parse_request (what abup-serve does).
#include <doctest/doctest.h>

#include <regex>
#include <string>

#include "abup/bytes.hpp"
#include "abup/digest.hpp"
#include "abup/hex.hpp"
#include "update-protocol/omaha/omaha.hpp"

using namespace abup::protocol::omaha;

namespace {

Identity identity() {
  Identity who;
  who.server = "https://nebraska.example.net/v1/update";
  who.app_id = "{b0ec8f0d-1c13-4bf4-9efd-ea54464a7098}";
  who.track = "stable";
  who.version = "202606.29.0";
  who.arch = "x86_64";
  who.machine_id = "5f0a2c44-9b1e-4c7a-8d3e-2a6f0e1b7c55";
  who.boot_id = "176800de-41fa-4a06-ab58-e56060c0130b";
  return who;
}

std::string without_session(std::string xml) {
  return std::regex_replace(xml, std::regex(R"(sessionid="\{[0-9a-f-]{36}\}")"),
                            R"(sessionid="{S}")");
}

}  // namespace

TEST_CASE("the first check after a new version booted is the reference document") {
  auto xml = request_xml(identity(), {Event::updated_from("202605.15.0")}, true);
  CHECK(without_session(xml) == R"(<?xml version="1.0" encoding="UTF-8"?>
<request protocol="3.0" ismachine="1" sessionid="{S}" installsource="scheduler">
  <os platform="linux" version="202606.29.0" arch="amd64"></os>
  <app appid="{b0ec8f0d-1c13-4bf4-9efd-ea54464a7098}" version="202606.29.0" track="stable" machineid="5f0a2c44-9b1e-4c7a-8d3e-2a6f0e1b7c55" bootid="{176800de-41fa-4a06-ab58-e56060c0130b}" board="amd64-usr">
    <event eventtype="3" eventresult="2" previousversion="202605.15.0"></event>
    <ping active="1"></ping>
    <updatecheck></updatecheck>
  </app>
</request>
)");
}

TEST_CASE("each request has a fresh session id") {
  auto a = request_xml(identity(), {}, true);
  auto b = request_xml(identity(), {}, true);
  std::smatch m;
  REQUIRE(std::regex_search(a, m, std::regex(R"re(sessionid="(\{[0-9a-f-]{36}\})")re")));
  CHECK(b.find(m[1].str()) == std::string::npos);
}

TEST_CASE("versions are normalized, arch names mapped, board defaults to arch-usr") {
  auto who = identity();
  who.version = "202607.02.0";
  who.arch = "arm64";
  auto xml = request_xml(who, {Event{3, 0, kErrorFellBack, "202601.01.0"}}, true);
  CHECK(xml.find(R"(version="202607.2.0" arch="aarch64")") != std::string::npos);
  CHECK(xml.find(R"(board="aarch64-usr")") != std::string::npos);
  CHECK(
      xml.find(
          R"(<event eventtype="3" eventresult="0" errorcode="44" previousversion="202601.1.0"></event>)") !=
      std::string::npos);
  who.board = "custom-board";
  who.install_source = "ondemandupdate";
  xml = request_xml(who, {}, true);
  CHECK(xml.find(R"(board="custom-board")") != std::string::npos);
  CHECK(xml.find(R"(installsource="ondemandupdate")") != std::string::npos);
  CHECK(normalize_version("202607.02.0") == "202607.2.0");
  CHECK(normalize_version("1.02.03-rc.1") == "1.2.3-rc.1");
  CHECK(normalize_version("not a version") == "not a version");
  CHECK(omaha_arch("amd64") == "amd64");
  CHECK(omaha_arch("aarch64") == "aarch64");
}

TEST_CASE("an event-only request carries the events and nothing else") {
  auto xml =
      request_xml(identity(), {Event::download_started(), Event::download_finished()}, false);
  CHECK(xml.find(R"(<event eventtype="13" eventresult="1"></event>)") != std::string::npos);
  CHECK(xml.find(R"(<event eventtype="14" eventresult="1"></event>)") != std::string::npos);
  CHECK(xml.find("<ping") == std::string::npos);
  CHECK(xml.find("<updatecheck") == std::string::npos);
}

TEST_CASE("machine ids: raw as is, hashed as the first 16 bytes of SHA-384 in UUID form") {
  const std::string raw = "0123456789abcdef0123456789abcdef";
  CHECK(machine_id_for(raw, false) == raw);
  auto hex = abup::to_hex(abup::sha384(abup::as_bytes(raw)));
  auto hashed = machine_id_for(raw, true);
  CHECK(hashed == hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" +
                      hex.substr(16, 4) + "-" + hex.substr(20, 12));
  CHECK(std::regex_match(hashed, std::regex("[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}")));
}

TEST_CASE("every attribute value is escaped and reads back unchanged") {
  auto who = identity();
  who.track = R"(a"b<c>&d'e)";
  who.machine_id = "tab\there\nnl";
  who.app_id = "{app&<>}";
  auto xml = request_xml(who, {Event::installed()}, true);
  CHECK(xml.find(R"(track="a&quot;b&lt;c&gt;&amp;d&apos;e")") != std::string::npos);
  auto back = parse_request(xml);
  REQUIRE_MESSAGE(back.has_value(), (back ? "" : back.error().message));
  CHECK(back->who.track == who.track);
  CHECK(back->who.machine_id == who.machine_id);
  CHECK(back->who.app_id == who.app_id);
  CHECK(back->who.version == "202606.29.0");
  CHECK(back->who.arch == "amd64");
  CHECK(back->who.boot_id == "{176800de-41fa-4a06-ab58-e56060c0130b}");
  CHECK(back->update_check);
  CHECK(back->ping);
  REQUIRE(back->events.size() == 1);
  CHECK(back->events[0].type == 800);
  CHECK(back->events[0].result == 1);
  CHECK(xml_escape(std::string("a\x01z")) == "a&#xFFFD;z");
}

TEST_CASE("parse_request refuses what is not one app's request") {
  auto error = [](const std::string& xml) {
    auto r = parse_request(xml);
    REQUIRE_FALSE(r.has_value());
    return r.error().message;
  };
  CHECK(error("<response/>").find("not <request>") != std::string::npos);
  CHECK(error("<request/>").find("no <app>") != std::string::npos);
  CHECK(error("<request><app/></request>").find("no appid") != std::string::npos);
  CHECK(error(R"(<request><app appid="a"/><app appid="b"/></request>)").find("more than one") !=
        std::string::npos);
  CHECK(error(R"(<request><app appid="a"><event eventtype="x" eventresult="1"/></app></request>)")
            .find("eventtype=\"x\"") != std::string::npos);
  CHECK(error(R"(<!DOCTYPE r><request/>)").find("DOCTYPE") != std::string::npos);
}

TEST_CASE("the named events are Nebraska's pairs, and only 3/0 and 3/2 end an update") {
  CHECK(Event::download_started().name() == "13/1");
  CHECK(Event::download_finished().name() == "14/1");
  CHECK(Event::installed().name() == "800/1");
  CHECK(Event::updated_from("202601.1.0").name() == "3/2");
  CHECK(Event::updated_from("202601.1.0").previous_version == "202601.1.0");
  CHECK(Event::failed(ErrorCode::fell_back).name() == "3/0 error 44");
  CHECK(Event::failed(ErrorCode::fell_back).terminal());
  CHECK(Event::updated_from("x").terminal());
  CHECK_FALSE(Event::download_started().terminal());
  CHECK_FALSE(Event::installed().terminal());
  CHECK_FALSE((Event{3, 1, std::nullopt, {}}).terminal());
}
