#include "agent/daemon/notify.hpp"

#include <systemd/sd-daemon.h>

#include <mutex>

namespace abup::agent::daemon {
namespace {

void send(const std::string& text) {
  // STATUS= is set from the worker and the loop; keep each datagram whole and in order.
  static std::mutex mu;
  std::lock_guard lock(mu);
  (void)sd_notify(0, text.c_str());
}

std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n') c = ' ';
  return s;
}

}  // namespace

void notify_ready(const std::string& status) {
  send("READY=1\nSTATUS=" + one_line(status));
}

void notify_status(const std::string& status) {
  send("STATUS=" + one_line(status));
}

void notify_watchdog() {
  send("WATCHDOG=1");
}

void notify_stopping(const std::string& status) {
  send("STOPPING=1\nSTATUS=" + one_line(status));
}

std::optional<std::chrono::microseconds> watchdog_interval() {
  std::uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0) return std::nullopt;
  return std::chrono::microseconds(usec / 2);
}

}  // namespace abup::agent::daemon
