// sd-bus connections: the API's server and client, and what abup asks of systemd and logind
// (agent/sysbus.hpp). The one place that opens a bus.
#pragma once

#include <systemd/sd-bus.h>

#include <memory>
#include <string>

#include "abup/result.hpp"

namespace abup::agent::dbus {

struct BusDeleter {
  void operator()(sd_bus* bus) const { sd_bus_flush_close_unref(bus); }
};
using BusPtr = std::unique_ptr<sd_bus, BusDeleter>;

// The system bus ($DBUS_SYSTEM_BUS_ADDRESS when set, as for every D-Bus client).
[[nodiscard]] Result<BusPtr> open_system_bus();
// What open_system_bus() connects to, for messages.
[[nodiscard]] std::string system_bus_address();
// A bus at `address` ("unix:path=/run/...bus_socket"), as a bus client (Hello, names).
[[nodiscard]] Result<BusPtr> open_bus(const std::string& address);

// "what: message (errno text)" for an sd-bus failure r < 0.
[[nodiscard]] Error bus_error(const std::string& what, int r, const sd_bus_error* error = nullptr);

}  // namespace abup::agent::dbus
