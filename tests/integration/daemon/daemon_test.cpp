// The daemon as a systemd service: sd_notify messages on a real unix datagram socket, signals,
// the watchdog, and start-up refusals of a configuration it cannot run.
#include <doctest/doctest.h>
#include <signal.h>

#include "fixture.hpp"

using namespace abup::test;

TEST_CASE("daemon: READY, STATUS, WATCHDOG at half of WATCHDOG_USEC, STOPPING on SIGTERM") {
  Box b;
  b.offer("");  // no update
  auto d = b.start("WATCHDOG_USEC=400000");
  bool ready = wait_until([&] { return b.notify.has("READY=1") && !b.server.omaha().empty(); });
  INFO(d.log());
  REQUIRE(ready);
  // A few watchdog periods (200 ms each) pass.
  CHECK(wait_until([&] {
    auto m = b.notify.messages();
    return std::count(m.begin(), m.end(), "WATCHDOG=1") >= 3;
  }));
  CHECK(wait_until([&] { return b.notify.has("STATUS=up to date: " + std::string(kRunning)); }));
  CHECK(d.signal_and_wait(SIGTERM) == 0);
  auto m = b.notify.messages();
  REQUIRE_FALSE(m.empty());
  INFO("last notify message: ", m.back());
  CHECK(m.back().find("STOPPING=1") == 0);
  auto ready_at =
      std::find_if(m.begin(), m.end(), [](const std::string& s) { return s.find("READY=1") == 0; });
  REQUIRE(ready_at != m.end());
  CHECK(std::count_if(m.begin(), m.end(),
                      [](const std::string& s) { return s.find("READY=1") != s.npos; }) == 1);
  CHECK(d.log().find("abup daemon started") != std::string::npos);
}

TEST_CASE("daemon: no watchdog messages without WATCHDOG_USEC, SIGINT stops it too") {
  Box b;
  b.offer("");
  auto d = b.start();
  REQUIRE(wait_until([&] { return b.notify.has("READY=1") && !b.server.omaha().empty(); }));
  CHECK(d.signal_and_wait(SIGINT) == 0);
  CHECK_FALSE(b.notify.has("WATCHDOG=1"));
  CHECK(b.notify.has("STOPPING=1"));
}

TEST_CASE("daemon: a configuration it cannot run stops start-up with what is wrong") {
  Box b;
  struct Bad {
    std::string conf, why;
  };
  const auto conf = b.config_path().string();
  for (const auto& bad : {
           Bad{"[Reboot]\nWindow=Mon 25:00 1h\n",
               conf + ":13: [Reboot] Window=Mon 25:00 1h: '25:00' is not a time of day"},
           Bad{"[Update]\nCheckInterval=soon\n", conf + ":13: [Update] CheckInterval=soon"},
           Bad{"[Update]\nMode=nebraska\n", "Mode=nebraska: expected aks or autonomous"},
           Bad{"[Reboot]\nStrategy=fleetlock\n", "Strategy=fleetlock needs FleetLockURL="},
           Bad{"[Reboot]\nStrategy=window\n", "Strategy=window needs Window="},
       }) {
    b.configure(bad.conf);
    auto d = b.start();
    const int rc = d.wait();
    INFO(bad.conf, d.log());
    CHECK(rc == 2);
    CHECK(d.log().find(bad.why) != std::string::npos);
  }
  CHECK_FALSE(b.notify.has("READY=1"));
  CHECK(b.server.omaha().empty());
}
