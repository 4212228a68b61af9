// The org.abup.Agent1 object on an sd-bus connection (docs/dbus.md): properties from an
// AgentStatus, methods forwarded to a Handler, PropertiesChanged on every change and StateChanged
// when State changes. The server does no I/O of its own: whoever owns the loop drives the bus
// (agent/dbus/asio_bus.hpp for a Boost.Asio loop).
#pragma once

#include <systemd/sd-bus.h>

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "abup/result.hpp"
#include "agent/dbus/api.hpp"

namespace abup::agent::dbus {

class Server {
 public:
  // Exports the object on `bus` and requests the name org.abup.Agent1 (an error when another
  // connection owns it or the bus policy forbids it). `bus` and `handler` must outlive the
  // server. Methods are answered only for root, the server's own user and members of
  // `caller_group` (the group the bus policy lets call, kCallerGroup on a node): the policy
  // file is the first barrier, this one holds when the policy is missing or wrong.
  [[nodiscard]] static Result<std::unique_ptr<Server>> start(
      sd_bus* bus, Handler& handler, AgentStatus initial,
      std::string caller_group = std::string(kCallerGroup));
  static constexpr std::string_view kCallerGroup = "abup";
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
  Server(sd_bus* bus, Handler& handler, AgentStatus initial, std::string caller_group)
      : bus_(bus),
        handler_(handler),
        status_(std::move(initial)),
        caller_group_(std::move(caller_group)) {}
  int call(sd_bus_message* m, sd_bus_error* error);
  // Empty when the sender may call; else who it is, for the refusal.
  [[nodiscard]] std::string refused_caller(sd_bus_message* m) const;

  sd_bus* bus_;
  Handler& handler_;
  AgentStatus status_;
  std::string caller_group_;
  Progress progress_sent_;  // the Progress last announced
  sd_bus_slot* slot_ = nullptr;
  bool named_ = false;
  std::function<void()> wake_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // for replies sent later
};

}  // namespace abup::agent::dbus
