// Autonomous mode (DESIGN.md §1, issue 4 §3): the node updates itself within policy. Check
// Omaha, stage the offered image, send 13/1 14/1 800/1 around stage and finalize, reboot per
// [Reboot] Strategy=, and after the reboot gate the commit on the [Health] checks (failure: mark
// the new slot bad and reboot into the old one; the next check reports 3/0 error 44). Every step
// is blocking and runs on the daemon's worker thread; `Canceller` stops it at the next safe point.
#pragma once

#include <functional>
#include <optional>
#include <string>

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

// Omaha error codes sent with 3/0 (update_engine's numbering, which Nebraska shows).
inline constexpr int kOmahaError = 1;
inline constexpr int kOmahaDownloadError = 9;

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
  bool rebooting_ = false;  // a reboot was asked for: nothing else to do
  bool said_reboot_needed_ = false;
  bool said_idle_ = false;
};

}  // namespace abup::agent::daemon
