// Health commands with real processes: exit status, time limit (the process group is killed),
// cancel, and an error listing every failed check.
#include "agent/daemon/health.hpp"

#include <doctest/doctest.h>

#include <thread>

#include "agent/daemon/process.hpp"
#include "support/util.hpp"

using namespace abup;
using namespace abup::agent::daemon;
using std::chrono::seconds;

TEST_CASE("health: commands that exit 0 pass") {
  Canceller c;
  CHECK(run_health_checks({{}, {"true", "test -d /"}, seconds(5), {}}, c));
}

TEST_CASE("health: every failing command is named, a slow one is killed at the timeout") {
  abup::test::TempDir dir;
  const auto child = (dir / "child-survived").string();
  Canceller c;
  auto st = run_health_checks(
      {{}, {"false", "exit 3", "sleep 30 & wait; touch " + child, "true"}, seconds(1), {}}, c);
  REQUIRE_FALSE(st);
  const auto& m = st.error().message;
  INFO(m);
  CHECK(m.find("health checks failed: command 'false' exited with status 1") == 0);
  CHECK(m.find("command 'exit 3' exited with status 3") != std::string::npos);
  CHECK(m.find("did not finish within 1s") != std::string::npos);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK_FALSE(std::filesystem::exists(child));
}

TEST_CASE("health: units without a way to ask systemd fail, cancel stops a command") {
  Canceller c;
  auto st = run_health_checks({{"kubelet.service"}, {}, seconds(1), {}}, c);
  REQUIRE_FALSE(st);
  CHECK(st.error().message.find("unit kubelet.service: no way to ask systemd") !=
        std::string::npos);
  std::thread t([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    c.cancel();
  });
  auto r = run_command("sleep 30", seconds(60), &c);
  t.join();
  REQUIRE_FALSE(r);
  CHECK(r.error().code == Errc::cancelled);
}
