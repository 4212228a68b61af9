// libFuzzer: boot files are parsed for their embedded /usr root hash after their digest matched
// the signed manifest, but a foreign or broken build can still hand abup any bytes. Property:
// every section pe_sections() returns lies inside the input.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "partitions/boot/kernel_hash.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::span<const std::uint8_t> in(data, size);
  if (auto s = abup::partitions::boot::pe_sections(in))
    for (const auto& sec : *s)
      if (sec.offset > size || sec.size > size - sec.offset) std::abort();
  (void)abup::partitions::boot::embedded_usrhash(in, "x86_64");
  (void)abup::partitions::boot::embedded_usrhash(in, "arm64");
  return 0;
}
