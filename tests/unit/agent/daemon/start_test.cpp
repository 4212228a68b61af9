// derive_start (agent/daemon/phase.hpp): where the daemon starts, from the persisted files
// alone, over the combinations that matter, contradictory ones included; each row says which
// file wins and why.
#include <doctest/doctest.h>

#include <optional>
#include <string>
#include <vector>

#include "agent/daemon/phase.hpp"

using namespace abup::agent;
using namespace abup::agent::daemon;

namespace {

constexpr const char* kThisBoot = "boot-2";
constexpr const char* kLastBoot = "boot-1";

// What is on disk, in the few words that matter.
struct Files {
  std::optional<PendingKind> pending = std::nullopt;  // state.json's pending commit (target slot B)
  const char* armed_in = kLastBoot;                   // its bootId
  std::optional<char> booted = std::nullopt;          // the running system's slot
  const char* health_failed_in = "";                  // daemon.json healthFailedBootId
  bool fleetlock_held = false;                        // daemon.json fleetlockHeld
  std::optional<abup::protocol::aks::Operation> aks_in_flight = std::nullopt;  // aks.json inFlight
  bool aks_armed = false;                                                      // aks.json armed
};

struct Row {
  const char* why;
  Mode mode;
  Files files;
  Phase phase;
  Owed owed;
  bool release_lock = false;
  bool resume = false;
};

Start derive(Mode mode, const Files& f) {
  State state;
  if (f.pending) {
    PendingCommit p;
    p.kind = *f.pending;
    p.target_slot = 'B';
    p.boot_id = f.armed_in;
    state.pending = p;
  }
  DaemonState ds;
  ds.health_failed_boot_id = f.health_failed_in;
  ds.fleetlock_held = f.fleetlock_held;
  aks::AksState a;
  if (f.aks_in_flight) {
    a.in_flight = aks::InFlight{};
    a.in_flight->request.operation = *f.aks_in_flight;
  }
  if (f.aks_armed) a.armed = aks::Armed{};
  return derive_start(mode, state, ds, a, kThisBoot, f.booted);
}

using K = PendingKind;
using Op = abup::protocol::aks::Operation;
constexpr auto kAuto = Mode::autonomous;
constexpr auto kAks = Mode::aks;

const std::vector<Row> kRows = {
    // autonomous: state.json's pending decides, daemon.json adds what Omaha/FleetLock are owed.
    {"nothing persisted", kAuto, {}, Phase::idle, Owed::nothing},
    {"only a FleetLock slot held across the reboot",
     kAuto,
     {.fleetlock_held = true},
     Phase::starting,
     Owed::release_lock},
    {"a finalize from the last boot, running its slot: health gate, then commit",
     kAuto,
     {.pending = K::finalize, .booted = 'B'},
     Phase::starting,
     Owed::health_then_commit},
    {"... and the gate failed in this boot: fall back, do not run it again",
     kAuto,
     {.pending = K::finalize, .booted = 'B', .health_failed_in = kThisBoot},
     Phase::starting,
     Owed::fall_back},
    {"... the gate failed in an earlier boot: stale, gate again",
     kAuto,
     {.pending = K::finalize, .booted = 'B', .health_failed_in = kLastBoot},
     Phase::starting,
     Owed::health_then_commit},
    {"a finalize from the last boot, the bootloader fell back: commit records TargetBootFailed",
     kAuto,
     {.pending = K::finalize, .booted = 'A'},
     Phase::starting,
     Owed::commit},
    {"contradiction: daemon.json says the gate failed in this boot, but the running system is "
     "the old slot: the running system wins (no gate on a slot not running)",
     kAuto,
     {.pending = K::finalize, .booted = 'A', .health_failed_in = kThisBoot},
     Phase::starting,
     Owed::commit},
    {"the booted slot is unknown: commit without the gate, as before",
     kAuto,
     {.pending = K::finalize},
     Phase::starting,
     Owed::commit},
    {"a rollback from the last boot: no health gate for the known-good slot",
     kAuto,
     {.pending = K::rollback, .booted = 'B'},
     Phase::starting,
     Owed::commit},
    {"commit and FleetLock both owed: commit first, then release",
     kAuto,
     {.pending = K::finalize, .booted = 'A', .fleetlock_held = true},
     Phase::starting,
     Owed::commit,
     true},
    {"a finalize armed in this boot: its reboot is owed",
     kAuto,
     {.pending = K::finalize, .armed_in = kThisBoot},
     Phase::waiting,
     Owed::reboot},
    {"... with FleetLock held: that is this reboot's slot, not one to release",
     kAuto,
     {.pending = K::finalize, .armed_in = kThisBoot, .fleetlock_held = true},
     Phase::waiting,
     Owed::reboot},
    {"a rollback armed in this boot: the operator reboots, nothing owed",
     kAuto,
     {.pending = K::rollback, .armed_in = kThisBoot},
     Phase::idle,
     Owed::nothing},
    {"contradiction: daemon.json says the gate failed in this boot, state.json has no pending "
     "commit: state.json wins (the record is stale)",
     kAuto,
     {.health_failed_in = kThisBoot},
     Phase::idle,
     Owed::nothing},
    {"autonomous ignores aks.json: another mode's store",
     kAuto,
     {.aks_in_flight = Op::stage, .aks_armed = true},
     Phase::idle,
     Owed::nothing},
    // aks: aks.json alone decides what the control plane is owed.
    {"aks: nothing persisted", kAks, {}, Phase::aks_idle, Owed::nothing},
    {"aks: a stage cut short by a restart resumes",
     kAks,
     {.aks_in_flight = Op::stage},
     Phase::aks_idle,
     Owed::resume},
    {"aks: armed: the commit is reported",
     kAks,
     {.aks_armed = true},
     Phase::aks_armed,
     Owed::report_commit},
    {"aks: an arming cut short: commit report first (it may be done), then the arming again",
     kAks,
     {.aks_in_flight = Op::finalize, .aks_armed = true},
     Phase::aks_armed,
     Owed::report_commit,
     false,
     true},
    {"aks contradiction: a stage in flight while armed (an older abup): armed wins the phase, "
     "so the resumed stage is refused by the table",
     kAks,
     {.aks_in_flight = Op::stage, .aks_armed = true},
     Phase::aks_armed,
     Owed::report_commit,
     false,
     true},
    {"aks contradiction: state.json has a pending commit aks.json did not arm (the CLI did): "
     "not the control plane's to hear about; daemon.json is autonomous mode's",
     kAks,
     {.pending = K::finalize, .booted = 'B', .fleetlock_held = true},
     Phase::aks_idle,
     Owed::nothing},
};

}  // namespace

TEST_CASE("derive_start: the persisted files decide the start, and who wins a contradiction") {
  for (const auto& r : kRows) {
    INFO(r.why);
    const Start got = derive(r.mode, r.files);
    CHECK(name(got.phase) == name(r.phase));
    CHECK(name(got.owed) == name(r.owed));
    CHECK(got.release_lock == r.release_lock);
    CHECK(got.resume == r.resume);
  }
}

TEST_CASE("derive_start: every phase it gives is one its mode's machine can start from") {
  for (const auto& r : kRows) {
    INFO(r.why);
    const Phase p = derive(r.mode, r.files).phase;
    const bool aks_phase = name(p).substr(0, 4) == "aks_";
    CHECK(aks_phase == (r.mode == Mode::aks));
  }
}
