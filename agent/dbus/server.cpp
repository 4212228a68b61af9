#include "agent/dbus/server.hpp"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <cstring>
#include <string_view>
#include <vector>

#include "agent/dbus/bus.hpp"

namespace abup::agent::dbus {
namespace {

constexpr auto kChange = SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE;

const sd_bus_vtable kVtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_PROPERTY("Mode", "s", Server::get_property, 0, kChange),
    SD_BUS_PROPERTY("State", "s", Server::get_property, 0, kChange),
    SD_BUS_PROPERTY("Progress", "(stt)", Server::get_property, 0, kChange),
    SD_BUS_PROPERTY("BootedSlot", "s", Server::get_property, 0, kChange),
    SD_BUS_PROPERTY("NextSlot", "s", Server::get_property, 0, kChange),
    SD_BUS_PROPERTY("DefaultSlot", "s", Server::get_property, 0, kChange),
    SD_BUS_PROPERTY("BootedVersion", "s", Server::get_property, 0, kChange),
    SD_BUS_PROPERTY("StagedVersion", "s", Server::get_property, 0, kChange),
    SD_BUS_PROPERTY("AvailableVersion", "s", Server::get_property, 0, kChange),
    SD_BUS_PROPERTY("LastError", "(ss)", Server::get_property, 0, kChange),
    SD_BUS_PROPERTY("OperationId", "s", Server::get_property, 0, kChange),
    SD_BUS_PROPERTY("LastCheck", "t", Server::get_property, 0, kChange),
    SD_BUS_METHOD_WITH_NAMES("CheckNow", "", "", "s", SD_BUS_PARAM(operation_id), Server::method,
                             SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_NAMES("Stage", "s", SD_BUS_PARAM(version_or_url), "s",
                             SD_BUS_PARAM(operation_id), Server::method,
                             SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_NAMES("Finalize", "b", SD_BUS_PARAM(reboot), "a{ss}", SD_BUS_PARAM(outcome),
                             Server::method, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_NAMES("Rollback", "bb", SD_BUS_PARAM(reboot) SD_BUS_PARAM(force), "a{ss}",
                             SD_BUS_PARAM(outcome), Server::method, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_NAMES("Cancel", "", "", "s", SD_BUS_PARAM(operation_id), Server::method,
                             SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_SIGNAL_WITH_NAMES("StateChanged", "sss",
                             SD_BUS_PARAM(state) SD_BUS_PARAM(previous) SD_BUS_PARAM(operation_id),
                             0),
    SD_BUS_VTABLE_END,
};

int reply_error(sd_bus_error* error, const ApiError& e) {
  const std::string name = error_name(e.code);
  return sd_bus_error_set(error, name.c_str(), e.message.c_str());
}

int reply_outcome(sd_bus_message* m, const OutcomeMap& map) {
  sd_bus_message* reply = nullptr;
  int r = sd_bus_message_new_method_return(m, &reply);
  if (r < 0) return r;
  r = sd_bus_message_open_container(reply, 'a', "{ss}");
  for (auto it = map.begin(); r >= 0 && it != map.end(); ++it)
    r = sd_bus_message_append(reply, "{ss}", it->first.c_str(), it->second.c_str());
  if (r >= 0) r = sd_bus_message_close_container(reply);
  if (r >= 0) r = sd_bus_send(nullptr, reply, nullptr);
  sd_bus_message_unref(reply);
  return r;
}

// A reply to a call answered after its handler returned (Finalize, Rollback).
void send_outcome(sd_bus_message* m, const Reply<OutcomeMap>& r) {
  if (const auto* e = std::get_if<ApiError>(&r)) {
    sd_bus_error err = SD_BUS_ERROR_NULL;
    (void)reply_error(&err, *e);
    (void)sd_bus_reply_method_error(m, &err);
    sd_bus_error_free(&err);
    return;
  }
  (void)reply_outcome(m, std::get<OutcomeMap>(r));
}

// Progress is announced in steps of 1/200 of its total, not on every chunk.
bool progress_worth_sending(const Progress& sent, const Progress& now) {
  if (sent.phase != now.phase || sent.total != now.total) return true;
  if (now.done == sent.done) return false;
  if (now.total == 0 || now.done == now.total) return true;
  return now.done * 200 / now.total != sent.done * 200 / now.total;
}

}  // namespace

Result<std::unique_ptr<Server>> Server::start(sd_bus* bus, Handler& handler, AgentStatus initial,
                                              std::string caller_group) {
  std::unique_ptr<Server> s(new Server(bus, handler, std::move(initial), std::move(caller_group)));
  s->progress_sent_ = s->status_.progress;
  int r = sd_bus_add_object_vtable(bus, &s->slot_, kObjectPath, kInterface, kVtable, s.get());
  if (r < 0) return bus_error(std::string("export ") + kObjectPath, r);
  r = sd_bus_request_name(bus, kBusName, 0);
  if (r == -EEXIST)
    return make_error(Errc::refused, std::string("D-Bus name ") + kBusName +
                                         " is owned by another process (is abup already running?)");
  if (r < 0) return bus_error(std::string("request D-Bus name ") + kBusName, r);
  s->named_ = true;
  return s;
}

Server::~Server() {
  if (named_) (void)sd_bus_release_name(bus_, kBusName);
  sd_bus_slot_unref(slot_);
}

int Server::get_property(sd_bus*, const char*, const char*, const char* property,
                         sd_bus_message* reply, void* userdata, sd_bus_error*) {
  const auto& s = static_cast<Server*>(userdata)->status_;
  const std::string_view p = property;
  auto str = [&](const std::string& v) { return sd_bus_message_append(reply, "s", v.c_str()); };
  if (p == "Mode") return str(s.mode);
  if (p == "State") return str(s.state);
  if (p == "Progress")
    return sd_bus_message_append(reply, "(stt)", s.progress.phase.c_str(), s.progress.done,
                                 s.progress.total);
  if (p == "BootedSlot") return str(s.booted_slot);
  if (p == "NextSlot") return str(s.next_slot);
  if (p == "DefaultSlot") return str(s.default_slot);
  if (p == "BootedVersion") return str(s.booted_version);
  if (p == "StagedVersion") return str(s.staged_version);
  if (p == "AvailableVersion") return str(s.available_version);
  if (p == "LastError")
    return sd_bus_message_append(reply, "(ss)", s.last_error_code.c_str(), s.last_error.c_str());
  if (p == "OperationId") return str(s.operation_id);
  if (p == "LastCheck") return sd_bus_message_append(reply, "t", s.last_check);
  return -ENOENT;
}

int Server::method(sd_bus_message* m, void* userdata, sd_bus_error* error) {
  return static_cast<Server*>(userdata)->call(m, error);
}

std::string Server::refused_caller(sd_bus_message* m) const {
  // The uid comes from the bus (the kernel's peer credentials of the sender's connection), not
  // from /proc: the unit's ProtectProc=invisible hides other users' processes from the daemon.
  // Group membership is the user database's, as dbus-daemon judges <policy group="...">.
  sd_bus_creds* creds = nullptr;
  if (sd_bus_query_sender_creds(m, SD_BUS_CREDS_UID | SD_BUS_CREDS_EUID, &creds) < 0)
    return "a caller whose credentials are unknown";
  std::unique_ptr<sd_bus_creds, decltype(&sd_bus_creds_unref)> hold(creds, sd_bus_creds_unref);
  uid_t uid = 0;
  if (sd_bus_creds_get_euid(creds, &uid) < 0 && sd_bus_creds_get_uid(creds, &uid) < 0)
    return "a caller whose user is unknown";
  if (uid == 0 || uid == ::geteuid()) return {};
  const std::string who =
      "uid " + std::to_string(uid) + " (not root, not in group " + caller_group_ + ")";
  const struct group* gr = caller_group_.empty() ? nullptr : ::getgrnam(caller_group_.c_str());
  const struct passwd* pw = ::getpwuid(uid);
  if (gr == nullptr || pw == nullptr) return who;
  std::vector<gid_t> groups(64);
  int n = static_cast<int>(groups.size());
  if (::getgrouplist(pw->pw_name, pw->pw_gid, groups.data(), &n) < 0) {
    groups.resize(static_cast<std::size_t>(n));
    if (::getgrouplist(pw->pw_name, pw->pw_gid, groups.data(), &n) < 0) return who;
  }
  for (int i = 0; i < n; ++i)
    if (groups[static_cast<std::size_t>(i)] == gr->gr_gid) return {};
  return who;
}

int Server::call(sd_bus_message* m, sd_bus_error* error) {
  const std::string_view member = sd_bus_message_get_member(m);
  if (const std::string who = refused_caller(m); !who.empty())
    return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                             "%s may not call %s: only root and group %s may change the slots",
                             who.c_str(), std::string(member).c_str(), caller_group_.c_str());
  auto answer_string = [&](Reply<std::string> r) {
    if (auto* e = std::get_if<ApiError>(&r)) return reply_error(error, *e);
    return sd_bus_reply_method_return(m, "s", std::get<std::string>(r).c_str());
  };
  // The call is kept (a reference) until the handler answers; the reply may come after this
  // returns, from the loop that drives the bus. A reply that comes after the server is gone
  // still goes out on the call's connection, without the wake.
  auto later = [this, m] {
    std::shared_ptr<sd_bus_message> call(sd_bus_message_ref(m), sd_bus_message_unref);
    std::weak_ptr<bool> alive = alive_;
    return [this, call, alive](Reply<OutcomeMap> r) {
      send_outcome(call.get(), r);
      if (alive.lock() && wake_) wake_();
    };
  };
  int r = 0;
  if (member == "CheckNow") return answer_string(handler_.check_now());
  if (member == "Cancel") return answer_string(handler_.cancel());
  if (member == "Stage") {
    const char* what = nullptr;
    if ((r = sd_bus_message_read(m, "s", &what)) < 0) return r;
    return answer_string(handler_.stage(what));
  }
  if (member == "Finalize") {
    int reboot = 0;
    if ((r = sd_bus_message_read(m, "b", &reboot)) < 0) return r;
    handler_.finalize(reboot != 0, later());
    return 1;
  }
  if (member == "Rollback") {
    int reboot = 0, force = 0;
    if ((r = sd_bus_message_read(m, "bb", &reboot, &force)) < 0) return r;
    handler_.rollback(reboot != 0, force != 0, later());
    return 1;
  }
  return sd_bus_error_setf(error, SD_BUS_ERROR_UNKNOWN_METHOD, "no method %s",
                           std::string(member).c_str());
}

void Server::update(const AgentStatus& next) {
  const AgentStatus prev = std::move(status_);
  status_ = next;
  std::vector<const char*> changed;
  auto note = [&](bool differs, const char* name) {
    if (differs) changed.push_back(name);
  };
  note(prev.mode != next.mode, "Mode");
  note(prev.state != next.state, "State");
  if (progress_worth_sending(progress_sent_, next.progress)) {
    changed.push_back("Progress");
    progress_sent_ = next.progress;
  }
  note(prev.booted_slot != next.booted_slot, "BootedSlot");
  note(prev.next_slot != next.next_slot, "NextSlot");
  note(prev.default_slot != next.default_slot, "DefaultSlot");
  note(prev.booted_version != next.booted_version, "BootedVersion");
  note(prev.staged_version != next.staged_version, "StagedVersion");
  note(prev.available_version != next.available_version, "AvailableVersion");
  note(prev.last_error_code != next.last_error_code || prev.last_error != next.last_error,
       "LastError");
  note(prev.operation_id != next.operation_id, "OperationId");
  note(prev.last_check != next.last_check, "LastCheck");
  if (changed.empty()) return;
  changed.push_back(nullptr);
  // A failed emission (the connection died) is seen by whoever drives the bus.
  (void)sd_bus_emit_properties_changed_strv(bus_, kObjectPath, kInterface,
                                            const_cast<char**>(changed.data()));
  if (prev.state != next.state)
    (void)sd_bus_emit_signal(bus_, kObjectPath, kInterface, "StateChanged", "sss",
                             next.state.c_str(), prev.state.c_str(), next.operation_id.c_str());
  if (wake_) wake_();
}

}  // namespace abup::agent::dbus
