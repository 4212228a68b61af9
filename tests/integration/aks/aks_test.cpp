// aks mode end to end: the real AKS agent (run_aks) against the fake TLS API server, a canned
// Omaha server, images served over HTTP with ranges, on a disk-image node with real GPT and
// boot-backend writes, and a simulated reboot between finalize and commit.
#include "agent/aks/aks.hpp"

#include <doctest/doctest.h>
#include <sys/wait.h>

#include <atomic>
#include <csignal>
#include <nlohmann/json.hpp>
#include <thread>

#include "support/agent_bus.hpp"
#include "support/fake_apiserver.hpp"
#include "support/fault_server.hpp"
#include "support/nginx.hpp"
#include "support/node.hpp"

using namespace abup;
using namespace abup::test;
using json = nlohmann::json;

namespace {

const std::string kAppId = "{e96281a6-d1af-4bde-9a0a-97b76e56dc57}";
const std::string kReq = "acl.azure.com/update-request";
const std::string kStatus = "acl.azure.com/update-status";
const std::string kCommit = "acl.azure.com/update-commit-status";
const std::string kNodeUpdate = "8a0f3c1e-5b6d-4e2f-9a7b-1c2d3e4f5a6b";

std::string op_id(int n) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "0b1c2d3e-4f50-6172-8394-%012d", n);
  return buf;
}

class OmahaCanned {
 public:
  OmahaCanned() {
    write_file(tmp_ / "offer.xml", "");
    write_file(tmp_ / "requests.log", "");
    const std::string script = (source_dir() / "tests/integration/aks/omaha_canned.py").string();
    process_.start(
        [&](const std::vector<std::uint16_t>& ports) -> std::vector<std::string> {
          return {"/usr/bin/env",
                  "python3",
                  script,
                  "--port",
                  std::to_string(ports[0]),
                  "--offer",
                  (tmp_ / "offer.xml").string(),
                  "--log",
                  (tmp_ / "requests.log").string()};
        },
        1, tmp_ / "server.out");
  }
  std::string url() const {
    return "http://127.0.0.1:" + std::to_string(process_.ports().at(0)) + "/v1/update";
  }
  void offer(const std::string& version, const std::string& image_url) {
    auto slash = image_url.rfind('/');
    write_file(tmp_ / "offer.xml",
               "<updatecheck status=\"ok\"><urls><url codebase=\"" +
                   image_url.substr(0, slash + 1) + "\"></url></urls><manifest version=\"" +
                   version + "\"><packages><package name=\"" + image_url.substr(slash + 1) +
                   "\" size=\"0\" required=\"true\"></package></packages></manifest>"
                   "</updatecheck>");
  }
  std::string log() const { return test::read_file(tmp_ / "requests.log"); }

 private:
  TempDir tmp_;
  ServerProcess process_;
};

struct World {
  Node node{"gptprio"};
  FakeApiServer api{"node-1"};
  OmahaCanned omaha;
  TempDir images_dir;
  std::unique_ptr<FaultServer> images;
  std::atomic<bool> stop{false};
  std::atomic<int> reboots{0};
  std::thread agent;
  Status result;

  World() { images = std::make_unique<FaultServer>(images_dir.path()); }
  ~World() { stop_agent(); }

  // Builds and signs an image of `version` with the node's key, served over HTTP.
  std::string image(const std::string& version) {
    auto base = node.root().parent_path();
    auto out = images_dir / (version + ".cosi");
    run_ok(abup_image_bin() + " build --usr " + shell_quote((base / "usr.img").string()) +
           " --version " + version + " --frame-size 1M --out " + shell_quote(out.string()) +
           node.boot_file_args() + " && " + abup_image_bin() + " sign --key " +
           shell_quote((base / "signer.pem").string()) + " " + shell_quote(out.string()));
    return images->url("/" + version + ".cosi");
  }

  agent::aks::AksOptions options() {
    agent::aks::AksOptions o;
    o.config.kubeconfig = api.write_kubeconfig(true);
    o.config.node_name = "node-1";
    o.config.heartbeat = std::chrono::seconds(1);
    o.config.keyrings = {node.root().parent_path() / "keys"};
    o.where.disk = node.disk().string();
    o.where.root = node.root();
    o.where.state_dir = node.state_dir();
    o.where.backend = *agent::parse_boot_backend(node.backend());
    o.config.esp = "/boot/efi";  // as Node::boot_section() configures it
    o.where.boot = agent::boot_files_config(o.config, o.where.backend);
    o.transport.allow_http = true;
    o.transport.retry_base = std::chrono::milliseconds(20);
    o.transport.retry_max = std::chrono::milliseconds(100);
    o.transport.max_retries = 2;
    o.reboot = [this]() -> Status {
      ++reboots;
      return {};
    };
    o.watch_timeout_seconds = 5;
    return o;
  }

  void start_agent() {
    stop = false;
    agent = std::thread([this, o = options()] { result = agent::aks::run_aks(o, stop, nullptr); });
  }
  void stop_agent() {
    stop = true;
    if (agent.joinable()) agent.join();
  }

  json request(const std::string& op, const std::string& id, const std::string& version) {
    json r = {{"schemaVersion", "1.0"},
              {"nodeUpdateId", kNodeUpdate},
              {"operationId", id},
              {"operation", op}};
    if (op != "rollback") {
      r["targetVersion"] = version;
      r["server"] = omaha.url();
      r["appId"] = kAppId;
      r["track"] = "stable";
    }
    return r;
  }
  void ask(const json& r) { api.set_annotation(kReq, r.dump()); }

  // Polls until the annotation holds a status for `id` with a code other than InProgress.
  json wait_terminal(const std::string& key, const std::string& id) {
    for (int i = 0; i < 1200; ++i) {
      auto text = api.annotation(key);
      if (!text.empty()) {
        auto s = json::parse(text);
        if (s["operationId"] == id && s["code"] != "InProgress") return s;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    FAIL("no terminal status for " << id << " in " << key << ": " << api.annotation(key));
    return {};
  }

  // Stage `version` (operation `stage_op`) and finalize it (`finalize_op`), both Success.
  void stage_and_finalize(const std::string& version, int stage_op, int finalize_op) {
    ask(request("stage", op_id(stage_op), version));
    REQUIRE(wait_terminal(kStatus, op_id(stage_op))["code"] == "Success");
    ask(request("finalize", op_id(finalize_op), version));
    REQUIRE(wait_terminal(kStatus, op_id(finalize_op))["code"] == "Success");
  }

  // The reboot call is finalize's last step, after its status and its Omaha 800/1.
  int wait_reboots(int n) const {
    for (int i = 0; i < 200 && reboots < n; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return reboots;
  }
};

std::vector<json> statuses_for(const World& w, const std::string& key, const std::string& id) {
  std::vector<json> out;
  for (const auto& t : w.api.annotation_history(key)) {
    auto s = json::parse(t);
    if (s["operationId"] == id) out.push_back(s);
  }
  return out;
}

}  // namespace

TEST_CASE("stage, finalize, reboot, commit through the annotations") {
  World w;
  const std::string v2 = "202606.29.0";
  w.omaha.offer(v2, w.image(v2));
  w.start_agent();

  w.ask(w.request("stage", op_id(1), v2));
  auto s = w.wait_terminal(kStatus, op_id(1));
  CHECK(s["code"] == "Success");
  CHECK(s["operation"] == "stage");
  CHECK(s["fromVersion"] == kRunning);
  CHECK(s["toVersion"] == v2);
  CHECK(s.contains("finishedUtc"));
  auto seen = statuses_for(w, kStatus, op_id(1));
  REQUIRE(seen.size() >= 2);
  CHECK(seen.front()["code"] == "InProgress");
  CHECK_FALSE(seen.front().contains("finishedUtc"));
  CHECK(w.omaha.log().find("eventtype=\"13\"") != std::string::npos);
  CHECK(w.omaha.log().find("eventtype=\"14\"") != std::string::npos);

  w.ask(w.request("finalize", op_id(2), v2));
  s = w.wait_terminal(kStatus, op_id(2));
  CHECK(s["code"] == "Success");
  CHECK(w.wait_reboots(1) == 1);
  CHECK(w.omaha.log().find("eventtype=\"800\"") != std::string::npos);
  w.stop_agent();

  CHECK(w.node.reboot() == 'B');
  w.start_agent();
  auto c = w.wait_terminal(kCommit, op_id(2));
  CHECK(c["code"] == "Success");
  CHECK(c["operation"] == "commit");
  CHECK(c["fromVersion"] == kRunning);
  CHECK(c["toVersion"] == v2);
  w.stop_agent();
  CHECK(w.node.cgpt(4, "-S") == "1");  // USR-B marked successful
  auto log = w.omaha.log();
  CHECK(log.find("eventtype=\"3\" eventresult=\"2\"") != std::string::npos);
  CHECK(log.find("previousversion") != std::string::npos);
  // The finalize request is still on the Node after the reboot: re-served, not redone.
  CHECK(w.reboots == 1);
  bool normal_events = false;
  for (const auto& e : w.api.events())
    normal_events |= e["reason"] == "UpdateCommitSuccess" && e["type"] == "Normal";
  CHECK(normal_events);

  // Rollback: arms A again, reboots, and the commit repeats the rollback's operationId.
  w.start_agent();
  w.ask(w.request("rollback", op_id(3), ""));
  s = w.wait_terminal(kStatus, op_id(3));
  CHECK(s["code"] == "Success");
  CHECK(s["operation"] == "rollback");
  CHECK(w.wait_reboots(2) == 2);
  w.stop_agent();
  CHECK(w.node.reboot() == 'A');
  w.start_agent();
  c = w.wait_terminal(kCommit, op_id(3));
  CHECK(c["code"] == "Success");
  CHECK(c["toVersion"] == kRunning);
  w.stop_agent();
}

TEST_CASE("a target that does not boot is reported as TargetBootFailed with Omaha 3/0 44") {
  World w;
  const std::string v2 = "202606.29.0";
  w.omaha.offer(v2, w.image(v2));
  w.start_agent();
  w.stage_and_finalize(v2, 40, 41);
  w.stop_agent();
  // The bootloader gave B its one try and came back on A.
  w.node.reboot_into('A', kRunning);
  w.start_agent();
  auto c = w.wait_terminal(kCommit, op_id(41));
  CHECK(c["code"] == "TargetBootFailed");
  CHECK(c["operation"] == "commit");
  w.stop_agent();
  CHECK(w.omaha.log().find("errorcode=\"44\"") != std::string::npos);
  bool warned = false;
  for (const auto& e : w.api.events())
    warned |= e["reason"] == "UpdateCommitTargetBootFailed" && e["type"] == "Warning";
  CHECK(warned);
}

TEST_CASE("while a stage runs: heartbeats, a conflicting operationId, the apiserver down") {
  World w;
  const std::string v2 = "202606.29.0";
  w.image(v2);
  // The image trickles at ~40 bytes/s: the stage stays in flight for the whole test.
  w.omaha.offer(v2, w.images->url("/slow/" + v2 + ".cosi"));
  w.start_agent();
  w.ask(w.request("stage", op_id(30), v2));
  auto count = [&] { return statuses_for(w, kStatus, op_id(30)).size(); };
  for (int i = 0; i < 600 && count() < 2; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  REQUIRE(count() >= 2);  // started, then at least one heartbeat
  for (const auto& s : statuses_for(w, kStatus, op_id(30))) CHECK(s["code"] == "InProgress");

  w.ask(w.request("stage", op_id(31), v2));
  auto s = w.wait_terminal(kStatus, op_id(31));
  CHECK(s["code"] == "InvalidRequest");
  CHECK(s["message"].get<std::string>().find(op_id(30)) != std::string::npos);

  // The apiserver goes away during heartbeats, and comes back: heartbeats resume.
  w.api.set_down(true);
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  auto before = count();
  w.api.set_down(false);
  for (int i = 0; i < 600 && count() <= before; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CHECK(count() > before);
  w.stop_agent();
  CHECK(w.result);
  // The operation is still recorded as in flight, for a restart to pick up.
  CHECK(test::read_file(w.node.state_dir() / "aks.json").find("inFlight") != std::string::npos);
}

TEST_CASE("invalid requests: InvalidRequest under their id, or an Event when unanswerable") {
  World w;
  w.start_agent();
  // The first writes meet a conflict and a server error: a terminal status is retried.
  w.api.fail("PATCH", 409, 1);
  w.api.fail("PATCH", 500, 1);
  auto r = w.request("stage", op_id(7), "202606.29.0");
  r["extra"] = 1;
  w.ask(r);
  auto s = w.wait_terminal(kStatus, op_id(7));
  CHECK(s["code"] == "InvalidRequest");
  CHECK(s["message"].get<std::string>().find("unknown field \"extra\"") != std::string::npos);

  r = w.request("stage", "not-a-uuid", "202606.29.0");
  w.ask(r);
  bool warned = false;
  for (int i = 0; i < 400 && !warned; ++i) {
    for (const auto& e : w.api.events())
      warned |= e["reason"] == "UpdateRequestInvalid" &&
                e["message"].get<std::string>().find("operationId") != std::string::npos;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  CHECK(warned);

  // finalize with nothing staged; stage of the running version.
  w.ask(w.request("finalize", op_id(8), "202606.29.0"));
  CHECK(w.wait_terminal(kStatus, op_id(8))["code"] == "NotStaged");
  w.ask(w.request("stage", op_id(9), kRunning));
  CHECK(w.wait_terminal(kStatus, op_id(9))["code"] == "AlreadyAtTarget");
  // An offer that is not the target.
  w.omaha.offer("202607.01.0", w.images->url("/x.cosi"));
  w.ask(w.request("stage", op_id(10), "202606.29.0"));
  s = w.wait_terminal(kStatus, op_id(10));
  CHECK(s["code"] == "InvalidRequest");
  CHECK(s["message"].get<std::string>().find("202607.01.0") != std::string::npos);

  // A repeated operationId is re-served from the cache, not redone (and posts no new Event).
  auto mentions = [&](const std::string& id) {
    for (const auto& e : w.api.events())
      if (e["message"].get<std::string>().find(id) != std::string::npos) return true;
    return false;
  };
  for (int i = 0; i < 200 && !mentions(op_id(10)); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  REQUIRE(mentions(op_id(10)));
  auto before = w.api.events().size();
  w.ask(w.request("finalize", op_id(8), "202606.29.0"));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  w.ask(w.request("stage", op_id(9), kRunning));
  s = w.wait_terminal(kStatus, op_id(9));
  CHECK(s["code"] == "AlreadyAtTarget");
  CHECK(w.api.events().size() == before);
  w.stop_agent();
  CHECK(w.result);
}

TEST_CASE("the agent survives a broken watch and a compaction, and stops when the Node goes") {
  World w;
  w.start_agent();
  for (int i = 0; i < 200 && w.api.watch_count() == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  w.api.break_watches();
  w.api.compact();
  w.ask(w.request("finalize", op_id(20), "202606.29.0"));
  CHECK(w.wait_terminal(kStatus, op_id(20))["code"] == "NotStaged");
  w.api.delete_node();
  if (w.agent.joinable()) w.agent.join();
  REQUIRE_FALSE(w.result);
  CHECK(w.result.error().code == Errc::not_found);
}

TEST_CASE("abup daemon with Mode=aks: stage and finalize through the annotations, reboot command") {
  AgentBus bus;  // the daemon publishes each step on org.abup.Agent1
  ::setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.address().c_str(), 1);
  auto property = [&](const std::string& name) {
    auto r = run("busctl --address=" + shell_quote(bus.address()) +
                 " get-property org.abup.Agent1 /org/abup/Agent1 org.abup.Agent1 " + name);
    return r.exit_code == 0 ? r.out : "busctl failed: " + r.out;
  };
  World w;
  const std::string v2 = "202606.29.0";
  w.omaha.offer(v2, w.image(v2));
  TempDir dir;
  const auto marker = dir / "rebooted";
  const auto conf = dir / "abup.conf";
  write_file(conf,
             "[Update]\nMode=aks\nKeyring=" + (w.node.root().parent_path() / "keys").string() +
                 "\nBootBackend=" + w.node.backend() +
                 "\n[Network]\nAllowHTTP=yes\n[Kubernetes]\nKubeconfig=" +
                 w.api.write_kubeconfig(false).string() +
                 "\nNodeName=node-1\nHeartbeat=1s\n[Reboot]\nCommand=touch " +
                 shell_quote(marker.string()) + "\n[Metrics]\nTextfile=" +
                 (dir / "abup.prom").string() + "\n" + Node::boot_section());
  pid_t pid = spawn_child(
      {abup_bin(), "daemon", "--config", conf.string(), "--disk", w.node.disk().string(), "--root",
       w.node.root().string(), "--state-dir", w.node.state_dir().string()},
      dir / "daemon.log");
  REQUIRE(pid > 0);
  w.ask(w.request("stage", op_id(1), v2));
  auto s = w.wait_terminal(kStatus, op_id(1));
  INFO(test::read_file(dir / "daemon.log"));
  CHECK(s["code"] == "Success");
  auto settled = [&](const std::string& state, const std::string& op) {
    for (int i = 0; i < 500; ++i) {
      if (property("State") == "s \"" + state + "\"\n" &&
          property("OperationId") == "s \"" + op + "\"\n")
        return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  };
  CHECK(property("Mode") == "s \"aks\"\n");
  CHECK(settled("staged", op_id(1)));
  CHECK(property("StagedVersion") == "s \"" + v2 + "\"\n");
  const auto prom = test::read_file(dir / "abup.prom");
  CHECK(prom.find("abup_info{mode=\"aks\"} 1") != std::string::npos);
  CHECK(prom.find("abup_last_update_bytes{") != std::string::npos);
  w.ask(w.request("finalize", op_id(2), v2));
  s = w.wait_terminal(kStatus, op_id(2));
  CHECK(s["code"] == "Success");
  for (int i = 0; i < 300 && !std::filesystem::exists(marker); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CHECK(std::filesystem::exists(marker));  // [Reboot] Command= ran after the status was written
  CHECK(settled("rebooting", op_id(2)));
  CHECK(property("NextSlot") == "s \"B\"\n");
  // A request the node cannot serve shows as the daemon's last error.
  w.ask(w.request("finalize", op_id(3), "202612.01.0"));
  CHECK(w.wait_terminal(kStatus, op_id(3))["code"] == "NotStaged");
  CHECK(settled("error", op_id(3)));
  CHECK(property("LastError").find("NotStaged") != std::string::npos);
  ::kill(pid, SIGTERM);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(w.node.reboot() == 'B');
  ::unsetenv("DBUS_SYSTEM_BUS_ADDRESS");
}

TEST_CASE(
    "a stage arriving while finalize's arming waits for its reboot: OperationFailed, B kept") {
  World w;
  const std::string v2 = "202606.29.0";
  w.omaha.offer(v2, w.image(v2));
  w.start_agent();
  w.stage_and_finalize(v2, 50, 51);
  // Wait for the reboot call, so the Omaha log below holds everything finalize sends.
  REQUIRE(w.wait_reboots(1) == 1);
  REQUIRE(w.omaha.log().find("eventtype=\"800\"") != std::string::npos);
  const auto b = w.node.slot_digest('B');
  const auto omaha_before = w.omaha.log();
  // The reboot did not happen (o.reboot only counts); the control plane sends a new stage.
  const std::string v3 = "202607.01.0";
  w.omaha.offer(v3, w.image(v3));
  w.ask(w.request("stage", op_id(52), v3));
  auto s = w.wait_terminal(kStatus, op_id(52));
  w.stop_agent();
  CHECK(s["code"] == "OperationFailed");
  CHECK(s["message"].get<std::string>().find("is armed") != std::string::npos);
  // Answered before any download or Omaha traffic; B and its one try are untouched.
  CHECK(w.omaha.log() == omaha_before);
  CHECK(w.node.slot_digest('B') == b);
  CHECK(w.node.cgpt(kPartUsrB, "-T") == "1");
  CHECK(w.node.status()["pending"]["targetVersion"] == v2);
}

TEST_CASE("an Omaha reply naming the asked version but pointing at another signed release") {
  // The reply is not signed: a hostile or misconfigured update server offers targetVersion v3
  // with the URL of v2, a genuine release (signed, newer than the running one).
  World w;
  const std::string v2 = "202606.29.0", v3 = "202607.01.0";
  w.omaha.offer(v3, w.image(v2));
  const auto b = w.node.slot_digest('B');
  const auto status_before = w.node.status();
  w.start_agent();
  w.ask(w.request("stage", op_id(60), v3));
  auto s = w.wait_terminal(kStatus, op_id(60));
  w.stop_agent();
  INFO(s.dump());
  CHECK(s["code"] == "OperationFailed");
  CHECK(s["message"].get<std::string>().find("the signed image is version " + v2 + ", but " + v3 +
                                             " was asked for") != std::string::npos);
  CHECK(w.node.slot_digest('B') == b);  // refused before the first write
  CHECK(w.node.status()["slots"] == status_before["slots"]);
  CHECK(w.node.status()["pending"].is_null());
}

TEST_CASE("finalize or rollback asked again while armed: the armed commit is still reported") {
  World w;
  const std::string v2 = "202606.29.0", v3 = "202607.01.0";
  w.omaha.offer(v2, w.image(v2));
  w.start_agent();
  w.stage_and_finalize(v2, 70, 71);
  REQUIRE(w.wait_reboots(1) == 1);
  // The reboot did not happen; a rollback is refused (the finalize's commit is pending), and the
  // finalize's arming stays the one whose commit is owed.
  w.ask(w.request("rollback", op_id(72), ""));
  auto s = w.wait_terminal(kStatus, op_id(72));
  INFO(s.dump());
  CHECK(s["code"] == "OperationFailed");
  CHECK(s["message"].get<std::string>().find("operation " + op_id(71)) != std::string::npos);
  w.stop_agent();
  CHECK(w.reboots == 1);  // a failed arming asks for no reboot
  CHECK(w.node.status()["pending"]["operationId"] == op_id(71));
  CHECK(w.node.reboot() == 'B');
  w.start_agent();
  auto c = w.wait_terminal(kCommit, op_id(71));
  CHECK(c["code"] == "Success");
  CHECK(c["toVersion"] == v2);
  w.stop_agent();
  CHECK(w.node.cgpt(kPartUsrB, "-S") == "1");

  // From B: stage v3 on A, finalize it twice. The second finalize re-arms the first one's pending
  // commit, and the commit after the reboot answers the newest operationId.
  w.omaha.offer(v3, w.image(v3));
  w.start_agent();
  w.stage_and_finalize(v3, 73, 74);
  REQUIRE(w.wait_reboots(2) == 2);
  w.ask(w.request("finalize", op_id(75), v3));
  s = w.wait_terminal(kStatus, op_id(75));
  CHECK(s["code"] == "Success");
  CHECK(w.wait_reboots(3) == 3);
  w.stop_agent();
  CHECK(w.node.status()["pending"]["operationId"] == op_id(74));
  CHECK(w.node.reboot() == 'A');
  w.start_agent();
  c = w.wait_terminal(kCommit, op_id(75));
  CHECK(c["code"] == "Success");
  CHECK(c["toVersion"] == v3);
  w.stop_agent();
  CHECK(w.node.status()["pending"].is_null());
}
