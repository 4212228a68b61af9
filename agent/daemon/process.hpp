// Runs an operator's shell command (health checks, [Reboot] Command=) with a time limit; its
// output goes to the daemon's stderr (the journal). On timeout or cancel the whole process
// group is killed.
#pragma once

#include <chrono>
#include <functional>
#include <string>

#include "abup/result.hpp"
#include "agent/daemon/cancel.hpp"

namespace abup::agent::daemon {

// The exit status (128+N when killed by signal N); Errc::failed on timeout, Errc::cancelled
// when `cancel` fires first.
[[nodiscard]] Result<int> run_command(const std::string& command, std::chrono::seconds timeout,
                                      Canceller* cancel = nullptr);

// Reboots the machine: `command` ([Reboot] Command=, sh -c, at most 5 minutes) when set, else
// `logind` (empty: this build cannot ask it). The one way abup reboots: the daemon in both modes
// and `abup finalize|rollback --reboot`.
[[nodiscard]] Status reboot_machine(const std::string& command,
                                    const std::function<Status()>& logind,
                                    Canceller* cancel = nullptr);

}  // namespace abup::agent::daemon
