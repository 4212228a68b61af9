#include "abup/chunker.hpp"

#include <xxhash.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <cstring>

namespace abup {
namespace {

constexpr std::uint64_t kSeed = 0x61627570'63646331ull;  // "abupcdc1": part of the format

bool all_zero(const std::uint8_t* p) {
  static const std::uint8_t zeros[kChunkBlock] = {};
  return std::memcmp(p, zeros, kChunkBlock) == 0;
}

std::optional<std::uint64_t> parse_size(std::string_view s) {
  if (s.size() < 2 || s.back() != 'K') return std::nullopt;
  std::uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size() - 1, v);
  if (ec != std::errc() || end != s.data() + s.size() - 1 || v == 0 || v > (kMaxChunk >> 10))
    return std::nullopt;
  return v << 10;
}

}  // namespace

std::string ChunkerParams::name() const {
  return "cdc/" + std::to_string(min >> 10) + "K/" + std::to_string(avg >> 10) + "K/" +
         std::to_string(max >> 10) + "K";
}

std::optional<ChunkerParams> ChunkerParams::parse(std::string_view name) {
  if (name.substr(0, 4) != "cdc/") return std::nullopt;
  name.remove_prefix(4);
  std::uint64_t v[3];
  for (int i = 0; i < 3; ++i) {
    auto slash = name.find('/');
    if ((i < 2) != (slash != std::string_view::npos)) return std::nullopt;
    auto s = parse_size(name.substr(0, slash));
    if (!s || *s % kChunkBlock) return std::nullopt;
    v[i] = *s;
    name = i < 2 ? name.substr(slash + 1) : std::string_view{};
  }
  if (v[0] > v[1] || v[1] > v[2] || !std::has_single_bit(v[1] / kChunkBlock)) return std::nullopt;
  return ChunkerParams{v[0], v[1], v[2]};
}

std::uint64_t next_cut(std::span<const std::uint8_t> data, const ChunkerParams& p) {
  const std::uint64_t size = data.size();
  if (size <= p.min) return size;
  // Normalized chunking (FastCDC level 1): one bit more than avg/4K suggests before the average
  // size, one bit less after, so sizes cluster around the average.
  const int bits = std::countr_zero(p.avg / kChunkBlock);
  const std::uint64_t strict = (std::uint64_t{1} << (bits + 1)) - 1;
  const std::uint64_t loose = bits > 0 ? (std::uint64_t{1} << (bits - 1)) - 1 : 0;
  const std::uint64_t limit = std::min(size, p.max);
  for (std::uint64_t end = p.min; end + kChunkBlock <= limit; end += kChunkBlock) {
    const std::uint8_t* block = data.data() + end;  // the block after the candidate cut
    // Judge the cut at `end` by the block that ends there, so a cut depends only on data before it.
    const std::uint8_t* prev = block - kChunkBlock;
    if (all_zero(prev)) continue;
    const std::uint64_t h = XXH3_64bits_withSeed(prev, kChunkBlock, kSeed);
    if ((h & (end < p.avg ? strict : loose)) == 0) return end;
  }
  return std::min(size, p.max);
}

}  // namespace abup
