// Where the booted slot already holds chunks an image needs: its bytes cut by the image's own
// chunker (one sequential read, memory a few MiB plus one entry per needed chunk found), or the
// frame table abup recorded when it staged that slot. What this finds are candidates: each is
// read again and checked against the signed chunkSha256 before a byte of it is written.
#pragma once

#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <unordered_map>

#include "abup/digest.hpp"
#include "abup/result.hpp"
#include "partitions/block_target.hpp"
#include "update-protocol/manifest/manifest.hpp"

namespace abup::agent {

struct SlotChunk {
  std::uint64_t offset = 0, size = 0;
};

struct Xxh128Hash {
  std::size_t operator()(const Xxh128& d) const {
    std::size_t h;
    std::memcpy(&h, d.data(), sizeof h);
    return h;
  }
};

// Chunk digest -> where it is in the booted slot (the first place found).
using SlotChunks = std::unordered_map<Xxh128, SlotChunk, Xxh128Hash>;

// Cuts the first `limit` bytes of `reader` with the image's chunker and keeps the chunks whose
// XXH3-128 `wanted` says yes to (`wanted` is called from `threads` threads at once). Stops early
// when the first kScanGiveUp bytes match nothing (the slot holds an unrelated image). The slot is
// cut in `threads` slices at once, each read sequentially (a window of 4 maximum chunks each).
[[nodiscard]] Result<SlotChunks> index_slot(const partitions::SlotReader& reader,
                                            std::uint64_t limit,
                                            const protocol::ManifestImage& image,
                                            const std::function<bool(const Xxh128&)>& wanted,
                                            unsigned threads = 1);

// Fixed-size frames (schema 1): the slot read in steps of the first frame's size.
[[nodiscard]] Result<SlotChunks> index_slot_fixed(const partitions::SlotReader& reader,
                                                  std::uint64_t limit, std::uint64_t chunk,
                                                  const std::function<bool(const Xxh128&)>& wanted);

// The frames of the manifest recorded for the booted slot, when they were cut as `image`'s are
// (same chunker) and lie inside the slot.
[[nodiscard]] std::optional<SlotChunks> recorded_chunks(
    const protocol::ManifestImage& recorded, const protocol::ManifestImage& image,
    std::uint64_t slot_size, const std::function<bool(const Xxh128&)>& wanted);

// Scanning stops after this many bytes without a single reusable chunk.
inline constexpr std::uint64_t kScanGiveUp = 64 << 20;

}  // namespace abup::agent
