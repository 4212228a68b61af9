// abup: the A/B image update agent.
#include <malloc.h>

#include <string>
#include <vector>

#include "abup/cli.hpp"
#include "agent/cli/common.hpp"

int main(int argc, char** argv) {
  // Frame buffers are a few MiB each: keep them mmap-backed so that freeing one returns it to
  // the system (glibc would otherwise raise its threshold and keep them on the heap).
  mallopt(M_MMAP_THRESHOLD, 256 * 1024);
  using namespace abup::agent::cli;
  const abup::cli::Program abup{
      .name = "abup",
      .summary = "abup: the A/B image update agent.",
      .commands = {stage_command(), finalize_command(), commit_command(), rollback_command(),
                   disarm_command(), status_command(), history_command(), daemon_command(),
                   check_command(), update_command()},
  };
  return abup::cli::run(abup, std::vector<std::string>(argv + 1, argv + argc));
}
