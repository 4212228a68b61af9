// Raw r||s ECDSA signatures, as Azure Key Vault and PKCS#11 tokens return them.
#include <doctest/doctest.h>

#include "sig_helpers.hpp"

using namespace sigtest;
namespace ap = abup::protocol;

namespace {

void check_raw(const std::string& kind, const std::string& dgst, std::size_t n) {
  abup::test::TempDir tmp;
  auto key = make_key(tmp.path(), "k", kind);
  auto pub = load_pub(key);
  abup::test::write_file(tmp / "m.json", kManifest);
  run_ok("openssl dgst " + dgst + " -sign " + q(key.priv) + " -out " + q(tmp / "der.sig") + " " +
         q(tmp / "m.json"));
  auto der = bytes_of(tmp / "der.sig");
  auto raw = der_to_raw(tmp / "der.sig", n);

  CHECK(pub.verify(kManifest, raw));
  CHECK(pub.verify(kManifest, der));
  auto ring = ring_of({&key});
  ap::SignatureEntry entry{pub.keyid(), std::string(ap::to_string(pub.alg())), raw};
  CHECK(ok_ids(ap::verify_threshold(kManifest, {entry}, ring, 1)).size() == 1);

  // external_signature hands back DER, which every verifier (openssl dgst -verify) reads.
  auto ext = ap::external_signature(kManifest, pub, raw);
  if (!ext) FAIL(ext.error().message);
  CHECK(ext->sig == der);

  // Right size, wrong bytes: not a signature.
  auto flipped = raw;
  flipped[n / 2] ^= 0x01;
  CHECK_FALSE(pub.verify(kManifest, flipped));
  // Raw of the other curve's size is neither DER nor raw for this key.
  Bytes wrong_size(n == 32 ? 96 : 64, 0x11);
  CHECK_FALSE(pub.verify(kManifest, wrong_size));
  auto e = ap::external_signature(kManifest, pub, wrong_size);
  REQUIRE_FALSE(e.has_value());
  CHECK(e.error().code == abup::Errc::untrusted);
  CHECK(e.error().message.find("neither a DER ECDSA signature nor raw r||s of " +
                               std::to_string(2 * n) + " bytes") != std::string::npos);
}

}  // namespace

TEST_CASE("ecdsa-p256-sha256: raw r||s (64 bytes) is accepted") {
  check_raw("p256", "-sha256", 32);
}

TEST_CASE("ecdsa-p384-sha384: raw r||s (96 bytes) is accepted") {
  check_raw("p384", "-sha384", 48);
}
