#include "partitions/little_endian.hpp"

#include <doctest/doctest.h>

using namespace abup::partitions;

TEST_CASE("little-endian integers of 2, 4 and 8 bytes round-trip") {
  std::uint8_t b[8] = {};
  put_le(b, 0x0102030405060708u, 8);
  CHECK(b[0] == 0x08);
  CHECK(b[7] == 0x01);
  CHECK(le64(b) == 0x0102030405060708u);
  CHECK(le32(b) == 0x05060708u);
  CHECK(get_le(b, 2) == 0x0708u);
}

TEST_CASE("to_utf16 writes UTF-16LE with surrogate pairs and a NUL, from_utf16 reads it back") {
  const std::string s = "A\xc3\xa4\xe2\x82\xac\xf0\x9f\x90\xa7";  // 1-, 2-, 3- and 4-byte UTF-8
  auto b = to_utf16(s);
  const std::vector<std::uint8_t> want = {0x41, 0x00, 0xe4, 0x00, 0xac, 0x20,
                                          0x3d, 0xd8, 0x27, 0xdc, 0x00, 0x00};
  CHECK(b == want);
  CHECK(from_utf16(b.data(), b.size() / 2) == s);
  CHECK(from_utf16(b.data(), 1) == "A");  // stops at the unit count
}

TEST_CASE("UTF-16 conversions replace what is invalid and never split a pair") {
  // A lead byte without its continuation, a stray continuation byte: U+FFFD each.
  CHECK(utf16_units("\xc3(") == std::vector<std::uint16_t>{0xfffd, '('});
  CHECK(utf16_units("\x80") == std::vector<std::uint16_t>{0xfffd});
  // A cap that would cut a surrogate pair drops the whole character.
  CHECK(utf16_units("ab\xf0\x9f\x98\x80", 3) == std::vector<std::uint16_t>{'a', 'b'});
  CHECK(utf16_units("ab\xf0\x9f\x98\x80", 4).size() == 4);
  // A lone surrogate reads as U+FFFD; a NUL ends the string.
  const std::uint8_t lone[] = {0x00, 0xd8, 0x41, 0x00, 0x00, 0x00, 0x42, 0x00};
  CHECK(from_utf16(lone, 4) ==
        "\xef\xbf\xbd"
        "A");
}
