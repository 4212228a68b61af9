// The lifecycle tests' node (disk image, running-system tree, simulated reboots), shared here
// rather than copied: each test folder is its own binary.
#include "../lifecycle/node.cpp"  // NOLINT(bugprone-suspicious-include)
