// libFuzzer: multipart/byteranges bodies come from the (untrusted) image server. The first bytes
// pick the ranges asked for and how the body is split into pieces; the rest is the body.
// Properties: bytes reach the sink only for parts asked for, in order, never more than a part's
// length; a body reported complete delivered every part exactly.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "update-protocol/http/multipart.hpp"

namespace {
[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "PROPERTY FAILED: ByterangesParser: %s\n", what);
  std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 3) return 0;
  const std::size_t count = 1 + data[0] % 4;
  const std::size_t step = 1 + data[1];
  const std::uint64_t total = 100;
  // Ranges 0-9, 20-29, ... with the lengths the second byte varies: small, fixed, easy to hit.
  std::vector<abup::protocol::ContentRange> want;
  for (std::size_t i = 0; i < count; ++i)
    want.push_back({i * 20, i * 20 + 1 + (data[2] >> (2 * i)) % 4, total});
  data += 3;
  size -= 3;
  abup::protocol::ByterangesParser parser("B", want, total);
  std::vector<std::uint64_t> got(count, 0);
  std::size_t last = 0;
  auto on_data = [&](std::size_t part, std::span<const std::uint8_t> d) -> abup::Status {
    if (part >= count) fail("data for a part not asked for");
    if (part < last) fail("parts out of order");
    if (part > last && got[last] != want[last].last - want[last].first + 1)
      fail("a part ended short");
    last = part;
    got[part] += d.size();
    if (got[part] > want[part].last - want[part].first + 1) fail("a part longer than its range");
    return {};
  };
  abup::Status st;
  for (std::size_t off = 0; off < size && st; off += step)
    st = parser.feed({data + off, std::min(step, size - off)}, on_data);
  if (st && parser.complete())
    for (std::size_t i = 0; i < count; ++i)
      if (got[i] != want[i].last - want[i].first + 1) fail("complete, but a part is not whole");
  (void)abup::protocol::byteranges_boundary(
      std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
