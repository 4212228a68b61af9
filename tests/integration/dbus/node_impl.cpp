// The lifecycle tests' disk-image node (tests/integration/lifecycle/node.*), compiled into this
// binary too: the D-Bus agent drives the same kind of node.
#include "integration/lifecycle/node.cpp"  // NOLINT(bugprone-suspicious-include)
