// `abup daemon` in aks mode with an aks.json it cannot use (the neighbours of
// state.json): before, a wrong-typed member threw out of the load and aborted the daemon. Now it
// stays up, publishes the error naming file and field, and answers no request while the file is
// bad (it reads it again on its next attempt).
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <csignal>
#include <nlohmann/json.hpp>
#include <thread>

#include "support/agent_bus.hpp"
#include "support/fake_apiserver.hpp"
#include "support/node.hpp"

using namespace abup::test;
using json = nlohmann::json;

TEST_CASE(
    "abup daemon with Mode=aks and a wrong-typed aks.json: stays up, reports it, does nothing") {
  AgentBus bus;
  ::setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.address().c_str(), 1);
  Node node("gptprio");
  FakeApiServer api("node-1");
  TempDir dir;
  std::filesystem::create_directories(node.state_dir());
  const auto aks_json = node.state_dir() / "aks.json";
  write_file(aks_json, R"({"schemaVersion":1,"operations":[],"staged":{"version":202606}})");
  const std::string why = aks_json.string() + ": staged.version: expected a string, got number";
  api.set_annotation("acl.azure.com/update-request",
                     json{{"schemaVersion", "1.0"},
                          {"nodeUpdateId", "8a0f3c1e-5b6d-4e2f-9a7b-1c2d3e4f5a6b"},
                          {"operationId", "0b1c2d3e-4f50-6172-8394-000000000001"},
                          {"operation", "stage"},
                          {"targetVersion", "202606.29.0"},
                          {"server", "https://updates.example/v1/update"},
                          {"appId", "{e96281a6-d1af-4bde-9a0a-97b76e56dc57}"},
                          {"track", "stable"}}
                         .dump());
  const auto conf = dir / "abup.conf";
  write_file(conf, "[Update]\nMode=aks\nBootBackend=gptprio\n[Kubernetes]\nKubeconfig=" +
                       api.write_kubeconfig(false).string() + "\nNodeName=node-1\n");
  pid_t pid =
      spawn_child({abup_bin(), "daemon", "--config", conf.string(), "--disk", node.disk().string(),
                   "--root", node.root().string(), "--state-dir", node.state_dir().string()},
                  dir / "daemon.log");
  REQUIRE(pid > 0);
  auto log = [&] {
    return std::filesystem::exists(dir / "daemon.log") ? read_file(dir / "daemon.log")
                                                       : std::string();
  };
  bool reported = false;
  for (int i = 0; i < 1500 && !reported; ++i) {
    reported = log().find("restarting in") != std::string::npos;
    if (!reported) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  INFO(log());
  REQUIRE(reported);
  CHECK(log().find(why) != std::string::npos);
  int status = 0;
  CHECK(::waitpid(pid, &status, WNOHANG) == 0);  // still running
  auto r = run("busctl --address=" + shell_quote(bus.address()) +
               " get-property org.abup.Agent1 /org/abup/Agent1 org.abup.Agent1 LastError");
  CHECK(r.out.find(why) != std::string::npos);
  CHECK(api.annotation("acl.azure.com/update-status").empty());  // no request answered
  CHECK(read_file(aks_json).find("202606}") != std::string::npos);
  ::kill(pid, SIGTERM);
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  ::unsetenv("DBUS_SYSTEM_BUS_ADDRESS");
}
