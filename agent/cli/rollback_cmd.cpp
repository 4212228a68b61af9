#include <cstdio>
#include <nlohmann/json.hpp>

#include "agent/cli/common.hpp"

namespace abup::agent::cli {
namespace {

int rollback_via_daemon(dbus::Client& daemon, const Args& args) {
  std::fprintf(stderr, "abup: the daemon runs: asking it to roll back (org.abup.Agent1)\n");
  if (args.has("operation-id"))
    std::fprintf(stderr,
                 "abup: --operation-id is not passed to the daemon; it names the operation\n");
  auto out = daemon.rollback(args.has("reboot"), args.has("force"));
  if (!out) return report(out.error());
  if (args.has("json")) {
    nlohmann::json j(*out);
    j["via"] = "daemon";
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("%s\n", out->count("message") ? out->at("message").c_str() : "rolled back");
  }
  return 0;
}

std::vector<OptionSpec> rollback_options() {
  auto specs = common_options();
  for (auto v : {backend_options(), reboot_options()})
    specs.insert(specs.end(), v.begin(), v.end());
  specs.insert(specs.end(),
               {
                   {"force", false, false,
                    "arm the other slot even if abup never saw it committed, or drop a pending "
                    "operation"},
                   {"operation-id", true, false, "ID  name of this operation (default: random)"},
                   {"json", false, false, "print the outcome as JSON"},
                   {"no-daemon", false, false,
                    "act directly even when the daemon runs (the state lock still applies)"},
               });
  return specs;
}

int run_rollback(const Args& args) {
  if (!args.has("no-daemon")) {
    if (auto daemon = connect_daemon()) return rollback_via_daemon(*daemon, args);
  }
  auto common = load_common(args);
  if (!common) return report(common.error());
  auto where = lifecycle_options(args, *common);
  if (!where) return report(where.error());
  RollbackOptions o{*where, args.get_or("operation-id", ""), args.has("force")};
  auto out = rollback(o);
  if (!out) return report(out.error());
  print_outcome(*out, args.has("json"));
  return args.has("reboot") ? reboot_after_arming(args, common->config) : 0;
}

}  // namespace

abup::cli::Command rollback_command() {
  return {.name = "rollback",
          .summary = "arm one try of the previous slot",
          .synopsis = "[--disk PATH] [--root DIR] [--reboot] [--force] [OPTIONS]",
          .description =
              "Arm one try of the previous slot (the one not booted, which was committed before).\n"
              "Needs no daemon; when the daemon runs, asks it (D-Bus Rollback) so the two do not\n"
              "race, and it rolls back the disk it manages. `abup commit` after the reboot makes\n"
              "it the default.",
          .options = rollback_options(),
          .run = run_rollback};
}

}  // namespace abup::agent::cli
