// GUID Partition Table: reading both copies with their CRC32s, and building/writing them.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "abup/result.hpp"
#include "partitions/sector_writer.hpp"

namespace abup::partitions {

// A GUID in its on-disk (mixed-endian) byte order; str() gives the canonical lowercase text.
struct Guid {
  std::array<std::uint8_t, 16> bytes{};
  [[nodiscard]] static Result<Guid> parse(std::string_view text);  // case-insensitive
  [[nodiscard]] static Guid random();                              // RFC 4122 version 4
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
  std::uint64_t disk_size = 0;  // bytes
  GptHeader header;             // of the copy the entries were read from
  bool primary_valid = false, backup_valid = false;
  bool copies_differ = false;     // both valid but not the same table (legal mid-update)
  std::string problems;           // human text for an invalid copy, empty when both are fine
  std::vector<GptEntry> entries;  // non-empty entries only, by number
  // The header of each copy, meaningful only when that copy is valid.
  GptHeader primary_header, backup_header;
  // LBA 0 holds an MBR with a 0xEE (GPT protective) partition. Informational: readers (the
  // kernel, GRUB) accept a GPT without it, so a missing one does not invalidate the table.
  bool protective_mbr = false;

  [[nodiscard]] const GptEntry* find_by_number(std::uint32_t number) const;
  [[nodiscard]] std::uint64_t last_lba() const { return disk_size / sector_size - 1; }
};

// Reads the GPT of a disk image file or block device (fd open for reading). Uses the primary
// copy when valid, else the backup; fails only when neither is valid. sector_size 0 = ask the
// device (BLKSSZGET); for regular files 512, then 4096 if 512 finds no GPT. disk_size 0 = ask
// (file size or BLKGETSIZE64).
[[nodiscard]] Result<GptTable> read_gpt(int fd, std::uint64_t disk_size, std::uint32_t sector_size,
                                        const std::string& what);
[[nodiscard]] Result<GptTable> read_gpt_path(const std::string& path);

// Size in bytes of a regular file or block device.
[[nodiscard]] Result<std::uint64_t> disk_size_of(int fd, const std::string& what);

[[nodiscard]] std::uint32_t crc32(std::span<const std::uint8_t> data, std::uint32_t crc = 0);

// The bytes of LBA 0 .. end of the primary entry array (protective MBR, header, 128 entries) of a
// disk of `disk_size` bytes holding `entries`: the "primary-gpt" region of a COSI image.
// Geometry as sgdisk makes it: entries at LBA 2, first usable LBA 2 + array sectors (34 at 512),
// last usable = last LBA - array sectors - 1, backup header at the last LBA.
[[nodiscard]] std::vector<std::uint8_t> build_primary_region(std::uint64_t disk_size,
                                                             std::uint32_t sector_size,
                                                             const Guid& disk_guid,
                                                             const std::vector<GptEntry>& entries);

// The matching backup copy: its entry array followed by the backup header (last LBA).
struct GptRegion {
  std::uint64_t offset = 0;  // bytes from the start of the disk
  std::vector<std::uint8_t> bytes;
};
[[nodiscard]] GptRegion build_backup_region(std::uint64_t disk_size, std::uint32_t sector_size,
                                            const Guid& disk_guid,
                                            const std::vector<GptEntry>& entries);

// Writes both copies of `table` (its entries, disk GUID, usable range and entry-array geometry)
// crash-safely (docs/architecture.md §3 invariant 5): primary entries, primary header, fsync,
// backup entries, backup header (at the last LBA of table.disk_size), fsync. A crash at any point
// leaves one valid copy holding the old or the new table, and readers prefer the primary. Also
// repairs an invalid copy. Every write and sync goes through `writer` (tests record them); the fd
// overload writes with an FdSectorWriter. Writes are whole sectors: the entry array padded to
// its sectors, and the header sector.
[[nodiscard]] Status write_gpt(SectorWriter& writer, const GptTable& table,
                               const std::string& what);
[[nodiscard]] Status write_gpt(int fd, const GptTable& table, const std::string& what);

}  // namespace abup::partitions
