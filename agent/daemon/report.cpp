#include "agent/daemon/report.hpp"

#include <chrono>

#include "agent/daemon/log.hpp"
#include "agent/daemon/notify.hpp"
#include "agent/state.hpp"
#include "partitions/slots.hpp"

namespace abup::agent::daemon {

namespace {

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

std::string error_code_name(const Error& error) {
  const auto name = dbus::error_name(dbus::to_api_error(error).code);
  return name.substr(name.rfind('.') + 1);
}

Reporter::Reporter(Mode mode) {
  st_.mode = std::string(to_string(mode));
  m_.mode = mode;
  m_.state = st_.state;
  m_.known_states = {std::string(dbus::kStateIdle),       std::string(dbus::kStateChecking),
                     std::string(dbus::kStateStaging),    std::string(dbus::kStateStaged),
                     std::string(dbus::kStateArmed),      std::string(dbus::kStateRebooting),
                     std::string(dbus::kStateCommitting), std::string(dbus::kStateError)};
}

void Reporter::set_on_change(std::function<void()> hook) {
  std::lock_guard lock(mu_);
  hook_ = std::move(hook);
}

void Reporter::changed() {
  std::function<void()> hook;
  {
    std::lock_guard lock(mu_);
    hook = hook_;
  }
  if (hook) hook();
}

void Reporter::state(std::string_view state, const std::string& line) {
  if (!line.empty()) notify_status(line);
  {
    std::lock_guard lock(mu_);
    if (state != dbus::kStateStaging) st_.progress = {};
    st_.state = std::string(state);
    m_.state = st_.state;
  }
  changed();
}

void Reporter::operation(const std::string& id) {
  {
    std::lock_guard lock(mu_);
    st_.operation_id = id;
  }
  changed();
}

void Reporter::progress(const StageProgress& p) {
  {
    std::lock_guard lock(mu_);
    st_.progress = {p.phase, p.done, p.total};
  }
  changed();
}

void Reporter::checked(std::string_view result, const std::string& offered) {
  {
    std::lock_guard lock(mu_);
    const auto now = std::chrono::system_clock::now().time_since_epoch();
    st_.last_check = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(now).count());
    st_.available_version = offered;
    m_.last_check_time = unix_now();
    m_.last_check_result = std::string(result);
    if (result != "error") m_.last_successful_check_time = m_.last_check_time;
    ++m_.checks_total;
  }
  changed();
}

void Reporter::failed(const Error& error, const std::string& line) {
  failed(error_code_name(error), error.message, line);
}

void Reporter::failed(const std::string& code, const std::string& message,
                      const std::string& line) {
  if (!line.empty()) notify_status(line);
  {
    std::lock_guard lock(mu_);
    st_.last_error_code = code;
    st_.last_error = message;
    st_.state = std::string(dbus::kStateError);
    st_.progress = {};
    m_.state = st_.state;
    ++m_.failures_by_code[st_.last_error_code];
  }
  changed();
}

void Reporter::clear_error() {
  {
    std::lock_guard lock(mu_);
    st_.last_error_code.clear();
    st_.last_error.clear();
  }
  changed();
}

void Reporter::staged(const StageSummary& s) {
  {
    std::lock_guard lock(mu_);
    UpdateTransfer t;
    t.version = s.version;
    t.downloaded = s.downloaded;
    t.reused = s.reused + s.skipped;
    t.written = s.written + s.zeroed;
    t.duration_seconds = s.seconds;
    m_.last_update = t;
    m_.last_update_time = unix_now();
    st_.staged_version = s.version;
  }
  changed();
}

void Reporter::rolled_back() {
  {
    std::lock_guard lock(mu_);
    ++m_.rollbacks_total;
  }
  changed();
}

void Reporter::refresh_slots(const LifecycleOptions& where) {
  dbus::AgentStatus facts;
  if (auto st = dbus::read_slot_facts(where, facts); !st) {
    log(Event::error, Priority::warning, "reading the slots for the status: " + st.error().message);
    return;
  }
  std::optional<RecordedRelease> newest;
  if (auto pair = partitions::discover_slots(where.disk))
    newest = newest_recorded_release(StateStore(where.state_dir),
                                     {pair->a.partuuid(), pair->b.partuuid()});
  {
    std::lock_guard lock(mu_);
    m_.newest_release_version = newest ? newest->version : "";
    m_.newest_release_issued_at = newest ? newest->issued_at : 0;
    st_.booted_slot = facts.booted_slot;
    st_.next_slot = facts.next_slot;
    st_.default_slot = facts.default_slot;
    st_.booted_version = facts.booted_version;
    st_.staged_version = facts.staged_version;
    m_.booted.reset();
    m_.staged.reset();
    if (!facts.booted_slot.empty()) {
      m_.booted = SlotVersion{facts.booted_slot, facts.booted_version};
      if (!facts.staged_version.empty())
        m_.staged = SlotVersion{facts.booted_slot == "A" ? "B" : "A", facts.staged_version};
    }
  }
  changed();
}

dbus::AgentStatus Reporter::status() const {
  std::lock_guard lock(mu_);
  return st_;
}

MetricsSnapshot Reporter::metrics() const {
  std::lock_guard lock(mu_);
  return m_;
}

}  // namespace abup::agent::daemon
