// The daemon with a state.json it cannot use: before, an uncaught JSON
// type_error aborted it at start-up (SIGABRT), and Restart=on-failure made that a crash loop.
// Now it stays up, publishes the error (D-Bus LastError, the failure metric), does no update
// work while the file is bad, and goes on once it is fixed.
#include <doctest/doctest.h>
#include <signal.h>

#include "fixture.hpp"
#include "support/agent_bus.hpp"

using namespace abup::test;

namespace {

constexpr const char* kNew = "202607.02.0";

std::string sha256(const std::filesystem::path& p) {
  return run_ok("sha256sum " + shell_quote(p.string())).substr(0, 64);
}

}  // namespace

TEST_CASE("daemon: a state.json of the wrong type: it stays up, reports it, updates nothing") {
  AgentBus bus;
  Box b;
  const auto textfile = b.dir() / "abup.prom";
  b.configure("[Metrics]\nTextfile=" + textfile.string() + "\n");
  b.build_image(kNew);
  b.offer(kNew);
  const auto state = b.node.state_dir() / "state.json";
  std::filesystem::create_directories(state.parent_path());
  write_file(
      state,
      R"({"schemaVersion":1,"slots":{"e03dd35c-7c2d-4a47-b3fe-27f15780a57c":{"state":42}}})");
  const std::string why = state.string() +
                          ": slots.e03dd35c-7c2d-4a47-b3fe-27f15780a57c.state: expected a string, "
                          "got number";
  const auto disk_before = sha256(b.node.disk());

  auto d = b.start(bus.env());
  // The start-up commit and the first scheduled round both read the file, and both fail.
  bool failed_round = wait_until([&] { return d.log().find("(failure 1)") != std::string::npos; });
  INFO(d.log());
  REQUIRE(failed_round);
  CHECK(d.running());
  CHECK(d.log().find(why) != std::string::npos);
  CHECK(property(bus, "State") == "s \"error\"\n");
  CHECK(property(bus, "LastError").find(why) != std::string::npos);
  CHECK(wait_until([&] {
    return std::filesystem::exists(textfile) &&
           read_file(textfile).find("abup_failures_total{") != std::string::npos;
  }));
  CHECK(b.notify.has("READY=1"));
  // No update work: no update check although one is offered, nothing written.
  CHECK(b.server.omaha().empty());
  CHECK(read_file(state).find("\"state\":42") != std::string::npos);
  CHECK(sha256(b.node.disk()) == disk_before);
  CHECK_FALSE(std::filesystem::exists(b.node.state_dir() / "daemon.json"));

  // Fixed (here: moved aside), the next round reads it again and checks for updates.
  std::filesystem::rename(state, state.string() + ".bad");
  b.offer("");
  auto now = run("busctl --address=" + shell_quote(bus.address()) +
                 " call org.abup.Agent1 /org/abup/Agent1 org.abup.Agent1 CheckNow");
  REQUIRE_MESSAGE(now.exit_code == 0, now.out);
  CHECK(wait_until([&] { return !b.server.omaha().empty(); }));
  CHECK(wait_until([&] { return property(bus, "State") == "s \"idle\"\n"; }));
  CHECK(d.signal_and_wait(SIGTERM) == 0);
}
