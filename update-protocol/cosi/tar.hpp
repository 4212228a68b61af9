// POSIX tar (ustar + pax extended headers, GNU long names) as COSI uses it: an index of entries
// read with small random-access reads, and a writer that appends entries.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "abup/fs.hpp"
#include "abup/result.hpp"
#include "update-protocol/source.hpp"

namespace abup::protocol {

struct TarEntry {
  std::string name;
  char type = '0';                  // '0' regular, '5' directory, ...
  std::uint64_t header_offset = 0;  // first header block of the entry (pax/GNU headers included)
  std::uint64_t data_offset = 0;
  std::uint64_t size = 0;
};

struct TarIndex {
  std::vector<TarEntry> entries;
  std::uint64_t end_offset = 0;  // where the end-of-archive marker starts (appends go here)
  [[nodiscard]] const TarEntry* find(std::string_view name) const;
};

inline constexpr std::size_t kTarBlock = 512;
inline constexpr std::size_t kMaxTarEntries = 4096;

// Walks the headers of an archive; errors name the entry and offset. Header checksums are
// verified; data is not read (except pax/GNU long-name records, capped at 64 KiB).
[[nodiscard]] Result<TarIndex> read_tar_index(Source& source);

// Parses one 512-byte header block (exposed for the fuzzer and tests).
struct TarHeader {
  std::string name;
  char type = '0';
  std::uint64_t size = 0;
};
[[nodiscard]] Result<std::optional<TarHeader>> parse_tar_header(
    std::span<const std::uint8_t> block);

// Builds header blocks for a regular file entry (a pax header first when the name does not fit
// ustar or the size needs more than 11 octal digits).
[[nodiscard]] std::vector<std::uint8_t> make_tar_header(std::string_view name, std::uint64_t size,
                                                        std::uint64_t mtime = 0);
[[nodiscard]] inline std::uint64_t tar_padding(std::uint64_t size) {
  return (kTarBlock - size % kTarBlock) % kTarBlock;
}
// Two zero blocks.
[[nodiscard]] std::vector<std::uint8_t> tar_end_marker();

// Appends entries to an open archive file at a given offset (the old end marker is overwritten)
// and finishes it with a new end marker.
class TarAppender {
 public:
  TarAppender(int fd, std::uint64_t offset, std::string what)
      : fd_(fd), offset_(offset), what_(std::move(what)) {}
  [[nodiscard]] Status add(std::string_view name, std::string_view data);
  // Header for an entry whose data the caller streams with write_data(); `size` must match.
  [[nodiscard]] Result<std::uint64_t> begin(std::string_view name, std::uint64_t size);
  [[nodiscard]] Status write_data(std::span<const std::uint8_t> data);
  [[nodiscard]] Status end_entry();
  [[nodiscard]] Status finish();  // end marker + truncate after it
  [[nodiscard]] std::uint64_t offset() const { return offset_; }

 private:
  int fd_;
  std::uint64_t offset_;
  std::string what_;
  std::uint64_t pending_ = 0, written_ = 0;
};

}  // namespace abup::protocol
