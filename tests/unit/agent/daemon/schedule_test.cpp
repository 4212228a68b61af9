// The check schedule: first check, interval, jitter bounds, backoff doubling up to the cap and
// reset by a success.
#include "agent/daemon/schedule.hpp"

#include <doctest/doctest.h>

#include <set>

using namespace abup::agent::daemon;
using std::chrono::seconds;

TEST_CASE("schedule: without jitter, first, interval, doubling backoff capped, reset") {
  CheckSchedule s({seconds(30), seconds(600), seconds(0), seconds(3000)}, 1);
  CHECK(s.first() == seconds(30));
  CHECK(s.after_success() == seconds(600));
  CHECK(s.after_failure() == seconds(1200));
  CHECK(s.after_failure() == seconds(2400));
  CHECK(s.after_failure() == seconds(3000));
  CHECK(s.after_failure() == seconds(3000));
  CHECK(s.failures() == 4);
  CHECK(s.after_success() == seconds(600));
  CHECK(s.failures() == 0);
  CHECK(s.after_failure() == seconds(1200));
}

TEST_CASE("schedule: jitter stays within +- CheckJitter, never negative, and varies") {
  CheckSchedule s({seconds(60), seconds(2700), seconds(300), seconds(4 * 3600)}, 42);
  std::set<long long> seen;
  for (int i = 0; i < 200; ++i) {
    auto f = s.first();
    CHECK(f >= seconds(0));
    CHECK(f <= seconds(360));
    auto n = s.after_success();
    CHECK(n >= seconds(2400));
    CHECK(n <= seconds(3000));
    seen.insert(n.count());
  }
  CHECK(seen.size() > 20);
  for (int i = 0; i < 10; ++i) CHECK(s.after_failure() <= seconds(4 * 3600));
}
