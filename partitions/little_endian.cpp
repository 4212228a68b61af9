#include "partitions/little_endian.hpp"

namespace abup::partitions {
namespace {

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

}  // namespace

std::vector<std::uint16_t> utf16_units(std::string_view s, std::size_t max_units) {
  std::vector<std::uint16_t> out;
  std::size_t i = 0;
  while (i < s.size()) {
    auto b = static_cast<std::uint8_t>(s[i]);
    std::uint32_t cp = 0xFFFD;
    int len = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
    if (len == 1) {
      cp = b;
    } else if (len > 1 && i + static_cast<std::size_t>(len) <= s.size()) {
      cp = b & (0x7F >> len);
      for (int k = 1; k < len; ++k) {
        auto c = static_cast<std::uint8_t>(s[i + static_cast<std::size_t>(k)]);
        if ((c & 0xC0) != 0x80) {
          cp = 0xFFFD;
          len = k;
          break;
        }
        cp = (cp << 6) | (c & 0x3F);
      }
    } else {
      len = 1;
    }
    i += static_cast<std::size_t>(len);
    if (cp >= 0x10000 && cp <= 0x10FFFF) {
      if (out.size() + 2 > max_units) break;
      out.push_back(static_cast<std::uint16_t>(0xD800 + ((cp - 0x10000) >> 10)));
      out.push_back(static_cast<std::uint16_t>(0xDC00 + ((cp - 0x10000) & 0x3FF)));
    } else {
      if (out.size() + 1 > max_units) break;
      out.push_back(static_cast<std::uint16_t>(cp > 0x10FFFF ? 0xFFFD : cp));
    }
  }
  return out;
}

std::vector<std::uint8_t> to_utf16(std::string_view utf8) {
  auto units = utf16_units(utf8);
  units.push_back(0);
  std::vector<std::uint8_t> out(2 * units.size());
  for (std::size_t i = 0; i < units.size(); ++i) put_le(out.data() + 2 * i, units[i], 2);
  return out;
}

std::string from_utf16(const std::uint8_t* p, std::size_t units) {
  std::string out;
  for (std::size_t i = 0; i < units; ++i) {
    auto u = static_cast<std::uint32_t>(get_le(p + 2 * i, 2));
    if (u == 0) break;
    if (u >= 0xD800 && u < 0xDC00 && i + 1 < units) {
      auto lo = static_cast<std::uint32_t>(get_le(p + 2 * (i + 1), 2));
      if (lo >= 0xDC00 && lo < 0xE000) {
        append_utf8(out, 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00));
        ++i;
        continue;
      }
    }
    append_utf8(out, (u >= 0xD800 && u < 0xE000) ? 0xFFFD : u);
  }
  return out;
}

}  // namespace abup::partitions
