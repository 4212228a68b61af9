#include "update-protocol/image.hpp"

#include <zstd.h>
#include <zstd_errors.h>

#include <algorithm>
#include <memory>

#include "abup/hex.hpp"

namespace abup::protocol {

std::uint64_t VerifiedImage::data_offset(const ManifestImage& img) const {
  const auto* e = archive.tar.find(img.path);
  return e ? e->data_offset : 0;
}

Status check_manifest_binding(const Manifest& m, const CosiArchive& a) {
  auto fail = [](const std::string& what) {
    return make_error(Errc::untrusted, "image manifest does not match the image: " + what);
  };
  auto md = to_hex(sha384(as_bytes(a.metadata_json)));
  if (md != m.metadata_sha384)
    return fail("metadata.json has SHA-384 " + md + ", the signed manifest pins " +
                m.metadata_sha384 + " (metadata.json was changed after signing)");
  for (const auto& img : m.images) {
    const auto* e = a.tar.find(img.path);
    if (!e) return fail("'" + img.path + "' is not in the archive");
    if (e->size != img.compressed_size)
      return fail("'" + img.path + "' holds " + std::to_string(e->size) +
                  " bytes, the manifest says " + std::to_string(img.compressed_size));
    const ImageFile* f = nullptr;
    for (const auto& fi : a.metadata.images) {
      if (fi.image.path == img.path) f = &fi.image;
      if (fi.verity && fi.verity->image.path == img.path) f = &fi.verity->image;
    }
    if (!f) return fail("'" + img.path + "' is not listed in metadata.json");
    if (f->uncompressed_size != img.uncompressed_size)
      return fail("'" + img.path + "' uncompressed size differs from metadata.json");
  }
  for (const auto& b : m.boot_files) {
    const auto* e = a.tar.find(b.path);
    if (!e) return fail("boot file '" + b.name + "' (" + b.path + ") is not in the archive");
    if (e->size != b.compressed_size)
      return fail("boot file '" + b.name + "' holds " + std::to_string(e->size) +
                  " bytes, the manifest says " + std::to_string(b.compressed_size));
  }
  return {};
}

Result<VerifiedImage> open_verified_image(Source& origin, const VerifyOptions& opt) {
  VerifiedImage v;
  ReadAheadSource source(origin);
  ABUP_TRY(v.archive, read_cosi(source));
  const auto& where = source.describe();
  if (!v.archive.manifest)
    return make_error(Errc::untrusted, where + ": image is not signed for abup (no " +
                                           std::string(kManifestEntry) +
                                           "; sign it with `abup-image sign`)");
  if (!v.archive.signature)
    return make_error(Errc::untrusted,
                      where + ": image is not signed (no " + std::string(kSignatureEntry) + ")");
  ABUP_TRY(v.manifest_json, read_entry(source, *v.archive.manifest, kMaxManifestSize));
  ABUP_TRY(auto sig_json, read_entry(source, *v.archive.signature, 1 << 20));
  auto sigs = parse_signature_envelope(sig_json);
  if (!sigs) return std::move(sigs).error().with_context(where);
  if (!opt.keyring) return make_error(Errc::untrusted, "no keyring configured");
  // Signatures first: nothing in the manifest is looked at before its bytes are authentic.
  auto signers = verify_threshold(v.manifest_json, *sigs, *opt.keyring, opt.threshold);
  if (!signers) return std::move(signers).error().with_context(where);
  v.signers = std::move(*signers);
  ABUP_TRY(v.manifest, parse_manifest(v.manifest_json));
  v.manifest_digest = sha256(as_bytes(v.manifest_json));
  ABUP_CHECK_CTX(check_manifest_binding(v.manifest, v.archive), where);
  if (opt.check_policy) ABUP_CHECK_CTX(check_policy(v.manifest, opt.policy), where);
  return v;
}

namespace {

Error zstd_error(const std::string& what, std::size_t code) {
  std::string msg = what + ": zstd: " + ZSTD_getErrorName(code);
  if (ZSTD_getErrorCode(code) == ZSTD_error_frameParameter_windowTooLarge)
    msg +=
        " (the frame's window is larger than metadata.json's compression.maxWindowLog allows; "
        "images made with zstd --long must declare it)";
  return make_error(Errc::invalid_input, msg);
}

}  // namespace

int window_log_limit(const CosiMetadata& metadata) {
  return metadata.max_window_log ? std::clamp(metadata.max_window_log, 27, 30) : 27;
}

Result<FrameDecoder> FrameDecoder::open(int window_log_max) {
  // Cap what a frame may ask for before its SHA-256 is known to match.
  ABUP_TRY(auto dctx, make_capped_dctx(window_log_max));
  return FrameDecoder(std::move(dctx));
}

Result<std::unique_ptr<FrameStream>> FrameStream::open(const Frame& frame, std::string what,
                                                       int window_log_max, Output out) {
  auto dctx = make_capped_dctx(window_log_max);
  if (!dctx) return std::move(dctx).error().with_context(what);
  return std::unique_ptr<FrameStream>(
      new FrameStream(frame, std::move(what), std::move(*dctx), std::move(out)));
}

FrameStream::FrameStream(const Frame& frame, std::string what, ZstdDCtx dctx, Output out)
    : frame_(&frame),
      what_(std::move(what)),
      out_(std::move(out)),
      dctx_(std::move(dctx)),
      buf_(1 << 20) {}

Status FrameStream::feed(std::span<const std::uint8_t> piece) {
  sha_.update(piece);
  ZSTD_inBuffer in{piece.data(), piece.size(), 0};
  while (in.pos < in.size) {
    if (done_) return make_error(Errc::invalid_input, what_ + ": trailing bytes after the frame");
    ZSTD_outBuffer o{buf_.data(), buf_.size(), 0};
    auto r = ZSTD_decompressStream(dctx_.get(), &o, &in);
    if (ZSTD_isError(r)) return zstd_error(what_, r);
    if (produced_ + o.pos > frame_->uncompressed_size)
      return make_error(Errc::invalid_input,
                        what_ + ": frame decompresses past its declared size of " +
                            std::to_string(frame_->uncompressed_size) + " bytes");
    std::span<const std::uint8_t> chunk(buf_.data(), o.pos);
    ABUP_CHECK(out_(produced_, chunk));
    xxh_.update(chunk);
    produced_ += o.pos;
    if (r == 0) done_ = true;
  }
  return {};
}

Status FrameStream::finish() {
  Sha256 d;
  sha_.finish(d);
  if (d != frame_->sha256)
    return make_error(Errc::untrusted,
                      what_ + ": compressed frame SHA-256 does not match the signed manifest");
  if (!done_ || produced_ != frame_->uncompressed_size)
    return make_error(Errc::invalid_input,
                      what_ + ": frame decodes to " + std::to_string(produced_) +
                          " bytes, the manifest says " + std::to_string(frame_->uncompressed_size));
  if (xxh_.finish() != frame_->chunk_xxh3)
    return make_error(Errc::untrusted,
                      what_ + ": decoded chunk digest does not match the signed manifest");
  return {};
}

Status FrameDecoder::decode(std::span<const std::uint8_t> compressed, const Frame& frame,
                            std::span<std::uint8_t> out, const std::string& what) {
  auto fail = [&](Errc code, const std::string& why) {
    return make_error(code, what + ": " + why);
  };
  if (compressed.size() != frame.size || out.size() != frame.uncompressed_size)
    return fail(Errc::failed, "internal: buffer sizes do not match the frame table");
  if (sha256(compressed) != frame.sha256)
    return fail(Errc::untrusted,
                "compressed frame SHA-256 does not match the signed manifest "
                "(corrupt or tampered download)");
  return decode_verified(compressed, frame, out, what);
}

Status FrameDecoder::decode_verified(std::span<const std::uint8_t> compressed, const Frame& frame,
                                     std::span<std::uint8_t> out, const std::string& what) {
  auto fail = [&](Errc code, const std::string& why) {
    return make_error(code, what + ": " + why);
  };
  if (compressed.size() != frame.size || out.size() != frame.uncompressed_size)
    return fail(Errc::failed, "internal: buffer sizes do not match the frame table");
  auto* d = dctx_.get();
  auto content = ZSTD_getFrameContentSize(compressed.data(), compressed.size());
  if (content != ZSTD_CONTENTSIZE_UNKNOWN && content != ZSTD_CONTENTSIZE_ERROR &&
      content != frame.uncompressed_size)
    return fail(Errc::invalid_input, "frame declares " + std::to_string(content) +
                                         " bytes, the manifest " +
                                         std::to_string(frame.uncompressed_size));
  // One-shot decoding straight into the chunk buffer: no window buffer of zstd's own, so a
  // worker needs only the chunk's memory. One frame exactly: a second frame or trailing bytes
  // are caught by the size check of the first frame.
  if (ZSTD_findFrameCompressedSize(compressed.data(), compressed.size()) != compressed.size())
    return fail(Errc::invalid_input, "not exactly one zstd frame (truncated or trailing bytes)");
  size_t r = ZSTD_decompressDCtx(d, out.data(), out.size(), compressed.data(), compressed.size());
  if (ZSTD_isError(r)) {
    if (ZSTD_getErrorCode(r) == ZSTD_error_dstSize_tooSmall)
      return fail(Errc::invalid_input, "frame decompresses past its declared size of " +
                                           std::to_string(frame.uncompressed_size) + " bytes");
    return zstd_error(what, r);
  }
  if (r != out.size())
    return fail(Errc::invalid_input, "frame decompresses to " + std::to_string(r) +
                                         " bytes, the manifest says " + std::to_string(out.size()));
  if (xxh128(out) != frame.chunk_xxh3)
    return fail(Errc::untrusted, "decoded chunk digest does not match the signed manifest");
  return {};
}

Status stream_boot_file(Source& source, const VerifiedImage& image, const BootFile& file,
                        const std::function<Status(std::span<const std::uint8_t>)>& out) {
  const auto* e = image.archive.tar.find(file.path);
  if (!e || e->size != file.compressed_size)
    return make_error(Errc::untrusted, "boot file '" + file.name + "': tar entry " + file.path +
                                           " missing or not the signed size");
  auto what = "boot file '" + file.name + "' (" + file.path + ")";
  // Cap what the frame may ask for before its SHA-256 is known to match.
  auto dctx = make_capped_dctx(window_log_limit(image.archive.metadata));
  if (!dctx) return std::move(dctx).error().with_context(what);
  constexpr std::size_t kPiece = 1 << 20;
  std::vector<std::uint8_t> packed(std::min<std::uint64_t>(kPiece, file.compressed_size));
  std::vector<std::uint8_t> buf(ZSTD_DStreamOutSize());
  Sha2 sha(Sha2::Kind::sha256);
  std::uint64_t produced = 0;
  std::size_t last = 0;  // ZSTD_decompressStream's last hint: 0 once a frame is complete
  // One decoder step: what it produced is checked against the signed size, hashed and handed on.
  auto step = [&](ZSTD_inBuffer& in, std::size_t& produced_now) -> Status {
    ZSTD_outBuffer o{buf.data(), buf.size(), 0};
    last = ZSTD_decompressStream(dctx->get(), &o, &in);
    if (ZSTD_isError(last)) return zstd_error(what, last);
    produced_now = o.pos;
    if (produced + o.pos > file.size)
      return make_error(Errc::untrusted,
                        what + ": decompresses to more than " + std::to_string(file.size) +
                            " bytes, the signed manifest says " + std::to_string(file.size));
    std::span<const std::uint8_t> chunk(buf.data(), o.pos);
    sha.update(chunk);
    if (!chunk.empty()) ABUP_CHECK(out(chunk));
    produced += o.pos;
    return {};
  };
  std::size_t got = 0;
  for (std::uint64_t at = 0; at < file.compressed_size;) {
    const auto n =
        static_cast<std::size_t>(std::min<std::uint64_t>(packed.size(), file.compressed_size - at));
    std::span<std::uint8_t> piece(packed.data(), n);
    ABUP_CHECK(source.read_at(e->data_offset + at, piece));
    at += n;
    ZSTD_inBuffer in{piece.data(), piece.size(), 0};
    while (in.pos < in.size) ABUP_CHECK(step(in, got));
  }
  // Flush what the decoder still holds (output can lag the last input byte).
  while (last != 0) {
    ZSTD_inBuffer in{nullptr, 0, 0};
    ABUP_CHECK(step(in, got));
    if (got == 0) break;
  }
  if (last != 0)
    return make_error(Errc::invalid_input,
                      what + ": zstd: truncated frame (the entry ends inside a frame)");
  if (produced != file.size)
    return make_error(Errc::untrusted, what + ": decompresses to " + std::to_string(produced) +
                                           " bytes, the signed manifest says " +
                                           std::to_string(file.size));
  Sha256 d;
  sha.finish(d);
  if (d != file.sha256)
    return make_error(Errc::untrusted, what + ": SHA-256 " + to_hex(d) +
                                           " does not match the signed " + to_hex(file.sha256));
  return {};
}

Result<std::vector<std::uint8_t>> read_boot_file(Source& source, const VerifiedImage& image,
                                                 const BootFile& file) {
  std::vector<std::uint8_t> out;
  out.reserve(file.size);
  ABUP_CHECK(stream_boot_file(source, image, file, [&](std::span<const std::uint8_t> b) {
    out.insert(out.end(), b.begin(), b.end());
    return Status{};
  }));
  return out;
}

}  // namespace abup::protocol
