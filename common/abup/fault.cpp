#include "abup/fault.hpp"

#ifdef ABUP_FAULT_INJECTION
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>

namespace abup {

void fault_point(const char* point) {
  static const char* spec = std::getenv("ABUP_FAULT");
  static std::atomic<long> hits{0};
  if (!spec) return;
  std::string_view s(spec);
  const bool stop = s.ends_with(":stop");
  if (stop) s.remove_suffix(5);
  long sleep_seconds = 0;
  if (auto at = s.rfind(":sleep"); at != std::string_view::npos) {
    sleep_seconds = std::atol(std::string(s.substr(at + 6)).c_str());
    s = s.substr(0, at);
  }
  const auto colon = s.rfind(':');
  if (colon == std::string_view::npos || s.substr(0, colon) != point) return;
  if (++hits != std::atol(std::string(s.substr(colon + 1)).c_str())) return;
  if (sleep_seconds > 0)
    std::this_thread::sleep_for(std::chrono::seconds(sleep_seconds));
  else if (stop)
    // Directed at this thread: it takes the stop on its way out of tgkill, before running on. A
    // process-directed SIGSTOP goes to the main thread, and this one ran on (into the very reads a
    // test stops it before) until the group stop reached it.
    ::tgkill(::getpid(), ::gettid(), SIGSTOP);
  else
    ::kill(::getpid(), SIGKILL);
}

}  // namespace abup
#endif
