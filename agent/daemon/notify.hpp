// systemd's service notification protocol (sd_notify over $NOTIFY_SOCKET): READY=1, STATUS=
// (human progress), WATCHDOG=1, STOPPING=1. Without $NOTIFY_SOCKET every call does nothing.
#pragma once

#include <chrono>
#include <optional>
#include <string>

namespace abup::agent::daemon {

void notify_ready(const std::string& status);
void notify_status(const std::string& status);
void notify_watchdog();
void notify_stopping(const std::string& status);
// How often to send WATCHDOG=1: half of $WATCHDOG_USEC (when it is meant for this process).
[[nodiscard]] std::optional<std::chrono::microseconds> watchdog_interval();

}  // namespace abup::agent::daemon
