// The boot files of a release (docs/architecture.md §4 "Boot files", §3 invariants 1 and 3): after
// /usr was written and read back, stage() places the inactive slot's kernel/UKI/addons on the ESP
// where the boot backend will load them (partitions/boot/placement), crash-safe (temp name, fsync,
// rename, fsync dir), and proves each one read back from the ESP bypassing the page cache
// against its signed SHA-256. finalize re-checks them just before arming. The booted slot's
// files are never opened for writing.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "abup/result.hpp"
#include "agent/config.hpp"
#include "agent/state.hpp"
#include "partitions/boot/placement.hpp"
#include "update-protocol/image.hpp"

namespace abup::agent {

// [Boot] keys this module reads (agent/config.*), and where the ESP is.
struct BootFilesConfig {
  BootBackend backend = BootBackend::gptprio;
  std::filesystem::path esp;    // [Boot] ESP= mount point; empty: found via mountinfo
  std::optional<bool> require;  // [Boot] RequireBootFiles=; nullopt (auto): the backend's default
  partitions::boot::PlacementOptions placement;  // [Boot] BootFilePath.NAME=
  std::map<char, std::string> uefi_loader;       // [Boot] UefiLoaderA=/UefiLoaderB= (uefi)
  std::map<char, std::string> loader_entry;      // [Boot] LoaderEntryA=/B= (systemd-boot)
  // Where boot files are decompressed and verified before anything goes to the ESP (the state
  // dir: on disk, not tmpfs, so a 100 MB UKI costs no memory); empty: the system's temp dir.
  std::filesystem::path scratch;
  // Test seam for "the ESP is full": free bytes to assume instead of statvfs's (a full vfat
  // image cannot be mounted without root in the test environment).
  std::function<std::uint64_t(const std::filesystem::path&)> free_bytes;
};

// The [Boot] keys of `config` for `backend`.
[[nodiscard]] BootFilesConfig boot_files_config(const Config& config, BootBackend backend);

// The ESP's mount point: `config.esp` (under `root`), else the mount in root/proc/self/mountinfo
// of the partition with the ESP type GUID (C12A7328-F81F-11D2-BA4B-00A0C93EC93B) on `disk`.
// Errors: no ESP on the disk, not mounted, mounted read-only.
[[nodiscard]] Result<std::filesystem::path> find_esp(const std::filesystem::path& root,
                                                     const std::string& disk,
                                                     const BootFilesConfig& config);

// The /usr verity root hash every boot file that carries one must match (refused otherwise).
[[nodiscard]] Status check_root_hash_binding(const protocol::Manifest& manifest,
                                             const protocol::CosiMetadata& metadata,
                                             const std::string& boot_file,
                                             std::span<const std::uint8_t> bytes);

// Before anything is written: the image carries the boot files the backend requires, each has a
// place, and each one that embeds a /usr root hash matches the image's. Streams the boot files
// from the source into unnamed files in `config.scratch` (bounded memory) and checks their
// signed digests.
[[nodiscard]] Status check_boot_files(const BootFilesConfig& config, protocol::Source& source,
                                      const protocol::VerifiedImage& image, char target);

// Writes and verifies the boot files of `image` for slot `target` ('A'|'B'); `booted` is the
// running slot, whose files are never opened for writing. Returns the records to keep in state.
[[nodiscard]] Result<std::vector<BootFileRecord>> stage_boot_files(
    const std::filesystem::path& root, const std::string& disk, const BootFilesConfig& config,
    protocol::Source& source, const protocol::VerifiedImage& image, char target,
    std::optional<char> booted);

enum class BootFileCheck { ok, missing, mismatch };
[[nodiscard]] std::string_view to_string(BootFileCheck c);

// Reads one recorded file back from the ESP bypassing the page cache and compares its digest.
[[nodiscard]] BootFileCheck check_boot_file(const std::filesystem::path& esp,
                                            const BootFileRecord& record);

// finalize: every recorded boot file of the slot about to be armed is on the ESP with its signed
// digest; Errc::refused naming the first that is not.
[[nodiscard]] Status verify_boot_files(const std::filesystem::path& root, const std::string& disk,
                                       const BootFilesConfig& config,
                                       const std::vector<BootFileRecord>& records);

}  // namespace abup::agent
