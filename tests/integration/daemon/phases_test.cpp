// The daemon's phases (agent/daemon/phase.hpp) seen from outside, on the real `abup daemon` and
// a real dbus-daemon: a reboot wait holds no worker, so the API answers and a request or Cancel
// ends it; Finalize's write runs on the worker, so the bus is answered while it is slow.
#include <doctest/doctest.h>
#include <signal.h>

#include <ctime>
#include <regex>
#include <thread>

#include "fixture.hpp"

using namespace abup::test;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* kNew = "202607.02.0";
const std::string kCall = "call org.abup.Agent1 /org/abup/Agent1 org.abup.Agent1 ";

std::size_t count(const NotifySocket& n, const std::string& needle) {
  std::size_t k = 0;
  for (const auto& m : n.messages()) k += m.find(needle) != std::string::npos;
  return k;
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace

TEST_CASE("daemon phases: a reboot wait holds no worker: CheckNow and Cancel are taken at once") {
  AgentBus bus;
  Box b;
  b.configure("[Update]\nCheckInterval=1h\n[Reboot]\nStrategy=window\nWindow=" + closed_window() +
              "\n");
  b.build_image(kNew);
  b.offer(kNew);
  auto d = b.start(bus.env());
  INFO(d.log());
  REQUIRE(wait_until([&] { return count(b.notify, "waiting for the window") >= 1; }));
  REQUIRE(owned(bus));
  CHECK(property(bus, "State") == "s \"armed\"\n");

  // Before: the wait ran on the worker and every method answered Busy until the window (a week).
  auto t0 = Clock::now();
  auto check = busctl(bus, kCall + "CheckNow");
  CHECK_MESSAGE(check.exit_code == 0, check.out);
  CHECK(seconds_since(t0) < 10);
  // The round finds the slot armed in this boot and waits again.
  CHECK(wait_until([&] { return count(b.notify, "waiting for the window") >= 2; }));
  CHECK(wait_until([&] { return property(bus, "State") == "s \"armed\"\n"; }));

  auto cancel = busctl(bus, kCall + "Cancel");
  CHECK_MESSAGE(cancel.exit_code == 0, cancel.out);
  CHECK(property(bus, "State") == "s \"armed\"\n");  // still armed; nothing waits now
  auto again = busctl(bus, kCall + "Cancel");
  CHECK(again.exit_code != 0);
  CHECK_MESSAGE(again.out.find("no operation runs") != std::string::npos, again.out);
  CHECK(d.running());
  CHECK_FALSE(std::filesystem::exists(b.reboot_marker()));
  CHECK(b.node.status()["next"] == "B");
  CHECK(d.signal_and_wait(SIGTERM) == 0);
}

TEST_CASE("daemon phases: a FleetLock wait takes a new request and Cancel, and SIGTERM ends it") {
  AgentBus bus;
  Box b;
  b.configure("[Update]\nCheckInterval=1h\n[Reboot]\nStrategy=fleetlock\nFleetLockURL=" +
              b.server.url() + "\n");
  b.build_image(kNew);
  b.offer(kNew, 0, 1000);  // never granted
  auto d = b.start(bus.env());
  INFO(d.log());
  auto asked = [&] { return b.server.fleetlock("/v1/pre-reboot").size(); };
  REQUIRE(wait_until([&] { return asked() >= 2; }));
  // Before: Busy for as long as the lock is refused.
  auto t0 = Clock::now();
  auto check = busctl(bus, kCall + "CheckNow");
  CHECK_MESSAGE(check.exit_code == 0, check.out);
  CHECK(seconds_since(t0) < 10);
  // The round waits again: the lock is asked from the first retry on.
  const auto before = asked();
  REQUIRE(wait_until([&] { return asked() > before; }));
  t0 = Clock::now();
  auto cancel = busctl(bus, kCall + "Cancel");
  CHECK_MESSAGE(cancel.exit_code == 0, cancel.out);
  CHECK(seconds_since(t0) < 10);
  // The waiter stopped: no more lock requests (it retries after 1, 2, 4 ... s).
  const auto stopped_at = asked();
  std::this_thread::sleep_for(std::chrono::seconds(5));
  CHECK(asked() <= stopped_at + 1);
  // Waiting again, then a stop: exit 0 at once, no reboot.
  REQUIRE(busctl(bus, kCall + "CheckNow").exit_code == 0);
  const auto again = asked();
  REQUIRE(wait_until([&] { return asked() > again; }));
  t0 = Clock::now();
  CHECK(d.signal_and_wait(SIGTERM) == 0);
  CHECK(seconds_since(t0) < 10);
  CHECK_FALSE(std::filesystem::exists(b.reboot_marker()));
}

TEST_CASE("daemon phases: Finalize writes on the worker: the bus is answered while it is slow") {
  AgentBus bus;
  Box b;
  b.configure("[Update]\nFirstCheck=1h\nCheckInterval=1h\n");
  b.build_image(kNew);
  // The finalize write is held 6 s after the backend armed the slot (common/abup/fault.hpp).
  auto d = b.start(bus.env() + " ABUP_FAULT=finalize-armed:1:sleep6");
  INFO(d.log());
  REQUIRE(wait_until([&] { return owned(bus); }));
  const auto url = b.server.url() + "/images/" + kNew + ".cosi";
  REQUIRE(busctl(bus, kCall + "Stage s " + shell_quote(url)).exit_code == 0);
  REQUIRE(wait_until([&] { return property(bus, "State") == "s \"staged\"\n"; }));

  RunResult fin;
  std::thread caller([&] { fin = busctl(bus, "--timeout=60 " + kCall + "Finalize b false"); });
  // The slot is armed on the disk: the write is under way and held.
  const bool armed_on_disk = wait_until([&] { return b.node.status()["next"] == "B"; });
  CHECK(armed_on_disk);
  // Before: Finalize ran on the loop, which answered nothing (nor the watchdog) until it ended.
  auto t0 = Clock::now();
  auto state = property(bus, "State");
  const double took = seconds_since(t0);
  CHECK_MESSAGE(took < 2, "State took ", took, " s");
  CHECK(state == "s \"staged\"\n");
  auto busy = busctl(bus, kCall + "CheckNow");
  CHECK(busy.exit_code != 0);
  CHECK_MESSAGE(busy.out.find("retry later") != std::string::npos, busy.out);
  caller.join();
  CHECK_MESSAGE(fin.exit_code == 0, fin.out);
  CHECK(fin.out.find("\"Armed\"") != std::string::npos);
  CHECK(property(bus, "State") == "s \"armed\"\n");
  CHECK(property(bus, "NextSlot") == "s \"B\"\n");
  CHECK(d.signal_and_wait(SIGTERM) == 0);
}
