// The lifecycle tests' disk-image node, compiled into this test binary as well.
#include "integration/lifecycle/node.cpp"  // NOLINT(bugprone-suspicious-include)
