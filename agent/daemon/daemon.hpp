// `abup daemon`: what abup.service runs. One Boost.Asio loop on the main thread owns the
// signals (SIGTERM/SIGINT: stop the current step at its next safe point, then exit 0), the check
// schedule and the systemd watchdog; the blocking work (commit, health checks, HTTP, stage) runs
// on one worker thread, one operation at a time.
#pragma once

#include "agent/daemon/autonomous.hpp"

namespace abup::agent::daemon {

// Checks that the configuration can run (mode, strategy settings, what this build can do).
[[nodiscard]] Status validate(const DaemonOptions& options);
// Runs until stopped; the process exit status.
[[nodiscard]] int run_daemon(const DaemonOptions& options);

}  // namespace abup::agent::daemon
