// `aks` mode (docs/architecture.md §1, §6; docs/reference/aks-contract.md): the node side of the
// annotation contract. The daemon runs run_aks() on a thread of its own; it returns when `stop` is
// set or when the Node is gone (Errc::not_found: the update was abandoned, reporting stops).
#pragma once

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <string_view>
#include <vector>

#include "abup/result.hpp"
#include "agent/config.hpp"
#include "agent/lifecycle.hpp"
#include "agent/stage.hpp"
#include "update-protocol/aks/contract.hpp"
#include "update-protocol/http/client.hpp"

namespace abup::agent::aks {

struct AksOptions {
  Config config;           // [Kubernetes], [Update] (MachineID), [Stage], heartbeat
  LifecycleOptions where;  // disk, root, state dir (aks.json lives there), boot backend
  protocol::TransportOptions transport;  // Omaha and image downloads; also the base for the API
  // Reboots the node after a finalize/rollback status was written ([Reboot] Command= or logind).
  // An error is reported and the agent goes on (the commit waits for a reboot).
  std::function<Status()> reboot;
  int watch_timeout_seconds = 290;

  // What the daemon publishes (D-Bus State/OperationId/Progress/LastError, metrics); each may be
  // empty, and may be called from the stage's worker thread.
  // A step of an operation: dbus::kStateStaging, kStateStaged, kStateArmed, kStateRebooting,
  // kStateIdle (a commit reported, or nothing to do).
  std::function<void(std::string_view state, const std::string& operation_id)> on_step;
  std::function<void(const StageProgress&)> on_progress;
  std::function<void(const StageSummary&)> on_staged;
  // An operation ended with a failure code of the contract (OperationFailed, NotStaged,
  // TargetBootFailed, ...) and the message reported for it.
  std::function<void(const std::string& operation_id, protocol::aks::Code code,
                     const std::string& message)>
      on_failed;
};

// on_status gets one human line per step (sd_notify STATUS=, the journal); it may be called from
// the stage's worker thread as well as from the caller's.
[[nodiscard]] Status run_aks(const AksOptions& options, const std::atomic<bool>& stop,
                             const std::function<void(std::string_view)>& on_status);

}  // namespace abup::agent::aks
