#include "update-protocol/manifest/signature.hpp"

#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <system_error>

#include "abup/digest.hpp"
#include "abup/fs.hpp"
#include "abup/hex.hpp"

namespace abup::protocol {
namespace {

// Envelopes are a few signatures; a bigger one is not ours and is not worth parsing.
constexpr std::size_t kMaxEnvelopeBytes = 1 << 20;
constexpr std::size_t kMaxKeyFileBytes = 1 << 20;  // a PEM key is a few KiB
constexpr int kMinRsaBits = 3072;
constexpr int kPssSaltLen = 32;
constexpr std::string_view kEnvelopeName = "abup/manifest.sig";

using PkeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)>;
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)>;
using BioPtr = std::unique_ptr<BIO, decltype(&BIO_free)>;
using Bytes = std::vector<std::uint8_t>;

// The last OpenSSL error, for messages; also empties the thread's error queue so that a failure
// here never shows up in someone else's ERR_get_error().
std::string ssl_error() {
  unsigned long e = ERR_peek_last_error();
  char buf[256] = "unknown OpenSSL error";
  if (e != 0) ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return buf;
}

std::string plural(std::size_t n, std::string_view word) {
  return std::to_string(n) + " " + std::string(word) + (n == 1 ? "" : "s");
}

std::string short_id(std::string_view keyid) {
  return keyid.size() > 16 ? std::string(keyid.substr(0, 16)) + "…" : std::string(keyid);
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  return out;
}

const EVP_MD* digest_of(SigAlg alg) {
  switch (alg) {
    case SigAlg::ed25519:
      return nullptr;  // pure Ed25519 hashes internally
    case SigAlg::ecdsa_p384_sha384:
      return EVP_sha384();
    case SigAlg::ecdsa_p256_sha256:
    case SigAlg::rsa_pss_sha256:
      return EVP_sha256();
  }
  return nullptr;
}

// The algorithm a key implies, or why abup refuses the key.
Result<SigAlg> classify(EVP_PKEY* pkey, const std::string& origin) {
  switch (EVP_PKEY_get_base_id(pkey)) {
    case EVP_PKEY_ED25519:
      return SigAlg::ed25519;
    case EVP_PKEY_RSA:
    case EVP_PKEY_RSA_PSS: {
      int bits = EVP_PKEY_get_bits(pkey);
      if (bits < kMinRsaBits)
        return make_error(Errc::invalid_input,
                          origin + ": RSA key of " + std::to_string(bits) +
                              " bits is too small: rsa-pss-sha256 needs at least " +
                              std::to_string(kMinRsaBits) + " bits");
      return SigAlg::rsa_pss_sha256;
    }
    case EVP_PKEY_EC: {
      char group[80] = "";
      if (EVP_PKEY_get_group_name(pkey, group, sizeof group, nullptr) != 1) ERR_clear_error();
      std::string_view g = group;
      if (g == "prime256v1" || g == "P-256") return SigAlg::ecdsa_p256_sha256;
      if (g == "secp384r1" || g == "P-384") return SigAlg::ecdsa_p384_sha384;
      return make_error(Errc::invalid_input,
                        origin + ": EC key on curve " +
                            (g.empty() ? "(explicit parameters)" : group) +
                            " is not supported: use P-256 (ecdsa-p256-sha256) or P-384 "
                            "(ecdsa-p384-sha384)");
    }
    default: {
      const char* type = EVP_PKEY_get0_type_name(pkey);
      return make_error(Errc::invalid_input,
                        origin + ": " + (type ? type : "unknown") +
                            " keys are not supported: use ed25519, EC P-256/P-384 or RSA >= " +
                            std::to_string(kMinRsaBits) + " bits");
    }
  }
}

Result<std::string> keyid_of(EVP_PKEY* pkey, const std::string& origin) {
  unsigned char* der = nullptr;
  int len = i2d_PUBKEY(pkey, &der);
  if (len <= 0)
    return make_error(Errc::invalid_input, origin + ": cannot encode public key: " + ssl_error());
  auto digest = sha256({der, static_cast<std::size_t>(len)});
  OPENSSL_free(der);
  return to_hex(digest);
}

// Sets the RSA-PSS parameters of docs/architecture.md §4 (MGF1 with the message digest, salt 32)
// or, for a diagnosis, other ones.
bool set_rsa_params(EVP_PKEY_CTX* pctx, int padding, int saltlen) {
  if (EVP_PKEY_CTX_set_rsa_padding(pctx, padding) != 1) return false;
  if (padding != RSA_PKCS1_PSS_PADDING) return true;
  return EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, saltlen) == 1 &&
         EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) == 1;
}

bool digest_verify(EVP_PKEY* pkey, const EVP_MD* md, std::string_view message,
                   std::span<const std::uint8_t> sig, int rsa_padding = RSA_PKCS1_PSS_PADDING,
                   int saltlen = kPssSaltLen) {
  MdCtxPtr ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_PKEY_CTX* pctx = nullptr;
  bool ok = ctx && EVP_DigestVerifyInit(ctx.get(), &pctx, md, nullptr, pkey) == 1;
  int base = EVP_PKEY_get_base_id(pkey);
  if (ok && (base == EVP_PKEY_RSA || base == EVP_PKEY_RSA_PSS))
    ok = set_rsa_params(pctx, rsa_padding, saltlen);
  ok = ok && EVP_DigestVerify(ctx.get(), sig.data(), sig.size(), as_bytes(message).data(),
                              message.size()) == 1;
  ERR_clear_error();
  return ok;
}

// A raw r||s ECDSA signature (as Azure Key Vault and PKCS#11 return it) in DER, or nullopt when
// the size is not twice the field size.
std::optional<Bytes> ecdsa_raw_to_der(EVP_PKEY* pkey, std::span<const std::uint8_t> raw) {
  std::size_t n = static_cast<std::size_t>((EVP_PKEY_get_bits(pkey) + 7) / 8);
  if (raw.size() != 2 * n) return std::nullopt;
  ECDSA_SIG* es = ECDSA_SIG_new();
  BIGNUM* r = BN_bin2bn(raw.data(), static_cast<int>(n), nullptr);
  BIGNUM* s = BN_bin2bn(raw.data() + n, static_cast<int>(n), nullptr);
  std::optional<Bytes> out;
  if (es && r && s && ECDSA_SIG_set0(es, r, s) == 1) {
    r = s = nullptr;  // owned by es now
    unsigned char* der = nullptr;
    int len = i2d_ECDSA_SIG(es, &der);
    if (len > 0) out = Bytes(der, der + len);
    OPENSSL_free(der);
  }
  BN_free(r);
  BN_free(s);
  ECDSA_SIG_free(es);
  ERR_clear_error();
  return out;
}

// Verifies a signature over a precomputed digest (no hashing), as `openssl pkeyutl -verify`.
bool verify_prehashed(EVP_PKEY* pkey, std::span<const std::uint8_t> digest,
                      std::span<const std::uint8_t> sig) {
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new(pkey, nullptr), EVP_PKEY_CTX_free);
  bool ok = ctx && EVP_PKEY_verify_init(ctx.get()) == 1 &&
            EVP_PKEY_verify(ctx.get(), sig.data(), sig.size(), digest.data(), digest.size()) == 1;
  ERR_clear_error();
  return ok;
}

// After a failed verify: which signing parameter was probably wrong, in words an operator can act
// on. Each probe is one more verify, only on this error path.
std::string diagnose(const PublicKey& key, std::string_view message,
                     std::span<const std::uint8_t> sig) {
  auto* pkey = static_cast<EVP_PKEY*>(key.native());
  auto d256 = sha256(as_bytes(message));
  auto d384 = sha384(as_bytes(message));
  std::string generic =
      "not made by this key over these exact manifest bytes (the manifest changed after signing, "
      "or another key signed it)";
  switch (key.alg()) {
    case SigAlg::ed25519:
      if (digest_verify(pkey, nullptr,
                        std::string_view(reinterpret_cast<const char*>(d256.data()), d256.size()),
                        sig) ||
          digest_verify(pkey, nullptr,
                        std::string_view(reinterpret_cast<const char*>(d384.data()), d384.size()),
                        sig))
        return "it signs a digest of the manifest; ed25519 signs the manifest bytes themselves "
               "(openssl pkeyutl -sign -rawin -in manifest.json)";
      return generic;
    case SigAlg::ecdsa_p256_sha256:
    case SigAlg::ecdsa_p384_sha384: {
      bool p384 = key.alg() == SigAlg::ecdsa_p384_sha384;
      auto der = ecdsa_raw_to_der(pkey, sig);
      auto s = der ? std::span<const std::uint8_t>(*der) : sig;
      if (p384 ? verify_prehashed(pkey, d256, s) : verify_prehashed(pkey, d384, s))
        return std::string("it signs the ") + (p384 ? "SHA-256" : "SHA-384") + " digest; " +
               std::string(to_string(key.alg())) + " needs " +
               (p384 ? "SHA-384 (openssl dgst -sha384 -sign)"
                     : "SHA-256 (openssl dgst -sha256 -sign)");
      std::size_t n = static_cast<std::size_t>((EVP_PKEY_get_bits(pkey) + 7) / 8);
      const unsigned char* p = sig.data();
      ECDSA_SIG* parsed = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig.size()));
      ECDSA_SIG_free(parsed);
      ERR_clear_error();
      if (!parsed && !der)
        return "the " + plural(sig.size(), "byte") + " are neither a DER ECDSA signature nor raw " +
               "r||s of " + std::to_string(2 * n) + " bytes";
      return generic;
    }
    case SigAlg::rsa_pss_sha256: {
      auto bytes = static_cast<std::size_t>(EVP_PKEY_get_size(pkey));
      if (sig.size() != bytes)
        return "it is " + plural(sig.size(), "byte") + " long; this RSA key makes " +
               std::to_string(bytes) + "-byte signatures";
      if (EVP_PKEY_get_base_id(pkey) == EVP_PKEY_RSA &&
          digest_verify(pkey, EVP_sha256(), message, sig, RSA_PKCS1_PADDING))
        return "it is RSA PKCS#1 v1.5; rsa-pss-sha256 needs PSS (openssl dgst -sha256 -sigopt "
               "rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32)";
      if (digest_verify(pkey, EVP_sha256(), message, sig, RSA_PKCS1_PSS_PADDING,
                        RSA_PSS_SALTLEN_AUTO))
        return "it is RSA-PSS with a salt length other than 32 (add -sigopt rsa_pss_saltlen:32, "
               "or -pkeyopt rsa_pss_saltlen:32 with pkeyutl)";
      return generic;
    }
  }
  return generic;
}

std::string signing_hint(SigAlg alg) {
  switch (alg) {
    case SigAlg::ed25519:
      return "openssl pkeyutl -sign -rawin -inkey KEY -in manifest.json";
    case SigAlg::ecdsa_p256_sha256:
      return "openssl dgst -sha256 -sign KEY manifest.json";
    case SigAlg::ecdsa_p384_sha384:
      return "openssl dgst -sha384 -sign KEY manifest.json";
    case SigAlg::rsa_pss_sha256:
      return "openssl dgst -sha256 -sign KEY -sigopt rsa_padding_mode:pss -sigopt "
             "rsa_pss_saltlen:32 manifest.json";
  }
  return {};
}

// Recognizable non-SPKI inputs, each with what to do instead.
std::string pem_hint(std::string_view pem) {
  if (pem.find("PRIVATE KEY-----") != std::string_view::npos)
    return "it holds a private key; put only the public key here (openssl pkey -in KEY -pubout)";
  if (pem.starts_with("ssh-"))
    return "OpenSSH public keys are not read; convert it (ssh-keygen -e -m PKCS8 -f FILE)";
  return "expected a PEM \"BEGIN PUBLIC KEY\" block (SubjectPublicKeyInfo)";
}

int no_passphrase(char*, int, int, void*) {
  return -1;
}

Result<std::string> need_string(const nlohmann::json& entry, const char* field,
                                const std::string& where) {
  auto it = entry.find(field);
  if (it == entry.end())
    return make_error(Errc::invalid_input, where + ": missing \"" + field + "\"");
  if (!it->is_string())
    return make_error(Errc::invalid_input,
                      where + "." + field + ": expected a string, got " + it->type_name());
  return it->get<std::string>();
}

Result<SignatureEntry> parse_entry(const nlohmann::json& entry, const std::string& where) {
  if (!entry.is_object())
    return make_error(Errc::invalid_input,
                      where + ": expected an object, got " + std::string(entry.type_name()));
  SignatureEntry out;
  ABUP_TRY(out.keyid, need_string(entry, "keyid", where));
  ABUP_TRY(out.alg, need_string(entry, "alg", where));
  ABUP_TRY(auto sig, need_string(entry, "sig", where));
  auto decoded = base64_decode(sig);  // strict: standard alphabet, padding only at the end
  if (!decoded) return make_error(Errc::invalid_input, where + ".sig: not valid base64");
  if (decoded->empty()) return make_error(Errc::invalid_input, where + ".sig: empty");
  out.sig = std::move(*decoded);
  return out;
}

}  // namespace

std::string_view to_string(SigAlg alg) {
  switch (alg) {
    case SigAlg::ed25519:
      return "ed25519";
    case SigAlg::ecdsa_p256_sha256:
      return "ecdsa-p256-sha256";
    case SigAlg::ecdsa_p384_sha384:
      return "ecdsa-p384-sha384";
    case SigAlg::rsa_pss_sha256:
      return "rsa-pss-sha256";
  }
  return "?";
}

Result<SigAlg> parse_sig_alg(std::string_view name) {
  for (auto alg : {SigAlg::ed25519, SigAlg::ecdsa_p256_sha256, SigAlg::ecdsa_p384_sha384,
                   SigAlg::rsa_pss_sha256})
    if (name == to_string(alg)) return alg;
  return make_error(
      Errc::invalid_input,
      "unknown signature algorithm \"" + std::string(name) +
          "\" (known: ed25519, ecdsa-p256-sha256, ecdsa-p384-sha384, rsa-pss-sha256)");
}

Result<std::vector<SignatureEntry>> parse_signature_envelope(std::string_view json) {
  const std::string name(kEnvelopeName);
  if (json.size() > kMaxEnvelopeBytes)
    return make_error(Errc::invalid_input, name + ": " + plural(json.size(), "byte") +
                                               ", more than the limit of " +
                                               std::to_string(kMaxEnvelopeBytes));
  try {
    auto doc = nlohmann::json::parse(json);
    if (!doc.is_object())
      return make_error(Errc::invalid_input,
                        name + ": expected a JSON object, got " + std::string(doc.type_name()));
    auto it = doc.find("signatures");
    if (it == doc.end()) return make_error(Errc::invalid_input, name + ": missing \"signatures\"");
    if (!it->is_array())
      return make_error(Errc::invalid_input, name + ": signatures: expected an array, got " +
                                                 std::string(it->type_name()));
    std::vector<SignatureEntry> out;
    for (std::size_t i = 0; i < it->size(); ++i) {
      ABUP_TRY(auto entry, parse_entry((*it)[i], name + ": signatures[" + std::to_string(i) + "]"));
      out.push_back(std::move(entry));
    }
    return out;
  } catch (const nlohmann::json::exception& e) {
    return make_error(Errc::invalid_input, name + ": not valid JSON: " + e.what());
  } catch (const std::exception& e) {
    return make_error(Errc::failed, name + ": " + e.what());
  }
}

std::string serialize_signature_envelope(const std::vector<SignatureEntry>& sigs) {
  auto list = nlohmann::ordered_json::array();
  for (const auto& s : sigs)
    list.push_back({{"keyid", s.keyid}, {"alg", s.alg}, {"sig", base64_encode(s.sig)}});
  nlohmann::ordered_json doc = {{"signatures", std::move(list)}};
  // Replacement, not an exception, for bytes that are not UTF-8 in caller-made keyid/alg.
  return doc.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

Result<PublicKey> PublicKey::from_pem(std::string_view pem, std::string origin) {
  if (pem.size() > kMaxKeyFileBytes)
    return make_error(Errc::invalid_input, origin + ": too large for a public key");
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
  PkeyPtr pkey(bio ? PEM_read_bio_PUBKEY(bio.get(), nullptr, no_passphrase, nullptr) : nullptr,
               EVP_PKEY_free);
  if (!pkey) {
    ERR_clear_error();
    return make_error(Errc::invalid_input, origin + ": not a public key: " + pem_hint(pem));
  }
  ABUP_TRY(auto alg, classify(pkey.get(), origin));
  ABUP_TRY(auto keyid, keyid_of(pkey.get(), origin));
  PublicKey key;
  key.key_ = std::shared_ptr<void>(pkey.release(),
                                   [](void* p) { EVP_PKEY_free(static_cast<EVP_PKEY*>(p)); });
  key.keyid_ = std::move(keyid);
  key.origin_ = std::move(origin);
  key.alg_ = alg;
  return key;
}

Result<PublicKey> PublicKey::load(const std::filesystem::path& path) {
  ABUP_TRY(auto text, abup::read_file(path));
  return from_pem(text, path.string());
}

bool PublicKey::verify(std::string_view message, std::span<const std::uint8_t> sig) const {
  auto* pkey = static_cast<EVP_PKEY*>(key_.get());
  if (!pkey || sig.empty()) return false;
  if (digest_verify(pkey, digest_of(alg_), message, sig)) return true;
  if (alg_ != SigAlg::ecdsa_p256_sha256 && alg_ != SigAlg::ecdsa_p384_sha384) return false;
  // OpenSSL insists on strict DER, so trying DER first cannot mistake raw r||s for it.
  auto der = ecdsa_raw_to_der(pkey, sig);
  return der && digest_verify(pkey, digest_of(alg_), message, *der);
}

namespace {

// Whoever may write a keyring may make abup install anything: a directory or key file that a
// user other than root (or abup's own user, in tests) can change is refused, not trusted.
Status check_keyring_owner(const std::filesystem::path& p, const char* what) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0)
    return make_error(Errc::io,
                      "keyring " + std::string(what) + " " + p.string() + ": " + errno_text(errno));
  const bool writable_by_others = (st.st_mode & S_IWOTH) != 0;
  const bool foreign_owner = st.st_uid != 0 && st.st_uid != ::geteuid();
  if (writable_by_others || foreign_owner)
    return make_error(Errc::untrusted,
                      "keyring " + std::string(what) + " " + p.string() +
                          (writable_by_others ? " is writable by every user"
                                              : " is owned by uid " + std::to_string(st.st_uid)) +
                          ": anyone who can change it could make abup install any image; "
                          "chown root and chmod o-w it");
  return {};
}

}  // namespace

Result<Keyring> Keyring::load(const std::vector<std::filesystem::path>& dirs) {
  namespace fs = std::filesystem;
  Keyring ring;
  for (const auto& dir : dirs) {
    std::error_code ec;
    ring.dirs_.push_back(dir);
    auto st = fs::status(dir, ec);
    if (st.type() == fs::file_type::not_found) {
      ring.missing_dirs_.push_back(dir);
      continue;
    }
    if (ec) return make_error(Errc::io, "keyring " + dir.string() + ": " + ec.message());
    if (!fs::is_directory(st))
      return make_error(Errc::invalid_input, "keyring " + dir.string() + ": not a directory");
    ABUP_CHECK(check_keyring_owner(dir, "directory"));
    std::vector<fs::path> files;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      auto ext = it->path().extension();
      if ((ext == ".pem" || ext == ".pub") && it->is_regular_file(ec)) files.push_back(it->path());
    }
    if (ec) return make_error(Errc::io, "keyring " + dir.string() + ": " + ec.message());
    std::sort(files.begin(), files.end());  // first file wins for a duplicate key: be predictable
    for (const auto& f : files) {
      ABUP_CHECK(check_keyring_owner(f, "file"));
      ABUP_TRY(auto key, PublicKey::load(f));
      ring.add(std::move(key));
    }
  }
  return ring;
}

void Keyring::add(PublicKey key) {
  if (!find(key.keyid())) keys_.push_back(std::move(key));
}

const PublicKey* Keyring::find(std::string_view keyid) const {
  auto id = lower(keyid);
  for (const auto& k : keys_)
    if (k.keyid() == id) return &k;
  return nullptr;
}

std::string Keyring::describe() const {
  std::string out = "keyring";
  for (std::size_t i = 0; i < dirs_.size(); ++i) {
    out += (i ? ", " : " ") + dirs_[i].string();
    if (std::find(missing_dirs_.begin(), missing_dirs_.end(), dirs_[i]) != missing_dirs_.end())
      out += " (missing)";
  }
  return out + " (" + plural(keys_.size(), "key") + ")";
}

Result<std::vector<std::string>> verify_threshold(std::string_view manifest,
                                                  const std::vector<SignatureEntry>& sigs,
                                                  const Keyring& keyring, int threshold) {
  if (threshold < 1)
    return make_error(Errc::invalid_input, "image signature: threshold must be at least 1, got " +
                                               std::to_string(threshold));
  std::vector<std::string> valid, untrusted, problems, seen;
  std::set<std::string> counted;
  for (const auto& s : sigs) {
    auto id = lower(s.keyid);
    if (std::find(seen.begin(), seen.end(), id) == seen.end()) seen.push_back(id);
    auto alg = parse_sig_alg(s.alg);
    if (!alg) {
      problems.push_back("unknown alg \"" + s.alg + "\" by " + short_id(id) + " skipped");
      continue;
    }
    const PublicKey* key = keyring.find(id);
    if (!key) {
      if (std::find(untrusted.begin(), untrusted.end(), id) == untrusted.end())
        untrusted.push_back(id);
      continue;
    }
    std::string who = short_id(id) + " (" + key->origin() + ")";
    if (*alg != key->alg()) {
      problems.push_back("signature by trusted key " + who + " claims alg " + s.alg +
                         " but the key is " + std::string(to_string(key->alg())) + ": not counted");
      continue;
    }
    if (counted.contains(id)) continue;  // a key counts once, however often it signed
    if (key->verify(manifest, s.sig)) {
      counted.insert(id);
      valid.push_back(id);
    } else {
      problems.push_back("signed by trusted key " + who +
                         " but the signature does not verify: " + diagnose(*key, manifest, s.sig));
    }
  }
  if (valid.size() >= static_cast<std::size_t>(threshold)) return valid;

  std::string msg = "image signature: " + std::to_string(valid.size()) + " of " +
                    std::to_string(threshold) + " required signatures valid (";
  if (sigs.empty()) {
    msg += "the envelope holds no signatures";
  } else {
    msg += plural(sigs.size(), "signature") + " by key id" + (seen.size() == 1 ? " " : "s ");
    for (std::size_t i = 0; i < seen.size(); ++i) msg += (i ? ", " : "") + short_id(seen[i]);
  }
  if (!valid.empty()) {
    msg += "; valid:";
    for (std::size_t i = 0; i < valid.size(); ++i) msg += (i ? ", " : " ") + short_id(valid[i]);
  }
  for (const auto& p : problems) msg += "; " + p;
  if (!untrusted.empty() && untrusted.size() == seen.size()) {
    msg += "; none trusted by " + keyring.describe();
  } else if (!untrusted.empty()) {
    msg += ";";
    for (std::size_t i = 0; i < untrusted.size(); ++i)
      msg += (i ? ", " : " ") + short_id(untrusted[i]);
    msg += " not trusted by " + keyring.describe();
  } else {
    msg += "; " + keyring.describe();
  }
  if (keyring.size() == 0)
    msg += ": add the signer's public key as a .pem file to a keyring directory";
  return make_error(Errc::untrusted, msg + ")");
}

Result<SignatureEntry> sign_manifest(std::string_view manifest,
                                     const std::filesystem::path& private_key_pem) {
  const std::string origin = private_key_pem.string();
  ABUP_TRY(auto pem, abup::read_file(private_key_pem));
  if (pem.size() > kMaxKeyFileBytes)
    return make_error(Errc::invalid_input, origin + ": too large for a private key");
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
  PkeyPtr pkey(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr) : nullptr,
               EVP_PKEY_free);
  if (!pkey) {
    bool encrypted = pem.find("ENCRYPTED") != std::string::npos;
    ERR_clear_error();
    return make_error(
        Errc::invalid_input,
        origin + (encrypted ? ": encrypted private keys are not supported (abup never "
                              "prompts); use an HSM/Key Vault with external_signature, "
                              "or decrypt it (openssl pkey -in KEY -out PLAIN)"
                            : ": not a PEM private key (PKCS#8 or traditional)"));
  }
  ABUP_TRY(auto alg, classify(pkey.get(), origin));
  ABUP_TRY(auto keyid, keyid_of(pkey.get(), origin));

  MdCtxPtr ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_PKEY_CTX* pctx = nullptr;
  bool ok = ctx && EVP_DigestSignInit(ctx.get(), &pctx, digest_of(alg), nullptr, pkey.get()) == 1;
  if (ok && alg == SigAlg::rsa_pss_sha256)
    ok = set_rsa_params(pctx, RSA_PKCS1_PSS_PADDING, kPssSaltLen);
  std::size_t len = 0;
  const auto* msg = as_bytes(manifest).data();
  ok = ok && EVP_DigestSign(ctx.get(), nullptr, &len, msg, manifest.size()) == 1;
  Bytes sig(len);
  ok = ok && EVP_DigestSign(ctx.get(), sig.data(), &len, msg, manifest.size()) == 1;
  if (!ok)
    return make_error(Errc::failed, origin + ": signing with " + std::string(to_string(alg)) +
                                        " failed: " + ssl_error());
  sig.resize(len);
  return SignatureEntry{std::move(keyid), std::string(to_string(alg)), std::move(sig)};
}

std::vector<std::uint8_t> to_be_signed(std::string_view manifest, SigAlg alg) {
  auto bytes = as_bytes(manifest);
  switch (alg) {
    case SigAlg::ed25519:
      return {bytes.begin(), bytes.end()};
    case SigAlg::ecdsa_p384_sha384: {
      auto d = sha384(bytes);
      return {d.begin(), d.end()};
    }
    case SigAlg::ecdsa_p256_sha256:
    case SigAlg::rsa_pss_sha256:
      break;
  }
  auto d = sha256(bytes);
  return {d.begin(), d.end()};
}

// A signature over to_be_signed() and one over the manifest are the same bytes for every
// algorithm here (ECDSA and RSA-PSS sign the digest; Ed25519 has no digest form), so one verify
// covers both the pkeyutl and the dgst forms.
Result<SignatureEntry> external_signature(std::string_view manifest, const PublicKey& key,
                                          std::span<const std::uint8_t> sig) {
  if (!key.verify(manifest, sig))
    return make_error(Errc::untrusted, "external " + std::string(to_string(key.alg())) +
                                           " signature by key " + short_id(key.keyid()) + " (" +
                                           key.origin() +
                                           ") does not verify: " + diagnose(key, manifest, sig) +
                                           "; expected e.g. `" + signing_hint(key.alg()) + "`");
  SignatureEntry out{key.keyid(), std::string(to_string(key.alg())), {sig.begin(), sig.end()}};
  if (key.alg() == SigAlg::ecdsa_p256_sha256 || key.alg() == SigAlg::ecdsa_p384_sha384) {
    // DER is what `openssl dgst -verify` and most verifiers read; raw r||s only fails strict DER.
    auto* pkey = static_cast<EVP_PKEY*>(key.native());
    if (!digest_verify(pkey, digest_of(key.alg()), manifest, sig))
      if (auto der = ecdsa_raw_to_der(pkey, sig)) out.sig = std::move(*der);
  }
  return out;
}

}  // namespace abup::protocol
