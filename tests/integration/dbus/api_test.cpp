// abup's D-Bus API end to end: a real dbus-daemon under the shipped bus policy
// (support/agent_bus.hpp), a real handler staging onto a disk-image node and arming its slots
// (test_agent.hpp), and the real clients: busctl (introspect, get-property, call, monitor),
// dbus-send (for the error names) and the abup CLI (status, update, rollback).
#include <doctest/doctest.h>
#include <grp.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <thread>

#include "integration/expect_run.hpp"
#include "support/agent_bus.hpp"
#include "support/node.hpp"
#include "test_agent.hpp"

namespace fs = std::filesystem;
using namespace abup::test;

namespace {

bool have_tools() {
  for (const char* p : {"dbus-daemon", "busctl", "dbus-send"})
    if (!have_program(p)) {
      MESSAGE("SKIPPED: ", p, " not installed");
      return false;
    }
  return true;
}

// Signed images of the node's usr tree, by version; `untrusted` is signed by a key the agent's
// keyring does not hold.
struct Images {
  TempDir dir;
  Images() {
    run_ok("set -e; cd " + shell_quote(dir.path().string()) +
           "; mkdir -p tree/bin keys; head -c 300000 /dev/urandom > tree/bin/tool;"
           " truncate -s 8M usr.img; mkfs.ext4 -q -F -d tree usr.img;"
           " openssl genpkey -algorithm ed25519 -out signer.pem 2>/dev/null;"
           " openssl genpkey -algorithm ed25519 -out stranger.pem 2>/dev/null;"
           " openssl pkey -in signer.pem -pubout -out keys/signer.pem");
  }
  fs::path build(const std::string& version, const char* key = "signer.pem") {
    auto img = dir / (version + "-" + key + ".cosi");
    run_ok(abup_image_bin() + " build --usr " + shell_quote((dir / "usr.img").string()) +
           " --version " + version + " --frame-size 1M --out " + shell_quote(img.string()) +
           " && " + abup_image_bin() + " sign --key " + shell_quote((dir / key).string()) + " " +
           shell_quote(img.string()));
    return img;
  }
  fs::path keyring() const { return dir / "keys"; }
};

struct World {
  World() = default;
  explicit World(bool open_to_all) : bus(open_to_all) {}
  AgentBus bus;
  Node node{"grubenv"};
  Images images;
  std::string busctl = "busctl --address=" + shell_quote(bus.address()) + " ";

  TestAgentSetup setup(const std::string& offered = "202607.02.0") {
    TestAgentSetup s;
    s.where.disk = node.disk().string();
    s.where.root = node.root();
    s.where.state_dir = node.state_dir();
    s.where.backend = abup::agent::BootBackend::grubenv;
    s.where.boot.backend =
        abup::agent::BootBackend::grubenv;  // GRUB reads the kernel inside the slot: no boot files
    s.keyring = images.keyring();
    s.images[offered] = images.build(offered);
    s.offered = offered;
    s.caller_group = bus.group();  // what the loaded policy names ("nogroup" without abup)
    return s;
  }
  RunResult abup(const std::string& cmd, const std::string& extra = "") const {
    return node.abup(cmd, extra, bus.env());
  }
  // `abup update` takes no node options: it only talks to the daemon.
  RunResult update(const std::string& extra = "") const {
    return run(bus.env() + " " + abup_bin() + " update " + extra);
  }
  std::string get(const std::string& property) const {
    return run_ok(busctl + "get-property org.abup.Agent1 /org/abup/Agent1 org.abup.Agent1 " +
                  property);
  }
  // dbus-send prints the error's name ("Error org.abup.Agent1.Error.Busy: ...").
  RunResult send(const std::string& member, const std::string& args = "") const {
    return run("dbus-send --bus=" + shell_quote(bus.address()) +
               " --print-reply --dest=org.abup.Agent1 /org/abup/Agent1 org.abup.Agent1." + member +
               " " + args);
  }
};

// Polls `done` (each 10 ms, at most 60 s: a bound, not a timing assertion).
void wait_for(const std::function<bool()>& done, const std::string& what) {
  for (int i = 0; i < 6000; ++i) {
    if (done()) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  FAIL("gave up waiting for " << what);
}

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("dbus api: introspection, properties and error names") {
  if (!have_tools()) return;
  World w;
  TestAgent agent(w.bus.address(), w.setup());
  REQUIRE_MESSAGE(agent.start_error().empty(), agent.start_error());

  auto intro = run_ok(w.busctl + "introspect org.abup.Agent1 /org/abup/Agent1 org.abup.Agent1");
  INFO(intro);
  for (const char* member :
       {".CheckNow", ".Stage", ".Finalize", ".Rollback", ".Cancel", ".StateChanged", ".Mode",
        ".State", ".Progress", ".BootedSlot", ".NextSlot", ".DefaultSlot", ".BootedVersion",
        ".StagedVersion", ".AvailableVersion", ".LastError", ".OperationId", ".LastCheck"})
    CHECK_MESSAGE(has(intro, member), member);
  CHECK(has(intro, "(stt)"));
  CHECK(has(intro, "emits-change"));

  CHECK(w.get("State") == "s \"idle\"\n");
  CHECK(w.get("BootedSlot") == "s \"A\"\n");
  CHECK(w.get("BootedVersion") == std::string("s \"") + kRunning + "\"\n");
  CHECK(w.get("NextSlot") == "s \"A\"\n");
  CHECK(w.get("Progress") == "(stt) \"\" 0 0\n");

  auto not_staged = w.send("Finalize", "boolean:false");
  CHECK(not_staged.exit_code != 0);
  CHECK_MESSAGE(has(not_staged.out, "org.abup.Agent1.Error.NotStaged"), not_staged.out);
  auto bad = w.send("Stage", "string:'not a version!'");
  CHECK_MESSAGE(has(bad.out, "org.abup.Agent1.Error.InvalidArgs"), bad.out);
  CHECK(has(bad.out, "'not a version!' is neither a version nor an image URL or path"));
  auto unknown = w.send("Stage", "string:209901.01.0");
  CHECK_MESSAGE(has(unknown.out, "org.abup.Agent1.Error.Failed"), unknown.out);
  auto idle = w.send("Cancel");
  CHECK_MESSAGE(has(idle.out, "org.abup.Agent1.Error.NothingToDo"), idle.out);
  // A wrong signature is refused by sd-bus before the handler sees it.
  auto sig = w.send("Rollback", "boolean:true");
  CHECK_MESSAGE(has(sig.out, "org.freedesktop.DBus.Error.InvalidArgs"), sig.out);
  // Nothing of that changed the state or the disk.
  CHECK(w.get("State") == "s \"idle\"\n");
  CHECK(w.node.state_text().empty());
  // A broken state file is the node's fault, not the caller's: Failed, naming the file.
  std::filesystem::create_directories(w.node.state_dir());
  write_file(w.node.state_dir() / "state.json", "{\"slots\": [");
  auto broken = w.send("Finalize", "boolean:false");
  CHECK(broken.exit_code != 0);
  CHECK_MESSAGE(has(broken.out, "org.abup.Agent1.Error.Failed"), broken.out);
  CHECK_MESSAGE(has(broken.out, "state.json"), broken.out);
}

TEST_CASE("dbus api: live progress in status, Busy while staging, signals on the bus") {
  if (!have_tools()) return;
  World w;
  TestAgent agent(w.bus.address(), w.setup());
  REQUIRE_MESSAGE(agent.start_error().empty(), agent.start_error());

  // busctl monitor, ready once it has seen a call of ours.
  const auto mon = w.images.dir / "monitor.txt";
  auto pid = run_ok(w.busctl + "monitor > " + shell_quote(mon.string()) + " 2>&1 & echo $!");
  wait_for(
      [&] {
        (void)run(w.busctl +
                  "call org.freedesktop.DBus /org/freedesktop/DBus "
                  "org.freedesktop.DBus GetId");
        return has(read_file(mon), "GetId");
      },
      "busctl monitor");

  agent.hold_stage();
  auto started = w.update();
  INFO(started.out);
  REQUIRE(started.exit_code == 0);
  CHECK(has(started.out, "operation test-op-1: checking for an update"));
  wait_for([&] { return agent.held(); }, "the stage to write its first chunk");
  wait_for([&] { return has(w.get("Progress"), "write"); }, "Progress to say write");

  expect_run(
      w.abup("status"), 0,
      {"daemon (operator): staging, write ", "%", "operation test-op-1", "available 202607.02.0"});
  auto json = nlohmann::json::parse(w.abup("status", "--json").out);
  CHECK(json["daemon"]["state"] == "staging");
  CHECK(json["daemon"]["progress"]["phase"] == "write");
  CHECK(json["daemon"]["progress"]["total"].get<std::uint64_t>() > 0);
  CHECK(json["slots"][0]["booted"] == true);  // what status reads itself is still there

  auto busy = w.send("Stage", "string:202607.02.0");
  CHECK_MESSAGE(has(busy.out, "org.abup.Agent1.Error.Busy"), busy.out);
  CHECK(has(busy.out, "operation test-op-1 is staging"));
  expect_run(w.update("--version 202607.02.0"), 1,
             {"abup: org.abup.Agent1.Error.Busy: operation test-op-1"});
  expect_run(w.abup("rollback", "--force"), 1, {"org.abup.Agent1.Error.Busy"});
  auto cancel = w.send("Cancel");
  CHECK_MESSAGE(has(cancel.out, "cannot be interrupted"), cancel.out);

  agent.release();
  wait_for([&] { return w.get("State") == "s \"staged\"\n"; }, "State staged");
  CHECK(w.get("StagedVersion") == "s \"202607.02.0\"\n");
  CHECK(w.get("Progress") == "(stt) \"\" 0 0\n");
  CHECK(w.node.status()["slots"][1]["state"] == "staged");

  wait_for([&] { return has(read_file(mon), "staged"); }, "the monitor to see staged");
  ::kill(std::stoi(pid), SIGTERM);
  auto seen = read_file(mon);
  INFO(seen);
  CHECK(has(seen, "Member=StateChanged"));
  CHECK(has(seen, "Member=PropertiesChanged"));
  CHECK(has(seen, "STRING \"staging\""));
  CHECK(has(seen, "STRING \"staged\""));
  CHECK(has(seen, "STRING \"write\""));
}

TEST_CASE("dbus api: update --wait, Finalize over the bus, rollback through the daemon") {
  if (!have_tools()) return;
  World w;
  auto setup = w.setup();
  auto untrusted = w.images.build("202607.03.0", "stranger.pem");
  TestAgent agent(w.bus.address(), setup);
  REQUIRE_MESSAGE(agent.start_error().empty(), agent.start_error());

  expect_run(w.update("--wait --source " + shell_quote(untrusted.string())), 1,
             {"abup: update failed: Untrusted: "});
  CHECK(w.get("State") == "s \"error\"\n");
  CHECK(has(w.get("LastError"), "Untrusted"));

  expect_run(w.update("--wait"), 0,
             {"operation test-op-2: checking for an update", "write 0%", "write 100%",
              "staged 202607.02.0 (operation test-op-2)"});
  CHECK(w.get("LastError") == "(ss) \"\" \"\"\n");

  auto fin =
      run_ok(w.busctl + "call org.abup.Agent1 /org/abup/Agent1 org.abup.Agent1 Finalize b false");
  CHECK(has(fin, "\"code\" \"Armed\""));
  CHECK(has(fin, "\"toSlot\" \"B\""));
  CHECK(w.get("State") == "s \"armed\"\n");
  CHECK(w.get("NextSlot") == "s \"B\"\n");
  CHECK(w.node.status()["next"] == "B");

  // Rollback through the daemon: refused while the finalize is pending (the lifecycle's rule,
  // with the lifecycle's message), then forced.
  expect_run(w.abup("rollback"), 1,
             {"abup: the daemon runs: asking it to roll back", "org.abup.Agent1.Error.Refused"});
  auto forced = w.abup("rollback", "--force --reboot --json");
  INFO(forced.out);
  CHECK(forced.exit_code == 0);
  auto outcome = nlohmann::json::parse(forced.out.substr(forced.out.find('{')));
  CHECK(outcome["via"] == "daemon");
  CHECK(outcome["kind"] == "rollback");
  CHECK(outcome["code"] == "Armed");
  CHECK(agent.reboots_requested() == 1);
  CHECK(w.get("State") == "s \"rebooting\"\n");
  CHECK(w.get("OperationId") == "s \"" + outcome["operationId"].get<std::string>() + "\"\n");
  CHECK(has(w.node.history_text(), outcome["operationId"].get<std::string>()));
}

TEST_CASE("dbus api: without a daemon the CLI acts directly or says so") {
  if (!have_tools()) return;
  World w;  // a bus, nobody owning org.abup.Agent1
  expect_run(w.update("--wait"), 1, {"the abup daemon is not running"});
  expect_run(w.abup("status"), 0, {"daemon: not running"});
  CHECK(nlohmann::json::parse(w.abup("status", "--json").out)["daemon"].is_null());
  auto rb = w.abup("rollback", "--force");
  INFO(rb.out);
  CHECK(rb.exit_code == 0);
  CHECK(!has(rb.out, "asking it"));
  CHECK(w.node.status()["next"] == "B");
  // No system bus at all: the same.
  expect_run(w.node.abup("status", "", "DBUS_SYSTEM_BUS_ADDRESS=unix:path=/nonexistent/bus"), 0,
             {"daemon: not running"});
  expect_run(run("DBUS_SYSTEM_BUS_ADDRESS=unix:path=/nonexistent/bus " + abup_bin() + " update"), 1,
             {"the abup daemon is not running"});
}

// The tools, root and setpriv: what calling as other users needs (else the test says it skips).
bool can_call_as_others() {
  if (!have_tools()) return false;
  if (::geteuid() != 0 || !have_program("setpriv")) {
    MESSAGE("SKIPPED: needs root and setpriv to call as other users");
    return false;
  }
  return true;
}

// Runs `cmd` as another user (setpriv; the caller is root).
RunResult as(int uid, unsigned gid, const std::string& cmd) {
  return run("setpriv --reuid=" + std::to_string(uid) + " --regid=" + std::to_string(gid) +
             " --clear-groups " + cmd);
}

TEST_CASE("dbus api: the bus policy lets root and the group call, refuses other users") {
  if (!can_call_as_others()) return;
  World w;
  REQUIRE(w.bus.strict());
  TestAgent agent(w.bus.address(), w.setup());
  REQUIRE_MESSAGE(agent.start_error().empty(), agent.start_error());
  auto* gr = ::getgrnam(w.bus.group().c_str());
  REQUIRE(gr != nullptr);
  const std::string call = w.busctl + "call org.abup.Agent1 /org/abup/Agent1 org.abup.Agent1 ";

  auto member = as(65534, gr->gr_gid, call + "Cancel");
  CHECK_MESSAGE(has(member.out, "no operation runs"), member.out);  // delivered and answered
  auto member_get = as(65534, gr->gr_gid,
                       w.busctl +
                           "get-property org.abup.Agent1 "
                           "/org/abup/Agent1 org.abup.Agent1 State");
  CHECK(member_get.out == "s \"idle\"\n");
  auto other = as(1, 1, call + "CheckNow");
  CHECK_MESSAGE(has(other.out, "Access denied"), other.out);
  expect_run(as(1, 1, "env " + w.bus.env() + " " + abup_bin() + " update"), 1,
             {"org.freedesktop.DBus.Error.AccessDenied"});
  CHECK(w.get("State") == "s \"idle\"\n");  // the refused CheckNow never arrived
  // Nobody but root may take the name over.
  auto own = as(65534, gr->gr_gid,
                "dbus-send --bus=" + shell_quote(w.bus.address()) +
                    " --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus "
                    "org.freedesktop.DBus.RequestName string:org.abup.Agent1 uint32:0");
  CHECK_MESSAGE(has(own.out, "AccessDenied"), own.out);
}

TEST_CASE("dbus api: with a wrong bus policy that lets everyone call, abup itself refuses others") {
  if (!can_call_as_others()) return;
  World w(true);  // the policy file is wrong: dbus-daemon delivers every user's calls
  TestAgent agent(w.bus.address(), w.setup());
  REQUIRE_MESSAGE(agent.start_error().empty(), agent.start_error());
  auto* gr = ::getgrnam(w.bus.group().c_str());
  REQUIRE(gr != nullptr);
  const std::string call = w.busctl + "call org.abup.Agent1 /org/abup/Agent1 org.abup.Agent1 ";
  // dbus-send prints the error's name and text (busctl shortens AccessDenied to its errno).
  const std::string send =
      "dbus-send --bus=" + shell_quote(w.bus.address()) +
      " --print-reply --dest=org.abup.Agent1 /org/abup/Agent1 org.abup.Agent1.";

  auto other = as(1, 1, send + "CheckNow");
  CHECK_MESSAGE(
      has(other.out, "uid 1 (not root, not in group " + w.bus.group() + ") may not call CheckNow"),
      other.out);
  auto stage = as(1, 1, send + "Stage string:/nonexistent.cosi");
  CHECK_MESSAGE(has(stage.out, "may not call Stage"), stage.out);
  auto finalize = as(1, 1, send + "Finalize boolean:false");
  CHECK_MESSAGE(has(finalize.out, "may not call Finalize"), finalize.out);
  CHECK(w.get("State") == "s \"idle\"\n");  // nothing ran
  // The group and root still call; anyone may read the properties.
  auto member = as(65534, gr->gr_gid, call + "Cancel");
  CHECK_MESSAGE(has(member.out, "no operation runs"), member.out);
  auto root = run(call + "Cancel");
  CHECK_MESSAGE(has(root.out, "no operation runs"), root.out);
  auto read =
      as(1, 1, w.busctl + "get-property org.abup.Agent1 /org/abup/Agent1 org.abup.Agent1 State");
  CHECK(read.out == "s \"idle\"\n");
}
