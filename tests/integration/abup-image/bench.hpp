// A workbench for abup-image tests: a small ext4 /usr image made by mkfs.ext4 -d, signing keys
// made by openssl, and the stock tools (tar, zstd, openssl, sgdisk, blkid) that check what the
// real abup-image writes. Nothing here uses abup's own readers: the point is that other tools
// agree with it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "support/util.hpp"

namespace abup::test {

// One signing algorithm of docs/architecture.md §4 and how openssl makes and checks its signatures.
struct KeyKind {
  const char* name;     // file stem: NAME.pem (private), keys/NAME.pem (public)
  const char* alg;      // as abup writes it in the envelope
  const char* genpkey;  // openssl genpkey arguments
  const char* pkeyutl;  // openssl pkeyutl -sign options over `abup-image digest --out` bytes
  const char* dgst;     // openssl dgst options signing the manifest itself ("" for ed25519)
};

inline constexpr KeyKind kEd25519{"ed25519", "ed25519", "-algorithm ed25519", "-rawin", ""};
inline constexpr KeyKind kP256{"p256", "ecdsa-p256-sha256",
                               "-algorithm EC -pkeyopt ec_paramgen_curve:P-256", "", "-sha256"};
inline constexpr KeyKind kP384{"p384", "ecdsa-p384-sha384",
                               "-algorithm EC -pkeyopt ec_paramgen_curve:P-384", "", "-sha384"};
inline constexpr KeyKind kRsa3072{
    "rsa3072", "rsa-pss-sha256", "-algorithm RSA -pkeyopt rsa_keygen_bits:3072",
    "-pkeyopt rsa_padding_mode:pss -pkeyopt rsa_pss_saltlen:32 -pkeyopt digest:sha256",
    "-sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32"};
inline constexpr KeyKind kAllKinds[] = {kEd25519, kP256, kP384, kRsa3072};

inline constexpr const char* kUsrTypeGuid = "5dfbf5f4-2848-4bac-aa5e-0d9a20b745a6";
inline constexpr std::uint64_t kUsrBytes = 10 << 20;

std::string q(const std::filesystem::path& p);

class Bench {
 public:
  Bench();  // makes usr.img (10 MiB ext4) and an empty keyring directory keys/

  std::filesystem::path operator/(const std::string& name) const { return tmp_ / name; }
  const std::filesystem::path& dir() const { return tmp_.path(); }
  std::filesystem::path usr() const { return tmp_ / "usr.img"; }
  std::filesystem::path keyring() const { return tmp_ / "keys"; }

  // Makes NAME.pem and, unless `trusted` is false, keys/NAME.pem (its public key); also
  // NAME.pub.pem. Returns the private key path.
  std::filesystem::path key(const KeyKind& kind, bool trusted = true, const std::string& name = "");
  std::filesystem::path pub(const std::string& name) const { return tmp_ / (name + ".pub.pem"); }

  // `abup-image build --usr usr.img --version V --frame-size 1M --out NAME.cosi EXTRA`.
  std::filesystem::path build(const std::string& name, const std::string& extra = "",
                              const std::string& version = "202607.02.0");
  // A copy of `from` named NAME.cosi.
  std::filesystem::path copy(const std::filesystem::path& from, const std::string& name) const;

 private:
  TempDir tmp_;
};

// Runs abup-image with `args` (already quoted as needed).
RunResult image_tool(const std::string& args);
std::string image_tool_ok(const std::string& args);

// Lowercase hex SHA-256 of the public key's DER SubjectPublicKeyInfo, as openssl computes it.
std::string openssl_keyid(const std::filesystem::path& public_pem);
std::string sha256_file(const std::filesystem::path& p);
// The bytes of one archive member, extracted by GNU tar.
std::string tar_member(const std::filesystem::path& archive, const std::string& member);
// Member names in archive order, as `tar tf` lists them.
std::vector<std::string> tar_names(const std::filesystem::path& archive);
// Byte offset of a member's data, from GNU tar's block numbers (ustar, no extended headers).
std::uint64_t tar_data_offset(const std::filesystem::path& archive, const std::string& member);
nlohmann::json inspect_json(const std::filesystem::path& cosi);
bool contains(const std::string& haystack, const std::string& needle);

}  // namespace abup::test
