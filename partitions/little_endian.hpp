// Little-endian integers and UTF-16LE strings, as GPT entries, EFI load options and the Boot
// Loader Interface's variables lay them out.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

namespace abup::partitions {

// The `n`-byte (1 to 8) little-endian integer at `p`.
[[nodiscard]] inline std::uint64_t get_le(const std::uint8_t* p, int n) {
  std::uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
[[nodiscard]] inline std::uint32_t le32(const std::uint8_t* p) {
  return static_cast<std::uint32_t>(get_le(p, 4));
}
[[nodiscard]] inline std::uint64_t le64(const std::uint8_t* p) {
  return get_le(p, 8);
}
inline void put_le(std::uint8_t* p, std::uint64_t v, int n) {
  for (int i = 0; i < n; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}

// UTF-8 -> UTF-16 code units. Invalid UTF-8 bytes become U+FFFD; the result stops before
// `max_units` would be exceeded, never splitting a surrogate pair.
[[nodiscard]] std::vector<std::uint16_t> utf16_units(
    std::string_view utf8, std::size_t max_units = std::numeric_limits<std::size_t>::max());
// UTF-8 -> UTF-16LE bytes ending in a NUL unit (EFI strings).
[[nodiscard]] std::vector<std::uint8_t> to_utf16(std::string_view utf8);
// At most `units` UTF-16LE units at `p` -> UTF-8, up to the first NUL; surrogate pairs are
// joined, a lone surrogate becomes U+FFFD.
[[nodiscard]] std::string from_utf16(const std::uint8_t* p, std::size_t units);

}  // namespace abup::partitions
