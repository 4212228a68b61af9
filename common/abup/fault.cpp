#include "abup/fault.hpp"

#ifdef ABUP_FAULT_INJECTION
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

namespace abup {

void fault_point(const char* point) {
  static const char* spec = std::getenv("ABUP_FAULT");
  static std::atomic<long> hits{0};
  if (!spec) return;
  const char* colon = std::strrchr(spec, ':');
  if (!colon || std::string(spec, colon) != point) return;
  if (++hits == std::atol(colon + 1)) ::kill(::getpid(), SIGKILL);
}

}  // namespace abup
#endif
