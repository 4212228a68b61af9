// libFuzzer: metadata.json comes from the (untrusted) image and is parsed before the manifest
// signature has pinned it; parsing must never crash or throw.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "update-protocol/cosi/cosi.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  (void)abup::protocol::parse_cosi_metadata(text);
  return 0;
}
