#include "abup/hex.hpp"

#include <doctest/doctest.h>

#include "abup/bytes.hpp"

using namespace abup;

TEST_CASE("hex round trip and rejects") {
  std::vector<std::uint8_t> b{0x00, 0xab, 0xff};
  CHECK(to_hex(b) == "00abff");
  CHECK(from_hex("00ABff") == b);
  CHECK_FALSE(from_hex("0"));
  CHECK_FALSE(from_hex("zz"));
}

TEST_CASE("base64 is strict: padding only at the end, standard alphabet") {
  auto text = as_bytes("any carnal pleas");
  auto enc = base64_encode(text);
  CHECK(enc == "YW55IGNhcm5hbCBwbGVhcw==");
  auto dec = base64_decode(enc);
  REQUIRE(dec.has_value());
  CHECK(std::string(dec->begin(), dec->end()) == "any carnal pleas");
  CHECK(base64_decode("YW55\nIGNh")->size() == 6);
  for (const char* bad : {"====", "=AAA", "AQ==AQ==", "YW5", "YW5-", "YW5_"}) {
    CAPTURE(bad);
    CHECK_FALSE(base64_decode(bad).has_value());
  }
  CHECK(base64_decode("")->empty());
}

TEST_CASE("percent_encode keeps RFC 3986 unreserved characters and the ones asked for") {
  CHECK(percent_encode("metadata.name=node-1_a~b") == "metadata.name%3Dnode-1_a~b");
  CHECK(percent_encode("a b/\xc3\xbc") == "a%20b%2F%C3%BC");
  CHECK(percent_encode("a b/\xc3\xbc", "/") == "a%20b/%C3%BC");
  CHECK(percent_encode("") == "");
}
