// Fault injection for crash tests: ABUP_FAULT=<point>:<n> makes the n-th pass through
// fault_point("<point>") kill the process with SIGKILL, as a power cut or OOM kill would;
// ABUP_FAULT=<point>:<n>:stop stops it instead (SIGSTOP; the passing thread stops before it goes
// on), so a test can change the world at that instant and let it go on (SIGCONT);
// ABUP_FAULT=<point>:<n>:sleep<S> holds only the passing thread for S seconds (a slow disk: what
// the process's other threads do meanwhile). Compiled in only with -DABUP_FAULT_INJECTION (the
// default for development and test builds; packages build with -DABUP_FAULT_INJECTION=OFF, where
// fault_point is an empty inline).
#pragma once

namespace abup {

#ifdef ABUP_FAULT_INJECTION
void fault_point(const char* point);
#else
inline void fault_point(const char*) {}
#endif

}  // namespace abup
