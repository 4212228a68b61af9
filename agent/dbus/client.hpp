// The CLI's side of the D-Bus API: is the daemon there, what does it publish, call its methods,
// follow its signals. Blocking; calls never start the daemon by D-Bus activation (a stopped
// daemon means "act directly").
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "abup/result.hpp"
#include "agent/dbus/api.hpp"
#include "agent/dbus/bus.hpp"

namespace abup::agent::dbus {

struct Event {
  enum Kind { properties, state_changed, daemon_gone } kind = properties;
  std::string state, previous, operation_id;  // state_changed
};

class Client {
 public:
  // The system bus ($DBUS_SYSTEM_BUS_ADDRESS when set); an error when there is none.
  [[nodiscard]] static Result<std::unique_ptr<Client>> connect_system();
  [[nodiscard]] static Result<std::unique_ptr<Client>> connect(const std::string& address);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Whether a process owns org.abup.Agent1.
  [[nodiscard]] Result<bool> daemon_running();
  [[nodiscard]] Result<AgentStatus> status();

  // Method calls. A D-Bus error becomes an Error whose message starts with the error's name
  // ("org.abup.Agent1.Error.Busy: ..."); InvalidArgs maps to Errc::invalid_input.
  [[nodiscard]] Result<std::string> check_now();
  [[nodiscard]] Result<std::string> stage(const std::string& version_or_url);
  [[nodiscard]] Result<OutcomeMap> finalize(bool reboot);
  [[nodiscard]] Result<OutcomeMap> rollback(bool reboot, bool force);
  [[nodiscard]] Result<std::string> cancel();

  // Subscribes to the object's PropertiesChanged and StateChanged and to the name's owner
  // changes; call before the method whose effects you follow, then next_event().
  [[nodiscard]] Status watch();
  // Blocks until the next signal; PropertiesChanged is applied to `status` first.
  [[nodiscard]] Result<Event> next_event(AgentStatus& status);

 private:
  explicit Client(BusPtr bus) : bus_(std::move(bus)) {}
  struct MessageUnref {
    void operator()(sd_bus_message* m) const { sd_bus_message_unref(m); }
  };
  using MessagePtr = std::unique_ptr<sd_bus_message, MessageUnref>;
  [[nodiscard]] Result<MessagePtr> call(const char* interface, const char* member,
                                        const std::function<int(sd_bus_message*)>& append);
  static int on_signal(sd_bus_message* m, void* userdata, sd_bus_error* error);

  BusPtr bus_;
  std::vector<sd_bus_slot*> matches_;
  AgentStatus* target_ = nullptr;  // while next_event() runs
  std::deque<Event> events_;
  Error failure_;
  bool failed_ = false;
};

}  // namespace abup::agent::dbus
