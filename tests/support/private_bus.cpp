#include "support/private_bus.hpp"

#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <thread>

namespace abup::test {
namespace {

void stop(pid_t& pid) {
  if (pid <= 0) return;
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  pid = -1;
}

// Waits (up to 10 s) until `path` exists; false if the child died or time ran out.
bool wait_for(const std::filesystem::path& path, pid_t& child) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    if (std::filesystem::exists(path)) return true;
    int status = 0;
    if (::waitpid(child, &status, WNOHANG) == child) {
      child = -1;
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

std::string bus_config(const std::filesystem::path& socket) {
  return R"(<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <listen>unix:path=)" +
         socket.string() + R"(</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
)";
}

}  // namespace

PrivateBus::PrivateBus(PrivateBusOptions options) {
  REQUIRE_MESSAGE(std::filesystem::exists("/usr/bin/dbus-daemon"),
                  "dbus-daemon is missing: run tools/setup (package dbus-daemon)");
  const auto socket = tmp_ / "system_bus_socket";
  address_ = "unix:path=" + socket.string();
  write_file(tmp_ / "bus.conf", bus_config(socket));
  daemon_ = spawn_child({"/usr/bin/dbus-daemon", "--nofork", "--nopidfile",
                         "--config-file=" + (tmp_ / "bus.conf").string()},
                        tmp_ / "dbus.log");
  if (!wait_for(socket, daemon_)) {
    INFO(logs());
    stop(daemon_);
    FAIL("dbus-daemon did not start");
  }
  if (!options.fake) return;
  for (const auto& [name, state] : options.units) {
    std::vector<std::string> parts;
    std::size_t pos = 0;
    while (true) {
      auto slash = state.find('/', pos);
      parts.push_back(state.substr(pos, slash - pos));
      if (slash == std::string::npos) break;
      pos = slash + 1;
    }
    set_unit(name, parts[0], parts.size() > 1 ? parts[1] : "",
             parts.size() > 2 ? parts[2] : "loaded");
  }
  if (options.units.empty()) write_file(tmp_ / "units.json", "{}\n");
  std::vector<std::string> argv = {(binary_dir() / "abup-fake-system-services").string(),
                                   "--address",
                                   address_,
                                   "--record",
                                   (tmp_ / "record.jsonl").string(),
                                   "--units",
                                   (tmp_ / "units.json").string(),
                                   "--services",
                                   options.services,
                                   "--ready",
                                   (tmp_ / "fake.ready").string()};
  if (!options.reboot_error.empty()) {
    argv.push_back("--reboot-error");
    argv.push_back(options.reboot_error);
  }
  fake_ = spawn_child(argv, tmp_ / "fake.log");
  if (!wait_for(tmp_ / "fake.ready", fake_)) {
    INFO(logs());
    stop(fake_);
    stop(daemon_);
    FAIL("abup-fake-system-services did not come up");
  }
}

PrivateBus::~PrivateBus() {
  if (exported_) ::unsetenv("DBUS_SYSTEM_BUS_ADDRESS");
  stop(fake_);
  stop(daemon_);
}

std::string PrivateBus::env() const {
  return "DBUS_SYSTEM_BUS_ADDRESS=" + shell_quote(address_);
}

void PrivateBus::export_address() {
  ::setenv("DBUS_SYSTEM_BUS_ADDRESS", address_.c_str(), 1);
  exported_ = true;
}

void PrivateBus::set_unit(const std::string& name, const std::string& active,
                          const std::string& sub, const std::string& load) {
  nlohmann::json u = {{"ActiveState", active}, {"LoadState", load}};
  if (!sub.empty()) u["SubState"] = sub;
  units_[name] = u;
  // Whole or not at all: the fake may read the file at any moment.
  write_file(tmp_ / "units.json.tmp", units_.dump() + "\n");
  std::filesystem::rename(tmp_ / "units.json.tmp", tmp_ / "units.json");
}

std::vector<nlohmann::json> PrivateBus::records() const {
  std::vector<nlohmann::json> out;
  const auto path = tmp_ / "record.jsonl";
  if (!std::filesystem::exists(path)) return out;
  const std::string text = read_file(path);
  std::size_t pos = 0;
  while (pos < text.size()) {
    auto nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    if (nl > pos) out.push_back(nlohmann::json::parse(text.substr(pos, nl - pos)));
    pos = nl + 1;
  }
  return out;
}

std::vector<nlohmann::json> PrivateBus::calls(const std::string& method) const {
  std::vector<nlohmann::json> out;
  for (auto& r : records())
    if (r.value("method", "") == method) out.push_back(r);
  return out;
}

std::string PrivateBus::logs() const {
  std::string out;
  for (const char* f : {"dbus.log", "fake.log"})
    if (std::filesystem::exists(tmp_ / f)) out += std::string(f) + ":\n" + read_file(tmp_ / f);
  return out;
}

}  // namespace abup::test
