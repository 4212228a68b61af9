#include "agent/state.hpp"

#include <fcntl.h>
#include <sys/file.h>

#include <ctime>
#include <nlohmann/json.hpp>

#include "agent/persisted_json.hpp"
#include "update-protocol/manifest/manifest.hpp"

namespace abup::agent {

std::string to_string(PendingKind kind) {
  return kind == PendingKind::rollback ? "rollback" : "finalize";
}

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
          {"kind", to_string(p.kind)},
          {"targetSlot", std::string(1, p.target_slot)},
          {"targetPartuuid", p.target_partuuid},
          {"targetVersion", p.target_version},
          {"previousPartuuid", p.previous_partuuid},
          {"previousVersion", p.previous_version},
          {"bootId", p.boot_id},
          {"backend", p.backend ? std::string(to_string(*p.backend)) : std::string()},
          {"armedAt", p.armed_at}};
}

constexpr std::string_view kSlotKeys[] = {"state",     "version", "manifestSha256", "source",
                                          "updatedAt", "error",   "bootFiles",      "issuedAt"};
constexpr std::string_view kPendingKeys[] = {"operationId",     "kind",          "targetSlot",
                                             "targetPartuuid",  "targetVersion", "previousPartuuid",
                                             "previousVersion", "bootId",        "backend",
                                             "armedAt"};
constexpr std::string_view kFailedKeys[] = {"version", "code", "operationId", "at"};

std::string slot_key(const std::string& uuid, const SlotRecord& r) {
  return "slots/" + uuid + "/" + r.version + "/" + r.manifest_sha256;
}
std::string pending_key(const PendingCommit& p) {
  return "pending/" + p.operation_id;
}
std::string failed_key(const FailedVersion& f) {
  return "failedVersions/" + f.version + "/" + f.operation_id;
}

Result<SlotRecord> slot_from(const JsonFields& f) {
  SlotRecord r;
  ABUP_TRY(auto name, f.string("state", "unknown"));
  auto state = parse_slot_state(name);
  if (!state)
    return f.error(
        "state", "'" + name + "' is not one of unknown, staging, staged, armed, committed, failed");
  r.state = *state;
  ABUP_TRY(r.version, f.string("version"));
  ABUP_TRY(r.manifest_sha256, f.string("manifestSha256"));
  ABUP_TRY(r.source, f.string("source"));
  ABUP_TRY(r.updated_at, f.string("updatedAt"));
  ABUP_TRY(r.error, f.string("error"));
  ABUP_TRY(r.issued_at, f.string("issuedAt"));
  ABUP_TRY(auto boot_files, f.objects("bootFiles"));
  for (const auto& b : boot_files) {
    BootFileRecord rec;
    ABUP_TRY(rec.name, b.string("name"));
    ABUP_TRY(rec.path, b.string("path"));
    ABUP_TRY(rec.size, b.count("size", 0));
    ABUP_TRY(rec.sha256, b.string("sha256"));
    r.boot_files.push_back(std::move(rec));
  }
  return r;
}

Result<PendingCommit> pending_from(const JsonFields& f) {
  PendingCommit p;
  ABUP_TRY(p.operation_id, f.string("operationId"));
  ABUP_TRY(auto kind, f.string("kind", "finalize"));
  if (kind == "rollback")
    p.kind = PendingKind::rollback;
  else if (kind == "finalize")
    p.kind = PendingKind::finalize;
  else
    return f.error("kind", "expected \"finalize\" or \"rollback\", got \"" + kind + "\"");
  ABUP_TRY(auto slot, f.string("targetSlot"));
  if (slot != "A" && slot != "B") return f.error("targetSlot", "expected \"A\" or \"B\"");
  p.target_slot = slot[0];
  ABUP_TRY(p.target_partuuid, f.string("targetPartuuid"));
  ABUP_TRY(p.target_version, f.string("targetVersion"));
  ABUP_TRY(p.previous_partuuid, f.string("previousPartuuid"));
  ABUP_TRY(p.previous_version, f.string("previousVersion"));
  ABUP_TRY(p.boot_id, f.string("bootId"));
  ABUP_TRY(auto backend, f.string("backend"));
  if (!backend.empty()) {
    auto b = parse_boot_backend(backend);
    if (!b) return f.error("backend", b.error().message);
    p.backend = *b;
  }
  ABUP_TRY(p.armed_at, f.string("armedAt"));
  if (p.operation_id.empty()) return f.error("operationId", "missing or empty");
  if (p.target_partuuid.empty()) return f.error("targetPartuuid", "missing or empty");
  return p;
}

Result<FailedVersion> failed_from(const JsonFields& f) {
  FailedVersion v;
  ABUP_TRY(v.version, f.string("version"));
  // Missing: the one code a failed version is recorded with.
  ABUP_TRY(auto code, f.string("code", std::string(to_string(OutcomeCode::target_boot_failed))));
  auto c = parse_outcome_code(code);
  if (!c) return f.error("code", c.error().message);
  v.code = *c;
  ABUP_TRY(v.operation_id, f.string("operationId"));
  ABUP_TRY(v.at, f.string("at"));
  return v;
}

void keep_unknown(State& st, const std::string& key, const JsonFields& f,
                  std::span<const std::string_view> known) {
  if (auto u = f.unknown(known); !u.empty()) st.record_unknown[key] = std::move(u);
}

}  // namespace

json pending_json(const PendingCommit& p) {
  return pending_to_json(p);
}

Result<State> State::from_json(const JsonFields& top) {
  State st;
  ABUP_TRY(auto slots, top.members("slots"));
  for (const auto& [uuid, f] : slots) {
    ABUP_TRY(auto r, slot_from(f));
    keep_unknown(st, slot_key(uuid, r), f, kSlotKeys);
    st.slots[uuid] = std::move(r);
  }
  // Files written before the lifecycle commands have neither key; no pending commit is null.
  ABUP_TRY(auto pending, top.object("pending", true));
  if (pending) {
    ABUP_TRY(auto p, pending_from(*pending));
    keep_unknown(st, pending_key(p), *pending, kPendingKeys);
    st.pending = std::move(p);
  }
  ABUP_TRY(auto highest, top.string("highestCommittedVersion"));
  if (!highest.empty()) {
    auto v = Version::parse(highest);
    if (!v) return top.error("highestCommittedVersion", v.error().message);
    st.highest_committed = std::move(*v);
  }
  ABUP_TRY(auto failed, top.objects("failedVersions"));
  for (const auto& f : failed) {
    ABUP_TRY(auto v, failed_from(f));
    keep_unknown(st, failed_key(v), f, kFailedKeys);
    st.failed_versions.push_back(std::move(v));
  }
  return st;
}

json State::to_json() const {
  auto unknown = [&](json& j, const std::string& key) {
    if (auto it = record_unknown.find(key); it != record_unknown.end())
      restore_unknown(j, it->second);
  };
  json doc;
  doc["slots"] = json::object();
  for (const auto& [uuid, r] : slots) {
    json j = {{"state", to_string(r.state)}, {"version", r.version}, {"updatedAt", r.updated_at}};
    if (!r.manifest_sha256.empty()) j["manifestSha256"] = r.manifest_sha256;
    if (!r.source.empty()) j["source"] = r.source;
    if (!r.error.empty()) j["error"] = r.error;
    if (!r.issued_at.empty()) j["issuedAt"] = r.issued_at;
    for (const auto& b : r.boot_files)
      j["bootFiles"].push_back(
          {{"name", b.name}, {"path", b.path}, {"size", b.size}, {"sha256", b.sha256}});
    unknown(j, slot_key(uuid, r));
    doc["slots"][uuid] = std::move(j);
  }
  if (pending) {
    doc["pending"] = pending_to_json(*pending);
    unknown(doc["pending"], pending_key(*pending));
  }
  if (!failed_versions.empty()) {
    doc["failedVersions"] = json::array();
    for (const auto& f : failed_versions) {
      json j = {{"version", f.version},
                {"code", to_string(f.code)},
                {"operationId", f.operation_id},
                {"at", f.at}};
      unknown(j, failed_key(f));
      doc["failedVersions"].push_back(std::move(j));
    }
  }
  if (highest_committed) doc["highestCommittedVersion"] = highest_committed->text;
  return doc;
}

Status StateStore::save_manifest(const std::string& partuuid, std::string_view text) const {
  std::error_code ec;
  std::filesystem::create_directories(dir_ / "manifests", ec);
  return atomic_write_file(dir_ / "manifests" / (partuuid + ".json"), text, 0600);
}

Result<std::string> StateStore::load_manifest(const std::string& partuuid) const {
  return read_file(dir_ / "manifests" / (partuuid + ".json"));
}

namespace {

std::optional<RecordedRelease> recorded_release(const StateStore& store, const State* state,
                                                const std::string& partuuid) {
  if (const SlotRecord* rec = state ? state->slot(partuuid) : nullptr;
      rec && !rec->issued_at.empty())
    if (auto at = protocol::parse_utc_time(rec->issued_at))
      return RecordedRelease{rec->version, *at};
  auto text = store.load_manifest(partuuid);
  if (!text) return std::nullopt;
  auto m = protocol::parse_manifest_release(*text);
  if (!m) return std::nullopt;
  return RecordedRelease{std::move(m->version), m->issued_at};
}

}  // namespace

std::optional<RecordedRelease> recorded_release(const StateStore& store,
                                                const std::string& partuuid) {
  auto state = store.load();
  return recorded_release(store, state ? &*state : nullptr, partuuid);
}

std::optional<RecordedRelease> newest_recorded_release(const StateStore& store,
                                                       const std::vector<std::string>& partuuids) {
  auto state = store.load();
  std::optional<RecordedRelease> newest;
  for (const auto& uuid : partuuids)
    if (auto r = recorded_release(store, state ? &*state : nullptr, uuid);
        r && (!newest || r->issued_at > newest->issued_at))
      newest = std::move(*r);
  return newest;
}

std::int64_t recorded_issued_at(const StateStore& store, const std::string& partuuid,
                                const Version& version) {
  auto r = recorded_release(store, partuuid);
  if (!r) return 0;
  auto v = Version::parse(r->version);
  return v && *v == version ? r->issued_at : 0;
}

Result<Fd> StateStore::lock() const {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) return make_error(Errc::io, "create " + dir_.string() + ": " + ec.message());
  ABUP_TRY(Fd fd, open_file(dir_ / "lock", O_RDWR | O_CREAT | O_NOFOLLOW, 0600));
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0)
    return make_error(Errc::refused, "another abup process holds " + (dir_ / "lock").string() +
                                         " (is the daemon running an operation?)");
  return fd;
}

}  // namespace abup::agent
