// Signatures over the exact bytes of abup/manifest.json (docs/architecture.md §4), keyrings and
// thresholds.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "abup/result.hpp"

namespace abup::protocol {

enum class SigAlg { ed25519, ecdsa_p256_sha256, ecdsa_p384_sha384, rsa_pss_sha256 };

[[nodiscard]] std::string_view to_string(SigAlg alg);  // "ed25519", "ecdsa-p256-sha256", ...
[[nodiscard]] Result<SigAlg> parse_sig_alg(std::string_view name);

struct SignatureEntry {
  std::string keyid;              // lowercase hex SHA-256 of the key's DER SubjectPublicKeyInfo
  std::string alg;                // as written; unknown algorithms are skipped, not fatal
  std::vector<std::uint8_t> sig;  // ECDSA: DER or raw r||s
};

// {"signatures":[{"keyid":"…","alg":"…","sig":"<base64>"}]}; unknown fields ignored.
[[nodiscard]] Result<std::vector<SignatureEntry>> parse_signature_envelope(std::string_view json);
[[nodiscard]] std::string serialize_signature_envelope(const std::vector<SignatureEntry>& sigs);

class PublicKey {
 public:
  // PEM SubjectPublicKeyInfo ("BEGIN PUBLIC KEY"). RSA keys below 3072 bits and curves other
  // than P-256/P-384 are refused with a message saying so.
  [[nodiscard]] static Result<PublicKey> from_pem(std::string_view pem, std::string origin);
  [[nodiscard]] static Result<PublicKey> load(const std::filesystem::path& path);
  [[nodiscard]] const std::string& keyid() const { return keyid_; }
  [[nodiscard]] SigAlg alg() const { return alg_; }
  [[nodiscard]] const std::string& origin() const { return origin_; }  // file it came from
  // True when sig is a valid signature of message under this key and alg.
  [[nodiscard]] bool verify(std::string_view message, std::span<const std::uint8_t> sig) const;
  [[nodiscard]] void* native() const { return key_.get(); }  // EVP_PKEY*

 private:
  std::shared_ptr<void> key_;
  std::string keyid_, origin_;
  SigAlg alg_ = SigAlg::ed25519;
};

class Keyring {
 public:
  // Loads every *.pem and *.pub file of each directory (missing directories are skipped; an
  // unreadable or malformed key file is an error naming it). Duplicate key ids count once.
  [[nodiscard]] static Result<Keyring> load(const std::vector<std::filesystem::path>& dirs);
  void add(PublicKey key);
  [[nodiscard]] const PublicKey* find(std::string_view keyid) const;
  [[nodiscard]] std::size_t size() const { return keys_.size(); }
  [[nodiscard]] std::string describe() const;  // "keyring /etc/abup/keys.d (2 keys)"

 private:
  std::vector<PublicKey> keys_;
  std::vector<std::filesystem::path> dirs_;
  std::vector<std::filesystem::path> missing_dirs_;  // named in describe(): a likely mistake
};

// Succeeds when at least `threshold` distinct trusted keys signed `manifest` with their own
// algorithm; returns the key ids that did. The error (Errc::untrusted) lists the key ids seen, why
// each one did not count, and the keyring. A threshold below 1 is refused (Errc::invalid_input).
[[nodiscard]] Result<std::vector<std::string>> verify_threshold(
    std::string_view manifest, const std::vector<SignatureEntry>& sigs, const Keyring& keyring,
    int threshold);

// Signs with a PEM private key (PKCS#8 or traditional); the algorithm follows from the key.
[[nodiscard]] Result<SignatureEntry> sign_manifest(std::string_view manifest,
                                                   const std::filesystem::path& private_key_pem);

// What an external signer (HSM, Key Vault, openssl CLI) must sign for alg: the manifest bytes
// themselves for ed25519, else the SHA-256/SHA-384 digest of them.
[[nodiscard]] std::vector<std::uint8_t> to_be_signed(std::string_view manifest, SigAlg alg);

// Builds an entry from an externally made signature: the signature is checked against the
// public key (a digest signature as `openssl pkeyutl -sign` over to_be_signed() makes it, or a
// message signature as `openssl dgst -sign` makes it, are both accepted) before it is returned.
// A raw r||s ECDSA signature is returned DER-encoded. A signature that does not verify is an
// Errc::untrusted error saying, when it can tell, which signing parameter was wrong.
[[nodiscard]] Result<SignatureEntry> external_signature(std::string_view manifest,
                                                        const PublicKey& key,
                                                        std::span<const std::uint8_t> sig);

}  // namespace abup::protocol
