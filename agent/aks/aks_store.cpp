#include "agent/aks/aks_store.hpp"

#include <nlohmann/json.hpp>

namespace abup::agent::aks {

using json = nlohmann::json;
namespace contract = protocol::aks;

namespace {

constexpr std::size_t kKeep = 32;  // operations remembered for re-serving

json request_json(const contract::Request& r) {
  json j = {{"nodeUpdateId", r.node_update_id},
            {"operationId", r.operation_id},
            {"operation", contract::to_string(r.operation)}};
  if (!r.target_version.empty()) j["targetVersion"] = r.target_version;
  if (!r.server.empty()) j["server"] = r.server;
  if (!r.app_id.empty()) j["appId"] = r.app_id;
  if (!r.track.empty()) j["track"] = r.track;
  return j;
}

// Stored requests were validated when they arrived; re-validated here all the same.
Result<contract::Request> request_from(const JsonFields& parent) {
  ABUP_TRY(auto f, parent.object("request"));
  if (!f) return parent.error("request", "missing");
  json doc = f->raw();
  doc["schemaVersion"] = contract::kSchemaVersion;
  auto r = contract::parse_request(doc.dump());
  if (!r) return parent.error("request", r.error().message);
  return r;
}

Result<std::optional<contract::OperationStatus>> status_from(const JsonFields& parent,
                                                             std::string_view key) {
  ABUP_TRY(auto f, parent.object(key));
  if (!f) return std::optional<contract::OperationStatus>();
  auto s = contract::parse_status(f->raw().dump());
  if (!s) return parent.error(key, s.error().message);
  return std::optional<contract::OperationStatus>(std::move(*s));
}

Result<std::optional<Armed>> armed_from(const JsonFields& parent, std::string_view key) {
  ABUP_TRY(auto a, parent.object(key));
  if (!a) return std::optional<Armed>();
  Armed armed;
  ABUP_TRY(armed.request, request_from(*a));
  ABUP_TRY(armed.started_utc, a->string("startedUtc"));
  ABUP_TRY(armed.from_version, a->string("fromVersion"));
  ABUP_TRY(armed.to_version, a->string("toVersion"));
  ABUP_TRY(armed.pending_operation_id, a->string("pendingOperationId"));
  return std::optional<Armed>(std::move(armed));
}

json armed_json(const Armed& a) {
  json j = {{"request", request_json(a.request)},
            {"startedUtc", a.started_utc},
            {"fromVersion", a.from_version},
            {"toVersion", a.to_version}};
  if (!a.pending_operation_id.empty()) j["pendingOperationId"] = a.pending_operation_id;
  return j;
}

}  // namespace

CachedOperation* AksState::find(const std::string& id) {
  for (auto& c : cache)
    if (c.operation_id == id) return &c;
  return nullptr;
}

void AksState::remember(const contract::OperationStatus& s, bool commit_phase) {
  CachedOperation* c = find(s.operation_id);
  if (!c) {
    cache.push_back({s.operation_id, {}, {}});
    c = &cache.back();
  }
  (commit_phase ? c->commit : c->operation) = s;
  if (cache.size() > kKeep) cache.erase(cache.begin());
}

Result<AksState> AksState::from_json(const JsonFields& top) {
  AksState st;
  ABUP_TRY(auto ops, top.objects("operations"));
  for (const auto& op : ops) {
    CachedOperation c;
    ABUP_TRY(c.operation_id, op.string("operationId"));
    ABUP_TRY(c.operation, status_from(op, "operation"));
    ABUP_TRY(c.commit, status_from(op, "commit"));
    st.cache.push_back(std::move(c));
  }
  ABUP_TRY(auto f, top.object("inFlight"));
  if (f) {
    InFlight in;
    ABUP_TRY(in.request, request_from(*f));
    ABUP_TRY(in.started_utc, f->string("startedUtc"));
    ABUP_TRY(in.from_version, f->string("fromVersion"));
    ABUP_TRY(in.superseded, armed_from(*f, "superseded"));
    st.in_flight = std::move(in);
  }
  ABUP_TRY(st.armed, armed_from(top, "armed"));
  ABUP_TRY(auto s, top.object("staged"));
  if (s) {
    Staged staged;
    ABUP_TRY(staged.node_update_id, s->string("nodeUpdateId"));
    ABUP_TRY(staged.version, s->string("version"));
    ABUP_TRY(staged.operation_id, s->string("operationId"));
    st.staged = std::move(staged);
  }
  return st;
}

json AksState::to_json() const {
  json doc;
  doc["operations"] = json::array();
  for (const auto& c : cache) {
    json j = {{"operationId", c.operation_id}};
    if (c.operation) j["operation"] = json::parse(*contract::serialize_status(*c.operation));
    if (c.commit) j["commit"] = json::parse(*contract::serialize_status(*c.commit));
    doc["operations"].push_back(std::move(j));
  }
  if (in_flight) {
    doc["inFlight"] = {{"request", request_json(in_flight->request)},
                       {"startedUtc", in_flight->started_utc},
                       {"fromVersion", in_flight->from_version}};
    if (in_flight->superseded) doc["inFlight"]["superseded"] = armed_json(*in_flight->superseded);
  }
  if (armed) doc["armed"] = armed_json(*armed);
  if (staged)
    doc["staged"] = {{"nodeUpdateId", staged->node_update_id},
                     {"version", staged->version},
                     {"operationId", staged->operation_id}};
  return doc;
}

}  // namespace abup::agent::aks
