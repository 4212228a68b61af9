// FleetLock (the reboot-lock protocol of Zincati and its servers, e.g. airlock): before
// rebooting, POST {base}/v1/pre-reboot; once back in steady state (after the commit), POST
// {base}/v1/steady-state. Header `fleet-lock-protocol: true`, body
// {"client_params":{"id":ID,"group":GROUP}}. 200 = granted; any other status = not now (the
// server's {"kind","value"} reason is kept for the log).
#pragma once

#include <chrono>
#include <functional>
#include <string>

#include "abup/result.hpp"
#include "agent/daemon/cancel.hpp"
#include "update-protocol/http/client.hpp"

namespace abup::agent::daemon {

struct FleetLock {
  std::string base;  // e.g. https://fleetlock.example.net
  std::string id;    // this node (its machine id as sent to Omaha)
  std::string group = "default";
};

struct LockAnswer {
  bool granted = false;
  long status = 0;
  std::string reason;  // "kind: value" from a refusal, or the body
};

enum class LockOp { pre_reboot, steady_state };

// One request.
[[nodiscard]] Result<LockAnswer> fleetlock_request(const FleetLock& lock, LockOp op,
                                                   const protocol::TransportOptions& transport);
// Asks until granted: waits `retry` doubling up to `max_retry` between tries (refusals and
// transport failures alike), telling `on_wait` why. Errc::cancelled when the canceller fires.
// `still_wanted`, when given, is asked before each retry: false ends the asking at once, also
// with success (the caller looks again at why it asked).
[[nodiscard]] Status fleetlock_until_granted(const FleetLock& lock, LockOp op,
                                             const protocol::TransportOptions& transport,
                                             Canceller& cancel, std::chrono::milliseconds retry,
                                             std::chrono::milliseconds max_retry,
                                             const std::function<void(const std::string&)>& on_wait,
                                             const std::function<bool()>& still_wanted = {});

}  // namespace abup::agent::daemon
