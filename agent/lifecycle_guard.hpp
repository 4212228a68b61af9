// The checks that keep slot writers and the bootloader apart.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "abup/fs.hpp"
#include "abup/result.hpp"
#include "agent/lifecycle.hpp"
#include "partitions/slots.hpp"

namespace abup::agent {

// What every command that writes slots or boot state holds, taken in this order and never
// waited for: the state directory's lock, then the disk's (partitions::lock_disk), so that two
// processes with different state directories cannot act on the same disk either.
struct WriteLocks {
  Fd state, disk;
};
[[nodiscard]] Result<WriteLocks> lock_for_writing(const std::filesystem::path& state_dir,
                                                  const std::string& disk);

struct State;
// The slot `abup stage` writes, decided under the locks before its first write from the
// bootloader's own view (not only the state file, which another state directory or a lost write
// may not have): `requested`, else the slot not booted. Refused when that slot is armed (the
// bootloader boots it next, for one try) or has a pending commit: `abup disarm` first; and,
// unless `force`, when it is the bootloader's default (its good slot: the running system when
// the booted slot is unknown, the fallback when the booted one is not committed). Without a
// booted slot and without `requested`, the error says what the bootloader boots.
[[nodiscard]] Result<char> choose_stage_target(const LifecycleOptions& where,
                                               const partitions::SlotPair& pair,
                                               std::optional<char> booted,
                                               std::optional<char> requested, bool force,
                                               const State& state);

// choose_stage_target for the slot not booted, without the locks: an early, clear answer for a
// caller about to download (aks mode); stage() decides again under the locks.
[[nodiscard]] Status stage_preflight(const LifecycleOptions& where);

// Before finalize arms a staged slot: every chunk of its images (/usr and its verity hash image)
// read back from the device, bypassing the page cache, and checked against the signed manifest
// recorded when it was staged (docs/architecture.md §3.3 at arming time, not only at staging time).
[[nodiscard]] Status reverify_staged(const partitions::SlotPair& pair, char target,
                                     std::optional<char> booted, const std::string& manifest_json,
                                     const std::filesystem::path& root);

}  // namespace abup::agent
