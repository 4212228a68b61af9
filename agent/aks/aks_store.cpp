#include "agent/aks/aks_store.hpp"

#include <nlohmann/json.hpp>

#include "abup/fs.hpp"

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

Result<contract::Request> request_from(const json& j) {
  // Stored requests were validated when they arrived; re-validated here all the same.
  json doc = j;
  doc["schemaVersion"] = contract::kSchemaVersion;
  return contract::parse_request(doc.dump());
}

Result<contract::OperationStatus> status_from(const json& j) {
  return contract::parse_status(j.dump());
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

Result<AksState> load_aks_state(const std::filesystem::path& dir) {
  auto path = dir / "aks.json";
  auto text = read_file(path);
  if (!text) {
    if (text.error().code == Errc::not_found) return AksState{};
    return std::move(text).error();
  }
  auto bad = [&](const std::string& why) {
    return make_error(Errc::invalid_input, path.string() + ": " + why);
  };
  json doc = json::parse(*text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) return bad("not a JSON object");
  AksState st;
  for (const auto& op : doc.value("operations", json::array())) {
    CachedOperation c;
    c.operation_id = op.value("operationId", "");
    for (auto [key, out] : {std::pair{"operation", &c.operation}, std::pair{"commit", &c.commit}})
      if (op.contains(key)) {
        auto s = status_from(op[key]);
        if (!s) return bad(s.error().message);
        *out = std::move(*s);
      }
    st.cache.push_back(std::move(c));
  }
  if (doc.contains("inFlight")) {
    const json& f = doc["inFlight"];
    auto r = request_from(f["request"]);
    if (!r) return bad("inFlight: " + r.error().message);
    st.in_flight = InFlight{*r, f.value("startedUtc", ""), f.value("fromVersion", "")};
  }
  if (doc.contains("armed")) {
    const json& a = doc["armed"];
    auto r = request_from(a["request"]);
    if (!r) return bad("armed: " + r.error().message);
    st.armed =
        Armed{*r, a.value("startedUtc", ""), a.value("fromVersion", ""), a.value("toVersion", "")};
  }
  if (doc.contains("staged")) {
    const json& s = doc["staged"];
    st.staged =
        Staged{s.value("nodeUpdateId", ""), s.value("version", ""), s.value("operationId", "")};
  }
  return st;
}

Status save_aks_state(const std::filesystem::path& dir, const AksState& st) {
  json doc;
  doc["schemaVersion"] = 1;
  doc["operations"] = json::array();
  for (const auto& c : st.cache) {
    json j = {{"operationId", c.operation_id}};
    if (c.operation) j["operation"] = json::parse(*contract::serialize_status(*c.operation));
    if (c.commit) j["commit"] = json::parse(*contract::serialize_status(*c.commit));
    doc["operations"].push_back(std::move(j));
  }
  if (st.in_flight)
    doc["inFlight"] = {{"request", request_json(st.in_flight->request)},
                       {"startedUtc", st.in_flight->started_utc},
                       {"fromVersion", st.in_flight->from_version}};
  if (st.armed)
    doc["armed"] = {{"request", request_json(st.armed->request)},
                    {"startedUtc", st.armed->started_utc},
                    {"fromVersion", st.armed->from_version},
                    {"toVersion", st.armed->to_version}};
  if (st.staged)
    doc["staged"] = {{"nodeUpdateId", st.staged->node_update_id},
                     {"version", st.staged->version},
                     {"operationId", st.staged->operation_id}};
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  return atomic_write_file(dir / "aks.json", doc.dump(2) + "\n", 0600);
}

}  // namespace abup::agent::aks
