// The health gate of autonomous mode ([Health]): after booting a new version, every unit in
// Units= must be active (asked of systemd over D-Bus) and every Command= must exit 0 within
// Timeout=, before the slot is committed.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "abup/result.hpp"
#include "agent/daemon/cancel.hpp"

namespace abup::agent::daemon {

// A unit's ActiveState ("active", "failed", "activating", ...).
using UnitStateFn = std::function<Result<std::string>(const std::string& unit)>;

struct HealthChecks {
  std::vector<std::string> units;
  std::vector<std::string> commands;
  std::chrono::seconds timeout{60};
  UnitStateFn unit_state;  // required when units is not empty
};

// Runs every check (not stopping at the first failure, so the error lists all of them). A unit
// still "activating"/"reloading" is asked again until the timeout. Errc::failed names each
// failed check; Errc::cancelled when stopped.
[[nodiscard]] Status run_health_checks(const HealthChecks& checks, Canceller& cancel);

}  // namespace abup::agent::daemon
