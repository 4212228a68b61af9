// A small client of the system bus (sd-bus): what abup asks of systemd and logind. The bus is
// the one sd_bus_open_system() finds: $DBUS_SYSTEM_BUS_ADDRESS when set (tests point it at a
// private dbus-daemon), else /run/dbus/system_bus_socket. Errors name the D-Bus call, the D-Bus
// error name and its message.
#pragma once

#include <string>
#include <string_view>

#include "abup/result.hpp"

namespace abup::agent {

// org.freedesktop.login1.Manager.Reboot(interactive=false): logind reboots the machine (and
// refuses, with its own error, when the caller may not).
[[nodiscard]] Status reboot_via_logind();

// The unit's ActiveState ("active", "failed", "inactive", "activating", ...), through
// org.freedesktop.systemd1.Manager.GetUnit (LoadUnit when the unit is not loaded) and the
// org.freedesktop.systemd1.Unit ActiveState property. A unit that does not exist is "inactive",
// as systemd reports it.
[[nodiscard]] Result<std::string> unit_active_state(std::string_view unit);

}  // namespace abup::agent
