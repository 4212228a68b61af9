// aks.json and daemon.json, the daemon's own state files beside state.json: read with every
// field's type checked (an error naming file and field, never an exception that aborts the
// daemon), a newer schemaVersion refused, members this abup does not know kept on rewrite.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <vector>

#include "abup/fs.hpp"
#include "agent/aks/aks_store.hpp"
#include "agent/daemon/daemon_state.hpp"
#include "support/json_helpers.hpp"
#include "support/util.hpp"
#include "update-protocol/aks/contract.hpp"

using namespace abup;
using namespace abup::agent;
using abup::test::TempDir;
using nlohmann::json;
namespace contract = abup::protocol::aks;

namespace {

constexpr const char* kNodeUpdate = abup::test::kAksNodeUpdateId;
constexpr const char* kOp = abup::test::kAksOperationId;

// The contract's sample request for `op`, parsed as the agent receives it.
contract::Request request(contract::Operation op) {
  auto r = contract::parse_request(abup::test::aks_request_json(contract::to_string(op)).dump());
  REQUIRE(r);
  return *r;
}

// aks.json as abup writes it, every member present.
json valid_aks(const TempDir& dir) {
  aks::AksState st;
  contract::OperationStatus s;
  s.node_update_id = kNodeUpdate;
  s.operation_id = kOp;
  s.operation = contract::Operation::stage;
  s.code = contract::Code::success;
  s.started_utc = s.last_updated_utc = s.finished_utc = "2026-12-01T00:00:00Z";
  st.remember(s, false);
  st.in_flight = aks::InFlight{request(contract::Operation::stage), "2026-12-01T00:00:00Z", "1.0"};
  st.armed = aks::Armed{request(contract::Operation::finalize), "2026-12-01T00:00:00Z", "1.0",
                        "202606.29.0"};
  st.staged = aks::Staged{kNodeUpdate, "202606.29.0", kOp};
  REQUIRE(aks::AksStore(dir.path()).save(st));
  return json::parse(abup::test::read_file(dir.path() / "aks.json"));
}

json valid_daemon(const TempDir& dir) {
  daemon::DaemonState s;
  s.queued.push_back({13, 1, std::nullopt, ""});
  s.queued.push_back({3, 0, 44, "202601.01.0"});
  s.in_progress = true;
  s.operation_id = kOp;
  s.target_version = "202606.29.0";
  s.fleetlock_held = true;
  s.health_failed_boot_id = "b1";
  s.events_acknowledged = 4;
  REQUIRE(daemon::DaemonStore(dir.path()).save(s));
  return json::parse(abup::test::read_file(dir.path() / "daemon.json"));
}

struct Bad {
  std::string pointer;
  json value;
  std::string why;
};

void write_json(const std::filesystem::path& p, const json& doc) {
  REQUIRE(atomic_write_file(p, doc.dump(2) + "\n"));
}

auto load_aks(const std::filesystem::path& dir) {
  return aks::AksStore(dir).load();
}

auto load_daemon(const std::filesystem::path& dir) {
  return daemon::DaemonStore(dir).load();
}

// What `load` reads from `file` in `dir` as `valid` wrote it and `edit` then changed it.
template <typename Edit, typename Load>
auto load_after(const TempDir& dir, const char* file, json (*valid)(const TempDir&), Edit edit,
                Load load) {
  json doc = valid(dir);
  edit(doc);
  write_json(dir.path() / file, doc);
  return load(dir.path());
}

// Each case, set into a `file` that `valid` wrote, makes `load` fail with invalid_input and an
// error that starts with the file and names the member.
template <typename Load>
void check_refused(const char* file, json (*valid)(const TempDir&), const std::vector<Bad>& cases,
                   Load load) {
  for (const auto& c : cases) {
    TempDir dir;
    auto r = load_after(
        dir, file, valid, [&](json& doc) { doc[json::json_pointer(c.pointer)] = c.value; }, load);
    INFO(c.pointer, " = ", c.value.dump());
    REQUIRE_FALSE(r);
    INFO(r.error().message);
    CHECK(r.error().code == Errc::invalid_input);
    CHECK(r.error().message.find((dir.path() / file).string() + ": " + c.why) == 0);
  }
}

}  // namespace

TEST_CASE("aks.json: a valid file reads back whole") {
  TempDir dir;
  valid_aks(dir);
  auto st = aks::AksStore(dir.path()).load();
  REQUIRE_MESSAGE(st, (st ? "" : st.error().message));
  REQUIRE(st->cache.size() == 1);
  CHECK(st->cache[0].operation);
  REQUIRE(st->in_flight);
  CHECK(st->in_flight->request.operation_id == kOp);
  REQUIRE(st->armed);
  CHECK(st->armed->to_version == "202606.29.0");
  REQUIRE(st->staged);
  CHECK(st->staged->version == "202606.29.0");
}

TEST_CASE("aks.json: every field of the wrong type is an error naming file and field") {
  const std::vector<Bad> cases = {
      {"/operations", json::object(), "operations: expected an array, got object"},
      {"/operations/0", "x", "operations[0]: expected an object, got string"},
      {"/operations/0/operationId", 7, "operations[0].operationId: expected a string, got number"},
      {"/operations/0/operation", 7, "operations[0].operation: expected an object, got number"},
      {"/operations/0/operation/code", 7, "operations[0].operation: "},
      {"/operations/0/commit", "Success", "operations[0].commit: expected an object, got string"},
      {"/inFlight", 7, "inFlight: expected an object, got number"},
      {"/inFlight/request", 7, "inFlight.request: expected an object, got number"},
      {"/inFlight/request/operationId", 7, "inFlight.request: "},
      {"/inFlight/startedUtc", 7, "inFlight.startedUtc: expected a string, got number"},
      {"/inFlight/fromVersion", 7, "inFlight.fromVersion: expected a string, got number"},
      {"/armed", json::array(), "armed: expected an object, got array"},
      {"/armed/request", nullptr, "armed.request: expected an object, got null"},
      {"/armed/startedUtc", 7, "armed.startedUtc: expected a string, got number"},
      {"/armed/fromVersion", 7, "armed.fromVersion: expected a string, got number"},
      {"/armed/toVersion", 7, "armed.toVersion: expected a string, got number"},
      {"/staged", true, "staged: expected an object, got boolean"},
      {"/staged/nodeUpdateId", 7, "staged.nodeUpdateId: expected a string, got number"},
      {"/staged/version", 7, "staged.version: expected a string, got number"},
      {"/staged/operationId", 7, "staged.operationId: expected a string, got number"},
      {"/schemaVersion", "1", "schemaVersion: expected an integer, got string"},
  };
  check_refused("aks.json", valid_aks, cases, load_aks);
  TempDir dir;
  auto st = load_after(
      dir, "aks.json", valid_aks, [](json& doc) { doc["armed"].erase("request"); }, load_aks);
  REQUIRE_FALSE(st);
  CHECK(st.error().message.find("armed.request: missing") != std::string::npos);
}

TEST_CASE("aks.json: a newer schemaVersion is refused, unknown members survive a rewrite") {
  TempDir dir;
  json doc = valid_aks(dir);
  doc["schemaVersion"] = 2;
  write_json(dir.path() / "aks.json", doc);
  auto st = aks::AksStore(dir.path()).load();
  REQUIRE_FALSE(st);
  CHECK(st.error().code == Errc::refused);
  CHECK(st.error().message.find("aks.json: schemaVersion 2, written by a newer abup") !=
        std::string::npos);

  doc["schemaVersion"] = 1;
  doc["drainPolicy"] = {{"grace", 30}};
  write_json(dir.path() / "aks.json", doc);
  st = aks::AksStore(dir.path()).load();
  REQUIRE(st);
  st->staged.reset();
  REQUIRE(aks::AksStore(dir.path()).save(*st));
  auto out = json::parse(abup::test::read_file(dir.path() / "aks.json"));
  CHECK(out["drainPolicy"] == json{{"grace", 30}});
  CHECK_FALSE(out.contains("staged"));
}

TEST_CASE("daemon.json: a valid file reads back whole") {
  TempDir dir;
  auto doc = valid_daemon(dir);
  CHECK(doc["schemaVersion"] == 1);
  auto s = daemon::DaemonStore(dir.path()).load();
  REQUIRE_MESSAGE(s, (s ? "" : s.error().message));
  REQUIRE(s->queued.size() == 2);
  CHECK(s->queued[1].error_code == 44);
  CHECK(s->queued[1].previous_version == "202601.01.0");
  CHECK(s->in_progress);
  CHECK(s->fleetlock_held);
  CHECK(s->events_acknowledged == 4);
}

TEST_CASE("daemon.json: every field of the wrong type is an error naming file and field") {
  const std::vector<Bad> cases = {
      {"/queuedEvents", "13/1", "queuedEvents: expected an array, got string"},
      {"/queuedEvents/0", 13, "queuedEvents[0]: expected an object, got number"},
      {"/queuedEvents/0/eventType", "13",
       "queuedEvents[0].eventType: expected an integer, got string"},
      {"/queuedEvents/0/eventType", 13.5,
       "queuedEvents[0].eventType: expected an integer, got number"},
      {"/queuedEvents/0/eventType", -1, "queuedEvents[0].eventType: -1 is out of range"},
      {"/queuedEvents/0/eventType", 1ull << 40,
       "queuedEvents[0].eventType: 1099511627776 is out of range"},
      {"/queuedEvents/0/eventResult", false,
       "queuedEvents[0].eventResult: expected an integer, got boolean"},
      {"/queuedEvents/1/errorCode", "44",
       "queuedEvents[1].errorCode: expected an integer, got string"},
      {"/queuedEvents/1/previousVersion", 2026,
       "queuedEvents[1].previousVersion: expected a string, got number"},
      {"/inProgress", "yes", "inProgress: expected true or false, got string"},
      {"/operationId", 5, "operationId: expected a string, got number"},
      {"/targetVersion", 5, "targetVersion: expected a string, got number"},
      {"/fleetlockHeld", 1, "fleetlockHeld: expected true or false, got number"},
      {"/healthFailedBootId", false, "healthFailedBootId: expected a string, got boolean"},
      {"/eventsAcknowledged", -1,
       "eventsAcknowledged: expected a non-negative integer, got number"},
      {"/eventsAcknowledged", "3",
       "eventsAcknowledged: expected a non-negative integer, got string"},
  };
  check_refused("daemon.json", valid_daemon, cases, load_daemon);
  TempDir dir;
  auto s = load_after(
      dir, "daemon.json", valid_daemon,
      [](json& doc) { doc["queuedEvents"][0].erase("eventType"); }, load_daemon);
  REQUIRE_FALSE(s);
  CHECK(s.error().message.find("queuedEvents[0].eventType: missing") != std::string::npos);
}

TEST_CASE("daemon.json: without schemaVersion it is version 1, newer is refused, unknown kept") {
  TempDir dir;
  json doc = valid_daemon(dir);
  doc.erase("schemaVersion");
  doc["lastWindow"] = "Mon 02:00";
  write_json(dir.path() / "daemon.json", doc);
  daemon::DaemonStore store(dir.path());
  auto s = store.load();
  REQUIRE(s);
  s->in_progress = false;
  REQUIRE(store.save(*s));
  auto out = json::parse(abup::test::read_file(dir.path() / "daemon.json"));
  CHECK(out["lastWindow"] == "Mon 02:00");
  CHECK(out["schemaVersion"] == 1);
  CHECK(out["inProgress"] == false);

  out["schemaVersion"] = 3;
  write_json(dir.path() / "daemon.json", out);
  auto newer = store.load();
  REQUIRE_FALSE(newer);
  CHECK(newer.error().code == Errc::refused);
  CHECK(newer.error().message.find("daemon.json: schemaVersion 3, written by a newer abup") !=
        std::string::npos);
}
