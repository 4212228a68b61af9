// The gate every image passes before abup writes a byte of it (DESIGN.md §3 invariant 2): the
// COSI structure, the manifest's signatures against the local keyring and threshold, the binding
// of manifest to metadata.json, and the version/arch/expiry policy.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "abup/digest.hpp"
#include "abup/result.hpp"
#include "update-protocol/cosi/cosi.hpp"
#include "update-protocol/manifest/manifest.hpp"
#include "update-protocol/manifest/signature.hpp"
#include "update-protocol/source.hpp"

namespace abup::protocol {

struct VerifiedImage {
  CosiArchive archive;
  std::string manifest_json;  // the exact signed bytes
  Manifest manifest;
  std::vector<std::string> signers;  // key ids whose signatures verified
  Sha256 manifest_digest{};          // SHA-256 of manifest_json: names this image in state files

  // The tar entry data offset of a manifest image.
  [[nodiscard]] std::uint64_t data_offset(const ManifestImage& img) const;
};

struct VerifyOptions {
  const Keyring* keyring = nullptr;
  int threshold = 1;
  bool check_policy = true;
  PolicyInput policy;
};

[[nodiscard]] Result<VerifiedImage> open_verified_image(Source& source,
                                                        const VerifyOptions& options);

// Checks a manifest against a COSI's metadata and tar index: the pinned metadata SHA-384, and
// every manifest image present with matching path, mount point and sizes.
[[nodiscard]] Status check_manifest_binding(const Manifest& manifest, const CosiArchive& archive);

// Decodes one frame as the manifest describes it: SHA-256 of `compressed` must match, the
// frame must decompress to exactly uncompressed_size bytes into `out` (sized to it), and the
// XXH3-128 of the result must match. Errors name the image and frame.
class FrameDecoder {
 public:
  FrameDecoder();
  ~FrameDecoder();
  FrameDecoder(const FrameDecoder&) = delete;
  FrameDecoder& operator=(const FrameDecoder&) = delete;
  [[nodiscard]] Status decode(std::span<const std::uint8_t> compressed, const Frame& frame,
                              std::span<std::uint8_t> out, const std::string& what);

 private:
  void* dctx_;
};

}  // namespace abup::protocol
