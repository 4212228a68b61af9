#include <cstdio>

#include "agent/cli/common.hpp"

namespace abup::agent::cli {

int cmd_finalize(const std::vector<std::string>& argv) {
  auto specs = common_options();
  for (auto v : {backend_options(), reboot_options()})
    specs.insert(specs.end(), v.begin(), v.end());
  specs.insert(specs.end(),
               {
                   {"version", true, false, "V  refuse unless the staged version is V"},
                   {"operation-id", true, false, "ID  name of this operation (default: random)"},
                   {"allow-failed-version", false, false,
                    "arm a version that already failed to boot on this machine"},
                   {"json", false, false, "print the outcome as JSON"},
               });
  auto args = Args::parse(argv, specs);
  if (!args) return report(args.error());
  if (args->has("help")) {
    std::printf(
        "usage: abup finalize [--disk PATH] [--root DIR] [--reboot] [OPTIONS]\n\n"
        "Arm one try of the staged slot: it boots next, once; `abup commit` after the reboot\n"
        "makes it the default, otherwise the bootloader falls back.\n\n%s",
        format_options(specs).c_str());
    return 0;
  }
  auto common = load_common(*args);
  if (!common) return report(common.error());
  auto where = lifecycle_options(*args, *common);
  if (!where) return report(where.error());
  FinalizeOptions o{*where, args->get_or("version", ""), args->get_or("operation-id", ""),
                    args->has("allow-failed-version")};
  auto out = finalize(o);
  if (!out) return report(out.error());
  print_outcome(*out, args->has("json"));
  return args->has("reboot") ? reboot_after_arming(*args, common->config) : 0;
}

}  // namespace abup::agent::cli
