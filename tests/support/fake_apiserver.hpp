// A strict fake Kubernetes API server on loopback (Boost.Beast over TLS, client certificates
// verified against its own CA as a real apiserver does): one v1/Node, GET, RFC 7386 merge-PATCH
// with resourceVersion bumps, chunked watch streams (fieldSelector, resourceVersion,
// timeoutSeconds, 410 for compacted versions), Events, and faults on demand. It records every
// request so tests assert on what the agent asked.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "support/util.hpp"

namespace abup::test {

struct ApiRequest {
  std::string method, target, content_type, body;
  std::string identity;  // client certificate CN, or "token:<token>", or "" (anonymous)
};

class FakeApiServer {
 public:
  // extra_sans: more subjectAltName entries of the server certificate ("IP:10.0.2.2",
  // "DNS:name"), for clients that reach the loopback server through another address (a QEMU
  // guest on user networking sees the host as 10.0.2.2).
  explicit FakeApiServer(std::string node_name, std::vector<std::string> extra_sans = {});
  ~FakeApiServer();
  FakeApiServer(const FakeApiServer&) = delete;
  FakeApiServer& operator=(const FakeApiServer&) = delete;

  [[nodiscard]] std::string server_url() const;  // https://127.0.0.1:PORT
  // A kubeconfig for system:node:<name> with files (inline = false) or *-data members; `server`
  // replaces server_url() (the same server as another client reaches it).
  [[nodiscard]] std::filesystem::path write_kubeconfig(bool inline_data,
                                                       const std::string& server = "") const;
  // A kubeconfig using a bearer token file instead of a client certificate.
  [[nodiscard]] std::filesystem::path write_token_kubeconfig(const std::string& token) const;
  [[nodiscard]] const std::filesystem::path& dir() const;

  // The control plane's side.
  void set_annotation(const std::string& key, const std::string& value);
  [[nodiscard]] std::string annotation(const std::string& key) const;  // "" when absent
  [[nodiscard]] nlohmann::json node() const;                           // null when deleted
  void delete_node();
  // Forgets history: watches from an older resourceVersion get an ERROR event (410 Expired).
  void compact();
  // Closes every open watch stream mid-way (after a partial line).
  void break_watches();
  // The next `times` requests with this method ("*" any) are answered `status`.
  void fail(const std::string& method, int status, int times);
  // While down, connections are accepted and closed at once (the server is unreachable).
  void set_down(bool down);

  [[nodiscard]] std::vector<ApiRequest> requests() const;
  [[nodiscard]] std::vector<nlohmann::json> events() const;
  // Every value the annotation took, in order (from PATCHes by the agent).
  [[nodiscard]] std::vector<std::string> annotation_history(const std::string& key) const;
  [[nodiscard]] int watch_count() const;  // watch requests started

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace abup::test
