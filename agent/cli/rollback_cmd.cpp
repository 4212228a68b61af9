#include <cstdio>

#include "agent/cli/common.hpp"

namespace abup::agent::cli {

int cmd_rollback(const std::vector<std::string>& argv) {
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
               });
  auto args = Args::parse(argv, specs);
  if (!args) return report(args.error());
  if (args->has("help")) {
    std::printf(
        "usage: abup rollback [--disk PATH] [--root DIR] [--reboot] [--force] [OPTIONS]\n\n"
        "Arm one try of the previous slot (the one not booted, which was committed before).\n"
        "Needs no daemon; `abup commit` after the reboot makes it the default.\n\n%s",
        format_options(specs).c_str());
    return 0;
  }
  auto common = load_common(*args);
  if (!common) return report(common.error());
  auto where = lifecycle_options(*args, *common);
  if (!where) return report(where.error());
  RollbackOptions o{*where, args->get_or("operation-id", ""), args->has("force")};
  auto out = rollback(o);
  if (!out) return report(out.error());
  print_outcome(*out, args->has("json"));
  return args->has("reboot") ? reboot_after_arming(*args, common->config) : 0;
}

}  // namespace abup::agent::cli
