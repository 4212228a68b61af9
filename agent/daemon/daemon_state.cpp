#include "agent/daemon/daemon_state.hpp"

#include <nlohmann/json.hpp>

#include "abup/fs.hpp"

namespace abup::agent::daemon {

using json = nlohmann::json;

bool is_terminal(const protocol::omaha::Event& e) {
  return e.type == 3 && (e.result == 0 || e.result == 2);
}

Result<DaemonState> DaemonStore::load() const {
  DaemonState s;
  auto text = read_file(path_);
  if (!text) {
    if (text.error().code == Errc::not_found) return s;
    return std::move(text).error();
  }
  try {
    auto j = json::parse(*text);
    for (const auto& e : j.value("queuedEvents", json::array())) {
      protocol::omaha::Event ev;
      ev.type = e.at("eventType").get<int>();
      ev.result = e.at("eventResult").get<int>();
      if (e.contains("errorCode")) ev.error_code = e["errorCode"].get<int>();
      ev.previous_version = e.value("previousVersion", "");
      s.queued.push_back(ev);
    }
    s.in_progress = j.value("inProgress", false);
    s.operation_id = j.value("operationId", "");
    s.target_version = j.value("targetVersion", "");
    s.fleetlock_held = j.value("fleetlockHeld", false);
    s.health_failed_boot_id = j.value("healthFailedBootId", "");
    s.events_acknowledged = j.value("eventsAcknowledged", std::uint64_t{0});
  } catch (const json::exception& e) {
    return make_error(Errc::invalid_input, path_.string() + ": " + e.what());
  }
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
  json j = {{"queuedEvents", events},
            {"inProgress", s.in_progress},
            {"operationId", s.operation_id},
            {"targetVersion", s.target_version},
            {"fleetlockHeld", s.fleetlock_held},
            {"healthFailedBootId", s.health_failed_boot_id},
            {"eventsAcknowledged", s.events_acknowledged}};
  std::error_code ec;
  std::filesystem::create_directories(path_.parent_path(), ec);
  return atomic_write_file(path_, j.dump(2) + "\n", 0600);
}

}  // namespace abup::agent::daemon
