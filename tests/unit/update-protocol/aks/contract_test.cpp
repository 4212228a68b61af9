#include "update-protocol/aks/contract.hpp"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "support/json_helpers.hpp"

using namespace abup::protocol::aks;
using json = nlohmann::json;

namespace {

const char* kNodeUpdate = abup::test::kAksNodeUpdateId;
const char* kOp = abup::test::kAksOperationId;

json stage_request() {
  return abup::test::aks_request_json("stage");
}

std::string error_of(const json& doc) {
  auto r = parse_request(doc.dump());
  REQUIRE_FALSE(r);
  CHECK(r.error().code == abup::Errc::invalid_input);
  return r.error().message;
}

OperationStatus terminal_status() {
  OperationStatus s;
  s.node_update_id = kNodeUpdate;
  s.operation_id = kOp;
  s.operation = Operation::finalize;
  s.code = Code::success;
  s.message = "armed";
  s.from_version = "202601.01.0";
  s.to_version = "202606.29.0";
  s.started_utc = "2026-11-24T08:00:00Z";
  s.last_updated_utc = "2026-11-24T08:00:05Z";
  s.finished_utc = "2026-11-24T08:00:05Z";
  return s;
}

}  // namespace

TEST_CASE("a valid stage request parses with every field") {
  auto r = parse_request(stage_request().dump());
  REQUIRE(r);
  CHECK(r->node_update_id == kNodeUpdate);
  CHECK(r->operation_id == kOp);
  CHECK(r->operation == Operation::stage);
  CHECK(r->target_version == "202606.29.0");
  CHECK(r->server == "https://updates.example/v1/update");
  CHECK(r->track == "stable");
}

TEST_CASE("a rollback needs neither targetVersion nor the Omaha source") {
  json doc = {{"schemaVersion", "1.0"},
              {"nodeUpdateId", kNodeUpdate},
              {"operationId", kOp},
              {"operation", "rollback"}};
  auto r = parse_request(doc.dump());
  REQUIRE(r);
  CHECK(r->operation == Operation::rollback);
  doc["targetVersion"] = "202606.29.0";
  CHECK(error_of(doc).find("\"targetVersion\" must be absent") != std::string::npos);
}

TEST_CASE("every request violation names its field") {
  struct Case {
    const char* what;
    std::function<void(json&)> mutate;
    const char* expect;
  };
  const Case cases[] = {
      {"unknown field", [](json& d) { d["reboot"] = true; }, "unknown field \"reboot\""},
      {"schema", [](json& d) { d["schemaVersion"] = "2.0"; }, "schemaVersion \"2.0\""},
      {"schema type", [](json& d) { d["schemaVersion"] = 1.0; },
       "\"schemaVersion\" must be a string"},
      {"no schema", [](json& d) { d.erase("schemaVersion"); },
       "missing required field \"schemaVersion\""},
      {"node id", [](json& d) { d["nodeUpdateId"] = "node-1"; },
       "nodeUpdateId \"node-1\" is not a UUID"},
      {"op id", [](json& d) { d["operationId"] = "0b1c2d3e4f5061728394a5b6c7d8e9f0"; },
       "operationId"},
      {"no op id", [](json& d) { d.erase("operationId"); },
       "missing required field \"operationId\""},
      {"operation", [](json& d) { d["operation"] = "commit"; },
       "operation \"commit\" is not one of"},
      {"operation type", [](json& d) { d["operation"] = 3; }, "\"operation\" must be a string"},
      {"no target", [](json& d) { d.erase("targetVersion"); },
       "missing required field \"targetVersion\""},
      {"bad target", [](json& d) { d["targetVersion"] = "latest"; }, "targetVersion \"latest\""},
      {"no server", [](json& d) { d.erase("server"); }, "missing required field \"server\""},
      {"ftp server", [](json& d) { d["server"] = "ftp://h/v1/update"; },
       "server \"ftp://h/v1/update\""},
      {"hostless", [](json& d) { d["server"] = "https:///v1/update"; }, "is not an http(s):// URL"},
      {"spaces", [](json& d) { d["server"] = "https://a b/"; }, "is not an http(s):// URL"},
      {"no appId", [](json& d) { d.erase("appId"); }, "missing required field \"appId\""},
      {"empty track", [](json& d) { d["track"] = ""; }, "field \"track\" must not be empty"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.what);
    json doc = stage_request();
    c.mutate(doc);
    auto message = error_of(doc);
    CAPTURE(message);
    CHECK(message.find(c.expect) != std::string::npos);
  }
  CHECK(parse_request("{").error().message.find("not valid JSON") != std::string::npos);
  CHECK(parse_request("[1]").error().message.find("expected a JSON object") != std::string::npos);
  json fin = stage_request();
  fin["operation"] = "finalize";
  fin.erase("track");
  CHECK(error_of(fin).find("\"track\"") != std::string::npos);
}

TEST_CASE("salvage tells whether a broken request can be answered") {
  json doc = stage_request();
  doc["schemaVersion"] = "9";
  auto s = salvage_request(doc.dump());
  CHECK(s.answerable);
  CHECK(s.operation_id == kOp);
  CHECK(s.operation == Operation::stage);
  doc["operationId"] = "nope";
  CHECK_FALSE(salvage_request(doc.dump()).answerable);
  doc = stage_request();
  doc["operation"] = "reboot";
  CHECK_FALSE(salvage_request(doc.dump()).answerable);
  CHECK_FALSE(salvage_request("not json").answerable);
}

TEST_CASE("uuids and times") {
  CHECK(is_uuid(kOp));
  CHECK(is_uuid("8A0F3C1E-5B6D-4E2F-9A7B-1C2D3E4F5A6B"));
  CHECK_FALSE(is_uuid("8a0f3c1e-5b6d-4e2f-9a7b-1c2d3e4f5a6"));
  CHECK_FALSE(is_uuid("8a0f3c1e-5b6d-4e2f-9a7b_1c2d3e4f5a6b"));
  CHECK_FALSE(is_uuid("{8a0f3c1e-5b6d-4e2f-9a7b-1c2d3e4f5a}"));
  CHECK(is_rfc3339_utc("2026-11-24T08:00:00Z"));
  CHECK_FALSE(is_rfc3339_utc("2026-11-24T08:00:00+00:00"));
  CHECK_FALSE(is_rfc3339_utc("2026-13-24T08:00:00Z"));
  CHECK_FALSE(is_rfc3339_utc("2026-11-24 08:00:00Z"));
}

TEST_CASE("a terminal status carries finishedUtc and round-trips") {
  auto text = serialize_status(terminal_status());
  REQUIRE(text);
  auto doc = json::parse(*text);
  CHECK(doc["schemaVersion"] == "1.0");
  CHECK(doc["code"] == "Success");
  CHECK(doc["operation"] == "finalize");
  CHECK(doc["finishedUtc"] == "2026-11-24T08:00:05Z");
  auto back = parse_status(*text);
  REQUIRE(back);
  CHECK(back->code == Code::success);
  CHECK(back->from_version == "202601.01.0");
  CHECK(back->finished_utc == "2026-11-24T08:00:05Z");
}

TEST_CASE("InProgress has no finishedUtc, terminal codes require one") {
  auto s = terminal_status();
  s.code = Code::in_progress;
  auto text = serialize_status(s);
  REQUIRE(text);
  CHECK_FALSE(json::parse(*text).contains("finishedUtc"));
  s = terminal_status();
  s.finished_utc.clear();
  auto r = serialize_status(s);
  REQUIRE_FALSE(r);
  CHECK(r.error().message.find("finishedUtc") != std::string::npos);
  s = terminal_status();
  s.last_updated_utc = "yesterday";
  REQUIRE_FALSE(serialize_status(s));
  // A reader refuses an InProgress claiming to be finished.
  json doc = json::parse(*serialize_status(terminal_status()));
  doc["code"] = "InProgress";
  CHECK(parse_status(doc.dump()).error().message.find("finishedUtc") != std::string::npos);
}

TEST_CASE("every code has its contract spelling") {
  const char* names[] = {"InProgress",         "Success",         "AlreadyAtTarget",
                         "NotStaged",          "OperationFailed", "TargetBootFailed",
                         "AgentInternalError", "InvalidRequest"};
  for (const char* n : names) {
    auto c = parse_code(n);
    REQUIRE(c);
    CHECK(to_string(*c) == n);
  }
  CHECK_FALSE(parse_code("success"));
}

TEST_CASE("the message is cut at 2048 bytes with the mark, on a character boundary") {
  CHECK(cap_message("short") == "short");
  std::string exact(kMessageCap, 'x');
  CHECK(cap_message(exact) == exact);
  std::string longer(5000, 'y');
  auto cut = cap_message(longer);
  CHECK(cut.size() == kMessageCap);
  CHECK(cut.ends_with("\u2026[truncated]"));
  // Two-byte characters: the cut must not split one.
  std::string accents;
  while (accents.size() < 4000) accents += "\xc3\xa9";
  cut = cap_message(accents);
  CHECK(cut.size() <= kMessageCap);
  CHECK(cut.ends_with("\u2026[truncated]"));
  auto body = cut.substr(0, cut.size() - kTruncatedMark.size());
  CHECK(body.size() % 2 == 0);
  auto s = terminal_status();
  s.message = longer;
  auto doc = json::parse(*serialize_status(s));
  CHECK(doc["message"].get<std::string>().size() == kMessageCap);
}
