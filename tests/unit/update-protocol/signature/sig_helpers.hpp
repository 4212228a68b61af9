// Keys and signatures made by the real openssl CLI, for the signature tests.
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "abup/hex.hpp"
#include "support/util.hpp"
#include "update-protocol/manifest/signature.hpp"

namespace sigtest {

namespace fs = std::filesystem;
using abup::test::run_ok;
using abup::test::shell_quote;
using Bytes = std::vector<std::uint8_t>;

inline const std::string kManifest =
    "{\n  \"version\": \"202607.10.0\",\n  \"arch\": \"x86_64\",\n  \"images\": []\n}\n";

struct Key {
  fs::path priv, pub;
};

inline std::string q(const fs::path& p) {
  return shell_quote(p.string());
}

// kind: ed25519, p256, p384, p521, rsa2048, rsa3072, rsapss3072.
inline Key make_key(const fs::path& dir, const std::string& name, const std::string& kind) {
  Key k{dir / (name + ".key"), dir / (name + ".pem")};
  std::string gen;
  if (kind == "ed25519") gen = "-algorithm ed25519";
  if (kind == "p256") gen = "-algorithm EC -pkeyopt ec_paramgen_curve:P-256";
  if (kind == "p384") gen = "-algorithm EC -pkeyopt ec_paramgen_curve:P-384";
  if (kind == "p521") gen = "-algorithm EC -pkeyopt ec_paramgen_curve:P-521";
  if (kind == "rsa2048") gen = "-algorithm RSA -pkeyopt rsa_keygen_bits:2048";
  if (kind == "rsa3072") gen = "-algorithm RSA -pkeyopt rsa_keygen_bits:3072";
  if (kind == "rsapss3072") gen = "-algorithm RSA-PSS -pkeyopt rsa_keygen_bits:3072";
  REQUIRE_MESSAGE(!gen.empty(), kind);
  fs::create_directories(dir);
  run_ok("openssl genpkey " + gen + " -out " + q(k.priv) + " 2>/dev/null");
  run_ok("openssl pkey -in " + q(k.priv) + " -pubout -out " + q(k.pub));
  return k;
}

inline Bytes bytes_of(const fs::path& p) {
  auto s = abup::test::read_file(p);
  return {s.begin(), s.end()};
}

inline abup::protocol::PublicKey load_pub(const Key& k) {
  auto r = abup::protocol::PublicKey::load(k.pub);
  if (!r) FAIL(r.error().message);
  return *r;
}

inline abup::protocol::Keyring ring_of(std::initializer_list<const Key*> keys) {
  abup::protocol::Keyring ring;
  for (const auto* k : keys) ring.add(load_pub(*k));
  return ring;
}

inline std::vector<std::string> ok_ids(const abup::Result<std::vector<std::string>>& r) {
  if (!r) FAIL(r.error().message);
  return *r;
}

// DER ECDSA signature file → raw r||s of 2*n bytes, through `openssl asn1parse`.
inline Bytes der_to_raw(const fs::path& der, std::size_t n) {
  std::istringstream out(run_ok("openssl asn1parse -inform DER -in " + q(der)));
  Bytes raw;
  for (std::string line; std::getline(out, line);) {
    auto at = line.find("INTEGER");
    if (at == std::string::npos) continue;
    auto hex = line.substr(line.find(':', at) + 1);
    while (!hex.empty() && (hex.back() == ' ' || hex.back() == '\r')) hex.pop_back();
    hex.insert(0, 2 * n - hex.size(), '0');
    auto b = abup::from_hex(hex);
    REQUIRE(b.has_value());
    raw.insert(raw.end(), b->begin(), b->end());
  }
  REQUIRE(raw.size() == 2 * n);
  return raw;
}

}  // namespace sigtest
