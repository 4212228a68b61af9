#include "tools/abup-image/signer.hpp"

#include <fcntl.h>
#include <zstd.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>

#include "abup/digest.hpp"
#include "abup/fs.hpp"
#include "abup/hex.hpp"
#include "tools/abup-image/builder.hpp"
#include "tools/abup-image/esp.hpp"
#include "update-protocol/cosi/cosi.hpp"
#include "update-protocol/cosi/tar.hpp"
#include "update-protocol/zstd_dctx.hpp"

namespace abup::image {

using namespace abup::protocol;

Result<ManifestImage> scan_frames(const std::string& path, std::uint64_t data_offset,
                                  std::uint64_t size, std::string_view expected_sha384) {
  ABUP_TRY(auto src, open_file_source(path));
  ABUP_TRY(const auto dctx, protocol::make_capped_dctx(protocol::kAnyWindowLog));
  ZSTD_DCtx* d = dctx.get();
  ManifestImage img;
  img.compressed_size = size;
  std::vector<std::uint8_t> out(1 << 20);
  auto frame_sha = std::make_unique<Sha2>(Sha2::Kind::sha256);
  auto chunk_sha = std::make_unique<Sha2>(Sha2::Kind::sha256);
  auto chunk_xxh = std::make_unique<Xxh128Stream>();
  Sha2 whole(Sha2::Kind::sha384);
  std::uint64_t consumed = 0, frame_start = 0, produced = 0, frame_produced = 0;
  bool in_frame = false;
  auto sink = [&](std::span<const std::uint8_t> piece) -> Status {
    whole.update(piece);
    ZSTD_inBuffer in{piece.data(), piece.size(), 0};
    while (in.pos < in.size) {
      ZSTD_outBuffer o{out.data(), out.size(), 0};
      std::size_t before = in.pos;
      std::size_t r = ZSTD_decompressStream(d, &o, &in);
      if (ZSTD_isError(r))
        return make_error(Errc::invalid_input, "zstd stream at compressed offset " +
                                                   std::to_string(consumed) + ": " +
                                                   ZSTD_getErrorName(r));
      frame_sha->update(std::span(piece.data() + before, in.pos - before));
      consumed += in.pos - before;
      chunk_sha->update(std::span<const std::uint8_t>(out.data(), o.pos));
      chunk_xxh->update(std::span<const std::uint8_t>(out.data(), o.pos));
      frame_produced += o.pos;
      in_frame = true;
      if (r == 0) {
        if (frame_produced == 0)
          return make_error(Errc::invalid_input, "empty or skippable zstd frame at offset " +
                                                     std::to_string(frame_start) +
                                                     " is not supported");
        Frame f;
        f.offset = frame_start;
        f.size = consumed - frame_start;
        f.uncompressed_offset = produced;
        f.uncompressed_size = frame_produced;
        frame_sha->finish(f.sha256);
        chunk_sha->finish(f.chunk_sha256);
        f.chunk_xxh3 = chunk_xxh->finish();
        chunk_xxh = std::make_unique<Xxh128Stream>();
        img.frames.push_back(f);
        produced += frame_produced;
        frame_produced = 0;
        frame_start = consumed;
        in_frame = false;
      }
    }
    return {};
  };
  ABUP_CHECK(src->read_range(data_offset, size, sink));
  if (in_frame || img.frames.empty())
    return make_error(Errc::invalid_input, "zstd stream ends inside a frame (truncated image)");
  img.uncompressed_size = produced;
  // Signing vouches for metadata.json: its SHA-384 must be that of these bytes, or stock COSI
  // readers refuse an image that abup would accept.
  Sha384 digest;
  whole.finish(digest);
  if (!expected_sha384.empty() && to_hex(digest) != expected_sha384)
    return make_error(Errc::invalid_input, "SHA-384 of the compressed bytes is " + to_hex(digest) +
                                               ", metadata.json says " +
                                               std::string(expected_sha384) +
                                               " (the image or metadata.json is damaged)");
  return img;
}

Result<std::string> ensure_manifest(const std::string& path, const ManifestDefaults& def) {
  ABUP_TRY(auto src, open_file_source(path));
  ABUP_TRY(auto archive, read_cosi(*src));
  if (archive.manifest) {
    const bool overrides = !def.version.empty() || !def.min_version.empty() ||
                           !def.variant.empty() || def.expires_at != 0 || def.allow_downgrade;
    if (overrides)
      return make_error(Errc::usage,
                        path +
                            " already has an abup manifest: --version, --min-version, "
                            "--variant, --expires-* and --allow-downgrade only apply when sign "
                            "or digest creates "
                            "it (pass them to `abup-image build`)");
    return read_entry(*src, *archive.manifest, kMaxManifestSize);
  }
  if (archive.signature)
    return make_error(Errc::invalid_input, path + ": has " + std::string(kSignatureEntry) +
                                               " but no " + std::string(kManifestEntry));
  Manifest m;
  m.version = def.version;
  const auto& osr = archive.metadata.os_release;
  if (m.version.empty()) m.version = os_release_value(osr, "IMAGE_VERSION");
  if (m.version.empty()) m.version = os_release_value(osr, "VERSION_ID");
  if (m.version.empty())
    return make_error(Errc::usage,
                      path +
                          ": no release version: pass --version (the image's os-release has "
                          "neither IMAGE_VERSION nor VERSION_ID)");
  if (auto v = Version::parse(m.version); !v) return std::move(v).error();
  m.arch = archive.metadata.os_arch;
  m.variant = def.variant.empty() ? os_release_value(osr, "VARIANT_ID") : def.variant;
  m.min_version = def.min_version;
  m.issued_at = static_cast<std::int64_t>(std::time(nullptr));
  m.expires_at = def.expires_at;
  m.allow_downgrade = def.allow_downgrade;
  m.metadata_sha384 = to_hex(sha384(as_bytes(archive.metadata_json)));
  auto add = [&](const ImageFile& f, const std::string& mount, const std::string& type) -> Status {
    const auto* e = archive.entry(f);
    auto img = scan_frames(path, e->data_offset, e->size, f.sha384);
    if (!img) return std::move(img).error().with_context(path + ": " + f.path);
    if (img->uncompressed_size != f.uncompressed_size)
      return make_error(Errc::invalid_input, path + ": " + f.path + " decompresses to " +
                                                 std::to_string(img->uncompressed_size) +
                                                 " bytes, metadata.json says " +
                                                 std::to_string(f.uncompressed_size));
    img->path = f.path;
    img->mount_point = mount;
    img->part_type = type;
    m.images.push_back(std::move(*img));
    return {};
  };
  for (const auto& fi : archive.metadata.images) {
    ABUP_CHECK(add(fi.image, fi.mount_point, fi.part_type));
    if (fi.verity)
      ABUP_CHECK(add(fi.verity->image, fi.mount_point + std::string(kVeritySuffix), ""));
  }
  // A foreign COSI's kernel lives inside its ESP image: carry it as boot files.
  std::vector<PackedBootFile> boot;
  if (find_esp_image(archive)) {
    TempWork work;
    if (work.empty())
      return make_error(Errc::io, "a temporary directory for the ESP image: " + errno_text(errno));
    ABUP_TRY(auto found, esp_boot_files(path, archive, work.path()));
    if (found) {
      for (const auto& s : found->skipped)
        std::fprintf(stderr, "abup-image: %s: left out the first-boot addon %s\n",
                     found->esp_image.c_str(), s.c_str());
      // The UKI's usrhash= must be this image's /usr root hash, as the agent will check.
      UsrBinding binding{m.arch, ""};
      for (const auto& fi : archive.metadata.images)
        if (fi.mount_point == "/usr" && fi.verity) binding.roothash = fi.verity->roothash;
      for (const auto& f : found->files) {
        ABUP_TRY(auto p, pack_boot_file(f, 3, binding));
        std::fprintf(stderr, "abup-image: %s: boot file %s (%llu bytes)\n",
                     found->esp_image.c_str(), f.name.c_str(),
                     static_cast<unsigned long long>(p.entry.size));
        m.boot_files.push_back(p.entry);
        boot.push_back(std::move(p));
      }
    }
  }
  std::string manifest = serialize_manifest(m);
  ABUP_TRY(Fd fd, open_file(path, O_RDWR));
  TarAppender tar(fd.get(), archive.tar.end_offset, path);
  for (const auto& b : boot)
    ABUP_CHECK(
        tar.add(b.entry.path,
                std::string_view(reinterpret_cast<const char*>(b.packed.data()), b.packed.size())));
  ABUP_CHECK(tar.add(kManifestEntry, manifest));
  ABUP_CHECK(tar.finish());
  if (::fsync(fd.get()) != 0)
    return make_error(Errc::io, "fsync " + path + ": " + errno_text(errno));
  return manifest;
}

Status add_signatures(const std::string& path, const std::vector<SignatureEntry>& sigs) {
  ABUP_TRY(auto src, open_file_source(path));
  ABUP_TRY(auto archive, read_cosi(*src));
  if (!archive.manifest)
    return make_error(Errc::invalid_input,
                      path + ": no " + std::string(kManifestEntry) + " to sign");
  std::vector<SignatureEntry> merged;
  std::uint64_t at = archive.tar.end_offset;
  if (archive.signature) {
    if (&archive.tar.entries.back() != archive.tar.find(kSignatureEntry))
      return make_error(Errc::invalid_input,
                        path + ": " + std::string(kSignatureEntry) + " is not the last entry");
    ABUP_TRY(auto old, read_entry(*src, *archive.signature, 1 << 20));
    ABUP_TRY(merged, parse_signature_envelope(old));
    at = archive.signature->header_offset;
  }
  for (const auto& s : sigs) {
    std::erase_if(merged, [&](const SignatureEntry& e) { return e.keyid == s.keyid; });
    merged.push_back(s);
  }
  src.reset();
  ABUP_TRY(Fd fd, open_file(path, O_RDWR));
  TarAppender tar(fd.get(), at, path);
  ABUP_CHECK(tar.add(kSignatureEntry, serialize_signature_envelope(merged)));
  ABUP_CHECK(tar.finish());
  if (::fsync(fd.get()) != 0)
    return make_error(Errc::io, "fsync " + path + ": " + errno_text(errno));
  return {};
}

}  // namespace abup::image
