// Autonomous mode end to end: the real `abup daemon` against a disk-image node, a canned Omaha
// server and a FleetLock double on loopback. Reboots are simulated as in the lifecycle tests:
// the reboot command only leaves a marker; the test stops the daemon, gives the node a new boot
// id and the command line of the slot the bootloader picks, and starts the daemon again.
#include <doctest/doctest.h>
#include <signal.h>

#include "fixture.hpp"
#include "update-protocol/omaha/omaha.hpp"

using namespace abup::test;
using nlohmann::json;

namespace {

constexpr const char* kNew = "202607.02.0";
constexpr const char* kNewer = "202608.01.0";

// As the Omaha request spells a version (leading zeros dropped for Nebraska).
std::string sent(const char* version) {
  return abup::protocol::omaha::normalize_version(version);
}

// "13/1", "3/0/44", ... of every event the Omaha server received, in order.
std::vector<std::string> events(const Server& s) {
  std::vector<std::string> out;
  for (const auto& r : s.omaha())
    for (const auto& e : r["events"]) {
      std::string x = e["eventtype"].get<std::string>() + "/" + e["eventresult"].get<std::string>();
      if (e.contains("errorcode")) x += "/" + e["errorcode"].get<std::string>();
      out.push_back(x);
    }
  return out;
}

bool contains(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

// Runs the daemon until the reboot marker appears; stops it with SIGTERM.
void run_until_reboot(Box& b, int n) {
  auto d = b.start("", n);
  bool rebooted = wait_until([&] { return std::filesystem::exists(b.reboot_marker()); });
  INFO(d.log());
  REQUIRE(rebooted);
  CHECK(d.signal_and_wait(SIGTERM) == 0);
}

// After a reboot: runs the daemon until its first update check (which carries the terminal
// event), then stops it.
std::string run_until_check(Box& b, int n, std::size_t checks_before) {
  auto d = b.start("", n);
  bool checked = wait_until([&] { return b.server.omaha().size() > checks_before; });
  INFO(d.log());
  REQUIRE(checked);
  CHECK(d.signal_and_wait(SIGTERM) == 0);
  return d.log();
}

}  // namespace

TEST_CASE("daemon: immediate strategy, check to commit, events 13/1 14/1 800/1 then 3/2") {
  Box b;
  b.build_image(kNew);
  b.offer(kNew);
  run_until_reboot(b, 1);
  auto seen = events(b.server);
  INFO(json(seen).dump());
  REQUIRE(seen.size() >= 3);
  CHECK(std::vector<std::string>(seen.begin(), seen.begin() + 3) ==
        std::vector<std::string>{"13/1", "14/1", "800/1"});
  CHECK(b.node.status()["next"] == "B");
  auto omaha = b.server.omaha();
  CHECK(omaha.front()["updatecheck"] == true);
  CHECK(omaha.front()["app"]["version"] == sent(kRunning));
  CHECK(b.daemon_state()["inProgress"] == true);

  REQUIRE(b.reboot() == 'B');
  b.offer("");
  const auto before = b.server.omaha().size();
  run_until_check(b, 2, before);
  auto after = b.server.omaha();
  const auto& first = after[before];
  INFO(first.dump());
  CHECK(first["updatecheck"] == true);
  CHECK(first["app"]["version"] == sent(kNew));
  REQUIRE(first["events"].size() == 1);
  CHECK(first["events"][0]["eventtype"] == "3");
  CHECK(first["events"][0]["eventresult"] == "2");
  CHECK(first["events"][0]["previousversion"] == sent(kRunning));
  CHECK(b.node.cgpt(kPartUsrB, "-S") == "1");
  CHECK(b.node.history_text().find("\"Committed\"") != std::string::npos);
  auto ds = b.daemon_state();
  CHECK(ds["inProgress"] == false);
  CHECK(ds["queuedEvents"].empty());
  CHECK(ds["eventsAcknowledged"] == 4);
}

TEST_CASE("daemon: a failed health check marks the slot bad, falls back, reports 3/0 error 44") {
  Box b;
  b.configure("[Health]\nCommand=test -e " + shell_quote((b.dir() / "healthy").string()) +
              "\nTimeout=5s\n");
  b.build_image(kNew);
  b.offer(kNew);
  run_until_reboot(b, 1);
  REQUIRE(b.reboot() == 'B');
  // Unhealthy: the daemon must not commit; it marks B bad and reboots.
  b.offer(kNew);
  {
    auto d = b.start("", 2);
    bool rebooted = wait_until([&] { return std::filesystem::exists(b.reboot_marker()); });
    INFO(d.log());
    REQUIRE(rebooted);
    CHECK(d.signal_and_wait(SIGTERM) == 0);
    CHECK(d.log().find("health checks failed") != std::string::npos);
  }
  CHECK(b.node.history_text().find("Committed") == std::string::npos);
  CHECK(b.node.cgpt(kPartUsrA, "-S") == "1");
  REQUIRE(b.reboot() == 'A');  // the bootloader falls back
  const auto before = b.server.omaha().size();
  auto log = run_until_check(b, 3, before);
  auto first = b.server.omaha()[before];
  INFO(first.dump());
  REQUIRE(first["events"].size() == 1);
  CHECK(first["events"][0]["eventtype"] == "3");
  CHECK(first["events"][0]["eventresult"] == "0");
  CHECK(first["events"][0]["errorcode"] == "44");
  CHECK(b.node.history_text().find("TargetBootFailed") != std::string::npos);
  // Offered again: not retried.
  CHECK(log.find("not installing " + std::string(kNew) + ": it failed here before") !=
        std::string::npos);
  CHECK_FALSE(std::filesystem::exists(b.reboot_marker()));
  // A newer version is installed.
  b.build_image(kNewer);
  b.offer(kNewer);
  const auto earlier = events(b.server);
  const auto n13 = std::count(earlier.begin(), earlier.end(), "13/1");
  run_until_reboot(b, 4);
  auto seen = events(b.server);
  CHECK(std::count(seen.begin(), seen.end(), "13/1") == n13 + 1);
  CHECK(b.node.status()["next"] == "B");
}

TEST_CASE("daemon: healthy after the reboot, the commit goes ahead") {
  Box b;
  b.configure("[Health]\nCommand=true\nCommand=test -d /\nTimeout=5s\n");
  b.build_image(kNew);
  b.offer(kNew);
  run_until_reboot(b, 1);
  REQUIRE(b.reboot() == 'B');
  b.offer("");
  run_until_check(b, 2, b.server.omaha().size());
  CHECK(b.node.history_text().find("\"Committed\"") != std::string::npos);
  CHECK(b.node.cgpt(kPartUsrB, "-S") == "1");
}

TEST_CASE("daemon: Strategy=off arms, touches run/reboot-required and does not reboot") {
  Box b;
  b.configure("[Reboot]\nStrategy=off\n");
  b.build_image(kNew);
  b.offer(kNew);
  auto d = b.start();
  const auto marker = b.node.root() / "run/reboot-required";
  bool armed = wait_until([&] { return std::filesystem::exists(marker); });
  INFO(d.log());
  REQUIRE(armed);
  CHECK(wait_until([&] { return b.notify.has("STATUS=reboot needed"); }));
  CHECK(d.signal_and_wait(SIGTERM) == 0);
  CHECK_FALSE(std::filesystem::exists(b.reboot_marker()));
  CHECK(b.node.status()["next"] == "B");
  CHECK(contains(events(b.server), "800/1"));
}

TEST_CASE("daemon: Strategy=window waits for a closed window and reboots in an open one") {
  Box b;
  b.build_image(kNew);
  b.offer(kNew);
  SUBCASE("closed: waits, and SIGTERM ends the wait") {
    b.configure("[Reboot]\nStrategy=window\nWindow=" + closed_window() + "\n");
    auto d = b.start();
    bool waiting = wait_until([&] { return b.notify.has("waiting for the window"); });
    INFO(d.log());
    REQUIRE(waiting);
    CHECK(d.signal_and_wait(SIGTERM) == 0);
    CHECK_FALSE(std::filesystem::exists(b.reboot_marker()));
    CHECK(b.node.status()["next"] == "B");  // armed, waiting
  }
  SUBCASE("closed, and abup disarm undoes the arming: the wait ends, no reboot") {
    b.configure("[Reboot]\nStrategy=window\nWindow=" + closed_window() + "\n");
    auto d = b.start();
    bool waiting = wait_until([&] { return b.notify.has("waiting for the window"); });
    INFO(d.log());
    REQUIRE(waiting);
    auto undo = b.node.abup("disarm");
    INFO(undo.out);
    REQUIRE(undo.exit_code == 0);
    CHECK(wait_until([&] { return b.notify.has("was undone"); }));
    CHECK(d.running());
    CHECK(d.signal_and_wait(SIGTERM) == 0);
    CHECK(d.log().find("is no longer armed: no reboot") != std::string::npos);
    CHECK_FALSE(std::filesystem::exists(b.reboot_marker()));
    CHECK(b.node.status()["next"] == "A");
    CHECK(b.node.status()["pending"].is_null());
  }
  SUBCASE("open: reboots") {
    b.configure("[Reboot]\nStrategy=window\nWindow=* 00:00 1d UTC\n");
    run_until_reboot(b, 1);
  }
}

TEST_CASE("daemon: Strategy=fleetlock takes the lock before the reboot, releases it after") {
  Box b;
  b.configure("[Reboot]\nStrategy=fleetlock\nFleetLockURL=" + b.server.url() +
              "\nFleetLockGroup=workers\n[Update]\nMachineID=raw\n");
  b.build_image(kNew);
  b.offer(kNew, 0, 3);  // the lock is granted on the third try
  run_until_reboot(b, 1);
  auto pre = b.server.fleetlock("/v1/pre-reboot");
  REQUIRE(pre.size() == 3);
  CHECK(pre[0]["granted"] == false);
  CHECK(pre[2]["granted"] == true);
  const std::string machine = read_file(b.node.root() / "etc/machine-id");
  for (const auto& r : pre) {
    CHECK(r["headers"]["fleet-lock-protocol"] == "true");
    auto body = json::parse(r["body"].get<std::string>());
    CHECK(body["client_params"]["group"] == "workers");
    CHECK(machine.find(body["client_params"]["id"].get<std::string>()) == 0);
  }
  CHECK(b.server.fleetlock("/v1/steady-state").empty());
  CHECK(b.daemon_state()["fleetlockHeld"] == true);
  REQUIRE(b.reboot() == 'B');
  b.offer("", 0, 1);
  run_until_check(b, 2, b.server.omaha().size());
  auto steady = b.server.fleetlock("/v1/steady-state");
  REQUIRE(steady.size() >= 1);
  CHECK(steady.back()["granted"] == true);
  CHECK(steady.back()["headers"]["fleet-lock-protocol"] == "true");
  CHECK(b.daemon_state()["fleetlockHeld"] == false);
  CHECK(b.node.history_text().find("\"Committed\"") != std::string::npos);
}

TEST_CASE(
    "daemon: an arming undone by abup disarm while FleetLock is asked: no reboot, lock released") {
  Box b;
  b.configure("[Reboot]\nStrategy=fleetlock\nFleetLockURL=" + b.server.url() +
              "\nFleetLockGroup=workers\n[Update]\nMachineID=raw\n");
  b.build_image(kNew);
  b.offer(kNew, 0, 4);  // granted on the fourth try, ~7 s after the first
  auto d = b.start();
  INFO(d.log());
  REQUIRE(wait_until([&] { return !b.server.fleetlock("/v1/pre-reboot").empty(); }));
  REQUIRE(b.node.status()["next"] == "B");
  auto undo = b.node.abup("disarm");
  INFO(undo.out);
  REQUIRE(undo.exit_code == 0);
  CHECK(b.node.status()["next"] == "A");
  // At its next try the daemon finds nothing armed: it stops asking before the grant, releases
  // the slot and stays up.
  REQUIRE(wait_until([&] { return !b.server.fleetlock("/v1/steady-state").empty(); }));
  for (const auto& r : b.server.fleetlock("/v1/pre-reboot")) CHECK(r["granted"] == false);
  CHECK(wait_until([&] { return b.daemon_state()["fleetlockHeld"] == false; }));
  CHECK(d.running());
  CHECK_FALSE(std::filesystem::exists(b.reboot_marker()));
  CHECK(d.signal_and_wait(SIGTERM) == 0);
  CHECK(d.log().find("is no longer armed: no reboot") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(b.reboot_marker()));
  CHECK(b.node.status()["pending"].is_null());
}

TEST_CASE("daemon: SIGTERM in the middle of a stage, then a restart resumes it") {
  Box b;
  b.build_image(kNew);
  b.offer(kNew, 0.05);  // slow image downloads
  {
    auto d = b.start("", 1);
    bool writing = wait_until([&] { return b.notify.has(": write "); });
    INFO(d.log());
    REQUIRE(writing);
    CHECK(d.signal_and_wait(SIGTERM) == 0);
    CHECK(d.log().find("resumes on the next start") != std::string::npos);
  }
  CHECK(b.notify.has("STOPPING=1"));
  CHECK_FALSE(std::filesystem::exists(b.reboot_marker()));
  auto state = json::parse(b.node.state_text());  // valid JSON
  CHECK(state.dump().find("staged") == std::string::npos);
  auto seen = events(b.server);
  CHECK(contains(seen, "13/1"));
  CHECK_FALSE(contains(seen, "14/1"));
  CHECK(b.daemon_state()["inProgress"] == true);
  b.offer(kNew);
  run_until_reboot(b, 2);
  CHECK(b.node.status()["next"] == "B");
  CHECK(contains(events(b.server), "800/1"));
}

TEST_CASE("daemon: an update check failing with 5xx backs off") {
  Box b;
  b.server.control({{"omaha", {{"status", 503}}}});
  auto d = b.start();
  bool failed = wait_until([&] { return d.log().find("next try in") != std::string::npos; });
  INFO(d.log());
  REQUIRE(failed);
  CHECK(d.signal_and_wait(SIGTERM) == 0);
  // CheckInterval 45min doubled once (jitter 0).
  CHECK(d.log().find("next try in 5400s (failure 1)") != std::string::npos);
}

TEST_CASE("daemon: with no running version in os-release an offer is refused and reported") {
  // The daemon has no --allow-unknown-version: it cannot prove the offer is no downgrade, so it
  // refuses before writing and tells the server (3/0), fail closed.
  Box b;
  write_file(b.node.root() / "etc/os-release", "ID=flatcar\nVARIANT_ID=azurecontainerlinux\n");
  b.build_image(kNew);
  b.offer(kNew);
  auto d = b.start("", 1);
  bool reported = wait_until([&] {
    for (const auto& e : events(b.server))
      if (e.starts_with("3/0")) return true;
    return false;
  });
  CHECK(d.signal_and_wait(SIGTERM) == 0);
  INFO(d.log());
  REQUIRE(reported);
  CHECK(d.log().find("the running version is unknown (" +
                     (b.node.root() / "etc/os-release").string() +
                     " has no IMAGE_VERSION or VERSION_ID)") != std::string::npos);
  CHECK_FALSE(contains(events(b.server), "800/1"));
  CHECK(b.node.status()["slots"][1]["state"] != "staged");
  CHECK_FALSE(std::filesystem::exists(b.reboot_marker()));
}
