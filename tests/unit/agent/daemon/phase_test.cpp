// The daemon's phase table (agent/daemon/phase.hpp) against the behaviour docs/daemon.md
// promises, written out here on its own: every (phase, trigger) pair is tried, the legal ones
// must land where the spec says with the spec's action, every other one must be refused, leave
// the phase alone and say so in the log.
#include "agent/daemon/phase.hpp"

#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <tuple>

using namespace abup::agent::daemon;
using P = Phase;
using T = Trigger;
using A = Action;

namespace {

struct Row {
  P from;
  T trigger;
  P to;
  A action;
};

// The spec (docs/daemon.md "Phases").
const Row kSpec[] = {
    {P::init, T::start, P::starting, A::start_commit},
    {P::init, T::watch, P::watching, A::start_watch},
    {P::init, T::stop, P::stopped, A::end_loop},
    // The start-up commit can be cancelled or stopped; nothing else starts beside it.
    {P::starting, T::done, P::idle, A::finish},
    {P::starting, T::cancel, P::cancelling, A::cancel_worker},
    {P::starting, T::stop, P::stopping, A::cancel_worker},
    // Idle: every request starts its work.
    {P::idle, T::watch, P::watching, A::start_watch},
    {P::idle, T::check_due, P::busy, A::start_round},
    {P::idle, T::check_now, P::busy, A::start_round},
    {P::idle, T::stage, P::busy, A::start_stage},
    {P::idle, T::finalize, P::busy, A::start_finalize},
    {P::idle, T::rollback, P::busy, A::start_rollback},
    {P::idle, T::wait, P::waiting, A::start_wait},
    {P::idle, T::reboot, P::rebooting, A::start_reboot},
    {P::idle, T::stop, P::stopped, A::end_loop},
    // One operation at a time: requests are refused (Busy) until it is done.
    {P::busy, T::done, P::idle, A::finish},
    {P::busy, T::cancel, P::cancelling, A::cancel_worker},
    {P::busy, T::stop, P::stopping, A::cancel_worker},
    // Waiting for the window or FleetLock holds no worker: a request ends the wait and runs.
    {P::waiting, T::check_now, P::busy, A::start_round},
    {P::waiting, T::stage, P::busy, A::start_stage},
    {P::waiting, T::finalize, P::busy, A::start_finalize},
    {P::waiting, T::rollback, P::busy, A::start_rollback},
    {P::waiting, T::cancel, P::idle, A::finish},
    {P::waiting, T::reboot, P::rebooting, A::start_reboot},
    {P::waiting, T::done, P::idle, A::finish},
    {P::waiting, T::stop, P::stopped, A::end_loop},
    {P::rebooting, T::done, P::idle, A::finish},
    {P::rebooting, T::cancel, P::cancelling, A::cancel_worker},
    {P::rebooting, T::stop, P::stopping, A::cancel_worker},
    {P::cancelling, T::cancel, P::cancelling, A::none},
    {P::cancelling, T::done, P::idle, A::finish},
    {P::cancelling, T::stop, P::stopping, A::cancel_worker},
    {P::watching, T::done, P::idle, A::finish},
    {P::watching, T::stop, P::stopping, A::cancel_worker},
    {P::stopping, T::stop, P::stopping, A::none},
    {P::stopping, T::done, P::stopped, A::finish_stopped},
    {P::stopped, T::stop, P::stopped, A::none},
    // aks mode, the agent's own machine: one operation at a time (no row while one runs).
    {P::aks_idle, T::stage, P::aks_staging, A::start_stage},
    {P::aks_idle, T::finalize, P::aks_arming, A::start_finalize},
    {P::aks_idle, T::rollback, P::aks_arming, A::start_rollback},
    {P::aks_staging, T::done, P::aks_idle, A::finish},
    {P::aks_arming, T::armed, P::aks_armed, A::start_reboot},
    {P::aks_arming, T::done, P::aks_idle, A::finish},
    // A failed second arming leaves the first one's commit owed (state.json still has it).
    {P::aks_arming, T::kept_armed, P::aks_armed, A::finish},
    // Armed: arming again is the lifecycle's call, a stage is refused (the slot is never
    // written while armed), the commit report after the reboot ends it.
    {P::aks_armed, T::finalize, P::aks_arming, A::start_finalize},
    {P::aks_armed, T::rollback, P::aks_arming, A::start_rollback},
    {P::aks_armed, T::committed, P::aks_idle, A::finish},
};

const Row* spec(P from, T trigger) {
  for (const auto& r : kSpec)
    if (r.from == from && r.trigger == trigger) return &r;
  return nullptr;
}

// What `fn` writes to stderr (the daemon's log without a journal).
template <typename Fn>
std::string stderr_of(Fn fn) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("abup-phase-test-" + std::to_string(::getpid()) + ".log");
  std::fflush(stderr);
  const int saved = ::dup(2);
  FILE* f = std::fopen(path.c_str(), "w");
  ::dup2(::fileno(f), 2);
  fn();
  std::fflush(stderr);
  ::dup2(saved, 2);
  ::close(saved);
  std::fclose(f);
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::filesystem::remove(path);
  return ss.str();
}

}  // namespace

TEST_CASE("phase table: every legal pair reaches the spec's phase with the spec's action") {
  int legal = 0;
  for (std::size_t p = 0; p < kPhaseCount; ++p)
    for (std::size_t t = 0; t < kTriggerCount; ++t) {
      const auto from = static_cast<P>(p);
      const auto trigger = static_cast<T>(t);
      const Row* want = spec(from, trigger);
      if (!want) continue;
      ++legal;
      INFO(name(from), " x ", name(trigger));
      PhaseMachine m(from);
      auto took = m.fire(trigger, "test");
      REQUIRE(took.has_value());
      CHECK(m.phase() == want->to);
      CHECK(took->action == want->action);
      CHECK(name(took->action) == name(want->action));
    }
  CHECK(legal == static_cast<int>(std::size(kSpec)));
  CHECK(kTransitions.size() == std::size(kSpec));  // no row the spec does not have
}

TEST_CASE("phase table: every illegal pair is refused, logged, and leaves the phase") {
  int refused = 0;
  for (std::size_t p = 0; p < kPhaseCount; ++p)
    for (std::size_t t = 0; t < kTriggerCount; ++t) {
      const auto from = static_cast<P>(p);
      const auto trigger = static_cast<T>(t);
      if (spec(from, trigger)) continue;
      ++refused;
      INFO(name(from), " x ", name(trigger));
      PhaseMachine m(from);
      CHECK_FALSE(m.allows(trigger));
      std::optional<Transition> took;
      const auto said = stderr_of([&] { took = m.fire(trigger, "from the test"); });
      CHECK_FALSE(took.has_value());
      CHECK(m.phase() == from);
      if (!std::filesystem::exists("/run/systemd/journal/socket")) {
        CHECK(said.find("daemon phase " + std::string(name(from)) + ": '" +
                        std::string(name(trigger)) + "' refused") != std::string::npos);
        CHECK(said.find("[from the test]") != std::string::npos);
      }
    }
  CHECK(refused == static_cast<int>(kPhaseCount * kTriggerCount - std::size(kSpec)));
}

TEST_CASE("phase table: one row per pair, and names for every phase, trigger and action") {
  std::set<std::pair<int, int>> seen;
  for (const auto& t : kTransitions)
    CHECK(seen.insert({static_cast<int>(t.from), static_cast<int>(t.trigger)}).second);
  std::set<std::string_view> names;
  for (std::size_t p = 0; p < kPhaseCount; ++p) names.insert(name(static_cast<P>(p)));
  CHECK(names.size() == kPhaseCount);
  CHECK(names.count("?") == 0);
  names.clear();
  for (std::size_t t = 0; t < kTriggerCount; ++t) names.insert(name(static_cast<T>(t)));
  CHECK(names.size() == kTriggerCount);
  CHECK(names.count("?") == 0);
}

TEST_CASE("phase table: the published State keeps today's names") {
  CHECK(published_state(P::starting) == std::optional<std::string_view>("committing"));
  CHECK(published_state(P::waiting) == std::optional<std::string_view>("armed"));
  CHECK(published_state(P::rebooting) == std::optional<std::string_view>("rebooting"));
  for (auto p : {P::init, P::idle, P::busy, P::cancelling, P::watching, P::stopping, P::stopped,
                 P::aks_idle, P::aks_staging, P::aks_arming, P::aks_armed})
    CHECK_FALSE(published_state(p).has_value());  // the worker's step is published
}

TEST_CASE("phase table: a reboot wait is left by a request, Cancel or a stop, never by a timer") {
  PhaseMachine m(P::idle);
  REQUIRE(m.fire(T::check_due));
  REQUIRE(m.fire(T::done));
  REQUIRE(m.fire(T::wait));
  CHECK(m.phase() == P::waiting);
  CHECK_FALSE(m.allows(T::check_due));
  CHECK(m.allows(T::check_now));
  CHECK(m.allows(T::rollback));
  REQUIRE(m.fire(T::cancel));
  CHECK(m.phase() == P::idle);
  CHECK_FALSE(m.allows(T::cancel));  // nothing runs: NothingToDo
}

TEST_CASE("phase table: the two machines never share a phase, and aks requests wait their turn") {
  // The loop's machine never reaches an aks_* phase, and the agent's never leaves them: each
  // is fired from one thread only.
  auto is_aks = [](P p) { return name(p).substr(0, 4) == "aks_"; };
  for (const auto& t : kTransitions) {
    INFO(name(t.from), " x ", name(t.trigger));
    CHECK(is_aks(t.from) == is_aks(t.to));
  }
  PhaseMachine m(P::aks_idle);
  REQUIRE(m.fire(T::stage));
  CHECK_FALSE(m.allows(T::finalize));  // one operation at a time
  REQUIRE(m.fire(T::done));
  REQUIRE(m.fire(T::finalize));
  REQUIRE(m.fire(T::armed));
  CHECK(m.phase() == P::aks_armed);
  CHECK_FALSE(m.allows(T::stage));  // an armed slot is never staged over
  REQUIRE(m.fire(T::committed));
  CHECK(m.phase() == P::aks_idle);
}
