#include "agent/state.hpp"

#include <fcntl.h>
#include <sys/file.h>

#include <ctime>
#include <nlohmann/json.hpp>

#include "update-protocol/manifest/manifest.hpp"

namespace abup::agent {

using json = nlohmann::json;

namespace {
constexpr std::string_view kNames[] = {"unknown", "staging",   "staged",
                                       "armed",   "committed", "failed"};
}

std::string_view to_string(SlotState s) {
  return kNames[static_cast<int>(s)];
}

std::optional<SlotState> parse_slot_state(std::string_view s) {
  for (int i = 0; i < 6; ++i)
    if (kNames[i] == s) return static_cast<SlotState>(i);
  return std::nullopt;
}

std::string now_utc() {
  return protocol::format_utc_time(std::time(nullptr));
}

const SlotRecord* State::slot(const std::string& partuuid) const {
  auto it = slots.find(partuuid);
  return it == slots.end() ? nullptr : &it->second;
}

const FailedVersion* State::failed_version(const std::string& version) const {
  for (const auto& f : failed_versions)
    if (f.version == version) return &f;
  return nullptr;
}

namespace {

json pending_to_json(const PendingCommit& p) {
  return {{"operationId", p.operation_id},
          {"kind", p.kind},
          {"targetSlot", std::string(1, p.target_slot)},
          {"targetPartuuid", p.target_partuuid},
          {"targetVersion", p.target_version},
          {"previousPartuuid", p.previous_partuuid},
          {"previousVersion", p.previous_version},
          {"bootId", p.boot_id},
          {"backend", p.backend},
          {"armedAt", p.armed_at}};
}

std::optional<PendingCommit> pending_from_json(const json& j) {
  if (!j.is_object()) return std::nullopt;
  PendingCommit p;
  p.operation_id = j.value("operationId", "");
  p.kind = j.value("kind", "finalize");
  auto slot = j.value("targetSlot", "");
  if (slot != "A" && slot != "B") return std::nullopt;
  p.target_slot = slot[0];
  p.target_partuuid = j.value("targetPartuuid", "");
  p.target_version = j.value("targetVersion", "");
  p.previous_partuuid = j.value("previousPartuuid", "");
  p.previous_version = j.value("previousVersion", "");
  p.boot_id = j.value("bootId", "");
  p.backend = j.value("backend", "");
  p.armed_at = j.value("armedAt", "");
  if (p.operation_id.empty() || p.target_partuuid.empty()) return std::nullopt;
  return p;
}

}  // namespace

json pending_json(const PendingCommit& p) {
  return pending_to_json(p);
}

Result<State> StateStore::load() const {
  auto path = dir_ / "state.json";
  auto text = read_file(path);
  if (!text) {
    if (text.error().code == Errc::not_found) return State{};
    return std::move(text).error();
  }
  auto bad = [&](const std::string& why) {
    return make_error(Errc::invalid_input,
                      path.string() + ": " + why + " (move it aside to start from an empty state)");
  };
  json doc = json::parse(*text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) return bad("not a JSON object");
  State st;
  auto slots = doc.find("slots");
  if (slots != doc.end()) {
    if (!slots->is_object()) return bad("slots: expected an object");
    for (auto& [uuid, rec] : slots->items()) {
      if (!rec.is_object()) return bad("slots." + uuid + ": expected an object");
      SlotRecord r;
      auto state = parse_slot_state(rec.value("state", "unknown"));
      if (!state) return bad("slots." + uuid + ".state: unknown value");
      r.state = *state;
      r.version = rec.value("version", "");
      r.manifest_sha256 = rec.value("manifestSha256", "");
      r.source = rec.value("source", "");
      r.updated_at = rec.value("updatedAt", "");
      r.error = rec.value("error", "");
      if (auto bf = rec.find("bootFiles"); bf != rec.end()) {
        if (!bf->is_array()) return bad("slots." + uuid + ".bootFiles: expected an array");
        for (const auto& e : *bf) {
          if (!e.is_object() || !e.value("size", json()).is_number_unsigned())
            return bad("slots." + uuid + ".bootFiles: expected {name, path, size, sha256}");
          r.boot_files.push_back({e.value("name", ""), e.value("path", ""),
                                  e["size"].get<std::uint64_t>(), e.value("sha256", "")});
        }
      }
      st.slots[uuid] = std::move(r);
    }
  }
  // Files written before the lifecycle commands have neither key.
  if (auto p = doc.find("pending"); p != doc.end() && !p->is_null()) {
    st.pending = pending_from_json(*p);
    if (!st.pending) return bad("pending: expected operationId, targetSlot A|B, targetPartuuid");
  }
  if (auto f = doc.find("failedVersions"); f != doc.end()) {
    if (!f->is_array()) return bad("failedVersions: expected an array");
    for (const auto& e : *f) {
      if (!e.is_object()) return bad("failedVersions: expected objects");
      st.failed_versions.push_back({e.value("version", ""), e.value("code", ""),
                                    e.value("operationId", ""), e.value("at", "")});
    }
  }
  return st;
}

Status StateStore::save(const State& st) const {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  json doc;
  doc["schemaVersion"] = 1;
  doc["slots"] = json::object();
  for (const auto& [uuid, r] : st.slots) {
    json j = {{"state", to_string(r.state)}, {"version", r.version}, {"updatedAt", r.updated_at}};
    if (!r.manifest_sha256.empty()) j["manifestSha256"] = r.manifest_sha256;
    if (!r.source.empty()) j["source"] = r.source;
    if (!r.error.empty()) j["error"] = r.error;
    for (const auto& b : r.boot_files)
      j["bootFiles"].push_back(
          {{"name", b.name}, {"path", b.path}, {"size", b.size}, {"sha256", b.sha256}});
    doc["slots"][uuid] = std::move(j);
  }
  if (st.pending) doc["pending"] = pending_to_json(*st.pending);
  if (!st.failed_versions.empty()) {
    doc["failedVersions"] = json::array();
    for (const auto& f : st.failed_versions)
      doc["failedVersions"].push_back({{"version", f.version},
                                       {"code", f.code},
                                       {"operationId", f.operation_id},
                                       {"at", f.at}});
  }
  return atomic_write_file(dir_ / "state.json", doc.dump(2) + "\n", 0600);
}

Status StateStore::save_manifest(const std::string& partuuid, std::string_view text) const {
  std::error_code ec;
  std::filesystem::create_directories(dir_ / "manifests", ec);
  return atomic_write_file(dir_ / "manifests" / (partuuid + ".json"), text, 0600);
}

Result<std::string> StateStore::load_manifest(const std::string& partuuid) const {
  return read_file(dir_ / "manifests" / (partuuid + ".json"));
}

Result<Fd> StateStore::lock() const {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) return make_error(Errc::io, "create " + dir_.string() + ": " + ec.message());
  ABUP_TRY(Fd fd, open_file(dir_ / "lock", O_RDWR | O_CREAT, 0600));
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0)
    return make_error(Errc::refused, "another abup process holds " + (dir_ / "lock").string() +
                                         " (is the daemon running an operation?)");
  return fd;
}

}  // namespace abup::agent
