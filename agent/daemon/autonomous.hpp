// Autonomous mode (docs/architecture.md §1): the node updates itself within policy. Check
// Omaha, stage the offered image, send 13/1 14/1 800/1 around stage and finalize, reboot per
// [Reboot] Strategy=, and after the reboot gate the commit on the [Health] checks (failure: mark
// the new slot bad and reboot into the old one; the next check reports 3/0 error 44). Every step
// is blocking and runs on the daemon's worker thread (the reboot wait on its waiter thread);
// `Canceller` stops it at the next safe point.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <utility>

#include "abup/result.hpp"
#include "agent/config.hpp"
#include "agent/daemon/cancel.hpp"
#include "agent/daemon/daemon_state.hpp"
#include "agent/daemon/health.hpp"
#include "agent/daemon/report.hpp"
#include "agent/host.hpp"
#include "agent/lifecycle.hpp"
#include "agent/stage.hpp"
#include "agent/state.hpp"
#include "update-protocol/omaha/omaha.hpp"

namespace abup::agent::daemon {

struct DaemonOptions {
  Config config;
  LifecycleOptions where;                 // disk, root, state dir, boot backend
  UnitStateFn unit_state;                 // systemd over D-Bus; empty when not available
  std::function<Status()> logind_reboot;  // empty when not available
};

// Reboots the node: [Reboot] Command= when set, else logind over D-Bus. Shared by both modes.
[[nodiscard]] Status reboot_node(const DaemonOptions& options, Canceller& cancel);
// The daemon's outbound transport from [Network], stopped by `cancel`.
[[nodiscard]] protocol::TransportOptions daemon_transport(const Config& config,
                                                          const Canceller& cancel);

// The reboot of an armed slot that waits for [Reboot] Window= or a FleetLock grant. The wait is
// not the worker's: the daemon runs it on a thread of its own (Phase::waiting), so that the API
// answers and a request or Cancel can end it.
struct RebootWait {
  std::string target_version;
  char target_slot = 0;
  std::string operation_id;
  // Set: the window opens then; empty: ask FleetLock (fleetlockHeld is saved already).
  std::optional<std::chrono::system_clock::time_point> window;
};

class Autonomous {
 public:
  // Every step is published through `report` (D-Bus properties, metrics, sd_notify STATUS=).
  Autonomous(const DaemonOptions& options, Canceller& cancel, Reporter& report);

  // At start: the pending commit, gated by the health checks when this boot runs the new slot.
  [[nodiscard]] Status startup();
  // One scheduled round (or one asked for over D-Bus: CheckNow). A new update gets
  // `operation_id` when one is given. An error makes the caller back off (Errc::cancelled:
  // stopped).
  [[nodiscard]] Status round(const std::string& operation_id = {});
  // D-Bus Stage: stages an image URL/path, or `version` when the update server offers exactly
  // that; the slot is left staged (Finalize arms it). No Omaha events: an operator's stage.
  [[nodiscard]] Status stage_only(const std::string& version_or_url,
                                  const std::string& operation_id);
  // After startup() or round(): the reboot wait it left, if any (taken once).
  [[nodiscard]] std::optional<RebootWait> take_reboot_wait() { return std::exchange(wait_, {}); }
  // On the waiter's thread: until the window opens or FleetLock grants; Errc::cancelled when
  // `cancel` fires first. Touches nothing of the worker's.
  [[nodiscard]] Status wait_for_reboot(const RebootWait& wait, Canceller& cancel) const;
  // On the worker, once the wait ended: the reboot.
  [[nodiscard]] Status reboot_after_wait(const RebootWait& wait);

 private:
  struct Ctx {
    HostFacts host;
    protocol::omaha::Identity who;
    State state;
    DaemonState ds;
  };
  [[nodiscard]] Result<Ctx> context() const;
  [[nodiscard]] Status install(Ctx& c, const protocol::omaha::Offer& offer,
                               const std::string& operation_id);
  [[nodiscard]] StageOptions stage_options(const std::string& source, const std::string& version);
  [[nodiscard]] Status reboot_per_strategy(Ctx& c, const PendingCommit& pending);
  [[nodiscard]] Status reboot_now(const std::string& why);
  [[nodiscard]] Status fall_back(Ctx& c, const PendingCommit& pending, const std::string& why);
  [[nodiscard]] Status release_fleetlock(Ctx& c);
  // Queues events (persisted first), then tries to deliver the whole queue.
  [[nodiscard]] Status queue(Ctx& c, std::vector<protocol::omaha::Event> events, bool send_now);
  void delivered(Ctx& c, std::size_t acknowledged);
  void flush(Ctx& c);
  [[nodiscard]] protocol::TransportOptions transport() const;
  [[nodiscard]] std::string machine_id(const HostFacts& host) const;

  const DaemonOptions& o_;
  Canceller& cancel_;
  Reporter& report_;
  DaemonStore store_;
  std::optional<RebootWait> wait_;
  bool rebooting_ = false;  // a reboot was asked for: nothing else to do
  bool said_reboot_needed_ = false;
  bool said_idle_ = false;
};

}  // namespace abup::agent::daemon
