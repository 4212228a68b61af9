// libFuzzer: a whole COSI archive (tar index, metadata.json, the image entries it names) read
// from an untrusted source; must never crash, throw or read outside the source.
#include <cstddef>
#include <cstdint>
#include <span>

#include "memory_source.hpp"
#include "update-protocol/cosi/cosi.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  abup::fuzz::MemorySource source(std::span<const std::uint8_t>(data, size));
  auto cosi = abup::protocol::read_cosi(source);
  if (cosi && cosi->manifest)
    (void)abup::protocol::read_entry(source, *cosi->manifest, abup::protocol::kMaxManifestSize);
  return 0;
}
