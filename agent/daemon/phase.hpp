// The daemon's phase and its one transition table (docs/daemon.md "Phases"), for both modes.
// Two machines run over the table, each firing from one thread only: the event loop's (init ..
// stopped: the worker and the reboot waiter post their ends to the loop) and, in aks mode, the
// aks agent's on the worker (the aks_* phases: what the annotation contract has in flight,
// agent/aks/aks.cpp). A pair the table has no row for is refused and logged; nothing else
// decides what the daemon may do next.
//
// The phase says what the loop's threads are doing; the published State (D-Bus, metrics,
// `abup status`) keeps today's names: a phase maps to one (starting: committing, waiting: armed,
// rebooting: rebooting), or, while an operation runs, to the step the worker reports
// (checking, staging, staged, armed, ...).
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>

#include "agent/aks/aks_store.hpp"
#include "agent/daemon/daemon_state.hpp"
#include "agent/state.hpp"
#include "agent/vocabulary.hpp"

namespace abup::agent::daemon {

enum class Phase {
  init,        // before the loop runs
  starting,    // autonomous: the start-up commit (and its health gate) on the worker
  idle,        // nothing runs; the next check is scheduled
  busy,        // an operation on the worker: a round, Stage, Finalize or Rollback
  waiting,     // armed; the reboot waits for its window or FleetLock; the worker is free
  rebooting,   // the reboot runs on the worker
  cancelling,  // a Cancel reached the worker; it stops at its next safe point
  watching,    // aks mode: the control plane's watch runs on the worker
  stopping,    // SIGTERM/SIGINT while the worker runs: the loop ends after it
  stopped,     // the loop ends
  // The aks agent's machine (inside `watching`); aks.json persists what it needs to resume.
  aks_idle,     // no operation in flight, no slot armed by one
  aks_staging,  // a stage on the agent's stage thread (aks.json inFlight)
  aks_arming,   // finalize or rollback writing the boot configuration (inFlight and armed)
  aks_armed,    // armed: the reboot was asked, the commit is reported after it (armed)
};
inline constexpr std::size_t kPhaseCount = 14;

enum class Trigger {
  start,      // autonomous start-up
  watch,      // aks mode: (re)start the watch
  check_due,  // the check timer fired
  check_now,  // D-Bus CheckNow
  stage,      // D-Bus Stage
  finalize,   // D-Bus Finalize (the GPT/boot-config write runs on the worker)
  rollback,   // D-Bus Rollback (likewise)
  cancel,     // D-Bus Cancel
  wait,       // an operation left the slot armed for a window or FleetLock
  reboot,     // reboot now: the window opened, the lock was granted, or Finalize(reboot=true)
  done,       // the worker's operation ended (in waiting: the wait failed; aks: it failed)
  stop,       // SIGTERM/SIGINT
  // aks mode: stage, finalize and rollback are the update-request annotation's operations.
  armed,       // aks: finalize or rollback armed the slot
  committed,   // aks: the commit after the reboot was reported
  kept_armed,  // aks: finalize or rollback failed, and an earlier arming still waits for its reboot
};
inline constexpr std::size_t kTriggerCount = 15;

// What the loop does when the row is taken.
// aks_* rows: start_stage starts the stage thread, start_finalize/start_rollback write the
// boot configuration, start_reboot reports Success and reboots, finish reports the end.
enum class Action {
  none,
  start_commit,    // worker: the start-up commit
  start_watch,     // worker: the aks watch
  start_round,     // worker: one check round
  start_stage,     // worker: Stage
  start_finalize,  // worker: Finalize
  start_rollback,  // worker: Rollback
  start_wait,      // waiter: the reboot window or FleetLock
  start_reboot,    // worker: the reboot
  cancel_worker,   // raise the worker's cancel flag
  finish,          // run the ended operation's continuation (schedule, wait, reboot, ...)
  finish_stopped,  // the worker ended after a stop: end the loop
  end_loop,        // nothing runs: end the loop now
};

struct Transition {
  Phase from;
  Trigger trigger;
  Phase to;
  Action action;
};

// Leaving `waiting` for any other phase also stops the waiter (a request, Cancel, SIGTERM).
// clang-format off
inline constexpr std::array kTransitions = {
    Transition{Phase::init,       Trigger::start,     Phase::starting,   Action::start_commit},
    Transition{Phase::init,       Trigger::watch,     Phase::watching,   Action::start_watch},
    Transition{Phase::init,       Trigger::stop,      Phase::stopped,    Action::end_loop},
    Transition{Phase::starting,   Trigger::done,      Phase::idle,       Action::finish},
    Transition{Phase::starting,   Trigger::cancel,    Phase::cancelling, Action::cancel_worker},
    Transition{Phase::starting,   Trigger::stop,      Phase::stopping,   Action::cancel_worker},
    Transition{Phase::idle,       Trigger::watch,     Phase::watching,   Action::start_watch},
    Transition{Phase::idle,       Trigger::check_due, Phase::busy,       Action::start_round},
    Transition{Phase::idle,       Trigger::check_now, Phase::busy,       Action::start_round},
    Transition{Phase::idle,       Trigger::stage,     Phase::busy,       Action::start_stage},
    Transition{Phase::idle,       Trigger::finalize,  Phase::busy,       Action::start_finalize},
    Transition{Phase::idle,       Trigger::rollback,  Phase::busy,       Action::start_rollback},
    Transition{Phase::idle,       Trigger::wait,      Phase::waiting,    Action::start_wait},
    Transition{Phase::idle,       Trigger::reboot,    Phase::rebooting,  Action::start_reboot},
    Transition{Phase::idle,       Trigger::stop,      Phase::stopped,    Action::end_loop},
    Transition{Phase::busy,       Trigger::done,      Phase::idle,       Action::finish},
    Transition{Phase::busy,       Trigger::cancel,    Phase::cancelling, Action::cancel_worker},
    Transition{Phase::busy,       Trigger::stop,      Phase::stopping,   Action::cancel_worker},
    Transition{Phase::waiting,    Trigger::check_now, Phase::busy,       Action::start_round},
    Transition{Phase::waiting,    Trigger::stage,     Phase::busy,       Action::start_stage},
    Transition{Phase::waiting,    Trigger::finalize,  Phase::busy,       Action::start_finalize},
    Transition{Phase::waiting,    Trigger::rollback,  Phase::busy,       Action::start_rollback},
    Transition{Phase::waiting,    Trigger::cancel,    Phase::idle,       Action::finish},
    Transition{Phase::waiting,    Trigger::reboot,    Phase::rebooting,  Action::start_reboot},
    Transition{Phase::waiting,    Trigger::done,      Phase::idle,       Action::finish},
    Transition{Phase::waiting,    Trigger::stop,      Phase::stopped,    Action::end_loop},
    Transition{Phase::rebooting,  Trigger::done,      Phase::idle,       Action::finish},
    Transition{Phase::rebooting,  Trigger::cancel,    Phase::cancelling, Action::cancel_worker},
    Transition{Phase::rebooting,  Trigger::stop,      Phase::stopping,   Action::cancel_worker},
    Transition{Phase::cancelling, Trigger::cancel,    Phase::cancelling, Action::none},
    Transition{Phase::cancelling, Trigger::done,      Phase::idle,       Action::finish},
    Transition{Phase::cancelling, Trigger::stop,      Phase::stopping,   Action::cancel_worker},
    Transition{Phase::watching,   Trigger::done,      Phase::idle,       Action::finish},
    Transition{Phase::watching,   Trigger::stop,      Phase::stopping,   Action::cancel_worker},
    Transition{Phase::stopping,   Trigger::stop,      Phase::stopping,   Action::none},
    Transition{Phase::stopping,   Trigger::done,      Phase::stopped,    Action::finish_stopped},
    Transition{Phase::stopped,    Trigger::stop,      Phase::stopped,    Action::none},
    // aks: one operation at a time; an armed slot is never staged over (no row: the request is
    // answered OperationFailed before any download), but finalize or rollback may arm again.
    Transition{Phase::aks_idle,    Trigger::stage,     Phase::aks_staging, Action::start_stage},
    Transition{Phase::aks_idle,    Trigger::finalize,  Phase::aks_arming,  Action::start_finalize},
    Transition{Phase::aks_idle,    Trigger::rollback,  Phase::aks_arming,  Action::start_rollback},
    Transition{Phase::aks_staging, Trigger::done,      Phase::aks_idle,    Action::finish},
    Transition{Phase::aks_arming,  Trigger::armed,     Phase::aks_armed,   Action::start_reboot},
    Transition{Phase::aks_arming,  Trigger::done,      Phase::aks_idle,    Action::finish},
    Transition{Phase::aks_arming,  Trigger::kept_armed, Phase::aks_armed,  Action::finish},
    Transition{Phase::aks_armed,   Trigger::finalize,  Phase::aks_arming,  Action::start_finalize},
    Transition{Phase::aks_armed,   Trigger::rollback,  Phase::aks_arming,  Action::start_rollback},
    Transition{Phase::aks_armed,   Trigger::committed, Phase::aks_idle,    Action::finish},
};
// clang-format on

// The row for (from, trigger); nullopt when the table has none (an illegal pair).
[[nodiscard]] std::optional<Transition> find_transition(Phase from, Trigger trigger);

[[nodiscard]] std::string_view name(Phase phase);
[[nodiscard]] std::string_view name(Trigger trigger);
[[nodiscard]] std::string_view name(Action action);

// The State property for a phase when the phase alone decides it; nullopt when the published
// state is the step the worker reports (busy, cancelling, idle, watching, ...).
[[nodiscard]] std::optional<std::string_view> published_state(Phase phase);

// What the persisted state owes at start-up, before anything else runs.
enum class Owed {
  nothing,
  commit,              // armed before this boot: commit (TargetBootFailed if it fell back)
  health_then_commit,  // ... and this boot runs a finalize's new slot: the health gate first
  fall_back,           // the health gate failed in this boot already: mark bad, reboot back
  reboot,              // a finalize armed in this boot: its reboot (per strategy) is owed
  release_lock,        // only a FleetLock slot held across the reboot: steady-state owed
  resume,              // aks: an operation cut short by a restart starts again
  report_commit,       // aks: what finalize/rollback armed gets its commit reported
};

// The start: the phase it publishes (autonomous: starting, waiting or idle; aks: the agent's
// aks_idle or aks_armed) and what is owed first. Some debts come in pairs: a commit and then
// the FleetLock release; an aks commit report and then the resumed operation.
struct Start {
  Phase phase = Phase::idle;
  Owed owed = Owed::nothing;
  bool release_lock = false;  // autonomous: steady-state to FleetLock after `owed`
  bool resume = false;        // aks: the in-flight request again after `owed`
  bool operator==(const Start&) const = default;
};

// Derives the start from the files alone: state.json's pending commit, daemon.json, aks.json,
// and two facts of the running system: this boot's id and the booted slot (nullopt: unknown,
// as partitions::booted_slot gives it). Pure: no I/O. Where the files disagree, the file that
// owns the fact wins (docs/daemon.md "Start-up"): the slots' state is state.json's (and the
// booted slot the running system's, never a file's), what the control plane is owed aks.json's,
// what Omaha and FleetLock are owed daemon.json's; each mode reads only its own store.
[[nodiscard]] Start derive_start(Mode mode, const State& state, const DaemonState& daemon,
                                 const aks::AksState& aks, std::string_view boot_id,
                                 std::optional<char> booted);
[[nodiscard]] std::string_view name(Owed owed);

// The loop's current phase. fire() takes the table's row or refuses the trigger: a refusal is
// logged with the phase and trigger named, and the phase stays.
class PhaseMachine {
 public:
  explicit PhaseMachine(Phase initial = Phase::init) : phase_(initial) {}
  [[nodiscard]] Phase phase() const { return phase_; }
  // `why` goes into the refusal's log line (who fired it: "D-Bus CheckNow", "timer", ...).
  [[nodiscard]] std::optional<Transition> fire(Trigger trigger, std::string_view why = {});
  // Whether fire() would take a row, without logging.
  [[nodiscard]] bool allows(Trigger trigger) const {
    return find_transition(phase_, trigger).has_value();
  }

 private:
  Phase phase_;
};

}  // namespace abup::agent::daemon
