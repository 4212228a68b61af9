// A small Kubernetes API client on libcurl, for what a node agent with kubelet's credentials
// (system:node:NAME) may do: read and watch its own Node, merge-patch its annotations, create
// Events about it.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "abup/result.hpp"
#include "agent/kube/kubeconfig.hpp"
#include "update-protocol/http/client.hpp"

namespace abup::agent::kube {

struct NodeObject {
  std::string name, uid, resource_version;
  std::map<std::string, std::string> annotations;
};

// Parses a v1/Node JSON object (what GET, PATCH and watch events carry).
[[nodiscard]] Result<NodeObject> parse_node(std::string_view json);

struct EventSpec {
  std::string type = "Normal";  // Normal | Warning
  std::string reason;           // CamelCase, e.g. "UpdateStageSucceeded"
  std::string message;
};

// How a watch ended when it did not fail.
enum class WatchEnd {
  closed,   // the server ended the stream (timeoutSeconds): resume from the last resourceVersion
  expired,  // 410 Gone or an ERROR event: the resourceVersion is too old, list again
  stopped,  // on_node returned false or `stop` was set
};

class Client {
 public:
  Client(Kubeconfig config, const protocol::TransportOptions& base);

  // Errc::not_found when the Node does not exist (404).
  [[nodiscard]] Result<NodeObject> get_node(const std::string& name) const;
  // application/merge-patch+json of metadata.annotations; a nullopt value removes the key.
  [[nodiscard]] Result<NodeObject> patch_annotations(
      const std::string& name,
      const std::map<std::string, std::optional<std::string>>& annotations) const;
  // POST /api/v1/namespaces/default/events, involvedObject = the Node.
  [[nodiscard]] Status post_event(const NodeObject& node, const EventSpec& event) const;
  // One watch request from `resource_version`; on_node gets every ADDED/MODIFIED object
  // (Errc::not_found after a DELETED event or a 404). `resource_version` is advanced as events
  // arrive (including BOOKMARKs), so a closed stream resumes where it stopped.
  [[nodiscard]] Result<WatchEnd> watch_node(
      const std::string& name, std::string& resource_version, int timeout_seconds,
      const std::atomic<bool>& stop, const std::function<bool(const NodeObject&)>& on_node) const;

  [[nodiscard]] const Kubeconfig& config() const { return config_; }

 private:
  [[nodiscard]] Result<std::map<std::string, std::string>> headers(const char* content_type) const;
  [[nodiscard]] Error api_error(const std::string& what, const protocol::HttpResponse& r) const;

  Kubeconfig config_;
  protocol::TransportOptions transport_;
  protocol::TransportOptions stream_transport_;
};

}  // namespace abup::agent::kube
