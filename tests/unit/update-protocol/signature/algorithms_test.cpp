// Each algorithm of docs/architecture.md §4, signed by sign_manifest and by the stock openssl CLI
// (the external-signer forms an HSM or Key Vault workflow uses), verified both ways.
#include <doctest/doctest.h>

#include "sig_helpers.hpp"

using namespace sigtest;
namespace ap = abup::protocol;

namespace {

struct Case {
  std::string kind;
  ap::SigAlg alg;
  std::string dgst;          // "-sha256"/"-sha384"; empty for ed25519
  std::string pkeyutl_opts;  // for `openssl pkeyutl -sign` over to_be_signed()
  std::string sigopts;       // for `openssl dgst -sign` / `-verify`
};

const std::string kPss =
    "-pkeyopt digest:sha256 -pkeyopt rsa_padding_mode:pss -pkeyopt rsa_pss_saltlen:32 "
    "-pkeyopt rsa_mgf1_md:sha256";
const std::string kPssSigopts = "-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32";

void accept_external(const ap::PublicKey& pub, const fs::path& sig_file) {
  auto entry = ap::external_signature(kManifest, pub, bytes_of(sig_file));
  if (!entry) FAIL(entry.error().message);
  CHECK(entry->keyid == pub.keyid());
  CHECK(entry->alg == ap::to_string(pub.alg()));
  ap::Keyring ring;
  ring.add(pub);
  CHECK(ok_ids(ap::verify_threshold(kManifest, {*entry}, ring, 1)) ==
        std::vector<std::string>{pub.keyid()});
}

void check_algorithm(const Case& c) {
  abup::test::TempDir tmp;
  auto key = make_key(tmp.path(), "k", c.kind);
  auto pub = load_pub(key);
  REQUIRE(pub.alg() == c.alg);
  auto manifest = tmp / "manifest.json";
  abup::test::write_file(manifest, kManifest);

  // Our signer; then stock openssl must verify what it made.
  auto ours = ap::sign_manifest(kManifest, key.priv);
  if (!ours) FAIL(ours.error().message);
  CHECK(ours->alg == ap::to_string(c.alg));
  CHECK(ours->keyid == pub.keyid());
  ap::Keyring ring;
  ring.add(pub);
  CHECK(ok_ids(ap::verify_threshold(kManifest, {*ours}, ring, 1)) ==
        std::vector<std::string>{pub.keyid()});
  auto our_sig = tmp / "ours.sig";
  abup::test::write_file(our_sig, std::string(ours->sig.begin(), ours->sig.end()));
  if (c.alg == ap::SigAlg::ed25519)
    run_ok("openssl pkeyutl -verify -pubin -inkey " + q(key.pub) + " -rawin -in " + q(manifest) +
           " -sigfile " + q(our_sig));
  else
    run_ok("openssl dgst " + c.dgst + " -verify " + q(key.pub) + " " + c.sigopts + " -signature " +
           q(our_sig) + " " + q(manifest));

  // The digest form: `openssl pkeyutl -sign` over to_be_signed().
  auto tbs = ap::to_be_signed(kManifest, c.alg);
  auto tbs_file = tmp / "tbs.bin";
  abup::test::write_file(tbs_file, std::string(tbs.begin(), tbs.end()));
  if (c.alg == ap::SigAlg::ed25519) {
    CHECK(std::string(tbs.begin(), tbs.end()) == kManifest);
    run_ok("openssl pkeyutl -sign -rawin -inkey " + q(key.priv) + " -in " + q(tbs_file) + " -out " +
           q(tmp / "pkeyutl.sig"));
  } else {
    CHECK(abup::test::read_file(tbs_file) ==
          run_ok("openssl dgst " + c.dgst + " -binary " + q(manifest)));
    run_ok("openssl pkeyutl -sign -inkey " + q(key.priv) + " -in " + q(tbs_file) + " " +
           c.pkeyutl_opts + " -out " + q(tmp / "pkeyutl.sig"));
  }
  accept_external(pub, tmp / "pkeyutl.sig");

  // The message form: `openssl dgst -sign` over the manifest (no dgst form for pure Ed25519).
  if (c.alg != ap::SigAlg::ed25519) {
    run_ok("openssl dgst " + c.dgst + " -sign " + q(key.priv) + " " + c.sigopts + " -out " +
           q(tmp / "dgst.sig") + " " + q(manifest));
    accept_external(pub, tmp / "dgst.sig");
  }
}

}  // namespace

TEST_CASE("ed25519: sign_manifest and openssl pkeyutl -rawin signatures verify") {
  check_algorithm({"ed25519", ap::SigAlg::ed25519, "", "", ""});
}

TEST_CASE("ecdsa-p256-sha256: sign_manifest, pkeyutl over the digest and dgst -sign verify") {
  check_algorithm({"p256", ap::SigAlg::ecdsa_p256_sha256, "-sha256", "", ""});
}

TEST_CASE("ecdsa-p384-sha384: sign_manifest, pkeyutl over the digest and dgst -sign verify") {
  check_algorithm({"p384", ap::SigAlg::ecdsa_p384_sha384, "-sha384", "", ""});
}

TEST_CASE("rsa-pss-sha256: sign_manifest, pkeyutl over the digest and dgst -sign verify") {
  check_algorithm({"rsa3072", ap::SigAlg::rsa_pss_sha256, "-sha256", kPss, kPssSigopts});
}

TEST_CASE("rsa-pss-sha256 with an RSASSA-PSS key (openssl genpkey -algorithm RSA-PSS)") {
  check_algorithm({"rsapss3072", ap::SigAlg::rsa_pss_sha256, "-sha256", kPss, kPssSigopts});
}

TEST_CASE("sig alg names round-trip, unknown names are errors listing the known ones") {
  for (auto alg : {ap::SigAlg::ed25519, ap::SigAlg::ecdsa_p256_sha256,
                   ap::SigAlg::ecdsa_p384_sha384, ap::SigAlg::rsa_pss_sha256}) {
    auto back = ap::parse_sig_alg(ap::to_string(alg));
    REQUIRE(back.has_value());
    CHECK(*back == alg);
  }
  auto bad = ap::parse_sig_alg("rsa-pkcs1-sha256");
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().message.find("\"rsa-pkcs1-sha256\"") != std::string::npos);
  CHECK(bad.error().message.find("ecdsa-p384-sha384") != std::string::npos);
}
