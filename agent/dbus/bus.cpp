#include "agent/dbus/bus.hpp"

#include <cstdlib>
#include <cstring>

namespace abup::agent::dbus {

Error bus_error(const std::string& what, int r, const sd_bus_error* error) {
  std::string text = what + ": ";
  if (error && sd_bus_error_is_set(error))
    text += std::string(error->name) + ": " + (error->message ? error->message : "");
  else
    text += std::strerror(-r);
  return make_error(Errc::failed, text);
}

std::string system_bus_address() {
  const char* env = std::getenv("DBUS_SYSTEM_BUS_ADDRESS");
  return env && *env ? env : "unix:path=/run/dbus/system_bus_socket";
}

Result<BusPtr> open_system_bus() {
  sd_bus* bus = nullptr;
  int r = sd_bus_open_system(&bus);
  if (r < 0) return bus_error("connect to the system bus (" + system_bus_address() + ")", r);
  return BusPtr(bus);
}

Result<BusPtr> open_bus(const std::string& address) {
  sd_bus* raw = nullptr;
  int r = sd_bus_new(&raw);
  if (r < 0) return bus_error("sd_bus_new", r);
  BusPtr bus(raw);
  if ((r = sd_bus_set_address(raw, address.c_str())) < 0)
    return bus_error("bus address '" + address + "'", r);
  if ((r = sd_bus_set_bus_client(raw, 1)) < 0) return bus_error("sd_bus_set_bus_client", r);
  if ((r = sd_bus_start(raw)) < 0) return bus_error("connect to the bus at " + address, r);
  return bus;
}

}  // namespace abup::agent::dbus
