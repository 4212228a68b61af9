// kubeconfig (kubelet's /var/lib/kubelet/kubeconfig): the current context's cluster (server, CA)
// and user (client certificate and key, or a bearer token), as files or inline base64 data.
// Parsing is pure and fuzzable; relative file paths are resolved against the kubeconfig's folder,
// as kubectl does.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "abup/result.hpp"
#include "update-protocol/http/client.hpp"

namespace abup::agent::kube {

struct Kubeconfig {
  std::string context, cluster, user;  // names, for messages
  std::string server;                  // https://host:port
  std::string ca_file, ca_pem;         // one or neither (then the system store)
  std::string client_cert_file, client_cert_pem;
  std::string client_key_file, client_key_pem;
  std::string token;       // inline bearer token
  std::string token_file;  // re-read for every request (it is rotated)
};

[[nodiscard]] Result<Kubeconfig> parse_kubeconfig(std::string_view yaml,
                                                  const std::filesystem::path& base_dir);
[[nodiscard]] Result<Kubeconfig> load_kubeconfig(const std::filesystem::path& path);

// `base` with the kubeconfig's CA and client credentials applied (inline data stays in memory).
[[nodiscard]] protocol::TransportOptions transport_for(const Kubeconfig& config,
                                                       protocol::TransportOptions base);

}  // namespace abup::agent::kube
