// What the daemon must remember across restarts and reboots, beside the lifecycle's state.json:
// <state-dir>/daemon.json (atomic replace). Omaha events not yet acknowledged (oldest first),
// whether a terminal event is owed, a FleetLock slot held across the reboot, and a failed health
// gate in this boot (so a restart does not run it again before the fall-back reboot).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "abup/result.hpp"
#include "agent/json_file_store.hpp"
#include "update-protocol/omaha/omaha.hpp"

namespace abup::agent::daemon {

struct DaemonState : PersistedFile {
  static constexpr std::string_view kFileName = "daemon.json";
  static constexpr std::string_view kMembers[] = {
      "queuedEvents",  "inProgress",         "operationId",       "targetVersion",
      "fleetlockHeld", "healthFailedBootId", "eventsAcknowledged"};
  static constexpr std::string_view kAside = "and lose the Omaha events not yet sent";

  std::vector<protocol::omaha::Event> queued;
  bool in_progress = false;     // a progress event went out: a terminal one must follow
  std::string operation_id;     // of the update in progress
  std::string target_version;   // of the update in progress
  bool fleetlock_held = false;  // pre-reboot was asked: steady-state owed after the commit
  std::string health_failed_boot_id;
  std::uint64_t events_acknowledged = 0;  // in total, for status and tests

  [[nodiscard]] static Result<DaemonState> from_json(const JsonFields& top);
  [[nodiscard]] nlohmann::json to_json() const;
};

using DaemonStore = JsonFileStore<DaemonState>;

}  // namespace abup::agent::daemon
