// verify_threshold: what counts, and errors that say exactly why a signature did not.
#include <doctest/doctest.h>

#include "sig_helpers.hpp"

using namespace sigtest;
namespace ap = abup::protocol;

namespace {

bool has(const std::string& text, const std::string& part) {
  INFO("text: ", text);
  INFO("expected part: ", part);
  return text.find(part) != std::string::npos;
}

ap::SignatureEntry sign(const Key& k, const std::string& manifest = kManifest) {
  auto e = ap::sign_manifest(manifest, k.priv);
  if (!e) FAIL(e.error().message);
  return *e;
}

std::string failure(const abup::Result<std::vector<std::string>>& r) {
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == abup::Errc::untrusted);
  return r.error().message;
}

std::string short_id(const Key& k) {
  return load_pub(k).keyid().substr(0, 16) + "…";
}

}  // namespace

TEST_CASE("a signature by a key outside the keyring is untrusted, and the error says so") {
  abup::test::TempDir tmp;
  auto signer = make_key(tmp / "other", "signer", "ed25519");
  auto trusted = make_key(tmp / "keys.d", "trusted", "ed25519");
  auto ring = ap::Keyring::load({tmp / "keys.d"});
  REQUIRE(ring.has_value());
  auto msg = failure(ap::verify_threshold(kManifest, {sign(signer)}, *ring, 1));
  CHECK(msg == "image signature: 0 of 1 required signatures valid (1 signature by key id " +
                   short_id(signer) + "; none trusted by keyring " + (tmp / "keys.d").string() +
                   " (1 key))");
}

TEST_CASE("a wrong key claiming a trusted key id: signed by a trusted key but does not verify") {
  abup::test::TempDir tmp;
  auto signer = make_key(tmp.path(), "signer", "ed25519");
  auto trusted = make_key(tmp.path(), "trusted", "ed25519");
  auto entry = sign(signer);
  entry.keyid = load_pub(trusted).keyid();
  auto msg = failure(ap::verify_threshold(kManifest, {entry}, ring_of({&trusted}), 1));
  CHECK(has(msg, "signed by trusted key " + short_id(trusted) + " (" + trusted.pub.string() +
                     ") but the signature does not verify"));
  CHECK_FALSE(has(msg, "none trusted"));
  auto ext = ap::external_signature(kManifest, load_pub(trusted), entry.sig);
  REQUIRE_FALSE(ext.has_value());
  CHECK(ext.error().code == abup::Errc::untrusted);
  CHECK(has(ext.error().message, "external ed25519 signature by key " + short_id(trusted)));
  CHECK(has(ext.error().message, "openssl pkeyutl -sign -rawin"));
}

TEST_CASE("one changed manifest byte breaks every algorithm's signature") {
  abup::test::TempDir tmp;
  for (std::string kind : {"ed25519", "p256", "p384", "rsa3072"}) {
    INFO("kind: ", kind);
    auto k = make_key(tmp.path(), kind, kind);
    auto entry = sign(k);
    auto ring = ring_of({&k});
    CHECK(ok_ids(ap::verify_threshold(kManifest, {entry}, ring, 1)).size() == 1);
    auto tampered = kManifest;
    tampered[tampered.find("10")] = '9';
    auto msg = failure(ap::verify_threshold(tampered, {entry}, ring, 1));
    CHECK(has(msg, "0 of 1 required signatures valid"));
    CHECK(has(msg,
              "but the signature does not verify: not made by this key over these exact "
              "manifest bytes"));
  }
}

TEST_CASE("threshold 2: one valid fails, two distinct keys pass, one key twice counts once") {
  abup::test::TempDir tmp;
  auto a = make_key(tmp.path(), "a", "ed25519");
  auto b = make_key(tmp.path(), "b", "p256");
  auto ring = ring_of({&a, &b});
  auto sa = sign(a), sb = sign(b);

  auto one = failure(ap::verify_threshold(kManifest, {sa}, ring, 2));
  CHECK(has(one, "image signature: 1 of 2 required signatures valid (1 signature by key id " +
                     short_id(a) + "; valid: " + short_id(a)));

  auto ids = ok_ids(ap::verify_threshold(kManifest, {sa, sb}, ring, 2));
  CHECK(ids == std::vector<std::string>{load_pub(a).keyid(), load_pub(b).keyid()});

  // The same key twice (even as two different valid signatures) is one signer.
  auto sa2 = sign(a);
  auto twice = failure(ap::verify_threshold(kManifest, {sa, sa2}, ring, 2));
  CHECK(has(twice, "1 of 2 required signatures valid (2 signatures by key id " + short_id(a)));
  CHECK(ok_ids(ap::verify_threshold(kManifest, {sa, sa2}, ring, 1)).size() == 1);
}

TEST_CASE("a signature whose alg does not match its key's is not counted, and the error says so") {
  abup::test::TempDir tmp;
  auto k = make_key(tmp.path(), "k", "p256");
  auto entry = sign(k);
  entry.alg = "ecdsa-p384-sha384";
  auto msg = failure(ap::verify_threshold(kManifest, {entry}, ring_of({&k}), 1));
  CHECK(
      has(msg, "signature by trusted key " + short_id(k) + " (" + k.pub.string() +
                   ") claims alg ecdsa-p384-sha384 but the key is ecdsa-p256-sha256: not counted"));
}

TEST_CASE("unknown algorithms are skipped, not fatal") {
  abup::test::TempDir tmp;
  auto k = make_key(tmp.path(), "k", "ed25519");
  auto ring = ring_of({&k});
  ap::SignatureEntry future{std::string(64, 'a'), "ml-dsa-65", {1, 2, 3}};
  CHECK(ok_ids(ap::verify_threshold(kManifest, {future, sign(k)}, ring, 1)).size() == 1);
  auto msg = failure(ap::verify_threshold(kManifest, {future}, ring, 1));
  CHECK(has(msg, "unknown alg \"ml-dsa-65\" by aaaaaaaaaaaaaaaa… skipped"));
}

TEST_CASE("no signatures, an empty keyring and a threshold below 1") {
  abup::test::TempDir tmp;
  auto k = make_key(tmp.path(), "k", "ed25519");
  auto empty = ap::Keyring::load({tmp / "keys.d"});
  REQUIRE(empty.has_value());
  auto msg = failure(ap::verify_threshold(kManifest, {sign(k)}, *empty, 1));
  CHECK(has(msg, "none trusted by keyring " + (tmp / "keys.d").string() +
                     " (missing) (0 keys): add the signer's public key as a .pem file"));
  auto none = failure(ap::verify_threshold(kManifest, {}, ring_of({&k}), 1));
  CHECK(has(none, "0 of 1 required signatures valid (the envelope holds no signatures; keyring"));
  auto zero = ap::verify_threshold(kManifest, {sign(k)}, ring_of({&k}), 0);
  REQUIRE_FALSE(zero.has_value());
  CHECK(zero.error().code == abup::Errc::invalid_input);
  CHECK(has(zero.error().message, "threshold must be at least 1, got 0"));
}

TEST_CASE("a signature made with the wrong openssl options is named in the error") {
  abup::test::TempDir tmp;
  abup::test::write_file(tmp / "m.json", kManifest);
  auto m = q(tmp / "m.json");

  auto rsa = make_key(tmp.path(), "rsa", "rsa3072");
  auto rsa_pub = load_pub(rsa);
  // `openssl dgst -sign` without -sigopt makes PKCS#1 v1.5.
  run_ok("openssl dgst -sha256 -sign " + q(rsa.priv) + " -out " + q(tmp / "v15.sig") + " " + m);
  auto v15 = ap::external_signature(kManifest, rsa_pub, bytes_of(tmp / "v15.sig"));
  REQUIRE_FALSE(v15.has_value());
  CHECK(has(v15.error().message, "it is RSA PKCS#1 v1.5; rsa-pss-sha256 needs PSS"));
  // PSS with the maximum salt length instead of 32.
  run_ok("openssl dgst -sha256 -sign " + q(rsa.priv) +
         " -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:max -out " + q(tmp / "max.sig") +
         " " + m);
  auto salt = ap::external_signature(kManifest, rsa_pub, bytes_of(tmp / "max.sig"));
  REQUIRE_FALSE(salt.has_value());
  CHECK(has(salt.error().message, "salt length other than 32"));

  // P-384 key used with SHA-256.
  auto p384 = make_key(tmp.path(), "p384", "p384");
  run_ok("openssl dgst -sha256 -sign " + q(p384.priv) + " -out " + q(tmp / "p384.sig") + " " + m);
  auto p = ap::external_signature(kManifest, load_pub(p384), bytes_of(tmp / "p384.sig"));
  REQUIRE_FALSE(p.has_value());
  CHECK(has(p.error().message, "it signs the SHA-256 digest; ecdsa-p384-sha384 needs SHA-384"));

  // Ed25519 over the digest instead of the manifest.
  auto ed = make_key(tmp.path(), "ed", "ed25519");
  run_ok("openssl dgst -sha256 -binary " + m + " > " + q(tmp / "d.bin"));
  run_ok("openssl pkeyutl -sign -rawin -inkey " + q(ed.priv) + " -in " + q(tmp / "d.bin") +
         " -out " + q(tmp / "ed.sig"));
  auto e = ap::external_signature(kManifest, load_pub(ed), bytes_of(tmp / "ed.sig"));
  REQUIRE_FALSE(e.has_value());
  CHECK(has(e.error().message, "ed25519 signs the manifest bytes themselves"));
  // The same diagnosis reaches the threshold error.
  ap::SignatureEntry entry{load_pub(ed).keyid(), "ed25519", bytes_of(tmp / "ed.sig")};
  auto msg = failure(ap::verify_threshold(kManifest, {entry}, ring_of({&ed}), 1));
  CHECK(has(msg, "does not verify: it signs a digest of the manifest"));
}
