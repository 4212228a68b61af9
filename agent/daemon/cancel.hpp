// The daemon's stop request, shared by the event loop (which raises it on SIGTERM and on a
// D-Bus Cancel) and the worker (whose transfers see it through TransportOptions::cancel and whose
// waits end early).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>

namespace abup::agent::daemon {

class Canceller {
 public:
  void cancel() {
    std::lock_guard lock(mu_);
    flag_ = true;
    cv_.notify_all();
  }
  [[nodiscard]] bool cancelled() const { return flag_.load(); }
  // Lowers the flag again once the cancelled step has ended (a D-Bus Cancel, not a stop).
  void reset() {
    std::lock_guard lock(mu_);
    flag_ = false;
  }
  [[nodiscard]] const std::atomic<bool>* flag() const { return &flag_; }
  // Sleeps; false when cancelled first.
  [[nodiscard]] bool wait_for(std::chrono::milliseconds d) {
    std::unique_lock lock(mu_);
    return !cv_.wait_for(lock, d, [&] { return flag_.load(); });
  }
  // Sleeps until a wall-clock time, waking at least once a minute so that a clock change
  // (NTP, a suspended VM) moves the deadline with it; false when cancelled first.
  [[nodiscard]] bool wait_until(std::chrono::system_clock::time_point t) {
    while (true) {
      auto left = t - std::chrono::system_clock::now();
      if (left <= left.zero()) return !cancelled();
      auto step = std::min<std::chrono::system_clock::duration>(left, std::chrono::minutes(1));
      if (!wait_for(std::chrono::duration_cast<std::chrono::milliseconds>(step) +
                    std::chrono::milliseconds(1)))
        return false;
    }
  }

 private:
  std::atomic<bool> flag_{false};
  std::mutex mu_;
  std::condition_variable cv_;
};

}  // namespace abup::agent::daemon
