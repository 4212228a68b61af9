#include "agent/aks/aks.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "abup/version.hpp"
#include "agent/aks/aks_store.hpp"
#include "agent/aks/mailbox.hpp"
#include "agent/daemon/phase.hpp"
#include "agent/dbus/api.hpp"
#include "agent/host.hpp"
#include "agent/kube/client.hpp"
#include "agent/lifecycle_guard.hpp"
#include "agent/stage.hpp"
#include "agent/state.hpp"
#include "update-protocol/aks/contract.hpp"
#include "update-protocol/omaha/omaha.hpp"

namespace abup::agent::aks {

namespace contract = protocol::aks;
namespace omaha = protocol::omaha;
using contract::Code;
using contract::Operation;
using Clock = std::chrono::steady_clock;
using daemon::Phase;
using daemon::Trigger;

namespace {

std::string node_name_for(const Config& c) {
  if (!c.node_name.empty()) return c.node_name;
  char buf[256] = {};
  ::gethostname(buf, sizeof buf - 1);
  std::string n = buf;
  std::transform(n.begin(), n.end(), n.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  return n;
}

struct WorkResult {
  Code code = Code::success;
  std::string message;
  std::string to_version = {};
  std::string pending_operation_id = {};  // finalize/rollback: state.json's pending commit
};

class Agent {
 public:
  Agent(const AksOptions& o, const std::atomic<bool>& stop,
        const std::function<void(std::string_view)>& on_status, kube::Client client)
      : o_(o),
        stop_(stop),
        on_status_(on_status),
        client_(std::move(client)),
        name_(node_name_for(o.config)),
        prefix_(o.config.annotation_prefix + "/") {}

  Status run();

 private:
  // Reporting.
  void say(const std::string& line) {
    std::fprintf(stderr, "abup aks: %s\n", line.c_str());
    if (on_status_) on_status_(line);
  }
  // At least a second: a zero Heartbeat= must not turn into a PATCH loop.
  [[nodiscard]] std::chrono::seconds beat() const {
    return std::max(o_.config.heartbeat, std::chrono::seconds(1));
  }
  [[nodiscard]] std::string key(std::string_view k) const { return prefix_ + std::string(k); }
  // Writes a status annotation; terminal ones are retried until written (or the Node is gone,
  // or stop); InProgress is best effort (the next heartbeat tries again).
  void write_status(const contract::OperationStatus& s, bool commit_phase);
  void post_event(const std::string& type, const std::string& reason, const std::string& msg);
  void finish(contract::OperationStatus s, bool commit_phase);
  void persist() {
    if (auto st = AksStore(o_.where.state_dir).save(state_); !st)
      say("cannot save aks state: " + st.error().message);
  }

  // The contract.
  void handle(const std::string& text);
  // `superseded`: a resumed arming's record of the arming it replaces (aks.json inFlight).
  void start(const contract::Request& r, std::optional<Armed> superseded = std::nullopt);
  void heartbeat();
  void reap();
  [[nodiscard]] bool settle_armed(const contract::Request& r, const WorkResult& w,
                                  std::optional<Armed> superseded);
  void handle_commit();
  void send_omaha(const contract::Request& r, const std::vector<omaha::Event>& events,
                  bool with_check);
  [[nodiscard]] contract::OperationStatus base(const contract::Request& r,
                                               const std::string& started) const;
  [[nodiscard]] omaha::Identity identity(const contract::Request& r) const;
  [[nodiscard]] WorkResult do_stage(const contract::Request& r);
  [[nodiscard]] WorkResult do_arm(const contract::Request& r);
  void watch_loop();
  // Fires `trigger` on the agent's machine (agent/daemon/phase.hpp, the aks_* rows).
  bool fire(Trigger trigger, const std::string& operation_id) {
    return phase_.fire(trigger, "aks operation " + operation_id).has_value();
  }

  const AksOptions& o_;
  const std::atomic<bool>& stop_;
  const std::function<void(std::string_view)>& on_status_;
  kube::Client client_;
  std::string name_, prefix_;
  kube::NodeObject node_;
  AksState state_;
  daemon::PhaseMachine phase_{Phase::aks_idle};
  HostFacts host_;
  Mailbox<kube::NodeObject, WorkResult> mail_;
  bool gone_ = false;
  std::string last_request_;  // the request text acted on last
  std::string last_broken_;   // a broken request already answered with an Event
  std::atomic<bool> cancel_work_{false};
  std::thread worker_;
  Clock::time_point next_beat_{};
};

contract::OperationStatus Agent::base(const contract::Request& r,
                                      const std::string& started) const {
  contract::OperationStatus s;
  s.node_update_id = r.node_update_id;
  s.operation_id = r.operation_id;
  s.operation = r.operation;
  s.started_utc = started.empty() ? now_utc() : started;
  s.last_updated_utc = now_utc();
  s.from_version = host_.version ? host_.version->text : "";
  s.to_version = r.target_version;
  return s;
}

void Agent::write_status(const contract::OperationStatus& s, bool commit_phase) {
  auto text = contract::serialize_status(s);
  if (!text) {
    say("internal: " + text.error().message);
    return;
  }
  const std::string k = key(commit_phase ? contract::kCommitStatusKey : contract::kStatusKey);
  auto delay = std::chrono::milliseconds(200);
  while (!gone_ && !stop_) {
    auto r = client_.patch_annotations(name_, {{k, *text}});
    if (r) {
      node_ = *r;
      return;
    }
    if (r.error().code == Errc::not_found) {
      gone_ = true;
      say("Node " + name_ + " is gone: the update was abandoned, reporting stops");
      return;
    }
    say("writing " + k + " failed: " + r.error().message);
    if (!contract::is_terminal(s.code)) return;
    for (auto until = Clock::now() + delay; Clock::now() < until && !stop_;)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    delay = std::min<std::chrono::milliseconds>(delay * 2, std::chrono::seconds(10));
  }
}

void Agent::post_event(const std::string& type, const std::string& reason, const std::string& msg) {
  if (gone_) return;
  if (auto st = client_.post_event(node_, {type, reason, contract::cap_message(msg)}); !st)
    say("posting Event " + reason + " failed: " + st.error().message);
}

// A terminal status: cached and persisted first (a restart re-serves it), then written, then an
// Event on the Node.
void Agent::finish(contract::OperationStatus s, bool commit_phase) {
  s.last_updated_utc = now_utc();
  s.finished_utc = s.last_updated_utc;
  s.message = contract::cap_message(s.message);
  state_.remember(s, commit_phase);
  persist();
  write_status(s, commit_phase);
  std::string op(contract::to_string(s.operation));
  op[0] = static_cast<char>(std::toupper(op[0]));
  const bool ok = s.code == Code::success || s.code == Code::already_at_target;
  post_event(ok ? "Normal" : "Warning", "Update" + op + std::string(contract::to_string(s.code)),
             "operation " + s.operation_id + ": " + s.message);
  say(std::string(contract::to_string(s.operation)) + " " + s.operation_id + ": " +
      std::string(contract::to_string(s.code)) + ": " + s.message);
  if (ok && o_.on_step) {
    const bool armed = !commit_phase && s.code == Code::success &&
                       (s.operation == Operation::finalize || s.operation == Operation::rollback);
    const bool staged = !commit_phase && s.code == Code::success && s.operation == Operation::stage;
    o_.on_step(armed    ? dbus::kStateArmed
               : staged ? dbus::kStateStaged
                        : dbus::kStateIdle,
               s.operation_id);
  }
  if (!ok && o_.on_failed) o_.on_failed(s.operation_id, s.code, s.message);
}

omaha::Identity Agent::identity(const contract::Request& r) const {
  omaha::Identity who;
  who.server = r.server;
  who.app_id = r.app_id;
  who.track = r.track;
  who.version = host_.version ? host_.version->text : "";
  who.arch = host_.arch;
  who.machine_id = omaha::machine_id_for(host_.machine_id, o_.config.machine_id_hashed);
  who.boot_id = host_.boot_id;
  return who;
}

void Agent::send_omaha(const contract::Request& r, const std::vector<omaha::Event>& events,
                       bool with_check) {
  if (r.server.empty()) return;
  omaha::Identity who = identity(r);
  Status st;
  if (with_check) {
    auto c = omaha::check(who, events, o_.transport);
    if (!c) st = std::move(c).error();
  } else {
    st = omaha::send_events(who, events, o_.transport);
  }
  if (!st) say("Omaha events to " + r.server + ": " + st.error().message);
}

WorkResult Agent::do_stage(const contract::Request& r) {
  // An armed slot (finalize or rollback waiting for its reboot) is never written: answered
  // before any download; stage() checks again under its locks.
  if (auto st = stage_preflight(o_.where); !st && st.error().code == Errc::refused)
    return {Code::operation_failed, "stage " + r.target_version + ": " + st.error().message};
  omaha::Identity who = identity(r);
  protocol::TransportOptions t = o_.transport;
  t.cancel = &cancel_work_;
  auto check = omaha::check(who, {}, t);
  if (!check)
    return {Code::operation_failed, "resolving " + r.target_version + ": " + check.error().message};
  if (check->kind != omaha::CheckResult::Kind::update || !check->offer)
    return {Code::operation_failed, "the update server offers no update for app " + r.app_id +
                                        " on track " + r.track + " (status " + check->app_status +
                                        ")"};
  auto offered = Version::parse(check->offer->version);
  auto wanted = Version::parse(r.target_version);
  if (!offered || !wanted || !(*offered == *wanted))
    return {Code::invalid_request, "targetVersion " + r.target_version +
                                       " is not what the update server offers on track " + r.track +
                                       " (" + check->offer->version + ")"};
  send_omaha(r, {omaha::Event::download_started()}, false);
  StageOptions so = stage_options(o_.where, o_.config);
  so.source = check->offer->url;
  so.expected_version = r.target_version;
  so.transport = t;
  so.on_progress = o_.on_progress;
  auto staged = stage(so);
  if (!staged) {
    send_omaha(r, {omaha::Event::failed(omaha::ErrorCode::generic)}, false);
    return {Code::operation_failed, "stage " + r.target_version + ": " + staged.error().message};
  }
  send_omaha(r, {omaha::Event::download_finished()}, false);
  if (o_.on_staged) o_.on_staged(*staged);
  return {Code::success,
          "staged " + staged->version + " on " + staged->slot_label + " and verified it",
          staged->version};
}

// finalize and rollback: quick, run on the main loop; Success means armed, reboot follows.
WorkResult Agent::do_arm(const contract::Request& r) {
  Result<Outcome> out = make_error(Errc::failed, "");
  if (r.operation == Operation::finalize) {
    FinalizeOptions fo;
    fo.where = o_.where;
    fo.version = r.target_version;
    fo.operation_id = r.operation_id;
    out = finalize(fo);
  } else {
    RollbackOptions ro;
    ro.where = o_.where;
    ro.operation_id = r.operation_id;
    out = rollback(ro);
  }
  if (!out) {
    if (r.operation == Operation::finalize)
      send_omaha(r, {omaha::Event::failed(omaha::ErrorCode::generic)}, false);
    return {Code::operation_failed, out.error().message};
  }
  return {Code::success, out->message, out->to_version, out->operation_id};
}

void Agent::start(const contract::Request& r, std::optional<Armed> superseded) {
  const std::string running = host_.version ? host_.version->text : "";
  auto s = base(r, "");
  if (r.operation != Operation::rollback && host_.version) {
    auto target = Version::parse(r.target_version);
    if (target && *target == *host_.version) {
      s.code = Code::already_at_target;
      s.message = "already running " + running;
      finish(s, false);
      return;
    }
  }
  if (r.operation == Operation::finalize &&
      (!state_.staged || state_.staged->node_update_id != r.node_update_id ||
       !Version::parse(state_.staged->version) ||
       !(*Version::parse(state_.staged->version) == *Version::parse(r.target_version)))) {
    s.code = Code::not_staged;
    s.message =
        "no successful stage of " + r.target_version + " for nodeUpdateId " + r.node_update_id +
        (state_.staged
             ? " (staged: " + state_.staged->version + " for " + state_.staged->node_update_id + ")"
             : "");
    finish(s, false);
    return;
  }
  const Trigger asked = r.operation == Operation::stage      ? Trigger::stage
                        : r.operation == Operation::finalize ? Trigger::finalize
                                                             : Trigger::rollback;
  if (!fire(asked, r.operation_id)) {
    // The table's one refusal here: a stage while a slot is armed. Answered before any download.
    auto st = stage_preflight(o_.where);
    s.code = Code::operation_failed;
    s.message = "stage " + r.target_version + ": " +
                (st ? "slot armed by operation " +
                          (state_.armed ? state_.armed->request.operation_id : std::string("?")) +
                          " waits for its reboot; stage after the commit"
                    : st.error().message);
    finish(s, false);
    return;
  }
  state_.in_flight = InFlight{r, s.started_utc, running};
  if (r.operation != Operation::stage)
    state_.in_flight->superseded =
        superseded ? std::move(superseded)
        : state_.armed && state_.armed->request.operation_id != r.operation_id ? state_.armed
                                                                               : std::nullopt;
  persist();
  s.code = Code::in_progress;
  s.message = std::string(contract::to_string(r.operation)) + " started";
  write_status(s, false);
  next_beat_ = Clock::now() + beat();
  if (r.operation == Operation::stage) {
    if (o_.on_step) o_.on_step(dbus::kStateStaging, r.operation_id);
    cancel_work_ = false;
    worker_ = std::thread([this, r] { mail_.post_work(do_stage(r)); });
    return;
  }
  // Armed in the state before the bootloader: a restart then knows to report the commit.
  state_.armed = Armed{r, s.started_utc, running, r.target_version};
  persist();
  mail_.post_work(do_arm(r));
}

void Agent::reap() {
  std::optional<WorkResult> w = mail_.take_work();
  if (!w || !state_.in_flight) return;
  if (worker_.joinable()) worker_.join();
  contract::Request r = state_.in_flight->request;
  auto s = base(r, state_.in_flight->started_utc);
  s.code = w->code;
  s.message = w->message;
  if (!w->to_version.empty()) s.to_version = w->to_version;
  std::optional<Armed> superseded = std::move(state_.in_flight->superseded);
  state_.in_flight.reset();
  const bool armed = r.operation != Operation::stage && w->code == Code::success;
  if (r.operation == Operation::stage && w->code == Code::success)
    state_.staged = Staged{r.node_update_id, s.to_version, r.operation_id};
  const bool kept = r.operation != Operation::stage && settle_armed(r, *w, std::move(superseded));
  (void)fire(armed ? Trigger::armed : kept ? Trigger::kept_armed : Trigger::done, r.operation_id);
  finish(s, false);
  if (!armed) return;
  if (r.operation == Operation::finalize) send_omaha(r, {omaha::Event::installed()}, false);
  if (gone_ || stop_) return;
  say("rebooting into " + s.to_version);
  if (o_.on_step) o_.on_step(dbus::kStateRebooting, r.operation_id);
  if (o_.reboot)
    if (auto st = o_.reboot(); !st) say("reboot failed: " + st.error().message);
}

// After finalize or rollback: the armed record is the arming whose pending commit state.json
// holds. On success that is this one (its pending commit may be an earlier finalize's of the same
// version, re-armed). On failure it is the arming this one replaced, when its pending commit is
// still there (the bootloader still has it armed), so its commit is reported after the reboot;
// else none. True when a failed arming leaves a slot armed.
bool Agent::settle_armed(const contract::Request& r, const WorkResult& w,
                         std::optional<Armed> superseded) {
  if (w.code == Code::success) {
    state_.armed->to_version = w.to_version.empty() ? state_.armed->to_version : w.to_version;
    state_.armed->pending_operation_id =
        w.pending_operation_id == r.operation_id ? "" : w.pending_operation_id;
    return false;
  }
  std::optional<std::string> pending;
  if (auto st = StateStore(o_.where.state_dir).load(); !st)
    say("after a failed " + std::string(contract::to_string(r.operation)) + ": " +
        st.error().message);
  else if (st->pending)
    pending = st->pending->operation_id;
  if (pending && superseded && *pending == superseded->pending_id())
    state_.armed = std::move(superseded);
  else if (!pending || *pending != r.operation_id)
    state_.armed.reset();
  return state_.armed.has_value();
}

void Agent::heartbeat() {
  if (!state_.in_flight || Clock::now() < next_beat_) return;
  next_beat_ = Clock::now() + beat();
  auto s = base(state_.in_flight->request, state_.in_flight->started_utc);
  s.code = Code::in_progress;
  s.message = std::string(contract::to_string(s.operation)) + " running";
  write_status(s, false);
}

void Agent::handle(const std::string& text) {
  auto parsed = contract::parse_request(text);
  if (!parsed) {
    auto salvage = contract::salvage_request(text);
    if (!salvage.answerable) {
      if (text == last_broken_) return;
      last_broken_ = text;
      say("request too broken to answer: " + parsed.error().message);
      post_event("Warning", "UpdateRequestInvalid", parsed.error().message);
      return;
    }
    if (auto* c = state_.find(salvage.operation_id); c && c->operation) {
      auto again = *c->operation;
      again.last_updated_utc = now_utc();
      write_status(again, false);
      return;
    }
    contract::OperationStatus s;
    s.node_update_id = salvage.node_update_id;
    s.operation_id = salvage.operation_id;
    s.operation = salvage.operation;
    s.started_utc = now_utc();
    s.to_version = salvage.target_version;
    s.from_version = host_.version ? host_.version->text : "";
    s.code = Code::invalid_request;
    s.message = parsed.error().message;
    finish(s, false);
    return;
  }
  const contract::Request& r = *parsed;
  if (auto* c = state_.find(r.operation_id); c && c->operation) {
    auto again = *c->operation;  // idempotent: re-served with a fresh lastUpdatedUtc
    again.last_updated_utc = now_utc();
    write_status(again, false);
    say("re-served " + r.operation_id + " (" + std::string(contract::to_string(again.code)) + ")");
    return;
  }
  if (state_.in_flight) {
    if (state_.in_flight->request.operation_id == r.operation_id) return;  // running
    auto s = base(r, "");
    s.code = Code::invalid_request;
    s.message = "operation " + state_.in_flight->request.operation_id + " (" +
                std::string(contract::to_string(state_.in_flight->request.operation)) +
                ") is in flight; a new operationId is refused until it finishes";
    finish(s, false);
    return;
  }
  start(r);
}

// After a reboot (or a restart): report the commit of what finalize/rollback armed.
void Agent::handle_commit() {
  if (!state_.armed || state_.in_flight) return;
  const Armed a = *state_.armed;
  auto st = StateStore(o_.where.state_dir).load();
  if (!st) return say("commit: " + st.error().message);
  std::optional<OutcomeCode> code;
  std::string message;
  if (st->pending && st->pending->operation_id == a.pending_id()) {
    auto out = commit(o_.where);
    if (!out) return say("commit: " + out.error().message);
    code = out->code;
    message = out->message;
  } else {
    // Somebody (the daemon's start-up, `abup commit`) committed already: history says how.
    auto history = read_history(o_.where.state_dir);
    if (history)
      for (auto it = history->rbegin(); it != history->rend(); ++it)
        if (it->kind == to_string(OutcomeKind::commit) && it->operation_id == a.pending_id()) {
          const std::string& word = it->outcome;
          // A word this abup does not know is reported as it is, as an internal error.
          if (auto parsed = parse_outcome_code(word); parsed)
            code = *parsed;
          else if (!word.empty())
            code = OutcomeCode::nothing_pending;
          message = "commit of operation " + a.request.operation_id + ": " + word;
          break;
        }
  }
  if (!code || *code == OutcomeCode::not_rebooted) return;  // not rebooted yet: nothing to report
  contract::OperationStatus s;
  s.node_update_id = a.request.node_update_id;
  s.operation_id = a.request.operation_id;
  s.operation = Operation::commit;
  s.started_utc = now_utc();
  s.from_version = a.from_version;
  s.to_version = a.to_version;
  s.message = message;
  s.code = *code == OutcomeCode::committed            ? Code::success
           : *code == OutcomeCode::target_boot_failed ? Code::target_boot_failed
                                                      : Code::agent_internal_error;
  state_.armed.reset();
  (void)fire(Trigger::committed, s.operation_id);
  finish(s, true);
  if (a.request.operation != Operation::finalize) return;
  if (s.code == Code::success)
    send_omaha(a.request, {omaha::Event::updated_from(a.from_version)}, true);
  else
    send_omaha(a.request, {omaha::Event::failed(omaha::ErrorCode::fell_back)}, false);
}

void Agent::watch_loop() {
  std::string rv = node_.resource_version;
  auto backoff = std::chrono::milliseconds(200);
  auto deliver = [&](const kube::NodeObject& n) { mail_.post_node(n); };
  while (!stop_) {
    auto end = client_.watch_node(name_, rv, o_.watch_timeout_seconds, stop_,
                                  [&](const kube::NodeObject& n) {
                                    deliver(n);
                                    return true;
                                  });
    if (end && *end == kube::WatchEnd::closed) {
      backoff = std::chrono::milliseconds(200);
      continue;
    }
    if (end && *end == kube::WatchEnd::stopped) return;
    if (!end && end.error().code == Errc::not_found) return mail_.post_gone();
    if (!end) say("watch: " + end.error().message);
    // Expired or broken: list again (a change made meanwhile is not lost), then watch from there.
    for (auto until = Clock::now() + backoff; Clock::now() < until && !stop_;)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    backoff = std::min<std::chrono::milliseconds>(backoff * 2, std::chrono::seconds(10));
    auto n = client_.get_node(name_);
    if (n) {
      rv = n->resource_version;
      deliver(*n);
    } else if (n.error().code == Errc::not_found) {
      return mail_.post_gone();
    }
  }
}

Status Agent::run() {
  ABUP_TRY(host_, read_host_facts(o_.where.root));
  ABUP_TRY(state_, AksStore(o_.where.state_dir).load());
  for (auto delay = std::chrono::milliseconds(500);;) {
    auto n = client_.get_node(name_);
    if (n) {
      node_ = *n;
      break;
    }
    if (n.error().code == Errc::not_found)
      return make_error(Errc::not_found, "Node " + name_ + " does not exist: nothing to report to");
    say("GET Node " + name_ + ": " + n.error().message);
    for (auto until = Clock::now() + delay; Clock::now() < until;) {
      if (stop_) return {};
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    delay = std::min<std::chrono::milliseconds>(delay * 2, std::chrono::seconds(30));
  }
  // aks.json decides (agent/daemon/phase.hpp derive_start): the commit report owed for what was
  // armed, then an operation cut short by a restart again (stage resumes, arming is idempotent).
  const auto from = daemon::derive_start(Mode::aks, {}, {}, state_, host_.boot_id, std::nullopt);
  phase_ = daemon::PhaseMachine(from.phase);
  std::optional<InFlight> resume;
  if (from.owed == daemon::Owed::resume || from.resume) {
    resume = std::move(state_.in_flight);
    state_.in_flight.reset();
  }
  if (from.owed == daemon::Owed::report_commit) handle_commit();
  if (resume && !state_.find(resume->request.operation_id))
    start(resume->request, std::move(resume->superseded));
  mail_.post_node(node_);
  std::thread watcher([this] { watch_loop(); });
  const std::string request_key = key(contract::kRequestKey);
  while (!stop_ && !gone_) {
    auto wake = state_.in_flight ? next_beat_ : Clock::now() + std::chrono::seconds(1);
    auto woken = mail_.wait(std::min(wake, Clock::now() + std::chrono::seconds(1)), stop_);
    if (woken.gone) gone_ = true;
    std::optional<kube::NodeObject> seen = std::move(woken.node);
    if (gone_) break;
    reap();
    if (seen) {
      node_.uid = seen->uid.empty() ? node_.uid : seen->uid;
      auto it = seen->annotations.find(request_key);
      std::string text = it == seen->annotations.end() ? "" : it->second;
      if (!text.empty() && text != last_request_) {
        last_request_ = text;
        handle(text);
        reap();
      }
    }
    heartbeat();
  }
  cancel_work_ = true;
  if (worker_.joinable()) worker_.join();
  watcher.join();
  if (gone_) {
    say("Node " + name_ + " was deleted: the update was abandoned; reporting stopped");
    return make_error(Errc::not_found, "Node " + name_ + " was deleted; reporting stopped");
  }
  return {};
}

}  // namespace

Status run_aks(const AksOptions& o, const std::atomic<bool>& stop,
               const std::function<void(std::string_view)>& on_status) {
  ABUP_TRY(auto k, kube::load_kubeconfig(o.config.kubeconfig));
  kube::Client client(std::move(k), o.transport);
  Agent agent(o, stop, on_status, std::move(client));
  return agent.run();
}

}  // namespace abup::agent::aks
