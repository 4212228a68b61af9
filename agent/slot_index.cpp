#include "agent/slot_index.hpp"

#include "abup/chunker.hpp"

namespace abup::agent {

Result<SlotChunks> index_slot(const partitions::SlotReader& reader, std::uint64_t limit,
                              const protocol::ManifestImage& image,
                              const std::function<bool(const Xxh128&)>& wanted) {
  auto params = ChunkerParams::parse(image.chunker);
  if (!params)
    return make_error(Errc::invalid_input,
                      image.path + ": unknown chunker '" + image.chunker + "'");
  SlotChunks found;
  std::uint64_t without_match = 0;
  bool gave_up = false;  // the error that ends the scan early is not one
  auto st = for_each_chunk(
      limit, *params,
      [&](std::uint64_t off, std::span<std::uint8_t> out) { return reader.read_at(off, out); },
      [&](std::uint64_t off, std::span<const std::uint8_t> chunk) -> Status {
        const auto key = xxh128(chunk);
        if (wanted(key)) {
          found.try_emplace(key, SlotChunk{off, chunk.size()});
          without_match = 0;
        } else if ((without_match += chunk.size()) >= kScanGiveUp && found.empty()) {
          gave_up = true;
          return make_error(Errc::failed, "no reusable chunk in the first " +
                                              std::to_string(kScanGiveUp) + " bytes");
        }
        return {};
      });
  if (!st && !gave_up) return std::move(st).error();
  return found;
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
