// state.json read with every field's type checked: a wrong type is an
// error naming the file and the field, never an exception; a file of a newer schema is shown but
// never rewritten; members this abup does not know survive its rewrites.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "abup/fs.hpp"
#include "agent/state.hpp"
#include "support/util.hpp"

using namespace abup;
using namespace abup::agent;
using abup::test::TempDir;
using nlohmann::json;

namespace {

constexpr const char* kUsrB = "e03dd35c-7c2d-4a47-b3fe-27f15780a57c";
constexpr const char* kUsrA = "7130c94a-213a-4e5a-8e26-6cce9662f132";

// A state file as abup writes it: both slots, a pending commit, a failed version.
json valid_state() {
  return json::parse(R"({
    "schemaVersion": 1,
    "slots": {
      "e03dd35c-7c2d-4a47-b3fe-27f15780a57c": {"state": "armed", "version": "202607.02.0",
        "manifestSha256": "ab", "source": "/img.cosi", "updatedAt": "2026-12-01T00:00:00Z",
        "error": ""},
      "7130c94a-213a-4e5a-8e26-6cce9662f132": {"state": "committed", "version": "202601.01.0",
        "updatedAt": "2026-12-01T00:00:00Z"}
    },
    "pending": {"operationId": "op-1", "kind": "finalize", "targetSlot": "B",
      "targetPartuuid": "e03dd35c-7c2d-4a47-b3fe-27f15780a57c", "targetVersion": "202607.02.0",
      "previousPartuuid": "7130c94a-213a-4e5a-8e26-6cce9662f132",
      "previousVersion": "202601.01.0", "bootId": "b1", "backend": "gptprio",
      "armedAt": "2026-12-01T00:00:00Z"},
    "failedVersions": [{"version": "202606.01.0", "code": "TargetBootFailed",
      "operationId": "op-0", "at": "2026-11-01T00:00:00Z"}],
    "highestCommittedVersion": "202605.01.0"
  })");
}

void write_json(const TempDir& dir, const json& doc) {
  REQUIRE(atomic_write_file(dir.path() / "state.json", doc.dump(2) + "\n"));
}

std::string state_text(const TempDir& dir) {
  return abup::test::read_file(dir.path() / "state.json");
}

}  // namespace

TEST_CASE("state.json: the valid file reads back whole") {
  TempDir dir;
  write_json(dir, valid_state());
  auto st = StateStore(dir.path()).load();
  REQUIRE_MESSAGE(st, (st ? "" : st.error().message));
  CHECK(st->slot(kUsrB)->state == SlotState::armed);
  CHECK(st->slot(kUsrA)->version == "202601.01.0");
  REQUIRE(st->pending);
  CHECK(st->pending->target_slot == 'B');
  REQUIRE(st->failed_versions.size() == 1);
  CHECK(st->failed_versions[0].operation_id == "op-0");
  CHECK(st->schema_version == 1);
  REQUIRE(st->highest_committed);
  CHECK(st->highest_committed->text == "202605.01.0");
}

TEST_CASE("state.json: highestCommittedVersion is kept by a rewrite, and missing is unknown") {
  TempDir dir;
  write_json(dir, valid_state());
  StateStore store(dir.path());
  auto st = store.load();
  REQUIRE(st);
  REQUIRE(store.save(*st));
  CHECK(json::parse(state_text(dir))["highestCommittedVersion"] == "202605.01.0");
  json doc = valid_state();
  doc.erase("highestCommittedVersion");
  write_json(dir, doc);
  auto none = store.load();
  REQUIRE(none);
  CHECK_FALSE(none->highest_committed);
  REQUIRE(store.save(*none));
  CHECK_FALSE(json::parse(state_text(dir)).contains("highestCommittedVersion"));
}

TEST_CASE("state.json: every field of the wrong type is an error naming file and field") {
  const std::string b = std::string("/slots/") + kUsrB;
  struct Bad {
    std::string pointer;  // where in valid_state() the bad value goes
    json value;
    std::string why;  // "FIELD: reason" expected in the message
  };
  const std::string slot = std::string("slots.") + kUsrB;
  const std::vector<Bad> cases = {
      {b + "/state", 42, slot + ".state: expected a string, got number"},
      {b + "/state", "exploded", slot + ".state: 'exploded' is not one of"},
      {b + "/version", 42, slot + ".version: expected a string, got number"},
      {b + "/manifestSha256", 42, slot + ".manifestSha256: expected a string, got number"},
      {b + "/source", json::array(), slot + ".source: expected a string, got array"},
      {b + "/updatedAt", true, slot + ".updatedAt: expected a string, got boolean"},
      {b + "/error", nullptr, slot + ".error: expected a string, got null"},
      {b, "armed", slot + ": expected an object, got string"},
      {"/slots", json::array(), "slots: expected an object, got array"},
      {"/pending/operationId", 7, "pending.operationId: expected a string, got number"},
      {"/pending/operationId", "", "pending.operationId: missing or empty"},
      {"/pending/kind", 7, "pending.kind: expected a string, got number"},
      {"/pending/kind", "commit", "pending.kind: expected \"finalize\" or \"rollback\""},
      {"/pending/targetSlot", 2, "pending.targetSlot: expected a string, got number"},
      {"/pending/targetSlot", "C", "pending.targetSlot: expected \"A\" or \"B\""},
      {"/pending/targetPartuuid", 7, "pending.targetPartuuid: expected a string, got number"},
      {"/pending/targetVersion", 7, "pending.targetVersion: expected a string, got number"},
      {"/pending/previousPartuuid", 7, "pending.previousPartuuid: expected a string, got number"},
      {"/pending/previousVersion", 7, "pending.previousVersion: expected a string, got number"},
      {"/pending/bootId", 7, "pending.bootId: expected a string, got number"},
      {"/pending/backend", 7, "pending.backend: expected a string, got number"},
      {"/pending/armedAt", 7, "pending.armedAt: expected a string, got number"},
      {"/pending", "op-1", "pending: expected an object, got string"},
      {"/failedVersions", json::object(), "failedVersions: expected an array, got object"},
      {"/failedVersions/0", "202606.01.0", "failedVersions[0]: expected an object, got string"},
      {"/failedVersions/0/version", 202606,
       "failedVersions[0].version: expected a string, got number"},
      {"/failedVersions/0/code", 1, "failedVersions[0].code: expected a string, got number"},
      {"/failedVersions/0/operationId", 1,
       "failedVersions[0].operationId: expected a string, got number"},
      {"/failedVersions/0/at", 1, "failedVersions[0].at: expected a string, got number"},
      {"/highestCommittedVersion", 202607,
       "highestCommittedVersion: expected a string, got number"},
      {"/highestCommittedVersion", "2026.x", "highestCommittedVersion: "},
      {"/schemaVersion", "1", "schemaVersion: expected an integer, got string"},
      {"/schemaVersion", 1.5, "schemaVersion: expected an integer, got number"},
      {"/schemaVersion", 0, "schemaVersion: 0 is out of range"},
  };
  for (const auto& c : cases) {
    TempDir dir;
    json doc = valid_state();
    doc[json::json_pointer(c.pointer)] = c.value;
    write_json(dir, doc);
    const auto before = state_text(dir);
    INFO(c.pointer, " = ", c.value.dump());
    for (bool for_status : {false, true}) {
      StateStore store(dir.path());
      auto st = for_status ? store.load_for_status() : store.load();
      REQUIRE_FALSE(st);
      CHECK(st.error().code == Errc::invalid_input);
      const std::string& msg = st.error().message;
      INFO(msg);
      CHECK(msg.find((dir.path() / "state.json").string() + ": ") == 0);
      CHECK(msg.find(c.why) != std::string::npos);
      CHECK(msg.find("move it aside") != std::string::npos);
    }
    CHECK(state_text(dir) == before);
  }
}

TEST_CASE("state.json: not JSON, or not an object, is an error naming the file") {
  for (const std::string text : {"{\"slots\": {", "[]", "42", ""}) {
    TempDir dir;
    REQUIRE(atomic_write_file(dir.path() / "state.json", text));
    auto st = StateStore(dir.path()).load();
    INFO(text);
    REQUIRE_FALSE(st);
    CHECK(st.error().code == Errc::invalid_input);
    CHECK(st.error().message.find((dir.path() / "state.json").string()) == 0);
  }
}

TEST_CASE("state.json: without schemaVersion it is version 1, a null pending is no pending") {
  TempDir dir;
  json doc = valid_state();
  doc.erase("schemaVersion");
  doc["pending"] = nullptr;
  write_json(dir, doc);
  StateStore store(dir.path());
  auto st = store.load();
  REQUIRE(st);
  CHECK(st->schema_version == 1);
  CHECK_FALSE(st->pending);
  REQUIRE(store.save(*st));
  CHECK(json::parse(state_text(dir))["schemaVersion"] == 1);
}

TEST_CASE("state.json: a newer schemaVersion is shown, but never acted on or rewritten") {
  TempDir dir;
  json doc = valid_state();
  doc["schemaVersion"] = 2;
  doc["slotGroups"] = {{"usr", {"a", "b"}}};  // what a newer abup might add
  write_json(dir, doc);
  const auto before = state_text(dir);
  StateStore store(dir.path());

  auto acting = store.load();
  REQUIRE_FALSE(acting);
  CHECK(acting.error().code == Errc::refused);
  INFO(acting.error().message);
  CHECK(acting.error().message.find((dir.path() / "state.json").string() +
                                    ": schemaVersion 2, written by a newer abup; this abup "
                                    "writes version 1") == 0);

  auto shown = store.load_for_status();
  REQUIRE(shown);
  CHECK(shown->schema_version == 2);
  CHECK(shown->slot(kUsrB)->version == "202607.02.0");
  // Even a state read for display cannot be written back: the file stays byte for byte.
  auto changed = *shown;
  changed.pending.reset();
  auto saved = store.save(changed);
  REQUIRE_FALSE(saved);
  CHECK(saved.error().code == Errc::refused);
  CHECK(state_text(dir) == before);
}

TEST_CASE("state.json: members this abup does not know survive its rewrites") {
  TempDir dir;
  json doc = valid_state();
  doc["futureTop"] = {{"x", 1}};
  doc["slots"][kUsrA]["verityRootHash"] = "aa11";
  doc["slots"][kUsrB]["verityRootHash"] = "bb22";
  doc["pending"]["reason"] = "scheduled";
  doc["failedVersions"][0]["bootCount"] = 3;
  write_json(dir, doc);
  StateStore store(dir.path());
  auto st = store.load();
  REQUIRE(st);
  // Slot B gets a new image: what was said about the old one is dropped with it.
  auto& b = st->slots[kUsrB];
  b.version = "202608.01.0";
  b.manifest_sha256 = "cd";
  b.state = SlotState::staged;
  REQUIRE(store.save(*st));
  auto out = json::parse(state_text(dir));
  CHECK(out["futureTop"] == json{{"x", 1}});
  CHECK(out["slots"][kUsrA]["verityRootHash"] == "aa11");
  CHECK_FALSE(out["slots"][kUsrB].contains("verityRootHash"));
  CHECK(out["pending"]["reason"] == "scheduled");
  CHECK(out["failedVersions"][0]["bootCount"] == 3);

  // A new pending commit does not inherit the old one's members.
  st = store.load();
  REQUIRE(st);
  st->pending->operation_id = "op-2";
  REQUIRE(store.save(*st));
  out = json::parse(state_text(dir));
  CHECK_FALSE(out["pending"].contains("reason"));
  CHECK(out["futureTop"] == json{{"x", 1}});
}
