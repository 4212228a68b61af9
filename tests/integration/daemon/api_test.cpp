// The daemon's D-Bus API (docs/dbus.md) and metrics, end to end: the real `abup daemon` owns
// org.abup.Agent1 on a real dbus-daemon running the shipped bus policy (support/agent_bus), and
// is driven by busctl and by the real CLI (`abup status`, `abup update --wait`) as an operator
// would; its metrics are read from the textfile and the HTTP endpoint and checked by promtool.
#include <doctest/doctest.h>
#include <signal.h>

#include <ctime>
#include <regex>

#include "fixture.hpp"
#include "support/agent_bus.hpp"

using namespace abup::test;

namespace {

constexpr const char* kNew = "202607.02.0";

// `abup ARGS`; with `node`, on the box's disk image and root.
std::string cli(const AgentBus& bus, const Box& b, const std::string& args, int* rc = nullptr,
                bool node = true) {
  auto r = run(bus.env() + " " + abup_bin() + " " + args +
               (node ? " --disk " + shell_quote(b.node.disk().string()) + " --root " +
                           shell_quote(b.node.root().string())
                     : std::string()) +
               " 2>&1");
  if (rc) *rc = r.exit_code;
  return r.out;
}

// No scheduled check during the test: every step is asked over D-Bus.
const std::string kNoSchedule = "[Update]\nFirstCheck=1h\nCheckInterval=1h\n";

}  // namespace

TEST_CASE("daemon API: the daemon owns org.abup.Agent1 and publishes the slots") {
  AgentBus bus;
  Box b;
  b.configure(kNoSchedule);
  auto d = b.start(bus.env());
  bool up = wait_until([&] { return owned(bus); });
  INFO(d.log());
  REQUIRE(up);
  CHECK(wait_until([&] { return property(bus, "State") == "s \"idle\"\n"; }));
  CHECK(property(bus, "Mode") == "s \"autonomous\"\n");
  CHECK(property(bus, "BootedSlot") == "s \"A\"\n");
  CHECK(property(bus, "BootedVersion") == "s \"" + std::string(kRunning) + "\"\n");
  CHECK(property(bus, "StagedVersion") == "s \"\"\n");

  // `abup status` adds the daemon's live view; --json carries it whole.
  int rc = -1;
  auto text = cli(bus, b, "status", &rc);
  CHECK(rc == 0);
  CHECK(text.find("daemon (autonomous): idle") != std::string::npos);
  auto j = nlohmann::json::parse(cli(bus, b, "status --json", &rc));
  CHECK(j["daemon"]["state"] == "idle");
  CHECK(j["daemon"]["bootedSlot"] == "A");

  // Bad calls get the API's errors, and the daemon goes on.
  auto bad = busctl(bus, "call org.abup.Agent1 /org/abup/Agent1 org.abup.Agent1 Stage s 'soon'");
  CHECK(bad.exit_code != 0);
  CHECK(bad.out.find("neither a version nor an image URL") != std::string::npos);
  auto none = busctl(bus, "call org.abup.Agent1 /org/abup/Agent1 org.abup.Agent1 Finalize b false");
  CHECK(none.exit_code != 0);
  CHECK(none.out.find("nothing is staged") != std::string::npos);
  auto idle = busctl(bus, "call org.abup.Agent1 /org/abup/Agent1 org.abup.Agent1 Cancel");
  CHECK(idle.out.find("no operation runs") != std::string::npos);

  CHECK(d.signal_and_wait(SIGTERM) == 0);
  CHECK_FALSE(owned(bus));  // the name goes with the daemon
  // Without the daemon the CLI reads the disk and says so.
  CHECK(cli(bus, b, "status").find("daemon: not running") != std::string::npos);
}

TEST_CASE("daemon API: Stage an image URL, Finalize, then the slot facts and metrics follow") {
  AgentBus bus;
  Box b;
  const auto textfile = b.dir() / "abup.prom";
  const auto port = free_port();
  b.configure(kNoSchedule + "[Metrics]\nTextfile=" + textfile.string() +
              "\nListen=127.0.0.1:" + std::to_string(port) + "\n");
  b.build_image(kNew);
  auto d = b.start(bus.env());
  INFO(d.log());
  REQUIRE(wait_until([&] { return owned(bus); }));

  const auto url = b.server.url() + "/images/" + kNew + ".cosi";
  auto staged = busctl(
      bus, "call org.abup.Agent1 /org/abup/Agent1 org.abup.Agent1 Stage s " + shell_quote(url));
  REQUIRE_MESSAGE(staged.exit_code == 0, staged.out);
  std::smatch m;
  REQUIRE(std::regex_search(staged.out, m, std::regex("s \"([0-9a-f-]{36})\"")));
  const std::string op = m[1];
  REQUIRE(wait_until([&] { return property(bus, "State") == "s \"staged\"\n"; }));
  CHECK(property(bus, "OperationId") == "s \"" + op + "\"\n");
  CHECK(property(bus, "StagedVersion") == "s \"" + std::string(kNew) + "\"\n");

  auto fin = busctl(bus, "call org.abup.Agent1 /org/abup/Agent1 org.abup.Agent1 Finalize b false");
  REQUIRE_MESSAGE(fin.exit_code == 0, fin.out);
  CHECK(fin.out.find("\"Armed\"") != std::string::npos);
  CHECK(property(bus, "State") == "s \"armed\"\n");
  CHECK(property(bus, "NextSlot") == "s \"B\"\n");
  CHECK(property(bus, "DefaultSlot") == "s \"A\"\n");
  CHECK(nlohmann::json::parse(b.node.state_text())["pending"]["targetVersion"] == kNew);
  CHECK_FALSE(std::filesystem::exists(b.reboot_marker()));  // Finalize(false) does not reboot
  auto twice =
      busctl(bus, "call org.abup.Agent1 /org/abup/Agent1 org.abup.Agent1 Finalize b false");
  CHECK(twice.exit_code != 0);
  CHECK(twice.out.find("is armed already with " + std::string(kNew)) != std::string::npos);
  // The metrics: the same text in the file and on the endpoint, valid for promtool.
  REQUIRE(wait_until([&] {
    return std::filesystem::exists(textfile) &&
           read_file(textfile).find("abup_state{state=\"armed\"} 1") != std::string::npos;
  }));
  const auto text = read_file(textfile);
  CHECK(text.find("abup_slot_version_info{role=\"staged\",slot=\"B\",version=\"" +
                  std::string(kNew) + "\"} 1") != std::string::npos);
  CHECK(text.find("abup_slot_version_info{role=\"booted\",slot=\"A\",version=\"" +
                  std::string(kRunning) + "\"} 1") != std::string::npos);
  CHECK(text.find("abup_last_update_bytes{") != std::string::npos);
  // The staged release's signed issue time: a freshness the update server cannot fake.
  std::smatch issued;
  REQUIRE_MESSAGE(std::regex_search(text, issued,
                                    std::regex("abup_newest_signed_release_timestamp_seconds\\{"
                                               "version=\"" +
                                               std::string(kNew) + "\"\\} ([0-9]+)\n")),
                  text);
  const auto at = std::stoll(issued[1]);
  CHECK(at > 1700000000);
  CHECK(at <= static_cast<long long>(std::time(nullptr)) + 300);
  const auto served = run_ok("curl -sf http://127.0.0.1:" + std::to_string(port) + "/metrics");
  CHECK(served == text);
  if (have_program("promtool")) {
    auto lint = run("promtool check metrics < " + shell_quote(textfile.string()));
    CHECK_MESSAGE(lint.exit_code == 0, lint.out);
  } else {
    FAIL("promtool is missing: tools/setup installs it (package prometheus)");
  }
  // A Stage onto the armed slot fails before writing it (stage() reads the bootloader).
  const auto b_bytes = b.node.slot_digest('B');
  auto restage = busctl(
      bus, "call org.abup.Agent1 /org/abup/Agent1 org.abup.Agent1 Stage s " + shell_quote(url));
  REQUIRE_MESSAGE(restage.exit_code == 0, restage.out);
  CHECK(
      wait_until([&] { return property(bus, "LastError").find("is armed") != std::string::npos; }));
  CHECK(b.node.slot_digest('B') == b_bytes);
  CHECK(property(bus, "NextSlot") == "s \"B\"\n");
  CHECK(nlohmann::json::parse(b.node.state_text())["pending"]["targetVersion"] == kNew);

  CHECK(d.signal_and_wait(SIGTERM) == 0);
}

TEST_CASE("daemon API: abup update --wait checks now, shows progress, ends when armed") {
  AgentBus bus;
  Box b;
  b.configure(kNoSchedule + "[Reboot]\nStrategy=off\n");
  b.build_image(kNew);
  b.offer(kNew);
  auto d = b.start(bus.env());
  INFO(d.log());
  REQUIRE(wait_until([&] { return owned(bus); }));
  REQUIRE(wait_until([&] { return property(bus, "State") == "s \"idle\"\n"; }));
  CHECK(b.server.omaha().empty());  // the schedule has not checked yet

  int rc = -1;
  auto out = cli(bus, b, "update --wait", &rc, false);
  CHECK_MESSAGE(rc == 0, out);
  CHECK(out.find(std::string(kNew)) != std::string::npos);
  CHECK(out.find("(operation ") != std::string::npos);
  CHECK(b.server.omaha().size() >= 1);
  // The round goes on to arm it (Strategy=off: no reboot, /run/reboot-required instead).
  CHECK(wait_until([&] { return property(bus, "State") == "s \"armed\"\n"; }));
  // State=armed is published before the 800/1 event is sent and the marker is written.
  CHECK(wait_until([&] { return std::filesystem::exists(b.node.root() / "run/reboot-required"); }));
  CHECK(property(bus, "AvailableVersion") == "s \"" + std::string(kNew) + "\"\n");
  CHECK(property(bus, "LastCheck") != "t 0\n");
  CHECK(d.signal_and_wait(SIGTERM) == 0);
}

TEST_CASE("daemon API: Cancel stops a slow stage at a safe point, the daemon stays up") {
  AgentBus bus;
  Box b;
  b.configure(kNoSchedule);
  b.build_image(kNew);
  b.offer(kNew, 3);  // 3 s per 64 KiB: the ~370 KiB download takes ~20 s
  auto d = b.start(bus.env());
  INFO(d.log());
  REQUIRE(wait_until([&] { return owned(bus); }));
  auto check = busctl(bus, "call org.abup.Agent1 /org/abup/Agent1 org.abup.Agent1 CheckNow");
  REQUIRE_MESSAGE(check.exit_code == 0, check.out);
  REQUIRE(wait_until([&] {
    auto p = property(bus, "Progress");
    return p.find("\"write\"") != std::string::npos;
  }));
  // Busy while it runs; `abup status` shows the live progress.
  auto again = busctl(bus, "call org.abup.Agent1 /org/abup/Agent1 org.abup.Agent1 CheckNow");
  CHECK(again.exit_code != 0);
  CHECK(again.out.find("is staging") != std::string::npos);
  CHECK(cli(bus, b, "status").find("staging, write") != std::string::npos);

  auto cancel = busctl(bus, "call org.abup.Agent1 /org/abup/Agent1 org.abup.Agent1 Cancel");
  CHECK_MESSAGE(cancel.exit_code == 0, cancel.out);
  CHECK(wait_until([&] { return property(bus, "State") == "s \"idle\"\n"; }));
  CHECK(d.running());
  CHECK(property(bus, "StagedVersion") == "s \"\"\n");
  auto state = nlohmann::json::parse(b.node.state_text());
  CHECK((!state.contains("pending") || state["pending"].is_null()));
  CHECK(d.signal_and_wait(SIGTERM) == 0);
}

TEST_CASE("daemon API: in aks mode local operations are refused, the control plane owns them") {
  AgentBus bus;
  Box b;
  b.configure("[Update]\nMode=aks\n[Kubernetes]\nKubeconfig=" + (b.dir() / "none").string() +
              "\nNodeName=node-1\n");
  auto d = b.start(bus.env());
  INFO(d.log());
  REQUIRE(wait_until([&] { return owned(bus); }));
  CHECK(property(bus, "Mode") == "s \"aks\"\n");
  for (const std::string call : {"CheckNow", "Stage s 202607.02.0", "Finalize b false",
                                 "Rollback bb false false", "Cancel"}) {
    auto r = busctl(bus, "call org.abup.Agent1 /org/abup/Agent1 org.abup.Agent1 " + call);
    CHECK(r.exit_code != 0);
    CHECK_MESSAGE(r.out.find("Mode=aks") != std::string::npos, call, r.out);
  }
  CHECK(d.signal_and_wait(SIGTERM) == 0);
}
