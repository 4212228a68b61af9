// A private system bus for tests: a real dbus-daemon on a unix socket in a scratch directory,
// with abup-fake-system-services owning org.freedesktop.login1 and org.freedesktop.systemd1 on
// it (tests/support/fake_system_services/main.cpp says what the fake answers). Programs reach it
// through DBUS_SYSTEM_BUS_ADDRESS (env() for a command line, export_address() for calls made by
// the test process itself). Other services (abup's own D-Bus API) may own names on it too: the
// bus policy lets anyone own any name and call anything.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "support/util.hpp"

namespace abup::test {

struct PrivateBusOptions {
  bool fake = true;                          // run abup-fake-system-services on the bus
  std::string services = "login1,systemd1";  // which of the fake's names it owns
  // Initial units: name -> "ACTIVE[/SUB[/LOAD]]", e.g. {"kubelet.service", "failed"}.
  std::map<std::string, std::string> units;
  std::string reboot_error;  // "org.freedesktop.DBus.Error.AccessDenied:message": Reboot fails

  // PrivateBusOptions().only("systemd1").unit("kubelet.service", "failed")
  PrivateBusOptions& only(std::string names) {
    services = std::move(names);
    return *this;
  }
  PrivateBusOptions& unit(const std::string& name, std::string state) {
    units[name] = std::move(state);
    return *this;
  }
  PrivateBusOptions& failing_reboot(std::string error) {
    reboot_error = std::move(error);
    return *this;
  }
};

class PrivateBus {
 public:
  explicit PrivateBus(PrivateBusOptions options = {});
  ~PrivateBus();
  PrivateBus(const PrivateBus&) = delete;
  PrivateBus& operator=(const PrivateBus&) = delete;

  // "unix:path=/tmp/.../system_bus_socket"
  [[nodiscard]] const std::string& address() const { return address_; }
  // "DBUS_SYSTEM_BUS_ADDRESS='unix:path=...'", to prefix a shell command with.
  [[nodiscard]] std::string env() const;
  // Sets DBUS_SYSTEM_BUS_ADDRESS in this process (until the bus dies) for in-process clients.
  void export_address();

  // Changes a unit's state as the fake reports it from now on (the units file, read per call):
  // active e.g. "failed"; sub defaults to what systemd shows with it ("running", "failed",
  // "dead"); load e.g. "not-found".
  void set_unit(const std::string& name, const std::string& active, const std::string& sub = "",
                const std::string& load = "loaded");
  // The fake's record: one object per method call it received, in order: destination, path,
  // interface, member, method ("interface.member"), signature, args.
  [[nodiscard]] std::vector<nlohmann::json> records() const;
  // The records whose "method" is `method` ("org.freedesktop.login1.Manager.Reboot").
  [[nodiscard]] std::vector<nlohmann::json> calls(const std::string& method) const;
  [[nodiscard]] std::string logs() const;  // dbus-daemon's and the fake's output

 private:
  TempDir tmp_;
  std::string address_;
  nlohmann::json units_ = nlohmann::json::object();
  pid_t daemon_ = -1, fake_ = -1;
  bool exported_ = false;
};

}  // namespace abup::test
