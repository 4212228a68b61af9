// abup-image sign / digest / attach-signature / verify with keys and signatures made by openssl,
// for every algorithm of docs/architecture.md §4; the signatures abup stores verify with openssl
// too.
#include <doctest/doctest.h>

#include <set>
#include <sstream>
#include <vector>

#include "bench.hpp"

using namespace abup::test;

namespace {

// The signature entries of the image's abup/manifest.sig.
nlohmann::json envelope(const std::filesystem::path& cosi) {
  return nlohmann::json::parse(tar_member(cosi, "abup/manifest.sig"))["signatures"];
}

// Checks with openssl alone that the envelope's signature by `kind`'s key is valid over the exact
// bytes of abup/manifest.json.
void openssl_verifies(const Bench& b, const std::filesystem::path& cosi, const KeyKind& kind) {
  const std::string keyid = openssl_keyid(b.pub(kind.name));
  std::string sig;
  for (const auto& s : envelope(cosi))
    if (s["keyid"] == keyid) sig = s["sig"];
  REQUIRE_MESSAGE(!sig.empty(), "no signature by ", keyid);
  write_file(b / "check.sig.b64", sig);
  run_ok("set -e; base64 -d " + q(b / "check.sig.b64") + " > " + q(b / "check.sig") +
         "; tar -xOf " + q(cosi) + " abup/manifest.json > " + q(b / "check.json"));
  const std::string cmd =
      std::string(kind.dgst).empty()
          ? "openssl pkeyutl -verify -rawin -pubin -inkey " + q(b.pub(kind.name)) + " -in " +
                q(b / "check.json") + " -sigfile " + q(b / "check.sig")
          : "openssl dgst " + std::string(kind.dgst) + " -verify " + q(b.pub(kind.name)) +
                " -signature " + q(b / "check.sig") + " " + q(b / "check.json");
  CHECK(contains(run_ok(cmd), "Verified"));
}

RunResult verify(const Bench& b, const std::filesystem::path& cosi, const std::string& extra = "") {
  return image_tool("verify --keyring " + q(b.keyring()) + " " + extra + " " + q(cosi));
}

void verify_ok(const Bench& b, const std::filesystem::path& cosi, const std::string& extra = "") {
  auto r = verify(b, cosi, extra);
  INFO(r.out);
  CHECK(r.exit_code == 0);
  CHECK(contains(r.out, ": OK: version 202607.02.0"));
}

// digest → openssl pkeyutl -sign → attach-signature, as an HSM or Key Vault signer would.
void external_flow(const KeyKind& kind) {
  Bench b;
  auto key = b.key(kind);
  auto cosi = b.build("img");
  auto printed = image_tool_ok("digest --public-key " + q(b.pub(kind.name)) + " --out " +
                               q(b / "tbs.bin") + " " + q(cosi));
  auto manifest = tar_member(cosi, "abup/manifest.json");
  // What is to be signed: the manifest itself for Ed25519, else its SHA-256/SHA-384.
  if (std::string_view(kind.name) == kEd25519.name) {
    CHECK(read_file(b / "tbs.bin") == manifest);
  } else {
    const std::string sum = std::string_view(kind.name) == kP384.name ? "sha384sum" : "sha256sum";
    auto hex = run_ok("od -An -tx1 -v " + q(b / "tbs.bin") + " | tr -d ' \\n'");
    auto expected = run_ok("tar -xOf " + q(cosi) + " abup/manifest.json | " + sum);
    CHECK(hex == expected.substr(0, expected.find(' ')));
    CHECK(printed == hex + "\n");
  }
  run_ok("openssl pkeyutl -sign -inkey " + q(key) + " " + kind.pkeyutl + " -in " +
         q(b / "tbs.bin") + " -out " + q(b / "sig"));
  auto out = image_tool_ok("attach-signature --public-key " + q(b.pub(kind.name)) +
                           " --signature " + q(b / "sig") + " " + q(cosi));
  CHECK(contains(out, openssl_keyid(b.pub(kind.name))));
  verify_ok(b, cosi);
  auto sigs = envelope(cosi);
  REQUIRE(sigs.size() == 1);
  CHECK(sigs[0]["alg"] == kind.alg);
  CHECK(sigs[0]["keyid"] == openssl_keyid(b.pub(kind.name)));
  openssl_verifies(b, cosi, kind);
  // The manifest was not touched by signing.
  CHECK(tar_member(cosi, "abup/manifest.json") == manifest);
}

}  // namespace

TEST_CASE("sign with ed25519, ECDSA P-256, ECDSA P-384 and RSA-3072 keys made by openssl") {
  Bench b;
  auto built = b.build("img");
  for (const auto& kind : kAllKinds) b.key(kind);

  for (const auto& kind : kAllKinds) {
    CAPTURE(kind.alg);
    auto cosi = b.copy(built, kind.name);
    auto out =
        image_tool_ok("sign --key " + q(b / (std::string(kind.name) + ".pem")) + " " + q(cosi));
    const auto keyid = openssl_keyid(b.pub(kind.name));
    CHECK(contains(out, keyid));
    verify_ok(b, cosi);
    auto j = inspect_json(cosi);
    REQUIRE(j["signatures"].size() == 1);
    CHECK(j["signatures"][0]["keyid"] == keyid);
    CHECK(j["signatures"][0]["alg"] == kind.alg);
    CHECK(contains(image_tool_ok("inspect " + q(cosi)),
                   "signature: " + std::string(kind.alg) + " key " + keyid));
    CHECK(tar_names(cosi).back() == "abup/manifest.sig");
    openssl_verifies(b, cosi, kind);
  }

  {  // an unsigned image does not verify
    auto r = verify(b, built);
    INFO(r.out);
    CHECK(r.exit_code != 0);
    CHECK(contains(r.out, "not signed"));
  }

  {  // several --key, and signing again with a key keeps one signature per key
    std::string keys;
    for (const auto& kind : kAllKinds) keys += " --key " + q(b / (std::string(kind.name) + ".pem"));
    image_tool_ok("sign" + keys + " " + q(built));
    CHECK(inspect_json(built)["signatures"].size() == 4);
    verify_ok(b, built, "--threshold 4");
    auto before = envelope(built);

    image_tool_ok("sign --key " + q(b / "ed25519.pem") + " --key " + q(b / "p256.pem") + " " +
                  q(built));
    auto after = envelope(built);
    REQUIRE(after.size() == 4);
    std::set<std::string> ids;
    for (const auto& s : after) ids.insert(s["keyid"].get<std::string>());
    CHECK(ids.size() == 4);
    // Ed25519 is deterministic: the same key over the same manifest makes the same signature.
    for (const auto& s : after)
      if (s["alg"] == "ed25519")
        for (const auto& old : before)
          if (old["alg"] == "ed25519") CHECK(s["sig"] == old["sig"]);
    verify_ok(b, built, "--threshold 4");
    CHECK(tar_names(built).size() == 6);
  }

  {  // a keyring without the signer's key is refused, naming the key id
    auto cosi = b / "p256.cosi";
    std::filesystem::create_directories(b / "other-keys");
    b.key(kEd25519, false, "stranger");
    std::filesystem::copy_file(b.pub("stranger"), b / "other-keys" / "stranger.pem");
    auto r = image_tool("verify --keyring " + q(b / "other-keys") + " " + q(cosi));
    INFO(r.out);
    CHECK(r.exit_code == 1);
    CHECK(contains(r.out, openssl_keyid(b.pub("p256")).substr(0, 16)));
    CHECK(contains(r.out, "other-keys"));
    auto empty = image_tool("verify --keyring " + q(b / "no-such-dir") + " " + q(cosi));
    INFO(empty.out);
    CHECK(empty.exit_code == 1);
    CHECK(contains(empty.out, "no-such-dir (missing)"));
  }

  {  // --threshold 2 is not met by one signature
    auto r = verify(b, b / "rsa3072.cosi", "--threshold 2");
    INFO(r.out);
    CHECK(r.exit_code == 1);
    CHECK(contains(r.out, "1 of 2 required signatures valid"));
    CHECK(contains(r.out, openssl_keyid(b.pub("rsa3072")).substr(0, 16)));
  }
}

TEST_CASE("external signer: digest, openssl pkeyutl -sign, attach-signature with ed25519") {
  external_flow(kEd25519);
}

TEST_CASE("external signer: digest, openssl pkeyutl -sign, attach-signature with ECDSA P-256") {
  external_flow(kP256);
}

TEST_CASE("external signer: digest, openssl pkeyutl -sign, attach-signature with ECDSA P-384") {
  external_flow(kP384);
}

TEST_CASE("external signer: digest, openssl pkeyutl -sign, attach-signature with RSA-3072 PSS") {
  external_flow(kRsa3072);
}

TEST_CASE("external ECDSA signatures: openssl dgst, raw r||s, and ones that must be refused") {
  Bench b;
  auto key = b.key(kP256);
  auto p384 = b.key(kP384);
  auto other = b.key(kP256, false, "other");
  auto cosi = b.build("img");
  auto attach = [&](const std::string& pub, const std::filesystem::path& sig) {
    return image_tool("attach-signature --public-key " + q(b.pub(pub)) + " --signature " + q(sig) +
                      " " + q(cosi));
  };
  run_ok("tar -xOf " + q(cosi) + " abup/manifest.json > " + q(b / "manifest.json"));

  SUBCASE("openssl dgst -sha256 -sign over the extracted manifest") {
    run_ok("openssl dgst -sha256 -sign " + q(key) + " -out " + q(b / "sig.der") + " " +
           q(b / "manifest.json"));
    auto r = attach("p256", b / "sig.der");
    INFO(r.out);
    CHECK(r.exit_code == 0);
    verify_ok(b, cosi);
  }

  SUBCASE("raw r||s, as Azure Key Vault returns it, is accepted and stored as DER") {
    run_ok("openssl dgst -sha384 -sign " + q(p384) + " -out " + q(b / "sig384.der") + " " +
           q(b / "manifest.json"));
    run_ok("openssl dgst -sha256 -sign " + q(key) + " -out " + q(b / "sig.der") + " " +
           q(b / "manifest.json"));
    // The two INTEGERs of the DER SEQUENCE, each left-padded to the field size.
    auto to_raw = [&](const std::string& der, const std::string& raw, int bytes) {
      auto ints = run_ok("openssl asn1parse -inform DER -in " + q(b / der) +
                         " | sed -n 's/.*INTEGER *://p'");
      std::istringstream in(ints);
      std::string r, s;
      in >> r >> s;
      REQUIRE(!s.empty());
      auto pad = [&](std::string h) { return std::string(2 * bytes - h.size(), '0') + h; };
      run_ok("python3 -c 'import sys; sys.stdout.buffer.write(bytes.fromhex(sys.argv[1]))' " +
             pad(r) + pad(s) + " > " + q(b / raw));
      REQUIRE(std::filesystem::file_size(b / raw) == static_cast<std::uintmax_t>(2 * bytes));
    };
    to_raw("sig.der", "sig.raw", 32);
    to_raw("sig384.der", "sig384.raw", 48);
    auto r = attach("p256", b / "sig.raw");
    INFO(r.out);
    CHECK(r.exit_code == 0);
    auto r384 = attach("p384", b / "sig384.raw");
    INFO(r384.out);
    CHECK(r384.exit_code == 0);
    verify_ok(b, cosi, "--threshold 2");
    openssl_verifies(b, cosi, kP256);
    openssl_verifies(b, cosi, kP384);
  }

  SUBCASE("a signature by another key, or over other bytes, is refused and nothing changes") {
    image_tool_ok("digest --public-key " + q(b.pub("p256")) + " --out " + q(b / "tbs.bin") + " " +
                  q(cosi));
    const auto before = sha256_file(cosi);
    const auto keyid = openssl_keyid(b.pub("p256")).substr(0, 16);
    // attach-signature refuses `sig`, saying each of `says`, and leaves the image as it was.
    auto refused = [&](const std::filesystem::path& sig, const std::vector<std::string>& says) {
      auto r = attach("p256", sig);
      INFO(r.out);
      CHECK(r.exit_code == 1);
      for (const auto& part : says) CHECK(contains(r.out, part));
      CHECK(sha256_file(cosi) == before);
    };

    run_ok("openssl pkeyutl -sign -inkey " + q(other) + " -in " + q(b / "tbs.bin") + " -out " +
           q(b / "wrong-key.sig"));
    refused(b / "wrong-key.sig", {"does not verify", keyid});

    run_ok("head -c 32 /dev/urandom > " + q(b / "other.bin") + "; openssl pkeyutl -sign -inkey " +
           q(key) + " -in " + q(b / "other.bin") + " -out " + q(b / "other-bytes.sig"));
    refused(b / "other-bytes.sig", {"does not verify"});

    // The P-384 digest signed with the P-256 key: abup says which digest was wrong.
    run_ok("openssl dgst -sha384 -sign " + q(key) + " -out " + q(b / "sha384.sig") + " " +
           q(b / "manifest.json"));
    refused(b / "sha384.sig", {"SHA-384"});

    // Garbage of the wrong size for either encoding.
    write_file(b / "junk.sig", "not a signature");
    refused(b / "junk.sig", {"neither a DER ECDSA signature nor raw r||s of 64 bytes"});
    CHECK(inspect_json(cosi)["signatures"].empty());
  }
}
