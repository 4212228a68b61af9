#include "agent/daemon/daemon_state.hpp"

#include <limits>
#include <nlohmann/json.hpp>

namespace abup::agent::daemon {

using json = nlohmann::json;

Result<DaemonState> DaemonState::from_json(const JsonFields& j) {
  DaemonState s;
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

json DaemonState::to_json() const {
  json events = json::array();
  for (const auto& e : queued) {
    json ev = {{"eventType", e.type}, {"eventResult", e.result}};
    if (e.error_code) ev["errorCode"] = *e.error_code;
    if (!e.previous_version.empty()) ev["previousVersion"] = e.previous_version;
    events.push_back(ev);
  }
  return {{"queuedEvents", events},
          {"inProgress", in_progress},
          {"operationId", operation_id},
          {"targetVersion", target_version},
          {"fleetlockHeld", fleetlock_held},
          {"healthFailedBootId", health_failed_boot_id},
          {"eventsAcknowledged", events_acknowledged}};
}

}  // namespace abup::agent::daemon
