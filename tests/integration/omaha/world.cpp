// The stage tests' World (signed images, a disk and a running-system tree), compiled into this
// test binary too: the Omaha tests need the same real images.
#include "integration/stage/world.cpp"  // NOLINT(bugprone-suspicious-include)
