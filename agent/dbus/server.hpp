// The org.abup.Agent1 object on an sd-bus connection (docs/dbus.md): properties from an
// AgentStatus, methods forwarded to a Handler, PropertiesChanged on every change and StateChanged
// when State changes. The server does no I/O of its own: whoever owns the loop drives the bus
// (agent/dbus/asio_bus.hpp for a Boost.Asio loop).
#pragma once

#include <systemd/sd-bus.h>

#include <functional>
#include <memory>

#include "abup/result.hpp"
#include "agent/dbus/api.hpp"

namespace abup::agent::dbus {

class Server {
 public:
  // Exports the object on `bus` and requests the name org.abup.Agent1 (an error when another
  // connection owns it or the bus policy forbids it). `bus` and `handler` must outlive the
  // server.
  [[nodiscard]] static Result<std::unique_ptr<Server>> start(sd_bus* bus, Handler& handler,
                                                             AgentStatus initial);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Publishes a new status: PropertiesChanged for the properties that differ (Progress at most
  // every 0.5 % of its total, and whenever its phase or total changes or it completes), then
  // StateChanged(state, previous, operation id) when State differs.
  void update(const AgentStatus& status);
  [[nodiscard]] const AgentStatus& status() const { return status_; }
  // Called after update() queued messages, so the loop driving the bus writes them
  // (AsioBus::kick). Not needed when update() runs inside a handler.
  void set_wake(std::function<void()> wake) { wake_ = std::move(wake); }

  // sd-bus callbacks (public for the vtable; not API).
  static int get_property(sd_bus* bus, const char* path, const char* interface,
                          const char* property, sd_bus_message* reply, void* userdata,
                          sd_bus_error* error);
  static int method(sd_bus_message* m, void* userdata, sd_bus_error* error);

 private:
  Server(sd_bus* bus, Handler& handler, AgentStatus initial)
      : bus_(bus), handler_(handler), status_(std::move(initial)) {}
  int call(sd_bus_message* m, sd_bus_error* error);

  sd_bus* bus_;
  Handler& handler_;
  AgentStatus status_;
  Progress progress_sent_;  // the Progress last announced
  sd_bus_slot* slot_ = nullptr;
  bool named_ = false;
  std::function<void()> wake_;
};

}  // namespace abup::agent::dbus
