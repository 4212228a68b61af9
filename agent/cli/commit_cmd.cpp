#include <cstdio>

#include "agent/cli/common.hpp"

namespace abup::agent::cli {
namespace {

std::vector<OptionSpec> commit_options() {
  auto specs = common_options();
  auto b = backend_options();
  specs.insert(specs.end(), b.begin(), b.end());
  specs.push_back({"json", false, false, "print the outcome as JSON"});
  return specs;
}

int run_commit(const Args& args) {
  auto common = load_common(args);
  if (!common) return report(common.error());
  auto where = lifecycle_options(args, *common);
  if (!where) return report(where.error());
  auto out = commit(*where);
  if (!out) return report(out.error());
  print_outcome(*out, args.has("json"));
  if (out->code == OutcomeCode::not_rebooted) return abup::cli::kExitNotRebooted;
  if (out->code == OutcomeCode::target_boot_failed) return abup::cli::kExitTargetBootFailed;
  return 0;
}

}  // namespace

abup::cli::Command commit_command() {
  return {.name = "commit",
          .summary = "after the reboot: make the armed slot the default, or record its failure",
          .synopsis = "[--disk PATH] [--root DIR] [--json] [OPTIONS]",
          .description =
              "Run at boot. With an armed slot and a new boot id: if the armed slot is booted,\n"
              "make it the good default; if the bootloader fell back, mark it bad and record the\n"
              "failure.\n\n"
              "Exit status: 0 committed or nothing to do, 3 the armed slot failed to boot\n"
              "(TargetBootFailed), 4 the reboot has not happened yet, 1 error, 2 bad options or\n"
              "configuration.",
          .options = commit_options(),
          .run = run_commit};
}

}  // namespace abup::agent::cli
