// libFuzzer: abup/manifest.sig comes from the (untrusted) image; parsing must never crash or throw.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "update-protocol/manifest/signature.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto sigs = abup::protocol::parse_signature_envelope(text);
  if (sigs) (void)abup::protocol::serialize_signature_envelope(*sigs);
  return 0;
}
