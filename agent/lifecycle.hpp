// The slot lifecycle after a stage (docs/architecture.md §3.4, §8, §9): finalize arms one try of
// the staged slot, commit (run at boot) promotes it or records that the bootloader fell back,
// rollback arms the previous slot. The service core knows no transport: the CLI (and later the
// daemon and D-Bus) adapt these functions. Each one takes the state lock, acts on the boot backend,
// then persists the outcome before returning it; a kill between two persisted steps is recovered by
// running the same command again.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "abup/result.hpp"
#include "agent/boot_files.hpp"
#include "agent/vocabulary.hpp"
#include "partitions/boot/backend.hpp"
#include "partitions/slots.hpp"

namespace abup::agent {

struct LifecycleOptions {
  std::string disk;
  std::filesystem::path root = "/";
  std::filesystem::path state_dir;
  BootBackend backend = BootBackend::gptprio;
  std::filesystem::path grubenv;  // empty: ROOT/boot/grub/grubenv
  std::filesystem::path efivars;  // empty: ROOT/sys/firmware/efi/efivars
  // uefi: per slot, the loader path on the ESP and the load option's command line.
  std::map<char, std::string> uefi_loader, uefi_cmdline;
  BootFilesConfig boot;  // the ESP and boot files finalize re-verifies before arming
};

struct FinalizeOptions {
  LifecycleOptions where;
  std::string version;                // when set, the staged version must be this one
  std::string operation_id;           // generated when empty
  bool allow_failed_version = false;  // arm a version that already failed to boot here
};

struct RollbackOptions {
  LifecycleOptions where;
  std::string operation_id;  // generated when empty
  bool force = false;        // arm the other slot even if abup never saw it committed
};

struct Outcome {
  OutcomeKind kind = OutcomeKind::commit;
  OutcomeCode code = OutcomeCode::nothing_pending;
  std::string operation_id;
  char from_slot = 0, to_slot = 0;  // 0 when unknown
  std::string from_partuuid, to_partuuid;
  std::string from_version, to_version;
  std::string time;
  std::string message;                // one line for humans
  std::vector<std::string> warnings;  // printed on stderr by the CLI
};

[[nodiscard]] Result<Outcome> finalize(const FinalizeOptions& options);
[[nodiscard]] Result<Outcome> commit(const LifecycleOptions& options);
[[nodiscard]] Result<Outcome> rollback(const RollbackOptions& options);
// Undoes an arming of the slot not booted (finalize or rollback, in this boot): the bootloader
// then boots the booted slot again (backend mark_bad of the armed slot: one crash-safe write),
// and the pending commit is dropped. The staged image stays staged: finalize can arm it again.
// NothingPending when neither the bootloader nor the state has the slot armed.
[[nodiscard]] Result<Outcome> disarm(const LifecycleOptions& options);

// The configured backend over `pair` (which must outlive it); `recorded`, when set, the one a
// pending commit recorded. uefi: each
// slot's Boot#### names the loader the boot files go to (partitions/boot/placement
// uefi_loader_path); with `state`, a slot whose recorded boot files include its loader (uki or
// vmlinuz) names that file, the one abup placed and verified.
[[nodiscard]] Result<std::unique_ptr<partitions::boot::Backend>> open_backend(
    const LifecycleOptions& options, const partitions::SlotPair& pair,
    std::optional<BootBackend> recorded = std::nullopt, const State* state = nullptr);

[[nodiscard]] nlohmann::json outcome_json(const Outcome& outcome);

// <state-dir>/history.jsonl: one JSON object per line and finished operation (time,
// operationId, kind, fromSlot, toSlot, fromVersion, toVersion, fromPartuuid, toPartuuid,
// outcome). Appended with O_APPEND and fsync; a line already there for the same operation, kind
// and outcome is not written twice (a re-run after a kill). Unparsable (torn) lines, and lines
// where one of those fields is not a string, are skipped when read (`skipped` says which and why).
// history.jsonl keeps at most this many lines (the oldest half is dropped when it is reached).
inline constexpr std::size_t kHistoryMaxLines = 1000;
[[nodiscard]] Status append_history(const std::filesystem::path& state_dir, const Outcome& outcome);

// One readable line of history.jsonl. A member the line lacks reads as empty; kind and outcome
// are the words as written (compare with to_string(OutcomeKind / OutcomeCode): a newer abup's
// words are kept, not dropped). `line` is the object as read, members a newer abup added
// included: what `abup history --json` prints and the cap rewrites, byte for byte.
struct HistoryRecord {
  std::string time, operation_id, kind, outcome;
  std::string from_slot, to_slot;  // "A" | "B"; empty when null or absent
  std::string from_partuuid, to_partuuid, from_version, to_version;
  nlohmann::json line;
};
[[nodiscard]] Result<std::vector<HistoryRecord>> read_history(
    const std::filesystem::path& state_dir, std::vector<std::string>* skipped = nullptr);

}  // namespace abup::agent
