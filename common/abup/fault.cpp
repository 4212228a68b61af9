#include "abup/fault.hpp"

#ifdef ABUP_FAULT_INJECTION
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

namespace abup {

void fault_point(const char* point) {
  static const char* spec = std::getenv("ABUP_FAULT");
  static std::atomic<long> hits{0};
  if (!spec) return;
  std::string_view s(spec);
  const bool stop = s.ends_with(":stop");
  if (stop) s.remove_suffix(5);
  const auto colon = s.rfind(':');
  if (colon == std::string_view::npos || s.substr(0, colon) != point) return;
  if (++hits == std::atol(std::string(s.substr(colon + 1)).c_str()))
    ::kill(::getpid(), stop ? SIGSTOP : SIGKILL);
}

}  // namespace abup
#endif
