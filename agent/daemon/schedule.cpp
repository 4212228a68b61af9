#include "agent/daemon/schedule.hpp"

#include <algorithm>

namespace abup::agent::daemon {

CheckSchedule::CheckSchedule(ScheduleOptions options, std::uint64_t seed)
    : o_(options), rng_(seed) {}

std::chrono::seconds CheckSchedule::jittered(std::chrono::seconds base, std::chrono::seconds cap) {
  const long long j = o_.jitter.count();
  long long delta = 0;
  if (j > 0) delta = std::uniform_int_distribution<long long>(-j, j)(rng_);
  return std::chrono::seconds(std::clamp<long long>(base.count() + delta, 0, cap.count()));
}

std::chrono::seconds CheckSchedule::first() {
  return jittered(o_.first, o_.first + o_.jitter);
}

std::chrono::seconds CheckSchedule::after_success() {
  failures_ = 0;
  return jittered(o_.interval, o_.interval + o_.jitter);
}

std::chrono::seconds CheckSchedule::after_failure() {
  ++failures_;
  const auto cap = std::max(o_.max_backoff, o_.interval);
  auto base = o_.interval;
  for (unsigned i = 0; i < failures_ && base < cap; ++i) base *= 2;
  return jittered(std::min(base, cap), cap);
}

}  // namespace abup::agent::daemon
