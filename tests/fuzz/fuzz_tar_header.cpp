// libFuzzer: tar headers come from the (untrusted) image, read before any signature is checked.
// Each 512-byte block goes through parse_tar_header; the whole input is walked as an archive.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>

#include "memory_source.hpp"
#include "update-protocol/cosi/tar.hpp"

namespace {
[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "PROPERTY FAILED: read_tar_index: %s\n", what);
  std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::span<const std::uint8_t> in(data, size);
  for (std::size_t off = 0; off + abup::protocol::kTarBlock <= size;
       off += abup::protocol::kTarBlock)
    (void)abup::protocol::parse_tar_header(in.subspan(off, abup::protocol::kTarBlock));
  abup::fuzz::MemorySource source(in);
  auto index = abup::protocol::read_tar_index(source);
  if (index) {
    for (const auto& e : index->entries)
      if (e.data_offset + e.size > size) fail("an entry runs past the end of the input");
    if (index->end_offset + abup::protocol::kTarBlock > size) fail("end marker past the end");
  }
  return 0;
}
