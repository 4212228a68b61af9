// `aks` mode (DESIGN.md §1, §6; reference/aks-contract.md): the node side of the annotation
// contract. The daemon runs run_aks() on a thread of its own; it returns when `stop` is set or
// when the Node is gone (Errc::not_found: the update was abandoned, reporting stops).
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
};

// on_status gets one human line per step (sd_notify STATUS=, the journal); it may be called from
// the stage's worker thread as well as from the caller's.
[[nodiscard]] Status run_aks(const AksOptions& options, const std::atomic<bool>& stop,
                             const std::function<void(std::string_view)>& on_status);

}  // namespace abup::agent::aks
