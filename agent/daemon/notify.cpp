#include "agent/daemon/notify.hpp"

#include <systemd/sd-daemon.h>

#include <mutex>

namespace abup::agent::daemon {
namespace {

enum class Kind { ready, update, stopping };

void send(const std::string& text, Kind kind) {
  // STATUS= is set from the worker and the loop; keep each datagram whole and in order. Once
  // STOPPING=1 is out it stays the last word: a worker's late STATUS= or a watchdog timer that
  // already fired would otherwise follow it (until a new READY=1, a new start in this process).
  static std::mutex mu;
  static bool stopping = false;
  std::lock_guard lock(mu);
  if (kind == Kind::update && stopping) return;
  stopping = kind == Kind::stopping;
  (void)sd_notify(0, text.c_str());
}

std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n') c = ' ';
  return s;
}

}  // namespace

void notify_ready(const std::string& status) {
  send("READY=1\nSTATUS=" + one_line(status), Kind::ready);
}

void notify_status(const std::string& status) {
  send("STATUS=" + one_line(status), Kind::update);
}

void notify_watchdog() {
  send("WATCHDOG=1", Kind::update);
}

void notify_stopping(const std::string& status) {
  send("STOPPING=1\nSTATUS=" + one_line(status), Kind::stopping);
}

std::optional<std::chrono::microseconds> watchdog_interval() {
  std::uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0) return std::nullopt;
  return std::chrono::microseconds(usec / 2);
}

}  // namespace abup::agent::daemon
