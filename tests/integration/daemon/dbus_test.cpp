// The daemon's D-Bus side against a real dbus-daemon with the recording fake of logind and
// systemd: [Health] Units= asked of systemd, and the reboot asked of logind when no [Reboot]
// Command= is set.
#include <doctest/doctest.h>
#include <signal.h>

#include "fixture.hpp"
#include "support/private_bus.hpp"

using namespace abup::test;

namespace {

constexpr const char* kNew = "202607.02.0";
constexpr const char* kReboot = "org.freedesktop.login1.Manager.Reboot";

void run_until_reboots(Box& b, const PrivateBus& bus, std::size_t reboots, int n) {
  auto d = b.start(bus.env(), n);
  bool asked = wait_until([&] { return bus.calls(kReboot).size() >= reboots; });
  INFO(d.log(), bus.logs());
  REQUIRE(asked);
  CHECK(d.signal_and_wait(SIGTERM) == 0);
}

}  // namespace

TEST_CASE("daemon: reboot through logind, a unit that is not active fails the health gate") {
  PrivateBus bus(PrivateBusOptions().unit("kubelet.service", "failed"));
  Box b;
  b.configure("[Reboot]\nCommand=\n[Health]\nUnits=kubelet.service\nTimeout=2s\n");
  b.build_image(kNew);
  b.offer(kNew);
  run_until_reboots(b, bus, 1, 1);
  CHECK(bus.calls(kReboot)[0]["args"].dump().find("false") != std::string::npos);
  REQUIRE(b.reboot() == 'B');
  run_until_reboots(b, bus, 2, 2);
  CHECK(b.node.history_text().find("Committed") == std::string::npos);
  bool asked_unit = false;
  for (const auto& r : bus.records())
    if (r.dump().find("kubelet.service") != std::string::npos) asked_unit = true;
  CHECK(asked_unit);
  REQUIRE(b.reboot() == 'A');  // the new slot was marked bad
}

TEST_CASE("daemon: an active unit passes the health gate and the slot is committed") {
  PrivateBus bus(PrivateBusOptions().unit("kubelet.service", "active"));
  Box b;
  b.configure("[Health]\nUnits=kubelet.service\nTimeout=2s\n");
  b.build_image(kNew);
  b.offer(kNew);
  {
    auto d = b.start(bus.env(), 1);
    REQUIRE(wait_until([&] { return std::filesystem::exists(b.reboot_marker()); }));
    CHECK(d.signal_and_wait(SIGTERM) == 0);
  }
  REQUIRE(b.reboot() == 'B');
  b.offer("");
  auto d = b.start(bus.env(), 2);
  bool committed =
      wait_until([&] { return b.node.history_text().find("\"Committed\"") != std::string::npos; });
  INFO(d.log());
  CHECK(committed);
  CHECK(d.signal_and_wait(SIGTERM) == 0);
  CHECK(bus.calls(kReboot).empty());
}
