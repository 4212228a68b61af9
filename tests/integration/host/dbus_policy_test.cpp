// systemd-units/org.abup.Agent1.conf on a real dbus-daemon (a private bus with the system bus's
// default policy): root may own org.abup.Agent1 and call it, members of group abup may call it
// and read its properties, other users may do neither. busctl is the client.
#include <doctest/doctest.h>
#include <grp.h>
#include <signal.h>
#include <sys/wait.h>
#include <systemd/sd-bus.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <thread>

#include "support/util.hpp"

namespace fs = std::filesystem;
using namespace abup::test;

namespace {

// The system bus's default policy (Debian's system.conf), then our file.
std::string bus_config(const fs::path& dir) {
  return R"(<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=)" +
         (dir / "bus").string() + R"(</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <includedir>)" +
         (dir / "system.d").string() + R"(</includedir>
</busconfig>
)";
}

struct Bus {
  TempDir dir;
  std::string address;
  std::string pid;
  std::string group;  // the group the policy grants calls to

  Bus() {
    fs::permissions(dir.path(),
                    fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
    fs::create_directories(dir / "system.d");
    auto policy = read_file(source_dir() / "systemd-units/org.abup.Agent1.conf");
    // The policy names group abup (systemd-sysusers creates it on a node). Where it does not
    // exist, the same policy is tried with a group that does.
    group = "abup";
    if (::getgrnam("abup") == nullptr) {
      group = "nogroup";
      auto at = policy.find("group=\"abup\"");
      REQUIRE(at != std::string::npos);
      policy.replace(at, 12, "group=\"nogroup\"");
    }
    write_file(dir / "system.d/org.abup.Agent1.conf", policy);
    write_file(dir / "bus.conf", bus_config(dir.path()));
    pid = run_ok("dbus-daemon --fork --print-pid --config-file=" +
                 shell_quote((dir / "bus.conf").string()));
    pid.erase(pid.find_last_not_of("\n") + 1);
    address = "unix:path=" + (dir / "bus").string();
  }
  ~Bus() {
    if (!pid.empty()) ::kill(std::stoi(pid), SIGTERM);
  }
};

// Owns org.abup.Agent1 as root and answers (sd-bus replies UnknownObject/UnknownMethod to calls
// nobody handles: the call was delivered) while `client` runs.
std::string while_served(sd_bus* bus, const std::function<std::string()>& client) {
  std::atomic<bool> done = false;
  std::string out;
  std::thread t([&] {
    out = client();
    done = true;
  });
  while (!done) {
    int r = sd_bus_process(bus, nullptr);
    if (r == 0) sd_bus_wait(bus, 100000);
  }
  t.join();
  return out;
}

// Runs `sh -c cmd` as uid:gid (no supplementary groups).
std::string as_user(int uid, int gid, const std::string& cmd) {
  return "setpriv --reuid=" + std::to_string(uid) + " --regid=" + std::to_string(gid) +
         " --clear-groups " + cmd;
}

// Whether uid:gid may own the name (a child process, since sd-bus connections are per process).
int try_own(const std::string& address, int uid, int gid) {
  pid_t child = ::fork();
  if (child == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setgid(gid) != 0 || ::setuid(uid) != 0) ::_exit(30);
    sd_bus* b = nullptr;
    if (sd_bus_new(&b) < 0 || sd_bus_set_address(b, address.c_str()) < 0 ||
        sd_bus_set_bus_client(b, 1) < 0 || sd_bus_start(b) < 0)
      ::_exit(31);
    int r = sd_bus_request_name(b, "org.abup.Agent1", 0);
    ::_exit(r >= 0 ? 0 : r == -EACCES ? 10 : 20);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

TEST_CASE("dbus policy: root owns and calls, group abup calls, others are refused") {
  if (!have_program("dbus-daemon") || !have_program("busctl") || !have_program("setpriv")) {
    MESSAGE("SKIPPED: dbus-daemon, busctl or setpriv not installed");
    return;
  }
  if (::geteuid() != 0) {
    MESSAGE("SKIPPED: needs root to act as other users on the bus");
    return;
  }
  Bus bus;
  auto* gr = ::getgrnam(bus.group.c_str());
  REQUIRE(gr != nullptr);
  int member_gid = static_cast<int>(gr->gr_gid);

  // Before root owns it, nobody else may.
  CHECK(try_own(bus.address, 65534, member_gid) == 10);
  CHECK(try_own(bus.address, 1, 1) == 10);

  sd_bus* owner = nullptr;
  REQUIRE(sd_bus_new(&owner) >= 0);
  REQUIRE(sd_bus_set_address(owner, bus.address.c_str()) >= 0);
  REQUIRE(sd_bus_set_bus_client(owner, 1) >= 0);
  REQUIRE(sd_bus_start(owner) >= 0);
  REQUIRE(sd_bus_request_name(owner, "org.abup.Agent1", 0) >= 0);

  auto busctl = "busctl --address=" + shell_quote(bus.address) + " ";
  auto call = busctl + "call org.abup.Agent1 /org/abup/Agent1 org.abup.Agent1 CheckNow 2>&1";
  auto get = busctl + "get-property org.abup.Agent1 /org/abup/Agent1 org.abup.Agent1 State 2>&1";

  // Delivered: the owner answers that there is no such object yet. Refused: the bus answers.
  auto root_call = while_served(owner, [&] { return run(call).out; });
  CHECK_MESSAGE(root_call.find("Unknown object") != std::string::npos, root_call);
  auto member_call = while_served(owner, [&] { return run(as_user(65534, member_gid, call)).out; });
  CHECK_MESSAGE(member_call.find("Unknown object") != std::string::npos, member_call);
  auto member_get = while_served(owner, [&] { return run(as_user(65534, member_gid, get)).out; });
  CHECK_MESSAGE(member_get.find("Unknown object") != std::string::npos, member_get);
  auto other_call = while_served(owner, [&] { return run(as_user(1, 1, call)).out; });
  CHECK_MESSAGE(other_call.find("Access denied") != std::string::npos, other_call);
  auto other_get = while_served(owner, [&] { return run(as_user(1, 1, get)).out; });
  CHECK_MESSAGE(other_get.find("Access denied") != std::string::npos, other_get);
  // Reading, not writing.
  auto member_set = while_served(owner, [&] {
    return run(as_user(65534, member_gid,
                       busctl + "set-property org.abup.Agent1 /org/abup/Agent1 org.abup.Agent1 "
                                "Mode s aks 2>&1"))
        .out;
  });
  CHECK_MESSAGE(member_set.find("Access denied") != std::string::npos, member_set);
  auto root_set = while_served(owner, [&] {
    return run(busctl +
               "set-property org.abup.Agent1 /org/abup/Agent1 org.abup.Agent1 Mode s aks 2>&1")
        .out;
  });
  CHECK_MESSAGE(root_set.find("Unknown object") != std::string::npos, root_set);
  // A member may not reach other interfaces of the name than the API and its standard ones.
  auto member_other = while_served(owner, [&] {
    return run(as_user(65534, member_gid,
                       busctl + "call org.abup.Agent1 /org/abup/Agent1 org.example.Other X 2>&1"))
        .out;
  });
  CHECK_MESSAGE(member_other.find("Access denied") != std::string::npos, member_other);
  sd_bus_flush_close_unref(owner);
}
