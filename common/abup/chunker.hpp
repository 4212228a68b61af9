// Content-defined chunking shared by `abup-image build` (where frames are cut) and `abup stage`
// (which cuts the booted slot the same way to find chunks it already has). FastCDC-style:
// minimum, average and maximum sizes with normalized chunking (a stricter cut condition before
// the average size, a looser one after). Cuts fall only on 4 KiB boundaries: filesystems place
// file data in whole 4 KiB blocks, so data that moves in an ext4 image moves by whole blocks,
// and the read-back with O_DIRECT needs 4 KiB-aligned offsets. The judgement at a boundary is a
// hash of the 4 KiB block that ends there (a block is the rolling window), so a change decides
// at most the cuts around the blocks it touches. All-zero blocks never cut: free space becomes
// maximum-size chunks, not a flood of small ones. docs/design.md has the measurements.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "abup/result.hpp"

namespace abup {

struct ChunkerParams {
  std::uint64_t min = 16 << 10;
  std::uint64_t avg = 128 << 10;
  std::uint64_t max = 512 << 10;

  // "cdc/16K/128K/512K": how the manifest names the chunker a frame table was cut with.
  [[nodiscard]] std::string name() const;
  // nullopt for anything but a valid name (multiples of 4 KiB, min <= avg <= max <= 16 MiB,
  // avg a power of two).
  [[nodiscard]] static std::optional<ChunkerParams> parse(std::string_view name);
};

inline constexpr std::uint64_t kChunkBlock = 4096;
inline constexpr std::uint64_t kMaxChunk = 16 << 20;

// The length of the chunk that starts at data[0]. `data` must hold at least params.max bytes
// unless it reaches the end of the stream (then its rest may be the last chunk, of any size);
// the result is <= data.size() and a multiple of 4 KiB unless it ends the stream.
[[nodiscard]] std::uint64_t next_cut(std::span<const std::uint8_t> data, const ChunkerParams& p);

// Cuts `size` bytes, read in order through read(offset, span) -> Status, and calls
// on_chunk(offset, bytes) -> Status for each chunk: one sequential read, memory a window of a few
// maximum chunks whatever the size.
template <typename Read, typename OnChunk>
[[nodiscard]] Status for_each_chunk(std::uint64_t size, const ChunkerParams& p, Read&& read,
                                    OnChunk&& on_chunk) {
  std::vector<std::uint8_t> buf(std::max<std::uint64_t>(1 << 20, 4 * p.max));
  std::uint64_t buf_off = 0, have = 0, pos = 0;
  while (pos < size) {
    if (pos + p.max > buf_off + have && buf_off + have < size) {
      const std::uint64_t keep = buf_off + have - pos;
      std::memmove(buf.data(), buf.data() + (pos - buf_off), keep);
      buf_off = pos;
      have = keep;
      const auto n = std::min<std::uint64_t>(buf.size() - have, size - (buf_off + have));
      ABUP_CHECK(read(buf_off + have, std::span<std::uint8_t>(buf.data() + have, n)));
      have += n;
    }
    const std::span<const std::uint8_t> rest(buf.data() + (pos - buf_off), buf_off + have - pos);
    const std::uint64_t len = next_cut(rest, p);
    ABUP_CHECK(on_chunk(pos, rest.first(len)));
    pos += len;
  }
  return {};
}

}  // namespace abup
