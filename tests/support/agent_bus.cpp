#include "support/agent_bus.hpp"

#include <doctest/doctest.h>
#include <grp.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

namespace fs = std::filesystem;

namespace abup::test {
namespace {

std::string bus_config(const fs::path& dir) {
  return R"(<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=)" +
         (dir / "system_bus_socket").string() + R"(</listen>
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
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>
  <includedir>)" +
         (dir / "system.d").string() + R"(</includedir>
</busconfig>
)";
}

}  // namespace

AgentBus::AgentBus(bool open_to_all) {
  // Other users must reach the socket (the policy tests call as them).
  fs::permissions(dir_.path(),
                  fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
  fs::create_directories(dir_ / "system.d");
  auto policy = read_file(source_dir() / "systemd-units/org.abup.Agent1.conf");
  group_ = "abup";
  if (::getgrnam("abup") == nullptr) {
    group_ = "nogroup";
    auto at = policy.find("group=\"abup\"");
    REQUIRE(at != std::string::npos);
    policy.replace(at, 12, "group=\"nogroup\"");
  }
  write_file(dir_ / "system.d/org.abup.Agent1.conf", policy);
  if (::geteuid() != 0) {
    strict_ = false;
    write_file(dir_ / "system.d/zz-test-owner.conf",
               "<busconfig><policy user=\"" + std::to_string(::geteuid()) +
                   "\"><allow own=\"org.abup.Agent1\"/><allow "
                   "send_destination=\"org.abup.Agent1\"/></policy></busconfig>\n");
  }
  if (open_to_all) {
    strict_ = false;
    write_file(dir_ / "system.d/zz-wrong-policy.conf",
               "<busconfig><policy context=\"default\"><allow "
               "send_destination=\"org.abup.Agent1\"/></policy></busconfig>\n");
  }
  write_file(dir_ / "bus.conf", bus_config(dir_.path()));
  auto out = run_ok("dbus-daemon --fork --print-pid --config-file=" +
                    shell_quote((dir_ / "bus.conf").string()));
  pid_ = std::stoi(out);
  address_ = "unix:path=" + (dir_ / "system_bus_socket").string();
}

AgentBus::~AgentBus() {
  if (pid_ > 0) ::kill(pid_, SIGTERM);
}

std::string AgentBus::env() const {
  return "DBUS_SYSTEM_BUS_ADDRESS=" + shell_quote(address_);
}

}  // namespace abup::test
