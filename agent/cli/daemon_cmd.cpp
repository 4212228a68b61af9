#include <cstdio>

#include "agent/cli/common.hpp"
#include "agent/daemon/daemon.hpp"
#include "agent/sysbus.hpp"

namespace abup::agent::cli {
namespace {

std::vector<OptionSpec> daemon_options() {
  auto specs = common_options();
  auto b = backend_options();
  specs.insert(specs.end(), b.begin(), b.end());
  return specs;
}

int run_daemon(const Args& args) {
  auto common = load_common(args);
  if (!common) return report(common.error());
  auto where = lifecycle_options(args, *common);
  if (!where) return report(where.error());
  daemon::DaemonOptions o;
  o.config = common->config;
  o.where = *where;
  o.unit_state = [](const std::string& unit) { return unit_active_state(unit); };
  o.logind_reboot = [] { return reboot_via_logind(); };
  if (auto st = daemon::validate(o); !st) return report(st.error());
  return daemon::run_daemon(o);
}

}  // namespace

abup::cli::Command daemon_command() {
  return {
      .name = "daemon",
      .summary = "run as the update service (what abup.service runs)",
      .synopsis = "[--disk PATH] [--root DIR] [--config PATH] [--state-dir DIR]",
      .description =
          "What abup.service runs (Type=notify). On start it commits a slot armed before the\n"
          "reboot (after the [Health] checks pass); in Mode=autonomous it then checks the Omaha\n"
          "server on a schedule, stages and arms what it offers, and reboots per [Reboot]\n"
          "Strategy=; in Mode=aks it follows the update-request annotation on its Node. SIGTERM "
          "stops the current step at a safe point; it resumes on the next start.\n"
          "Exit status: 0 stopped by a signal, 2 bad configuration or options, 1 other errors.",
      .options = daemon_options(),
      .run = run_daemon};
}

}  // namespace abup::agent::cli
