// `abup daemon`: what abup.service runs. One Boost.Asio loop on the main thread owns the
// signals (SIGTERM/SIGINT: stop the current step at its next safe point, then exit 0), the check
// schedule, the systemd watchdog and the D-Bus API; the blocking work (commit, health checks,
// HTTP, stage, finalize/rollback writes, the reboot) runs on one worker thread, one operation at
// a time, and the wait for a reboot window or FleetLock on a waiter thread. Which may run next is
// the phase table's answer (phase.hpp).
#pragma once

#include "agent/daemon/autonomous.hpp"

namespace abup::agent::daemon {

// Checks that the configuration can run (mode, strategy settings, what this build can do).
[[nodiscard]] Status validate(const DaemonOptions& options);
// Runs until stopped; the process exit status.
[[nodiscard]] int run_daemon(const DaemonOptions& options);

}  // namespace abup::agent::daemon
