#include "agent/cli/common.hpp"

namespace abup::agent::cli {
namespace {

std::vector<OptionSpec> disarm_options() {
  auto specs = common_options();
  auto b = backend_options();
  specs.insert(specs.end(), b.begin(), b.end());
  specs.push_back({"json", false, false, "print the outcome as JSON"});
  return specs;
}

int run_disarm(const Args& args) {
  auto common = load_common(args);
  if (!common) return report(common.error());
  auto where = lifecycle_options(args, *common);
  if (!where) return report(where.error());
  auto out = disarm(*where);
  if (!out) return report(out.error());
  print_outcome(*out, args.has("json"));
  return 0;
}

}  // namespace

abup::cli::Command disarm_command() {
  return {.name = "disarm",
          .summary = "undo an arming before its reboot: the booted slot boots again",
          .synopsis = "[--disk PATH] [--root DIR] [OPTIONS]",
          .description =
              "Undo a finalize or rollback before its reboot: the slot it armed is no longer\n"
              "booted, the booted slot stays the default, the pending commit is dropped. A staged\n"
              "image stays staged (finalize arms it again); `abup stage` refuses an armed slot\n"
              "until then.",
          .options = disarm_options(),
          .run = run_disarm};
}

}  // namespace abup::agent::cli
