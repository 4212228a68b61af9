#include <cstdio>

#include "agent/cli/common.hpp"

namespace abup::agent::cli {
namespace {

std::vector<OptionSpec> finalize_options() {
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
  return specs;
}

int run_finalize(const Args& args) {
  auto common = load_common(args);
  if (!common) return report(common.error());
  auto where = lifecycle_options(args, *common);
  if (!where) return report(where.error());
  FinalizeOptions o{*where, args.get_or("version", ""), args.get_or("operation-id", ""),
                    args.has("allow-failed-version")};
  auto out = finalize(o);
  if (!out) return report(out.error());
  print_outcome(*out, args.has("json"));
  return args.has("reboot") ? reboot_after_arming(args, common->config) : 0;
}

}  // namespace

abup::cli::Command finalize_command() {
  return {
      .name = "finalize",
      .summary = "arm one try of the staged slot (then reboot)",
      .synopsis = "[--disk PATH] [--root DIR] [--reboot] [OPTIONS]",
      .description =
          "Arm one try of the staged slot: it boots next, once; `abup commit` after the reboot\n"
          "makes it the default, otherwise the bootloader falls back.",
      .options = finalize_options(),
      .run = run_finalize};
}

}  // namespace abup::agent::cli
