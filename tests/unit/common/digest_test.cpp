#include "abup/digest.hpp"

#include <doctest/doctest.h>

#include "abup/bytes.hpp"
#include "abup/hex.hpp"

using namespace abup;

TEST_CASE("Sha2::peek gives the digest so far and the stream goes on") {
  Sha2 h(Sha2::Kind::sha256);
  h.update(std::string_view("ab"));
  Sha256 ab;
  h.peek(ab);
  CHECK(ab == sha256(as_bytes(std::string_view("ab"))));
  h.update(std::string_view("c"));
  Sha256 abc;
  h.finish(abc);
  // FIPS 180-2 test vector.
  CHECK(to_hex(abc) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

  Sha2 h384(Sha2::Kind::sha384);
  Sha384 empty;
  h384.peek(empty);
  CHECK(empty == sha384({}));
  h384.update(std::string_view("abc"));
  Sha384 d;
  h384.peek(d);
  CHECK(d == sha384(as_bytes(std::string_view("abc"))));
}
