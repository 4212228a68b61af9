#include "agent/cli/common.hpp"

namespace abup::agent::cli {

std::unique_ptr<dbus::Client> connect_daemon() {
  auto client = dbus::Client::connect_system();
  if (!client) return nullptr;
  auto running = (*client)->daemon_running();
  if (!running || !*running) return nullptr;
  return std::move(*client);
}

std::string describe_daemon_state(const dbus::AgentStatus& s) {
  std::string out = s.state;
  const auto& p = s.progress;
  if (!p.phase.empty()) {
    out += ", " + p.phase;
    if (p.total > 0)
      out += " " + std::to_string(p.done * 100 / p.total) + "% (" + human_bytes(p.done) + " of " +
             human_bytes(p.total) + ")";
  }
  return out;
}

}  // namespace abup::agent::cli
