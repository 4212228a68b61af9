#include "agent/daemon/daemon_state.hpp"

#include <limits>
#include <nlohmann/json.hpp>

#include "abup/fs.hpp"
#include "agent/persisted_json.hpp"

namespace abup::agent::daemon {

using json = nlohmann::json;

Result<DaemonState> DaemonStore::load() const {
  DaemonState s;
  auto text = read_file(path_);
  if (!text) {
    if (text.error().code == Errc::not_found) return s;
    return std::move(text).error();
  }
  ABUP_TRY(auto doc, JsonFields::parse(path_, *text));
  const JsonFields j(path_, doc);
  ABUP_TRY(int schema, j.schema_version());
  if (schema > kStateSchemaVersion)
    return make_error(Errc::refused,
                      path_.string() + ": schemaVersion " + std::to_string(schema) +
                          ", written by a newer abup; this abup writes version " +
                          std::to_string(kStateSchemaVersion) +
                          " and changes nothing. Run the newer abup (boot the slot that has it), "
                          "or move the file aside (Omaha events not yet sent are then lost)");
  constexpr std::string_view kKnown[] = {"schemaVersion",      "queuedEvents",      "inProgress",
                                         "operationId",        "targetVersion",     "fleetlockHeld",
                                         "healthFailedBootId", "eventsAcknowledged"};
  s.unknown = j.unknown(kKnown);
  ABUP_TRY(auto events, j.objects("queuedEvents"));
  constexpr std::int64_t kMax = std::numeric_limits<int>::max();
  for (const auto& e : events) {
    protocol::omaha::Event ev;
    ABUP_TRY(auto type, e.integer("eventType", -1, 0, kMax));
    ABUP_TRY(auto result, e.integer("eventResult", -1, 0, kMax));
    if (type < 0) return e.error("eventType", "missing");
    if (result < 0) return e.error("eventResult", "missing");
    ev.type = static_cast<int>(type);
    ev.result = static_cast<int>(result);
    if (e.raw().contains("errorCode")) {
      ABUP_TRY(auto code, e.integer("errorCode", 0, std::numeric_limits<int>::min(), kMax));
      ev.error_code = static_cast<int>(code);
    }
    ABUP_TRY(ev.previous_version, e.string("previousVersion"));
    s.queued.push_back(ev);
  }
  ABUP_TRY(s.in_progress, j.boolean("inProgress", false));
  ABUP_TRY(s.operation_id, j.string("operationId"));
  ABUP_TRY(s.target_version, j.string("targetVersion"));
  ABUP_TRY(s.fleetlock_held, j.boolean("fleetlockHeld", false));
  ABUP_TRY(s.health_failed_boot_id, j.string("healthFailedBootId"));
  ABUP_TRY(s.events_acknowledged, j.count("eventsAcknowledged", 0));
  return s;
}

Status DaemonStore::save(const DaemonState& s) const {
  json events = json::array();
  for (const auto& e : s.queued) {
    json ev = {{"eventType", e.type}, {"eventResult", e.result}};
    if (e.error_code) ev["errorCode"] = *e.error_code;
    if (!e.previous_version.empty()) ev["previousVersion"] = e.previous_version;
    events.push_back(ev);
  }
  json j = {{"schemaVersion", kStateSchemaVersion},
            {"queuedEvents", events},
            {"inProgress", s.in_progress},
            {"operationId", s.operation_id},
            {"targetVersion", s.target_version},
            {"fleetlockHeld", s.fleetlock_held},
            {"healthFailedBootId", s.health_failed_boot_id},
            {"eventsAcknowledged", s.events_acknowledged}};
  restore_unknown(j, s.unknown);
  std::error_code ec;
  std::filesystem::create_directories(path_.parent_path(), ec);
  return atomic_write_file(path_, j.dump(2) + "\n", 0600);
}

}  // namespace abup::agent::daemon
