#include <cstdio>

#include "agent/cli/common.hpp"

namespace abup::agent::cli {

// Exit status by outcome: what a boot-time unit needs to tell the cases apart.
constexpr int kExitNotRebooted = 2;
constexpr int kExitTargetBootFailed = 3;

int cmd_commit(const std::vector<std::string>& argv) {
  auto specs = common_options();
  auto b = backend_options();
  specs.insert(specs.end(), b.begin(), b.end());
  specs.push_back({"json", false, false, "print the outcome as JSON"});
  auto args = Args::parse(argv, specs);
  if (!args) return report(args.error(), 1);
  if (args->has("help")) {
    std::printf(
        "usage: abup commit [--disk PATH] [--root DIR] [--json] [OPTIONS]\n\n"
        "Run at boot. With an armed slot and a new boot id: if the armed slot is booted, make it\n"
        "the good default; if the bootloader fell back, mark it bad and record the failure.\n\n"
        "Exit status: 0 committed or nothing to do, 2 the reboot has not happened yet,\n"
        "3 the armed slot failed to boot (TargetBootFailed), 1 error.\n\n%s",
        format_options(specs).c_str());
    return 0;
  }
  auto common = load_common(*args);
  if (!common) return report(common.error(), 1);
  auto where = lifecycle_options(*args, *common);
  if (!where) return report(where.error(), 1);
  auto out = commit(*where);
  if (!out) return report(out.error(), 1);
  print_outcome(*out, args->has("json"));
  if (out->code == kNotRebooted) return kExitNotRebooted;
  if (out->code == kTargetBootFailed) return kExitTargetBootFailed;
  return 0;
}

}  // namespace abup::agent::cli
