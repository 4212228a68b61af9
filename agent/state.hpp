// Persistent state (docs/architecture.md §9): <state-dir>/state.json, replaced atomically on every
// change, and a lock so two abup processes never act on the slots at once. The state file records
// what abup did; it is never trusted for data (chunks are re-verified on the device).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "abup/fs.hpp"
#include "abup/result.hpp"
#include "abup/version.hpp"
#include "agent/json_file_store.hpp"
#include "agent/vocabulary.hpp"

namespace abup::agent {

enum class SlotState { unknown, staging, staged, armed, committed, failed };
[[nodiscard]] std::string_view to_string(SlotState s);
[[nodiscard]] std::optional<SlotState> parse_slot_state(std::string_view s);

// A boot file placed on the ESP for a slot (agent/boot_files).
struct BootFileRecord {
  std::string name;  // logical name
  std::string path;  // relative to the ESP
  std::uint64_t size = 0;
  std::string sha256;  // hex
};

struct SlotRecord {
  SlotState state = SlotState::unknown;
  std::string version;
  std::string manifest_sha256;  // hex: which signed image is (being) written there
  std::string source;
  std::string updated_at;
  std::string error;  // last failure, for status
  std::vector<BootFileRecord> boot_files;
  // The manifest's signed issuedAt (RFC 3339), kept beside its version so that reading the
  // release of a slot needs no parse of its manifest; "" in records of an older abup.
  std::string issued_at;
};

// A slot armed for one try, waiting for `abup commit` after the reboot (docs/architecture.md §9).
// Written after the backend armed the slot and before success is reported; cleared by commit.
// What armed the slot: finalize arms the staged image, rollback the previous, committed one.
enum class PendingKind { finalize, rollback };
[[nodiscard]] std::string to_string(PendingKind kind);

struct PendingCommit {
  std::string operation_id;
  PendingKind kind = PendingKind::finalize;
  char target_slot = 'B';
  std::string target_partuuid, target_version;
  std::string previous_partuuid, previous_version;  // the slot booted at arming
  std::string boot_id;                              // at arming: a different one means a reboot
  // The backend that armed it; nullopt: not recorded ("" in the file), the configured one.
  std::optional<BootBackend> backend;
  std::string armed_at;
};

// A version whose slot did not boot: kept so it is not armed again blindly.
struct FailedVersion {
  std::string version;
  OutcomeCode code = OutcomeCode::target_boot_failed;
  std::string operation_id;
  std::string at;
};

struct State : PersistedFile {
  static constexpr std::string_view kFileName = "state.json";
  static constexpr std::string_view kMembers[] = {"slots", "pending", "failedVersions",
                                                  "highestCommittedVersion"};
  static constexpr std::string_view kAside = "to start from an empty state";

  std::map<std::string, SlotRecord> slots;  // by PARTUUID
  std::optional<PendingCommit> pending;
  std::vector<FailedVersion> failed_versions;
  // The highest version this node ever committed (highestCommittedVersion): only raised, by
  // commit, in the same atomic write that records the commit. The downgrade floor when above the
  // running version (docs/security.md G1). nullopt: none recorded (files written before it).
  std::optional<Version> highest_committed;
  // Members of its records this abup does not know (the file's own: PersistedFile::unknown),
  // serialized, by the record that held them: "slots/UUID/VERSION/MANIFEST", "pending/OPERATION",
  // "failedVersions/VERSION/OPERATION". Written back while that record still describes the same
  // thing; a record this abup replaces drops them (they may describe the old).
  std::map<std::string, std::map<std::string, std::string>> record_unknown;

  [[nodiscard]] const SlotRecord* slot(const std::string& partuuid) const;
  [[nodiscard]] const FailedVersion* failed_version(const std::string& version) const;

  [[nodiscard]] static Result<State> from_json(const JsonFields& top);
  [[nodiscard]] nlohmann::json to_json() const;
};

// <dir>/state.json (load, load_for_status, save: JsonFileStore), and beside it the manifests of
// the staged images and the lock.
class StateStore : public JsonFileStore<State> {
 public:
  explicit StateStore(std::filesystem::path dir) : JsonFileStore(dir), dir_(std::move(dir)) {}
  [[nodiscard]] const std::filesystem::path& dir() const { return dir_; }
  // The signed manifest of the image staged on a slot, kept for status and for reusing chunks.
  [[nodiscard]] Status save_manifest(const std::string& partuuid, std::string_view json) const;
  [[nodiscard]] Result<std::string> load_manifest(const std::string& partuuid) const;
  // Exclusive lock on <dir>/lock (created with the directory); fails at once when held.
  [[nodiscard]] Result<Fd> lock() const;

 private:
  std::filesystem::path dir_;
};

// The signed manifest recorded for the slot `partuuid` (the last image staged there): its version
// and issuedAt, from the slot's record in state.json, or (a record of an older abup) from the
// manifest's header. nullopt when none is recorded or it does not parse.
struct RecordedRelease {
  std::string version;
  std::int64_t issued_at = 0;
};
[[nodiscard]] std::optional<RecordedRelease> recorded_release(const StateStore& store,
                                                              const std::string& partuuid);
// Of the slots `partuuids`, the recorded release issued last (docs/security.md G4: its signed
// issue time is a freshness no update server can fake); nullopt when none is recorded.
[[nodiscard]] std::optional<RecordedRelease> newest_recorded_release(
    const StateStore& store, const std::vector<std::string>& partuuids);
// Its issuedAt when it is that of `version`; else 0 (unknown).
[[nodiscard]] std::int64_t recorded_issued_at(const StateStore& store, const std::string& partuuid,
                                              const Version& version);

[[nodiscard]] std::string now_utc();
// The pending commit as state.json and `abup status --json` spell it.
[[nodiscard]] nlohmann::json pending_json(const PendingCommit& pending);

}  // namespace abup::agent
