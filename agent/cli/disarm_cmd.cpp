#include <cstdio>

#include "agent/cli/common.hpp"

namespace abup::agent::cli {

int cmd_disarm(const std::vector<std::string>& argv) {
  auto specs = common_options();
  auto b = backend_options();
  specs.insert(specs.end(), b.begin(), b.end());
  specs.push_back({"json", false, false, "print the outcome as JSON"});
  auto args = Args::parse(argv, specs);
  if (!args) return report(args.error());
  if (args->has("help")) {
    std::printf(
        "usage: abup disarm [--disk PATH] [--root DIR] [OPTIONS]\n\n"
        "Undo a finalize or rollback before its reboot: the slot it armed is no longer booted,\n"
        "the booted slot stays the default, the pending commit is dropped. A staged image stays\n"
        "staged (finalize arms it again); `abup stage` refuses an armed slot until then.\n\n%s",
        format_options(specs).c_str());
    return 0;
  }
  auto common = load_common(*args);
  if (!common) return report(common.error());
  auto where = lifecycle_options(*args, *common);
  if (!where) return report(where.error());
  auto out = disarm(*where);
  if (!out) return report(out.error());
  print_outcome(*out, args->has("json"));
  return 0;
}

}  // namespace abup::agent::cli
