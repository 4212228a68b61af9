#include "agent/kube/client.hpp"

#include <nlohmann/json.hpp>

#include "abup/fs.hpp"
#include "abup/hex.hpp"
#include "agent/state.hpp"

namespace abup::agent::kube {

using json = nlohmann::json;

namespace {

constexpr std::size_t kMaxLine = 16 << 20;  // a watch event line: one Node object

Result<NodeObject> node_from(const json& doc) {
  auto bad = [](const std::string& why) {
    return make_error(Errc::invalid_input, "Node object: " + why);
  };
  if (!doc.is_object()) return bad("not a v1 Node");
  // Looked at by type first: value() throws on a non-string "kind".
  if (auto k = doc.find("kind"); k != doc.end() && !(k->is_string() && *k == "Node"))
    return bad("not a v1 Node");
  auto meta = doc.find("metadata");
  if (meta == doc.end() || !meta->is_object()) return bad("no metadata");
  NodeObject n;
  auto str = [&](const char* key) {
    auto it = meta->find(key);
    return it != meta->end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  n.name = str("name");
  n.uid = str("uid");
  n.resource_version = str("resourceVersion");
  if (n.name.empty()) return bad("metadata.name missing");
  if (auto a = meta->find("annotations"); a != meta->end() && !a->is_null()) {
    if (!a->is_object()) return bad("metadata.annotations is not an object");
    for (const auto& [k, v] : a->items()) {
      if (!v.is_string()) return bad("annotation " + k + " is not a string");
      n.annotations[k] = v.get<std::string>();
    }
  }
  return n;
}

}  // namespace

Result<NodeObject> parse_node(std::string_view text) {
  json doc = json::parse(text.begin(), text.end(), nullptr, false);
  if (doc.is_discarded()) return make_error(Errc::invalid_input, "Node object: not valid JSON");
  return node_from(doc);
}

Client::Client(Kubeconfig config, const protocol::TransportOptions& base)
    : config_(std::move(config)), transport_(transport_for(config_, base)) {
  // A watch is idle for minutes when nothing changes: no low-speed abort, no retries (the
  // watcher resumes from its resourceVersion instead).
  stream_transport_ = transport_;
  stream_transport_.low_speed_limit = 0;
  stream_transport_.max_retries = 0;
}

Result<std::map<std::string, std::string>> Client::headers(const char* content_type) const {
  std::map<std::string, std::string> h{{"Accept", "application/json"}};
  if (content_type) h["Content-Type"] = content_type;
  std::string token = config_.token;
  if (!config_.token_file.empty()) {
    ABUP_TRY(token, read_file(config_.token_file));
    while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) token.pop_back();
  }
  if (!token.empty()) h["Authorization"] = "Bearer " + token;
  return h;
}

Error Client::api_error(const std::string& what, const protocol::HttpResponse& r) const {
  // The API server explains itself in a v1/Status body.
  std::string detail;
  json doc = json::parse(r.body, nullptr, false);
  if (doc.is_object() && doc.contains("message") && doc["message"].is_string())
    detail = ": " + doc["message"].get<std::string>();
  Errc code = r.status == 404                                         ? Errc::not_found
              : r.status >= 500 || r.status == 429 || r.status == 409 ? Errc::network
              : r.status == 401 || r.status == 403                    ? Errc::untrusted
                                                                      : Errc::failed;
  return make_error(code, what + ": HTTP " + std::to_string(r.status) + detail);
}

Result<NodeObject> Client::get_node(const std::string& name) const {
  ABUP_TRY(auto h, headers(nullptr));
  const std::string what = "GET Node " + name;
  ABUP_TRY(auto r,
           protocol::http_request("GET", config_.server + "/api/v1/nodes/" + percent_encode(name),
                                  h, "", transport_));
  if (r.status != 200) return api_error(what, r);
  auto n = parse_node(r.body);
  if (!n) return std::move(n).error().with_context(what);
  return n;
}

Result<NodeObject> Client::patch_annotations(
    const std::string& name,
    const std::map<std::string, std::optional<std::string>>& annotations) const {
  json patch;
  auto& a = patch["metadata"]["annotations"] = json::object();
  for (const auto& [k, v] : annotations) a[k] = v ? json(*v) : json(nullptr);
  ABUP_TRY(auto h, headers("application/merge-patch+json"));
  const std::string what = "PATCH Node " + name;
  ABUP_TRY(auto r, protocol::http_request(
                       "PATCH", config_.server + "/api/v1/nodes/" + percent_encode(name), h,
                       patch.dump(-1, ' ', false, json::error_handler_t::replace), transport_));
  if (r.status != 200) return api_error(what, r);
  auto n = parse_node(r.body);
  if (!n) return std::move(n).error().with_context(what);
  return n;
}

Status Client::post_event(const NodeObject& node, const EventSpec& e) const {
  const std::string now = now_utc();
  json ev = {
      {"apiVersion", "v1"},
      {"kind", "Event"},
      {"metadata", {{"generateName", node.name + ".abup-"}, {"namespace", "default"}}},
      {"involvedObject",
       {{"apiVersion", "v1"}, {"kind", "Node"}, {"name", node.name}, {"uid", node.uid}}},
      {"reason", e.reason},
      {"message", e.message},
      {"type", e.type},
      {"source", {{"component", "abup"}, {"host", node.name}}},
      {"reportingComponent", "abup"},
      {"reportingInstance", node.name},
      {"firstTimestamp", now},
      {"lastTimestamp", now},
      {"count", 1},
  };
  ABUP_TRY(auto h, headers("application/json"));
  ABUP_TRY(auto r, protocol::http_request(
                       "POST", config_.server + "/api/v1/namespaces/default/events", h,
                       ev.dump(-1, ' ', false, json::error_handler_t::replace), transport_));
  if (r.status != 201 && r.status != 200) return api_error("POST Event " + e.reason, r);
  return {};
}

Result<WatchEnd> Client::watch_node(const std::string& name, std::string& resource_version,
                                    int timeout_seconds, const std::atomic<bool>& stop,
                                    const std::function<bool(const NodeObject&)>& on_node) const {
  ABUP_TRY(auto h, headers(nullptr));
  std::string url = config_.server + "/api/v1/nodes?watch=true&fieldSelector=" +
                    percent_encode("metadata.name=" + name) + "&allowWatchBookmarks=true" +
                    "&resourceVersion=" + percent_encode(resource_version) +
                    "&timeoutSeconds=" + std::to_string(timeout_seconds);
  protocol::TransportOptions t = stream_transport_;
  t.cancel = &stop;
  std::string pending;
  std::optional<Error> failure;
  std::optional<WatchEnd> end;
  auto on_line = [&](std::string_view line) -> bool {
    json ev = json::parse(line.begin(), line.end(), nullptr, false);
    if (ev.is_discarded() || !ev.is_object() || !ev.contains("type") || !ev["type"].is_string()) {
      failure = make_error(Errc::invalid_input, "watch Node " + name + ": malformed event line");
      return false;
    }
    std::string type = ev["type"];
    const json& obj = ev.contains("object") ? ev["object"] : json();
    if (type == "ERROR") {
      // A v1/Status; 410 (Expired/Gone) means the resourceVersion is too old. Either way the
      // safe answer is a fresh list.
      end = WatchEnd::expired;
      return false;
    }
    auto node = node_from(obj);
    if (!node) {
      failure = std::move(node).error().with_context("watch Node " + name);
      return false;
    }
    if (!node->resource_version.empty()) resource_version = node->resource_version;
    if (type == "BOOKMARK") return true;
    if (type == "DELETED") {
      failure = make_error(Errc::not_found, "watch Node " + name + ": the Node was deleted");
      return false;
    }
    if (!on_node(*node)) {
      end = WatchEnd::stopped;
      return false;
    }
    return true;
  };
  auto r = protocol::http_stream(url, h, t, [&](std::string_view piece) -> bool {
    pending.append(piece);
    std::size_t start = 0;
    for (std::size_t nl; (nl = pending.find('\n', start)) != std::string::npos; start = nl + 1) {
      std::string_view line(pending.data() + start, nl - start);
      if (line.find_first_not_of(" \r\t") == std::string_view::npos) continue;
      if (!on_line(line)) return false;
    }
    pending.erase(0, start);
    if (pending.size() > kMaxLine) {
      failure = make_error(Errc::invalid_input, "watch Node " + name + ": event line too long");
      return false;
    }
    return true;
  });
  if (failure) return std::move(*failure);
  if (end) return *end;
  if (!r) {
    if (r.error().code == Errc::cancelled) return WatchEnd::stopped;
    return std::move(r).error();
  }
  if (r->status == 410) return WatchEnd::expired;
  if (r->status != 200) return api_error("watch Node " + name, *r);
  return WatchEnd::closed;
}

}  // namespace abup::agent::kube
