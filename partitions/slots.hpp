// The A/B slot pair (docs/architecture.md §2): found by GPT label (case-insensitive usr-a/usr-b,
// with optional hash-a/hash-b verity partitions), type GUID and PARTUUID; and which one is booted.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "abup/result.hpp"
#include "partitions/gpt.hpp"

namespace abup::partitions {

inline constexpr std::string_view kUsrTypeGuid = "5dfbf5f4-2848-4bac-aa5e-0d9a20b745a6";
inline constexpr std::string_view kUsrAPartuuid = "7130c94a-213a-4e5a-8e26-6cce9662f132";
inline constexpr std::string_view kUsrBPartuuid = "e03dd35c-7c2d-4a47-b3fe-27f15780a57c";
// Also accepted as the usr type: the Discoverable Partitions Specification's "usr" types.
inline constexpr std::string_view kUsrTypeGuidX86_64 = "8484680c-9521-48c6-9c11-b0720656f69e";
inline constexpr std::string_view kUsrTypeGuidArm64 = "b0e01050-ee5f-4390-949a-9101b17104e9";

struct Slot {
  char name = 'A';               // 'A' or 'B'
  GptEntry entry;                // the usr partition
  std::optional<GptEntry> hash;  // its verity hash partition, if any
  std::uint64_t offset = 0;      // byte offset of the usr partition on the disk
  std::uint64_t size = 0;        // bytes
  // Block devices only: the kernel's device nodes of the usr and hash partitions (e.g.
  // /dev/sda3), empty for disk-image files or when the kernel has not scanned the partition.
  std::string device, hash_device;
  [[nodiscard]] std::string label() const { return entry.name; }
  [[nodiscard]] std::string partuuid() const { return entry.unique.str(); }
};

struct SlotPair {
  std::string disk;  // disk image file or whole-disk block device
  bool block_device = false;
  GptTable gpt;
  Slot a, b;
  [[nodiscard]] const Slot& get(char name) const { return name == 'A' ? a : b; }
  [[nodiscard]] const Slot& other(char name) const { return name == 'A' ? b : a; }
};

// Reads the disk's GPT and finds the pair. Errors name what is missing or ambiguous.
[[nodiscard]] Result<SlotPair> discover_slots(const std::string& disk);

// The booted slot, from `root`/proc/cmdline (usr=, mount.usr=, verity.usr=,
// systemd.verity_usr_data=, systemd.verity_usr_hash= (a slot's hash partition) with PARTUUID=,
// PARTUUID=…/PARTNROFF=n, PARTLABEL=, /dev/disk/by-partuuid/, /dev/disk/by-partlabel/ or a slot's
// device node; when none of these keys names a partition, root= if it names a slot). Other values
// (mount.usr=/dev/mapper/usr) are ignored. nullopt when the command line names no slot. An error
// when it names a partition that is neither slot, or both slots.
[[nodiscard]] Result<std::optional<char>> booted_slot(const SlotPair& pair,
                                                      const std::filesystem::path& root);

// The whole disk holding the running system's slots, when no --disk is given: the partition the
// kernel command line under `root` names for /usr (the keys booted_slot reads, then root=) by
// PARTUUID= or /dev/disk/by-partuuid/ (or a device node) -> its device node
// (/dev/disk/by-partuuid/, else libblkid's tag evaluation) -> its whole disk through
// /sys/dev/block/MAJ:MIN. /dev and /sys are the real ones, not under `root`. Errors name the
// PARTUUID and the parameter that gave it.
[[nodiscard]] Result<std::string> find_boot_disk(const std::filesystem::path& root);

}  // namespace abup::partitions
