#include "agent/daemon/phase.hpp"

#include "agent/daemon/log.hpp"
#include "agent/dbus/api.hpp"

namespace abup::agent::daemon {

std::optional<Transition> find_transition(Phase from, Trigger trigger) {
  for (const auto& t : kTransitions)
    if (t.from == from && t.trigger == trigger) return t;
  return std::nullopt;
}

std::string_view name(Phase phase) {
  switch (phase) {
    case Phase::init:
      return "init";
    case Phase::starting:
      return "starting";
    case Phase::idle:
      return "idle";
    case Phase::busy:
      return "busy";
    case Phase::waiting:
      return "waiting";
    case Phase::rebooting:
      return "rebooting";
    case Phase::cancelling:
      return "cancelling";
    case Phase::watching:
      return "watching";
    case Phase::stopping:
      return "stopping";
    case Phase::stopped:
      return "stopped";
    case Phase::aks_idle:
      return "aks_idle";
    case Phase::aks_staging:
      return "aks_staging";
    case Phase::aks_arming:
      return "aks_arming";
    case Phase::aks_armed:
      return "aks_armed";
  }
  return "?";
}

std::string_view name(Trigger trigger) {
  switch (trigger) {
    case Trigger::start:
      return "start";
    case Trigger::watch:
      return "watch";
    case Trigger::check_due:
      return "check_due";
    case Trigger::check_now:
      return "check_now";
    case Trigger::stage:
      return "stage";
    case Trigger::finalize:
      return "finalize";
    case Trigger::rollback:
      return "rollback";
    case Trigger::cancel:
      return "cancel";
    case Trigger::wait:
      return "wait";
    case Trigger::reboot:
      return "reboot";
    case Trigger::done:
      return "done";
    case Trigger::stop:
      return "stop";
    case Trigger::armed:
      return "armed";
    case Trigger::committed:
      return "committed";
    case Trigger::kept_armed:
      return "kept_armed";
  }
  return "?";
}

std::string_view name(Action action) {
  switch (action) {
    case Action::none:
      return "none";
    case Action::start_commit:
      return "start_commit";
    case Action::start_watch:
      return "start_watch";
    case Action::start_round:
      return "start_round";
    case Action::start_stage:
      return "start_stage";
    case Action::start_finalize:
      return "start_finalize";
    case Action::start_rollback:
      return "start_rollback";
    case Action::start_wait:
      return "start_wait";
    case Action::start_reboot:
      return "start_reboot";
    case Action::cancel_worker:
      return "cancel_worker";
    case Action::finish:
      return "finish";
    case Action::finish_stopped:
      return "finish_stopped";
    case Action::end_loop:
      return "end_loop";
  }
  return "?";
}

std::optional<std::string_view> published_state(Phase phase) {
  switch (phase) {
    case Phase::starting:
      return dbus::kStateCommitting;
    case Phase::waiting:
      return dbus::kStateArmed;
    case Phase::rebooting:
      return dbus::kStateRebooting;
    default:
      return std::nullopt;
  }
}

std::string_view name(Owed owed) {
  switch (owed) {
    case Owed::nothing:
      return "nothing";
    case Owed::commit:
      return "commit";
    case Owed::health_then_commit:
      return "health_then_commit";
    case Owed::fall_back:
      return "fall_back";
    case Owed::reboot:
      return "reboot";
    case Owed::release_lock:
      return "release_lock";
    case Owed::resume:
      return "resume";
    case Owed::report_commit:
      return "report_commit";
  }
  return "?";
}

namespace {

// aks mode: aks.json alone. A pending commit in state.json that aks.json did not arm (the CLI
// armed it) is not the control plane's to hear about; an armed record whose pending commit is
// gone (committed by the start-up or `abup commit`) is still reported, from history.jsonl.
Start derive_aks(const aks::AksState& aks) {
  Start s;
  s.phase = aks.armed ? Phase::aks_armed : Phase::aks_idle;
  if (aks.armed) {
    s.owed = Owed::report_commit;
    s.resume = aks.in_flight.has_value();
  } else if (aks.in_flight) {
    s.owed = Owed::resume;
  }
  return s;
}

}  // namespace

Start derive_start(Mode mode, const State& state, const DaemonState& ds, const aks::AksState& aks,
                   std::string_view boot_id, std::optional<char> booted) {
  if (mode == Mode::aks) return derive_aks(aks);
  Start s;
  const auto& p = state.pending;
  // A commit armed in this boot is not rebooted into yet: a FleetLock slot held now is that
  // reboot's, not one to release.
  const bool before_this_boot = p && p->boot_id != boot_id;
  s.release_lock = ds.fleetlock_held && (!p || before_this_boot);
  if (before_this_boot) {
    s.phase = Phase::starting;
    // The health gate is for a finalize's new slot running now; the booted slot is the running
    // system's word. Without a pending commit a failed gate's record is stale and ignored.
    const bool on_target = booted && *booted == p->target_slot;
    if (on_target && p->kind == PendingKind::finalize)
      s.owed = ds.health_failed_boot_id == boot_id ? Owed::fall_back : Owed::health_then_commit;
    else
      s.owed = Owed::commit;
  } else if (p && p->kind == PendingKind::finalize) {
    s.phase = Phase::waiting;
    s.owed = Owed::reboot;
  } else if (s.release_lock) {
    s.phase = Phase::starting;
    s.owed = Owed::release_lock;
    s.release_lock = false;
  }
  return s;
}

std::optional<Transition> PhaseMachine::fire(Trigger trigger, std::string_view why) {
  auto t = find_transition(phase_, trigger);
  if (!t) {
    // A request or timer meeting the wrong phase is ordinary (the caller answers Busy); the
    // worker's or waiter's ends meeting one is a bug in the daemon.
    const bool outside = trigger == Trigger::check_due || trigger == Trigger::check_now ||
                         trigger == Trigger::stage || trigger == Trigger::finalize ||
                         trigger == Trigger::rollback || trigger == Trigger::cancel ||
                         trigger == Trigger::stop;
    log(Event::error, outside ? Priority::info : Priority::err,
        "daemon phase " + std::string(name(phase_)) + ": '" + std::string(name(trigger)) +
            "' refused (no transition)" + (why.empty() ? "" : " [" + std::string(why) + "]"),
        {{"PHASE", std::string(name(phase_))}, {"TRIGGER", std::string(name(trigger))}});
    return std::nullopt;
  }
  phase_ = t->to;
  return t;
}

}  // namespace abup::agent::daemon
