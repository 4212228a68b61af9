#include "agent/dbus/client.hpp"

#include <string_view>

namespace abup::agent::dbus {
namespace {

constexpr const char* kProperties = "org.freedesktop.DBus.Properties";

// Reads one property's variant (the message is positioned at it) into `s`; unknown ones are
// skipped, so an older CLI reads a newer daemon.
int read_property(sd_bus_message* m, std::string_view name, AgentStatus& s) {
  auto str = [&](std::string& out) {
    const char* v = nullptr;
    int r = sd_bus_message_read(m, "v", "s", &v);
    if (r >= 0) out = v;
    return r;
  };
  if (name == "Mode") return str(s.mode);
  if (name == "State") return str(s.state);
  if (name == "BootedSlot") return str(s.booted_slot);
  if (name == "NextSlot") return str(s.next_slot);
  if (name == "DefaultSlot") return str(s.default_slot);
  if (name == "BootedVersion") return str(s.booted_version);
  if (name == "StagedVersion") return str(s.staged_version);
  if (name == "AvailableVersion") return str(s.available_version);
  if (name == "OperationId") return str(s.operation_id);
  if (name == "LastCheck") return sd_bus_message_read(m, "v", "t", &s.last_check);
  if (name == "Progress") {
    const char* phase = nullptr;
    std::uint64_t done = 0, total = 0;
    int r = sd_bus_message_read(m, "v", "(stt)", &phase, &done, &total);
    if (r >= 0) s.progress = {phase, done, total};
    return r;
  }
  if (name == "LastError") {
    const char *code = nullptr, *message = nullptr;
    int r = sd_bus_message_read(m, "v", "(ss)", &code, &message);
    if (r >= 0) {
      s.last_error_code = code;
      s.last_error = message;
    }
    return r;
  }
  return sd_bus_message_skip(m, "v");
}

// a{sv} of properties into `s`.
int read_property_dict(sd_bus_message* m, AgentStatus& s) {
  int r = sd_bus_message_enter_container(m, 'a', "{sv}");
  if (r < 0) return r;
  while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
    const char* name = nullptr;
    if ((r = sd_bus_message_read(m, "s", &name)) < 0) return r;
    if ((r = read_property(m, name, s)) < 0) return r;
    if ((r = sd_bus_message_exit_container(m)) < 0) return r;
  }
  if (r < 0) return r;
  return sd_bus_message_exit_container(m);
}

Error remote_error(const char* member, int r, const sd_bus_error& e) {
  if (!sd_bus_error_is_set(&e)) return bus_error(std::string("D-Bus call ") + member, r);
  std::string text = std::string(e.name) + ": " + (e.message ? e.message : "");
  auto ours = parse_error_name(e.name);
  Errc code = Errc::failed;
  if ((ours && *ours == ApiErrc::invalid_args) ||
      std::string_view(e.name) == SD_BUS_ERROR_INVALID_ARGS)
    code = Errc::usage;  // the call's argument: what the operator gave
  return make_error(code, text);
}

}  // namespace

Result<std::unique_ptr<Client>> Client::connect_system() {
  ABUP_TRY(auto bus, open_system_bus());
  return std::unique_ptr<Client>(new Client(std::move(bus)));
}

Result<std::unique_ptr<Client>> Client::connect(const std::string& address) {
  ABUP_TRY(auto bus, open_bus(address));
  return std::unique_ptr<Client>(new Client(std::move(bus)));
}

Client::~Client() {
  for (auto* slot : matches_) sd_bus_slot_unref(slot);
}

Result<Client::MessagePtr> Client::call(const char* interface, const char* member,
                                        const std::function<int(sd_bus_message*)>& append) {
  sd_bus_message* raw = nullptr;
  int r =
      sd_bus_message_new_method_call(bus_.get(), &raw, kBusName, kObjectPath, interface, member);
  if (r < 0) return bus_error(std::string("D-Bus call ") + member, r);
  MessagePtr m(raw);
  // A stopped daemon is not started by this call (abup acts directly then).
  if ((r = sd_bus_message_set_auto_start(raw, 0)) < 0 || (append && (r = append(raw)) < 0))
    return bus_error(std::string("D-Bus call ") + member, r);
  sd_bus_error error = SD_BUS_ERROR_NULL;
  sd_bus_message* reply = nullptr;
  r = sd_bus_call(bus_.get(), raw, 120 * 1000000ull, &error, &reply);
  if (r < 0) {
    auto e = remote_error(member, r, error);
    sd_bus_error_free(&error);
    return e;
  }
  return MessagePtr(reply);
}

Result<bool> Client::daemon_running() {
  sd_bus_error error = SD_BUS_ERROR_NULL;
  sd_bus_message* reply = nullptr;
  int r = sd_bus_call_method(bus_.get(), "org.freedesktop.DBus", "/org/freedesktop/DBus",
                             "org.freedesktop.DBus", "NameHasOwner", &error, &reply, "s", kBusName);
  if (r < 0) {
    auto e = remote_error("NameHasOwner", r, error);
    sd_bus_error_free(&error);
    return e;
  }
  MessagePtr m(reply);
  int has = 0;
  if ((r = sd_bus_message_read(reply, "b", &has)) < 0) return bus_error("NameHasOwner", r);
  return has != 0;
}

Result<AgentStatus> Client::status() {
  ABUP_TRY(auto reply, call(kProperties, "GetAll", [](sd_bus_message* m) {
             return sd_bus_message_append(m, "s", kInterface);
           }));
  AgentStatus s;
  if (int r = read_property_dict(reply.get(), s); r < 0)
    return bus_error("read the daemon's properties", r);
  return s;
}

namespace {

Result<std::string> read_string(sd_bus_message* m, const char* what) {
  const char* v = nullptr;
  if (int r = sd_bus_message_read(m, "s", &v); r < 0) return bus_error(what, r);
  return std::string(v);
}

Result<OutcomeMap> read_outcome(sd_bus_message* m, const char* what) {
  OutcomeMap out;
  int r = sd_bus_message_enter_container(m, 'a', "{ss}");
  const char *k = nullptr, *v = nullptr;
  while (r >= 0 && (r = sd_bus_message_read(m, "{ss}", &k, &v)) > 0) out[k] = v;
  if (r < 0 || (r = sd_bus_message_exit_container(m)) < 0) return bus_error(what, r);
  return out;
}

}  // namespace

Result<std::string> Client::check_now() {
  ABUP_TRY(auto reply, call(kInterface, "CheckNow", nullptr));
  return read_string(reply.get(), "CheckNow");
}

Result<std::string> Client::stage(const std::string& what) {
  ABUP_TRY(auto reply, call(kInterface, "Stage", [&](sd_bus_message* m) {
             return sd_bus_message_append(m, "s", what.c_str());
           }));
  return read_string(reply.get(), "Stage");
}

Result<OutcomeMap> Client::finalize(bool reboot) {
  ABUP_TRY(auto reply, call(kInterface, "Finalize", [&](sd_bus_message* m) {
             return sd_bus_message_append(m, "b", int(reboot));
           }));
  return read_outcome(reply.get(), "Finalize");
}

Result<OutcomeMap> Client::rollback(bool reboot, bool force) {
  ABUP_TRY(auto reply, call(kInterface, "Rollback", [&](sd_bus_message* m) {
             return sd_bus_message_append(m, "bb", int(reboot), int(force));
           }));
  return read_outcome(reply.get(), "Rollback");
}

Result<std::string> Client::cancel() {
  ABUP_TRY(auto reply, call(kInterface, "Cancel", nullptr));
  return read_string(reply.get(), "Cancel");
}

Status Client::watch() {
  const std::string rules[] = {
      std::string("type='signal',sender='") + kBusName + "',path='" + kObjectPath +
          "',interface='" + kProperties + "',member='PropertiesChanged',arg0='" + kInterface + "'",
      std::string("type='signal',sender='") + kBusName + "',path='" + kObjectPath +
          "',interface='" + kInterface + "',member='StateChanged'",
      std::string("type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',"
                  "interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='") +
          kBusName + "'",
  };
  for (const auto& rule : rules) {
    sd_bus_slot* slot = nullptr;
    int r = sd_bus_add_match(bus_.get(), &slot, rule.c_str(), &Client::on_signal, this);
    if (r < 0) return bus_error("subscribe to " + rule, r);
    matches_.push_back(slot);
  }
  return {};
}

int Client::on_signal(sd_bus_message* m, void* userdata, sd_bus_error*) {
  auto* self = static_cast<Client*>(userdata);
  const std::string_view member = sd_bus_message_get_member(m);
  int r = 0;
  if (member == "PropertiesChanged") {
    const char* iface = nullptr;
    AgentStatus scratch;
    AgentStatus& target = self->target_ ? *self->target_ : scratch;
    if ((r = sd_bus_message_read(m, "s", &iface)) >= 0) r = read_property_dict(m, target);
    if (r >= 0) self->events_.push_back({Event::properties, {}, {}, {}});
  } else if (member == "StateChanged") {
    const char *state = nullptr, *previous = nullptr, *op = nullptr;
    if ((r = sd_bus_message_read(m, "sss", &state, &previous, &op)) >= 0)
      self->events_.push_back({Event::state_changed, state, previous, op});
  } else if (member == "NameOwnerChanged") {
    const char *name = nullptr, *old_owner = nullptr, *new_owner = nullptr;
    if ((r = sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner)) >= 0 &&
        std::string_view(new_owner).empty())
      self->events_.push_back({Event::daemon_gone, {}, {}, {}});
  }
  if (r < 0 && !self->failed_) {
    self->failed_ = true;
    self->failure_ = bus_error(std::string("read signal ") + std::string(member), r);
  }
  return 0;
}

Result<Event> Client::next_event(AgentStatus& status) {
  target_ = &status;
  while (events_.empty() && !failed_) {
    int r = sd_bus_process(bus_.get(), nullptr);
    if (r < 0) {
      target_ = nullptr;
      return bus_error("D-Bus connection", r);
    }
    if (r > 0) continue;
    if ((r = sd_bus_wait(bus_.get(), UINT64_MAX)) < 0 && r != -EINTR) {
      target_ = nullptr;
      return bus_error("wait on the D-Bus connection", r);
    }
  }
  target_ = nullptr;
  if (failed_) return failure_;
  Event e = std::move(events_.front());
  events_.pop_front();
  return e;
}

}  // namespace abup::agent::dbus
