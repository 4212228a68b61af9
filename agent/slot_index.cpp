#include "agent/slot_index.hpp"

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

#include "abup/chunker.hpp"

namespace abup::agent {

namespace {

// Past its slice's end a thread keeps cutting this far: the next thread started at an arbitrary
// offset and cuts where a single pass would only from its first cut that coincides with one of
// that pass (content-defined cuts resynchronise within a chunk or two); until then this thread's
// chunks are the ones a single pass finds.
constexpr std::uint64_t kSliceOverlap = 8 << 20;

}  // namespace

Result<SlotChunks> index_slot(const partitions::SlotReader& reader, std::uint64_t limit,
                              const protocol::ManifestImage& image,
                              const std::function<bool(const Xxh128&)>& wanted, unsigned threads) {
  auto params = ChunkerParams::parse(image.chunker);
  if (!params)
    return make_error(Errc::invalid_input,
                      image.path + ": unknown chunker '" + image.chunker + "'");
  // Slices of whole 4 KiB blocks, at least a few overlaps long each.
  const std::uint64_t blocks = limit / kChunkBlock;
  threads = static_cast<unsigned>(
      std::clamp<std::uint64_t>(limit / (4 * kSliceOverlap), 1, std::max(1u, threads)));
  std::atomic<bool> gave_up{false};
  std::vector<SlotChunks> found(threads);
  std::vector<std::optional<Error>> errors(threads);
  // Every chunk any slice finds is a real candidate (its digest is over the slot's bytes at its
  // offset), so the slices' findings are simply merged.
  auto scan = [&](unsigned t) {
    const std::uint64_t from = blocks * t / threads * kChunkBlock;
    const std::uint64_t end =
        t + 1 == threads
            ? limit
            : std::min(limit, blocks * (t + 1) / threads * kChunkBlock + kSliceOverlap);
    std::uint64_t without_match = 0;
    auto st = for_each_chunk(
        end - from, *params,
        [&](std::uint64_t off, std::span<std::uint8_t> out) {
          return reader.read_at(from + off, out);
        },
        [&](std::uint64_t off, std::span<const std::uint8_t> chunk) -> Status {
          if (gave_up.load(std::memory_order_relaxed)) return make_error(Errc::cancelled, "");
          const auto key = xxh128(chunk);
          if (wanted(key)) {
            found[t].try_emplace(key, SlotChunk{from + off, chunk.size()});
            without_match = 0;
          } else if (t == 0 && (without_match += chunk.size()) >= kScanGiveUp && found[t].empty()) {
            gave_up = true;  // the slot holds an unrelated image: stop every slice
          }
          return {};
        });
    if (!st && !gave_up) errors[t] = std::move(st).error();
  };
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < threads; ++t) pool.emplace_back(scan, t);
  scan(0);
  for (auto& th : pool) th.join();
  for (auto& e : errors)
    if (e) return *e;
  if (gave_up) return SlotChunks{};
  for (unsigned t = 1; t < threads; ++t) found[0].merge(found[t]);
  return std::move(found[0]);
}

Result<SlotChunks> index_slot_fixed(const partitions::SlotReader& reader, std::uint64_t limit,
                                    std::uint64_t chunk,
                                    const std::function<bool(const Xxh128&)>& wanted) {
  SlotChunks found;
  std::vector<std::uint8_t> buf(chunk);
  std::uint64_t without_match = 0;
  for (std::uint64_t off = 0; off + chunk <= limit; off += chunk) {
    if (!reader.read_at(off, buf)) break;
    const auto key = xxh128(buf);
    if (wanted(key)) {
      found.try_emplace(key, SlotChunk{off, chunk});
      without_match = 0;
    } else if ((without_match += chunk) >= kScanGiveUp && found.empty()) {
      break;
    }
  }
  return found;
}

std::optional<SlotChunks> recorded_chunks(const protocol::ManifestImage& recorded,
                                          const protocol::ManifestImage& image,
                                          std::uint64_t slot_size,
                                          const std::function<bool(const Xxh128&)>& wanted) {
  if (recorded.chunker != image.chunker) return std::nullopt;
  SlotChunks found;
  for (const auto& f : recorded.frames)
    if (wanted(f.chunk_xxh3) && f.uncompressed_offset + f.uncompressed_size <= slot_size)
      found.try_emplace(f.chunk_xxh3, SlotChunk{f.uncompressed_offset, f.uncompressed_size});
  return found;
}

}  // namespace abup::agent
