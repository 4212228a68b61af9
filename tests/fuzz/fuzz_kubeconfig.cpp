// libFuzzer: kubeconfig YAML (yaml-cpp) must never crash or let an exception escape; whatever
// parses names a server and, for a user, usable credentials.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "agent/kube/kubeconfig.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto k = abup::agent::kube::parse_kubeconfig(text, "/var/lib/kubelet");
  if (!k) return 0;
  if (!k->server.starts_with("http://") && !k->server.starts_with("https://")) {
    std::fprintf(stderr, "PROPERTY FAILED: server %s\n", k->server.c_str());
    std::abort();
  }
  return 0;
}
