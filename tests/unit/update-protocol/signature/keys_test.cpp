// Public keys, key ids, refused keys and keyrings.
#include <doctest/doctest.h>

#include "sig_helpers.hpp"

using namespace sigtest;
namespace ap = abup::protocol;

static bool has(const std::string& text, const std::string& part) {
  INFO("text: ", text);
  INFO("expected part: ", part);
  return text.find(part) != std::string::npos;
}

TEST_CASE("key id is the SHA-256 of the DER SubjectPublicKeyInfo, as openssl computes it") {
  abup::test::TempDir tmp;
  for (std::string kind : {"ed25519", "p256", "p384", "rsa3072"}) {
    INFO("kind: ", kind);
    auto key = make_key(tmp.path(), kind, kind);
    auto expected = run_ok("openssl pkey -pubin -in " + q(key.pub) +
                           " -outform DER | sha256sum | cut -d' ' -f1");
    expected.resize(64);
    CHECK(load_pub(key).keyid() == expected);
    // sign_manifest computes it from the private key: the same id.
    auto entry = ap::sign_manifest(kManifest, key.priv);
    REQUIRE(entry.has_value());
    CHECK(entry->keyid == expected);
  }
}

TEST_CASE("RSA keys under 3072 bits are refused, as public and as private keys") {
  abup::test::TempDir tmp;
  auto key = make_key(tmp / "keys.d", "small", "rsa2048");
  auto pub = ap::PublicKey::load(key.pub);
  REQUIRE_FALSE(pub.has_value());
  CHECK(pub.error().code == abup::Errc::invalid_input);
  CHECK(has(pub.error().message, key.pub.string() + ": RSA key of 2048 bits is too small"));
  CHECK(has(pub.error().message, "at least 3072 bits"));
  auto sig = ap::sign_manifest(kManifest, key.priv);
  REQUIRE_FALSE(sig.has_value());
  CHECK(has(sig.error().message, key.priv.string() + ": RSA key of 2048 bits is too small"));
  auto ring = ap::Keyring::load({tmp / "keys.d"});
  REQUIRE_FALSE(ring.has_value());
  CHECK(has(ring.error().message, "small.pem: RSA key of 2048 bits"));
}

TEST_CASE("EC keys on curves other than P-256/P-384 are refused") {
  abup::test::TempDir tmp;
  auto key = make_key(tmp.path(), "p521", "p521");
  auto pub = ap::PublicKey::load(key.pub);
  REQUIRE_FALSE(pub.has_value());
  CHECK(has(pub.error().message, "EC key on curve secp521r1 is not supported"));
  CHECK(has(pub.error().message, "P-256 (ecdsa-p256-sha256) or P-384"));
  auto sig = ap::sign_manifest(kManifest, key.priv);
  REQUIRE_FALSE(sig.has_value());
  CHECK(has(sig.error().message, "secp521r1 is not supported"));
  run_ok("openssl genpkey -algorithm ed448 -out " + q(tmp / "ed448.key"));
  run_ok("openssl pkey -in " + q(tmp / "ed448.key") + " -pubout -out " + q(tmp / "ed448.pem"));
  auto ed448 = ap::PublicKey::load(tmp / "ed448.pem");
  REQUIRE_FALSE(ed448.has_value());
  CHECK(has(ed448.error().message, "ED448 keys are not supported"));
}

TEST_CASE("keyring: a malformed key file is an error naming it") {
  abup::test::TempDir tmp;
  make_key(tmp / "keys.d", "good", "ed25519");
  abup::test::write_file(
      tmp / "keys.d" / "broken.pem",
      "-----BEGIN PUBLIC KEY-----\nnot base64 at all\n-----END PUBLIC KEY-----\n");
  auto ring = ap::Keyring::load({tmp / "keys.d"});
  REQUIRE_FALSE(ring.has_value());
  CHECK(ring.error().code == abup::Errc::invalid_input);
  CHECK(has(ring.error().message, (tmp / "keys.d" / "broken.pem").string() + ": not a public key"));
  CHECK(has(ring.error().message, "BEGIN PUBLIC KEY"));
}

TEST_CASE("keyring: a private key or an OpenSSH key file says what to do instead") {
  abup::test::TempDir tmp;
  auto key = make_key(tmp.path(), "k", "p256");
  auto priv = ap::PublicKey::from_pem(abup::test::read_file(key.priv), "/etc/abup/keys.d/k.pem");
  REQUIRE_FALSE(priv.has_value());
  CHECK(has(priv.error().message,
            "/etc/abup/keys.d/k.pem: not a public key: it holds a private key"));
  CHECK(has(priv.error().message, "openssl pkey -in KEY -pubout"));
  auto rsa = make_key(tmp.path(), "r", "rsa3072");
  auto pkcs1 = run_ok("openssl rsa -in " + q(rsa.priv) + " -RSAPublicKey_out 2>/dev/null");
  // OpenSSL 3 reads a PKCS#1 "RSA PUBLIC KEY" too; the key id is still that of the SPKI.
  auto p1 = ap::PublicKey::from_pem(pkcs1, "r.pub");
  REQUIRE(p1.has_value());
  CHECK(p1->keyid() == load_pub(rsa).keyid());
  auto ssh = ap::PublicKey::from_pem("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI x@y\n", "id.pub");
  REQUIRE_FALSE(ssh.has_value());
  CHECK(has(ssh.error().message, "id.pub: not a public key: OpenSSH public keys are not read"));
}

TEST_CASE("keyring: *.pem and *.pub of each directory, missing dirs skipped, duplicates once") {
  abup::test::TempDir tmp;
  auto a = make_key(tmp / "usr", "a", "ed25519");
  auto b = make_key(tmp / "etc", "b", "p384");
  // The same key again under another name and extension in the operator's directory.
  std::filesystem::copy_file(a.pub, tmp / "etc" / "a-again.pub");
  // Private keys and other files without the extensions are not read.
  abup::test::write_file(tmp / "etc" / "README", "not a key");
  std::filesystem::create_directories(tmp / "etc" / "subdir.pem");
  auto ring = ap::Keyring::load({tmp / "usr", tmp / "missing", tmp / "etc"});
  if (!ring) FAIL(ring.error().message);
  CHECK(ring->size() == 2);
  REQUIRE(ring->find(load_pub(a).keyid()) != nullptr);
  CHECK(ring->find(load_pub(a).keyid())->origin() == a.pub.string());
  REQUIRE(ring->find(load_pub(b).keyid()) != nullptr);
  CHECK(ring->find("00") == nullptr);
  // Key ids are hex: upper case finds the same key.
  auto upper = load_pub(b).keyid();
  for (auto& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  CHECK(ring->find(upper) != nullptr);
  CHECK(ring->describe() == "keyring " + (tmp / "usr").string() + ", " +
                                (tmp / "missing").string() + " (missing), " +
                                (tmp / "etc").string() + " (2 keys)");
  auto none = ap::Keyring::load({tmp / "nothing-here"});
  REQUIRE(none.has_value());
  CHECK(none->size() == 0);
  auto not_dir = ap::Keyring::load({tmp / "etc" / "README"});
  REQUIRE_FALSE(not_dir.has_value());
  CHECK(has(not_dir.error().message, "README: not a directory"));
}

TEST_CASE("sign_manifest: unreadable, non-key and encrypted private keys (never prompts)") {
  abup::test::TempDir tmp;
  auto missing = ap::sign_manifest(kManifest, tmp / "nope.key");
  REQUIRE_FALSE(missing.has_value());
  CHECK(has(missing.error().message, "nope.key"));
  abup::test::write_file(tmp / "junk.key", "hello");
  auto junk = ap::sign_manifest(kManifest, tmp / "junk.key");
  REQUIRE_FALSE(junk.has_value());
  CHECK(has(junk.error().message, "junk.key: not a PEM private key"));
  auto key = make_key(tmp.path(), "k", "ed25519");
  run_ok("openssl pkey -in " + q(key.priv) + " -aes256 -passout pass:secret -out " +
         q(tmp / "enc.key") + " </dev/null");
  auto enc = ap::sign_manifest(kManifest, tmp / "enc.key");
  REQUIRE_FALSE(enc.has_value());
  CHECK(has(enc.error().message, "enc.key: encrypted private keys are not supported"));
}
