// When to ask the update server: the first check FirstCheck after start, then every
// CheckInterval, each +- CheckJitter (uniformly, never below zero); after a failure (transport
// error, 5xx, malformed reply) the interval doubles per consecutive failure, capped at
// MaxBackoff, and a success resets it.
#pragma once

#include <chrono>
#include <cstdint>
#include <random>

namespace abup::agent::daemon {

struct ScheduleOptions {
  std::chrono::seconds first{7 * 60};
  std::chrono::seconds interval{45 * 60};
  std::chrono::seconds jitter{5 * 60};
  std::chrono::seconds max_backoff{4 * 3600};
};

class CheckSchedule {
 public:
  CheckSchedule(ScheduleOptions options, std::uint64_t seed);
  [[nodiscard]] std::chrono::seconds first();
  [[nodiscard]] std::chrono::seconds after_success();
  [[nodiscard]] std::chrono::seconds after_failure();
  [[nodiscard]] unsigned failures() const { return failures_; }

 private:
  std::chrono::seconds jittered(std::chrono::seconds base, std::chrono::seconds cap);
  ScheduleOptions o_;
  std::mt19937_64 rng_;
  unsigned failures_ = 0;
};

}  // namespace abup::agent::daemon
