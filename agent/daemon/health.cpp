#include "agent/daemon/health.hpp"

#include "agent/daemon/process.hpp"

namespace abup::agent::daemon {

Status run_health_checks(const HealthChecks& c, Canceller& cancel) {
  std::vector<std::string> failed;
  const auto deadline = std::chrono::steady_clock::now() + c.timeout;
  for (const auto& unit : c.units) {
    if (!c.unit_state) {
      failed.push_back("unit " + unit + ": no way to ask systemd");
      continue;
    }
    while (true) {
      auto st = c.unit_state(unit);
      if (!st) {
        failed.push_back("unit " + unit + ": " + st.error().message);
        break;
      }
      if (*st == "active") break;
      const bool transient = *st == "activating" || *st == "reloading";
      if (!transient || std::chrono::steady_clock::now() >= deadline) {
        failed.push_back("unit " + unit + " is " + *st + ", not active");
        break;
      }
      if (!cancel.wait_for(std::chrono::milliseconds(500)))
        return make_error(Errc::cancelled, "health checks: stopped");
    }
  }
  for (const auto& cmd : c.commands) {
    auto r = run_command(cmd, c.timeout, &cancel);
    if (!r) {
      if (r.error().code == Errc::cancelled) return std::move(r).error();
      failed.push_back("command " + r.error().message);
    } else if (*r != 0) {
      failed.push_back("command '" + cmd + "' exited with status " + std::to_string(*r));
    }
  }
  if (failed.empty()) return {};
  std::string msg = "health checks failed: ";
  for (std::size_t i = 0; i < failed.size(); ++i) msg += (i ? "; " : "") + failed[i];
  return make_error(Errc::failed, msg);
}

}  // namespace abup::agent::daemon
