#include "agent/sysbus.hpp"

#include <systemd/sd-bus.h>

#include <cstdlib>
#include <cstring>
#include <memory>

#include "agent/dbus/bus.hpp"

namespace abup::agent {
namespace {

constexpr const char* kLogin1 = "org.freedesktop.login1";
constexpr const char* kLogin1Path = "/org/freedesktop/login1";
constexpr const char* kLogin1Manager = "org.freedesktop.login1.Manager";
constexpr const char* kSystemd1 = "org.freedesktop.systemd1";
constexpr const char* kSystemd1Path = "/org/freedesktop/systemd1";
constexpr const char* kSystemd1Manager = "org.freedesktop.systemd1.Manager";
constexpr const char* kSystemd1Unit = "org.freedesktop.systemd1.Unit";

using dbus::BusPtr;
using dbus::open_system_bus;

struct MessageUnref {
  void operator()(sd_bus_message* m) const { sd_bus_message_unref(m); }
};
using MessagePtr = std::unique_ptr<sd_bus_message, MessageUnref>;

// An sd_bus_error freed on scope exit.
struct BusError {
  sd_bus_error e = SD_BUS_ERROR_NULL;
  BusError() = default;
  BusError(const BusError&) = delete;
  BusError& operator=(const BusError&) = delete;
  ~BusError() { sd_bus_error_free(&e); }
};

// "Interface.Method: org.freedesktop.DBus.Error.Name: message".
Error call_error(const std::string& call, const BusError& err, int r) {
  return dbus::bus_error(call, r, &err.e);
}

Result<std::string> unit_path(sd_bus* bus, std::string_view unit) {
  const std::string name(unit);
  for (const char* method : {"GetUnit", "LoadUnit"}) {
    BusError err;
    sd_bus_message* raw = nullptr;
    int r = sd_bus_call_method(bus, kSystemd1, kSystemd1Path, kSystemd1Manager, method, &err.e,
                               &raw, "s", name.c_str());
    MessagePtr reply(raw);
    const std::string call = std::string(kSystemd1Manager) + "." + method + "(" + name + ")";
    if (r < 0) {
      // Not loaded yet: LoadUnit loads it (or answers with a "not-found" unit).
      if (std::strcmp(method, "GetUnit") == 0 &&
          sd_bus_error_has_name(&err.e, "org.freedesktop.systemd1.NoSuchUnit"))
        continue;
      return call_error(call, err, r);
    }
    const char* path = nullptr;
    if (int rr = sd_bus_message_read(reply.get(), "o", &path); rr < 0)
      return make_error(Errc::invalid_input,
                        call + ": reply is not an object path: " + std::strerror(-rr));
    return std::string(path);
  }
  return make_error(Errc::failed, "unreachable");
}

}  // namespace

Status reboot_via_logind() {
  ABUP_TRY(auto bus, open_system_bus());
  BusError err;
  sd_bus_message* raw = nullptr;
  int r = sd_bus_call_method(bus.get(), kLogin1, kLogin1Path, kLogin1Manager, "Reboot", &err.e,
                             &raw, "b", 0);
  MessagePtr reply(raw);
  if (r < 0)
    return call_error(
        std::string(kLogin1Manager) + ".Reboot(interactive=false) on " + dbus::system_bus_address(),
        err, r);
  return {};
}

Result<std::string> unit_active_state(std::string_view unit) {
  if (unit.empty()) return make_error(Errc::invalid_input, "unit_active_state: empty unit name");
  ABUP_TRY(auto bus, open_system_bus());
  ABUP_TRY(auto path, unit_path(bus.get(), unit));
  BusError err;
  char* state = nullptr;
  int r = sd_bus_get_property_string(bus.get(), kSystemd1, path.c_str(), kSystemd1Unit,
                                     "ActiveState", &err.e, &state);
  if (r < 0)
    return call_error(
        std::string(kSystemd1Unit) + ".ActiveState of " + std::string(unit) + " (" + path + ")",
        err, r);
  std::string out(state);
  std::free(state);
  return out;
}

}  // namespace abup::agent
