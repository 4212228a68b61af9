// GUID Partition Table: reading both copies with their CRC32s, and building a primary region.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "abup/result.hpp"

namespace abup::partitions {

// A GUID in its on-disk (mixed-endian) byte order; str() gives the canonical lowercase text.
struct Guid {
  std::array<std::uint8_t, 16> bytes{};
  [[nodiscard]] static Result<Guid> parse(std::string_view text);  // case-insensitive
  [[nodiscard]] std::string str() const;
  [[nodiscard]] bool is_zero() const;
  friend bool operator==(const Guid&, const Guid&) = default;
};

struct GptEntry {
  std::uint32_t number = 0;  // 1-based, as sgdisk/cgpt/the kernel number partitions
  Guid type, unique;         // unique = PARTUUID
  std::uint64_t first_lba = 0, last_lba = 0;  // inclusive
  std::uint64_t attributes = 0;
  std::string name;  // UTF-16LE on disk, converted to UTF-8
};

struct GptHeader {
  std::uint64_t my_lba = 0, alternate_lba = 0, first_usable = 0, last_usable = 0;
  std::uint64_t entries_lba = 0;
  std::uint32_t num_entries = 0, entry_size = 0;
  Guid disk_guid;
};

struct GptTable {
  std::uint32_t sector_size = 512;
  std::uint64_t disk_size = 0;     // bytes
  GptHeader header;                // of the copy the entries were read from
  bool primary_valid = false, backup_valid = false;
  bool copies_differ = false;      // both valid but not the same table (legal mid-update)
  std::string problems;            // human text for an invalid copy, empty when both are fine
  std::vector<GptEntry> entries;   // non-empty entries only, by number

  [[nodiscard]] const GptEntry* find_by_number(std::uint32_t number) const;
};

// Reads the GPT of a disk image file or block device (fd open for reading). Uses the primary
// copy when valid, else the backup; fails only when neither is valid. sector_size 0 = ask the
// device (BLKSSZGET), 512 for regular files.
[[nodiscard]] Result<GptTable> read_gpt(int fd, std::uint64_t disk_size, std::uint32_t sector_size,
                                        const std::string& what);
[[nodiscard]] Result<GptTable> read_gpt_path(const std::string& path);

[[nodiscard]] std::uint32_t crc32(std::span<const std::uint8_t> data, std::uint32_t crc = 0);

// The bytes of LBA 0 .. end of the primary entry array (protective MBR, header, 128 entries) of a
// disk of `disk_size` bytes holding `entries`: the "primary-gpt" region of a COSI image.
[[nodiscard]] std::vector<std::uint8_t> build_primary_region(std::uint64_t disk_size,
                                                             std::uint32_t sector_size,
                                                             const Guid& disk_guid,
                                                             const std::vector<GptEntry>& entries);

}  // namespace abup::partitions
