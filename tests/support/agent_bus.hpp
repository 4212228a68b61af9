// A private system bus for abup's D-Bus API tests: a real dbus-daemon on a unix socket in a
// scratch directory, with the system bus's default policy (Debian's system.conf) and abup's own
// policy file systemd-units/org.abup.Agent1.conf, so the tests run under the policy a node has.
// The policy names group abup; where that group does not exist, the same file is loaded with
// group nogroup. A bus started by a non-root user also allows that user to own the name (the
// policy reserves it for root); policy tests skip then.
#pragma once

#include <sys/types.h>

#include <string>

#include "support/util.hpp"

namespace abup::test {

class AgentBus {
 public:
  // `open_to_all`: a wrong policy is installed beside abup's, letting every user call the API,
  // to prove that abup's own caller check holds without the policy file.
  explicit AgentBus(bool open_to_all = false);
  ~AgentBus();
  AgentBus(const AgentBus&) = delete;
  AgentBus& operator=(const AgentBus&) = delete;

  [[nodiscard]] const std::string& address() const { return address_; }
  // "DBUS_SYSTEM_BUS_ADDRESS='unix:path=...'", to prefix a command with.
  [[nodiscard]] std::string env() const;
  // The group the loaded policy lets call the API ("abup" or "nogroup").
  [[nodiscard]] const std::string& group() const { return group_; }
  // Whether the policy is the shipped one unchanged but for the group (the bus runs as root).
  [[nodiscard]] bool strict() const { return strict_; }

 private:
  TempDir dir_;
  std::string address_, group_;
  bool strict_ = true;
  pid_t pid_ = -1;
};

}  // namespace abup::test
