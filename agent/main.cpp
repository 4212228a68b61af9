// abup: the A/B image update agent.
#include <malloc.h>

#include <cstdio>
#include <string>
#include <vector>

#include "agent/cli/common.hpp"

namespace {

constexpr const char* kUsage = R"(usage: abup COMMAND [OPTIONS]

Commands:
  stage     verify a signed image and write it to the inactive slot
  finalize  arm one try of the staged slot (then reboot)
  commit    after the reboot: make the armed slot the default, or record its failure
  rollback  arm one try of the previous slot
  disarm    undo an arming before its reboot: the booted slot boots again
  status    show the slots, the bootloader's view, and what abup did to them
  history   the finished lifecycle operations
  daemon    run as the update service (what abup.service runs)
  check     ask the update server now which version it offers (sends no events)
  update    ask the running daemon to check for an update and stage it (--wait: follow it)

Run `abup COMMAND --help` for the options of one command.
)";

}  // namespace

int main(int argc, char** argv) {
  // Frame buffers are a few MiB each: keep them mmap-backed so that freeing one returns it to
  // the system (glibc would otherwise raise its threshold and keep them on the heap).
  mallopt(M_MMAP_THRESHOLD, 256 * 1024);
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "help") {
    std::fputs(kUsage, args.empty() ? stderr : stdout);
    return args.empty() ? 2 : 0;
  }
  std::string cmd = args[0];
  args.erase(args.begin());
  using namespace abup::agent::cli;
  if (cmd == "stage") return cmd_stage(args);
  if (cmd == "status") return cmd_status(args);
  if (cmd == "finalize") return cmd_finalize(args);
  if (cmd == "commit") return cmd_commit(args);
  if (cmd == "rollback") return cmd_rollback(args);
  if (cmd == "disarm") return cmd_disarm(args);
  if (cmd == "history") return cmd_history(args);
  if (cmd == "daemon") return cmd_daemon(args);
  if (cmd == "check") return cmd_check(args);
  if (cmd == "update") return cmd_update(args);
  std::fprintf(stderr, "abup: unknown command '%s'\n%s", cmd.c_str(), kUsage);
  return 2;
}
