// The gate every image passes before abup writes a byte of it (docs/architecture.md §3 invariant
// 2): the COSI structure, the manifest's signatures against the local keyring and threshold, the
// binding of manifest to metadata.json, and the version/arch/expiry policy.
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "abup/digest.hpp"
#include "abup/result.hpp"
#include "update-protocol/cosi/cosi.hpp"
#include "update-protocol/manifest/manifest.hpp"
#include "update-protocol/manifest/signature.hpp"
#include "update-protocol/source.hpp"
#include "update-protocol/zstd_dctx.hpp"

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

// Reads a boot file's tar entry, decompresses it (at most its signed size) and checks the signed
// size and SHA-256 of the result. Errc::untrusted naming the file on any mismatch.
[[nodiscard]] Result<std::vector<std::uint8_t>> read_boot_file(Source& source,
                                                               const VerifiedImage& image,
                                                               const BootFile& file);

// The same in bounded memory: reads the entry in 1 MiB pieces, decompresses them as a stream
// and hands the decompressed bytes to `out` in order; the size and SHA-256 are checked once the
// entry is consumed, so `out` must treat what it got as unverified until this returns ok.
[[nodiscard]] Status stream_boot_file(
    Source& source, const VerifiedImage& image, const BootFile& file,
    const std::function<Status(std::span<const std::uint8_t>)>& out);

// The largest zstd window a decoder accepts for this image: the signed metadata's
// compression.maxWindowLog (metadata.json is pinned by the manifest), else 27 (128 MiB), and
// never above 30 (what COSI producers use with --long).
[[nodiscard]] int window_log_limit(const CosiMetadata& metadata);

// Frames larger than this are decoded as a stream (bounded memory) rather than in one piece.
inline constexpr std::uint64_t kMaxBufferedFrame = 8 << 20;

// Decodes one frame as a stream, handing out the decoded bytes in order as they come (offset
// within the chunk); checks SHA-256 of the compressed bytes, the exact size and XXH3-128 at
// finish(). Used for frames too large to buffer (single-frame images from other tools).
class FrameStream {
 public:
  using Output = std::function<Status(std::uint64_t offset, std::span<const std::uint8_t>)>;
  // On the heap: the digest states it carries do not move.
  [[nodiscard]] static Result<std::unique_ptr<FrameStream>> open(const Frame& frame,
                                                                 std::string what,
                                                                 int window_log_max, Output out);
  FrameStream(const FrameStream&) = delete;
  FrameStream& operator=(const FrameStream&) = delete;
  [[nodiscard]] Status feed(std::span<const std::uint8_t> compressed);
  [[nodiscard]] Status finish();

 private:
  FrameStream(const Frame& frame, std::string what, ZstdDCtx dctx, Output out);
  const Frame* frame_;
  std::string what_;
  Output out_;
  ZstdDCtx dctx_;
  Sha2 sha_{Sha2::Kind::sha256};
  Xxh128Stream xxh_;
  std::vector<std::uint8_t> buf_;
  std::uint64_t produced_ = 0;
  bool done_ = false;
};

// Decodes one frame as the manifest describes it: SHA-256 of `compressed` must match, the
// frame must decompress to exactly uncompressed_size bytes into `out` (sized to it), and the
// XXH3-128 of the result must match. Errors name the image and frame.
class FrameDecoder {
 public:
  [[nodiscard]] static Result<FrameDecoder> open(int window_log_max = 27);
  [[nodiscard]] Status decode(std::span<const std::uint8_t> compressed, const Frame& frame,
                              std::span<std::uint8_t> out, const std::string& what);
  // The same without the SHA-256, for compressed bytes the caller matched against frame.sha256
  // itself (as they arrived, so that a damaged download stops at the damaged frame).
  [[nodiscard]] Status decode_verified(std::span<const std::uint8_t> compressed, const Frame& frame,
                                       std::span<std::uint8_t> out, const std::string& what);

 private:
  explicit FrameDecoder(ZstdDCtx dctx) : dctx_(std::move(dctx)) {}
  ZstdDCtx dctx_;
};

}  // namespace abup::protocol
