// What the daemon must remember across restarts and reboots, beside the lifecycle's state.json:
// <state-dir>/daemon.json (atomic replace). Omaha events not yet acknowledged (oldest first),
// whether a terminal event is owed, a FleetLock slot held across the reboot, and a failed health
// gate in this boot (so a restart does not run it again before the fall-back reboot).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "abup/result.hpp"
#include "update-protocol/omaha/omaha.hpp"

namespace abup::agent::daemon {

struct DaemonState {
  std::vector<protocol::omaha::Event> queued;
  bool in_progress = false;     // a progress event went out: a terminal one must follow
  std::string operation_id;     // of the update in progress
  std::string target_version;   // of the update in progress
  bool fleetlock_held = false;  // pre-reboot was asked: steady-state owed after the commit
  std::string health_failed_boot_id;
  std::uint64_t events_acknowledged = 0;       // in total, for status and tests
  std::map<std::string, std::string> unknown;  // members a newer abup added, written back
};

class DaemonStore {
 public:
  explicit DaemonStore(std::filesystem::path dir) : path_(std::move(dir) / "daemon.json") {}
  // Missing: the empty state. Never throws: unparsable or a field of the wrong type is an error
  // naming the file and the field (Errc::invalid_input), a newer schemaVersion one saying so
  // (Errc::refused).
  [[nodiscard]] Result<DaemonState> load() const;
  [[nodiscard]] Status save(const DaemonState& state) const;
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace abup::agent::daemon
