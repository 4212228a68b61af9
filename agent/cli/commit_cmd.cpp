#include <cstdio>

#include "agent/cli/common.hpp"

namespace abup::agent::cli {
namespace {

// Exit status by outcome: what a boot-time unit needs to tell the cases apart.
constexpr int kExitNotRebooted = 2;
constexpr int kExitTargetBootFailed = 3;

std::vector<OptionSpec> commit_options() {
  auto specs = common_options();
  auto b = backend_options();
  specs.insert(specs.end(), b.begin(), b.end());
  specs.push_back({"json", false, false, "print the outcome as JSON"});
  return specs;
}

int run_commit(const Args& args) {
  auto common = load_common(args);
  if (!common) return report(common.error(), 1);
  auto where = lifecycle_options(args, *common);
  if (!where) return report(where.error(), 1);
  auto out = commit(*where);
  if (!out) return report(out.error(), 1);
  print_outcome(*out, args.has("json"));
  if (out->code == kNotRebooted) return kExitNotRebooted;
  if (out->code == kTargetBootFailed) return kExitTargetBootFailed;
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
              "Exit status: 0 committed or nothing to do, 2 the reboot has not happened yet,\n"
              "3 the armed slot failed to boot (TargetBootFailed), 1 error.",
          .options = commit_options(),
          .run = run_commit};
}

}  // namespace abup::agent::cli
