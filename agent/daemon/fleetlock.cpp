#include "agent/daemon/fleetlock.hpp"

#include <nlohmann/json.hpp>

namespace abup::agent::daemon {

Result<LockAnswer> fleetlock_request(const FleetLock& lock, LockOp op,
                                     const protocol::TransportOptions& transport) {
  std::string url = lock.base;
  while (!url.empty() && url.back() == '/') url.pop_back();
  url += op == LockOp::pre_reboot ? "/v1/pre-reboot" : "/v1/steady-state";
  const nlohmann::json body = {{"client_params", {{"id", lock.id}, {"group", lock.group}}}};
  ABUP_TRY(auto r,
           protocol::http_request(
               "POST", url, {{"fleet-lock-protocol", "true"}, {"content-type", "application/json"}},
               body.dump(), transport, 64 << 10));
  LockAnswer a;
  a.status = r.status;
  a.granted = r.status == 200;
  if (!a.granted) {
    auto j = nlohmann::json::parse(r.body, nullptr, false);
    if (j.is_object() && j.contains("kind") && j["kind"].is_string())
      a.reason = j["kind"].get<std::string>() + ": " +
                 (j.contains("value") && j["value"].is_string() ? j["value"].get<std::string>()
                                                                : std::string());
    else
      a.reason = "HTTP " + std::to_string(r.status) + " " + r.body.substr(0, 200);
  }
  return a;
}

Status fleetlock_until_granted(const FleetLock& lock, LockOp op,
                               const protocol::TransportOptions& transport, Canceller& cancel,
                               std::chrono::milliseconds retry, std::chrono::milliseconds max_retry,
                               const std::function<void(const std::string&)>& on_wait,
                               const std::function<bool()>& still_wanted) {
  const char* what = op == LockOp::pre_reboot ? "pre-reboot" : "steady-state";
  for (auto wait = retry;; wait = std::min(wait * 2, max_retry)) {
    if (still_wanted && !still_wanted()) return {};
    auto a = fleetlock_request(lock, op, transport);
    if (a && a->granted) return {};
    if (cancel.cancelled())
      return make_error(Errc::cancelled, std::string("FleetLock ") + what + ": stopped");
    on_wait(std::string("FleetLock ") + what + " at " + lock.base + " not granted (" +
            (a ? a->reason : a.error().message) + "); retrying");
    if (!cancel.wait_for(wait))
      return make_error(Errc::cancelled, std::string("FleetLock ") + what + ": stopped");
  }
}

}  // namespace abup::agent::daemon
