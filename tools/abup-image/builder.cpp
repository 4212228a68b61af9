#include "tools/abup-image/builder.hpp"

#include <blkid/blkid.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <atomic>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "abup/digest.hpp"
#include "abup/fs.hpp"
#include "abup/hex.hpp"
#include "partitions/boot/kernel_hash.hpp"
#include "partitions/gpt.hpp"
#include "update-protocol/cosi/cosi.hpp"
#include "update-protocol/cosi/tar.hpp"

namespace abup::image {
namespace {

using protocol::Frame;
using protocol::ManifestImage;

constexpr std::string_view kUsrType = "5dfbf5f4-2848-4bac-aa5e-0d9a20b745a6";
constexpr std::string_view kVerityType =
    "77ff5f63-e7b6-4633-acf4-1565b864c0e6";  // usr-verity x86-64
constexpr std::string_view kLinuxType = "0fc63daf-8483-4772-8e79-3d69d8477de4";

struct Compressed {
  std::string temp_path;
  ManifestImage manifest;
  std::string sha384;
};

struct Cut {
  std::uint64_t offset, size;
};

// Where the frames of `input` begin and end: every frame_size bytes, or where the content-defined
// chunker cuts (one sequential read, a window of a few maximum chunks).
Result<std::vector<Cut>> cut_frames(int fd, std::uint64_t size, const BuildOptions& opt,
                                    const std::string& what) {
  std::vector<Cut> cuts;
  if (!opt.chunker) {
    for (std::uint64_t off = 0; off < size; off += opt.frame_size)
      cuts.push_back({off, std::min<std::uint64_t>(opt.frame_size, size - off)});
    return cuts;
  }
  ABUP_CHECK(for_each_chunk(
      size, *opt.chunker,
      [&](std::uint64_t off, std::span<std::uint8_t> out) {
        return pread_full(fd, out, off, what);
      },
      [&](std::uint64_t off, std::span<const std::uint8_t> chunk) -> Status {
        cuts.push_back({off, chunk.size()});
        return {};
      }));
  return cuts;
}

// Compresses `input` into independent zstd frames, written in order to a temp file; the frames
// are compressed in parallel, a batch at a time.
Result<Compressed> compress_image(const std::string& input, const std::string& temp,
                                  const BuildOptions& opt) {
  ABUP_TRY(Fd in, open_file(input, O_RDONLY));
  struct stat st {};
  if (::fstat(in.get(), &st) != 0 || !S_ISREG(st.st_mode))
    return make_error(Errc::invalid_input, input + ": not a regular file");
  const auto size = static_cast<std::uint64_t>(st.st_size);
  if (size == 0) return make_error(Errc::invalid_input, input + ": empty image");
  ABUP_TRY(Fd out, open_file(temp, O_WRONLY | O_CREAT | O_TRUNC, 0600));

  ABUP_TRY(auto cuts, cut_frames(in.get(), size, opt, input));
  const std::uint64_t frames = cuts.size();
  const unsigned threads = opt.threads > 0 ? static_cast<unsigned>(opt.threads)
                                           : std::max(1u, std::thread::hardware_concurrency());
  const std::uint64_t batch = threads * 2;
  struct Slot {
    std::vector<std::uint8_t> raw, packed;
    Frame frame;
    std::string error;
  };
  std::vector<Slot> slots(batch);
  Compressed c;
  c.temp_path = temp;
  c.manifest.uncompressed_size = size;
  Sha2 whole(Sha2::Kind::sha384);
  std::uint64_t coff = 0;

  for (std::uint64_t first = 0; first < frames; first += batch) {
    std::uint64_t n = std::min(batch, frames - first);
    std::atomic<std::uint64_t> next{0};
    auto work = [&] {
      ZSTD_CCtx* cctx = ZSTD_createCCtx();
      ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, opt.level);
      ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1);
      ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 0);
      for (std::uint64_t i; (i = next++) < n;) {
        auto& s = slots[i];
        const std::uint64_t uoff = cuts[first + i].offset;
        const std::uint64_t len = cuts[first + i].size;
        s.raw.resize(len);
        if (auto st2 = pread_full(in.get(), s.raw, uoff, input); !st2) {
          s.error = st2.error().message;
          continue;
        }
        s.packed.resize(ZSTD_compressBound(len));
        ZSTD_CCtx_setPledgedSrcSize(cctx, len);
        size_t r = ZSTD_compress2(cctx, s.packed.data(), s.packed.size(), s.raw.data(), len);
        if (ZSTD_isError(r)) {
          s.error = std::string("zstd: ") + ZSTD_getErrorName(r);
          continue;
        }
        s.packed.resize(r);
        s.frame.uncompressed_offset = uoff;
        s.frame.uncompressed_size = len;
        s.frame.size = r;
        s.frame.sha256 = sha256(s.packed);
        s.frame.chunk_sha256 = sha256(s.raw);
        s.frame.chunk_xxh3 = xxh128(s.raw);
      }
      ZSTD_freeCCtx(cctx);
    };
    std::vector<std::jthread> pool;
    for (unsigned t = 1; t < std::min<std::uint64_t>(threads, n); ++t) pool.emplace_back(work);
    work();
    pool.clear();
    for (std::uint64_t i = 0; i < n; ++i) {
      auto& s = slots[i];
      if (!s.error.empty()) return make_error(Errc::io, input + ": " + s.error);
      ABUP_CHECK(pwrite_full(out.get(), s.packed, coff, temp));
      whole.update(s.packed);
      s.frame.offset = coff;
      coff += s.frame.size;
      c.manifest.frames.push_back(s.frame);
    }
  }
  if (::fsync(out.get()) != 0)
    return make_error(Errc::io, "fsync " + temp + ": " + errno_text(errno));
  c.manifest.compressed_size = coff;
  Sha384 digest;
  whole.finish(digest);
  c.sha384 = to_hex(digest);
  return c;
}

nlohmann::json image_file_json(const std::string& path, const Compressed& c) {
  return {{"path", path},
          {"compressedSize", c.manifest.compressed_size},
          {"uncompressedSize", c.manifest.uncompressed_size},
          {"sha384", c.sha384}};
}

std::string image_name(const std::string& mount_point, const char* suffix) {
  std::string n = mount_point == "/" ? "root" : mount_point.substr(1);
  for (auto& ch : n)
    if (ch == '/') ch = '-';
  return "images/" + n + suffix;
}

// Appends `len` bytes of file `src` to the archive being written.
Status copy_into(protocol::TarAppender& tar, const std::string& src, std::uint64_t len) {
  ABUP_TRY(Fd in, open_file(src, O_RDONLY));
  std::vector<std::uint8_t> buf(8 << 20);
  std::uint64_t off = 0;
  while (off < len) {
    auto n = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), len - off));
    ABUP_CHECK(pread_full(in.get(), {buf.data(), n}, off, src));
    ABUP_CHECK(tar.write_data({buf.data(), n}));
    off += n;
  }
  return {};
}

}  // namespace

FsProbe probe_filesystem(const std::string& path) {
  FsProbe p;
  blkid_probe pr = blkid_new_probe_from_filename(path.c_str());
  if (!pr) return p;
  blkid_probe_enable_superblocks(pr, 1);
  blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_TYPE | BLKID_SUBLKS_UUID);
  if (blkid_do_safeprobe(pr) == 0) {
    const char* v = nullptr;
    if (blkid_probe_lookup_value(pr, "TYPE", &v, nullptr) == 0 && v) p.type = v;
    if (blkid_probe_lookup_value(pr, "UUID", &v, nullptr) == 0 && v) p.uuid = v;
  }
  blkid_free_probe(pr);
  return p;
}

Result<PackedBootFile> pack_boot_file(const BootFileInput& in, int level,
                                      const std::optional<UsrBinding>& binding) {
  ABUP_CHECK_CTX(protocol::check_boot_file_name(in.name), "--boot-file");
  ABUP_TRY(Fd fd, open_file(in.path, O_RDONLY));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode))
    return make_error(Errc::invalid_input, "boot file " + in.path + ": not a regular file");
  const auto size = static_cast<std::uint64_t>(st.st_size);
  if (size == 0 || size > protocol::kMaxBootFileSize)
    return make_error(Errc::invalid_input,
                      "boot file " + in.path + ": empty or larger than 512 MiB");
  std::vector<std::uint8_t> raw(size);
  ABUP_CHECK(pread_full(fd.get(), raw, 0, in.path));
  if (binding)
    ABUP_CHECK_CTX(
        partitions::boot::check_usrhash_binding(raw, binding->arch, binding->roothash, in.name),
        in.path);
  PackedBootFile p;
  p.packed.resize(ZSTD_compressBound(size));
  size_t r = ZSTD_compress(p.packed.data(), p.packed.size(), raw.data(), size, level);
  if (ZSTD_isError(r))
    return make_error(Errc::failed, "boot file " + in.path + ": zstd: " + ZSTD_getErrorName(r));
  p.packed.resize(r);
  p.entry.name = in.name;
  p.entry.path = "boot/" + in.name + ".zst";
  p.entry.size = size;
  p.entry.compressed_size = r;
  p.entry.sha256 = sha256(raw);
  return p;
}

Result<protocol::Manifest> build_cosi(const BuildOptions& opt) {
  if (opt.images.empty())
    return make_error(Errc::usage, "build: no partition image given (--usr PATH)");
  if (opt.out.empty()) return make_error(Errc::usage, "build: --out is required");
  if (opt.frame_size < 64 * 1024 || opt.frame_size > (256u << 20) || opt.frame_size % 4096)
    return make_error(Errc::usage,
                      "build: --frame-size must be a multiple of 4 KiB between 64K and 256M");
  protocol::Manifest m;
  m.schema_version = opt.chunker ? protocol::kManifestSchemaCdc : protocol::kManifestSchemaFixed;
  m.version = opt.version;
  if (m.version.empty()) m.version = protocol::os_release_value(opt.os_release, "IMAGE_VERSION");
  if (m.version.empty()) m.version = protocol::os_release_value(opt.os_release, "VERSION_ID");
  if (m.version.empty())
    return make_error(Errc::usage,
                      "build: no release version: pass --version or an --os-release with "
                      "IMAGE_VERSION or VERSION_ID");
  if (auto v = Version::parse(m.version); !v) return std::move(v).error().with_context("build");
  m.arch = protocol::normalize_arch(opt.arch);
  if (m.arch.empty()) return make_error(Errc::usage, "build: unknown --arch '" + opt.arch + "'");
  m.variant =
      opt.variant.empty() ? protocol::os_release_value(opt.os_release, "VARIANT_ID") : opt.variant;
  m.min_version = opt.min_version;
  m.allow_downgrade = opt.allow_downgrade;
  m.issued_at = opt.issued_at ? opt.issued_at : static_cast<std::int64_t>(std::time(nullptr));
  m.expires_at = opt.expires_at;

  const std::string tmp_base = opt.out + ".build-" + std::to_string(::getpid());
  std::vector<std::string> temps;
  struct Cleanup {
    std::vector<std::string>* files;
    ~Cleanup() {
      for (auto& f : *files) ::unlink(f.c_str());
    }
  } cleanup{&temps};

  nlohmann::json md;
  md["version"] = "1.2";
  md["osArch"] = m.arch;
  md["osRelease"] = opt.os_release;
  md["images"] = nlohmann::json::array();
  struct Entry {
    std::string name;
    const Compressed* c;
  };
  std::vector<Compressed> compressed;
  compressed.reserve(opt.images.size() * 2);
  std::vector<Entry> entries;
  std::vector<partitions::GptEntry> parts;
  nlohmann::json regions = nlohmann::json::array();
  std::uint64_t next_lba = 2048;  // 1 MiB alignment after the primary GPT

  for (const auto& in : opt.images) {
    if (in.mount_point.empty() || in.mount_point[0] != '/')
      return make_error(Errc::usage, "build: mount point '" + in.mount_point + "' is not absolute");
    temps.push_back(tmp_base + "." + std::to_string(temps.size()));
    auto c = compress_image(in.path, temps.back(), opt);
    if (!c) return std::move(c).error().with_context("build " + in.mount_point);
    compressed.push_back(std::move(*c));
    auto& data = compressed.back();
    auto probe = probe_filesystem(in.path);
    std::string part_type = in.part_type.empty()
                                ? std::string(in.mount_point == "/usr" ? kUsrType : kLinuxType)
                                : in.part_type;
    data.manifest.path = image_name(in.mount_point, ".img.zst");
    data.manifest.mount_point = in.mount_point;
    data.manifest.part_type = part_type;
    if (opt.chunker) data.manifest.chunker = opt.chunker->name();
    entries.push_back({data.manifest.path, &data});
    nlohmann::json img = {{"image", image_file_json(data.manifest.path, data)},
                          {"mountPoint", in.mount_point},
                          {"fsType", probe.type.empty() ? "unknown" : probe.type},
                          {"fsUuid", probe.uuid},
                          {"partType", part_type},
                          {"verity", nullptr}};
    auto add_part = [&](const Compressed& cc, std::string_view type, const std::string& label) {
      partitions::GptEntry e;
      e.number = static_cast<std::uint32_t>(parts.size() + 1);
      e.type = *partitions::Guid::parse(type);
      e.unique = partitions::Guid::random();
      e.first_lba = next_lba;
      std::uint64_t sectors = (cc.manifest.uncompressed_size + 511) / 512;
      sectors = (sectors + 2047) / 2048 * 2048;
      e.last_lba = next_lba + sectors - 1;
      next_lba += sectors;
      e.name = label;
      parts.push_back(e);
      regions.push_back({{"image", image_file_json(cc.manifest.path, cc)},
                         {"type", "partition"},
                         {"number", e.number}});
    };
    std::string label = in.mount_point == "/usr" ? "usr-a" : data.manifest.path.substr(7);
    add_part(data, part_type, label);
    if (!in.verity_path.empty()) {
      if (in.roothash.empty() || !from_hex(in.roothash))
        return make_error(Errc::usage,
                          "build " + in.mount_point + ": a verity image needs --roothash HEX");
      temps.push_back(tmp_base + "." + std::to_string(temps.size()));
      auto v = compress_image(in.verity_path, temps.back(), opt);
      if (!v) return std::move(v).error().with_context("build " + in.mount_point + " verity");
      compressed.push_back(std::move(*v));
      auto& vd = compressed.back();
      vd.manifest.path = image_name(in.mount_point, "-verity.img.zst");
      vd.manifest.mount_point = in.mount_point + std::string(kVeritySuffix);
      vd.manifest.part_type = std::string(kVerityType);
      if (opt.chunker) vd.manifest.chunker = opt.chunker->name();
      entries.push_back({vd.manifest.path, &vd});
      img["verity"] = {{"image", image_file_json(vd.manifest.path, vd)}, {"roothash", in.roothash}};
      add_part(vd, kVerityType, in.mount_point == "/usr" ? "hash-a" : label + "-hash");
    }
    md["images"].push_back(std::move(img));
  }

  // The primary-GPT region of a disk laid out as the images, so stock COSI readers can install it.
  const std::uint64_t disk_size = (next_lba + 2048) * 512;
  const auto disk_guid = partitions::Guid::random();
  auto gpt = partitions::build_primary_region(disk_size, 512, disk_guid, parts);
  auto* gctx = ZSTD_createCCtx();
  std::vector<std::uint8_t> gz(ZSTD_compressBound(gpt.size()));
  size_t gsize = ZSTD_compressCCtx(gctx, gz.data(), gz.size(), gpt.data(), gpt.size(), opt.level);
  ZSTD_freeCCtx(gctx);
  if (ZSTD_isError(gsize))
    return make_error(Errc::failed, "build: compressing the GPT region failed");
  gz.resize(gsize);
  const std::string gpt_path = "images/primary-gpt.img.zst";
  regions.insert(regions.begin(), nlohmann::json{{"image",
                                                  {{"path", gpt_path},
                                                   {"compressedSize", gz.size()},
                                                   {"uncompressedSize", gpt.size()},
                                                   {"sha384", to_hex(sha384(gz))}}},
                                                 {"type", "primary-gpt"}});
  md["disk"] = {{"size", disk_size}, {"type", "gpt"}, {"lbaSize", 512}, {"gptRegions", regions}};
  md["compression"] = {{"maxWindowLog", 22}};
  md["bootloader"] = {{"type", "grub"}};
  const std::string metadata = md.dump(2) + "\n";
  m.metadata_sha384 = to_hex(sha384(as_bytes(metadata)));
  for (const auto& e : entries) m.images.push_back(e.c->manifest);
  std::vector<PackedBootFile> boot;
  std::optional<UsrBinding> binding;
  if (opt.check_usrhash) {
    binding = UsrBinding{m.arch, ""};
    for (const auto& in : opt.images)
      if (in.mount_point == "/usr" && !in.verity_path.empty()) binding->roothash = in.roothash;
  }
  for (const auto& b : opt.boot_files) {
    ABUP_TRY(auto p, pack_boot_file(b, opt.level, binding));
    if (m.find_boot_file(p.entry.name))
      return make_error(Errc::invalid_input, "build: --boot-file " + b.name + " given twice");
    m.boot_files.push_back(p.entry);
    boot.push_back(std::move(p));
  }
  const std::string manifest = protocol::serialize_manifest(m);

  const std::string tmp_out = tmp_base + ".cosi";
  temps.push_back(tmp_out);
  {
    ABUP_TRY(Fd out, open_file(tmp_out, O_RDWR | O_CREAT | O_TRUNC, 0644));
    protocol::TarAppender tar(out.get(), 0, tmp_out);
    ABUP_CHECK(tar.add("cosi-marker", ""));
    ABUP_CHECK(tar.add("metadata.json", metadata));
    ABUP_CHECK(tar.add(gpt_path, as_chars(gz)));
    for (const auto& e : entries) {
      ABUP_TRY(auto at, tar.begin(e.name, e.c->manifest.compressed_size));
      (void)at;
      ABUP_CHECK(copy_into(tar, e.c->temp_path, e.c->manifest.compressed_size));
      ABUP_CHECK(tar.end_entry());
    }
    for (const auto& b : boot) ABUP_CHECK(tar.add(b.entry.path, as_chars(b.packed)));
    ABUP_CHECK(tar.add(protocol::kManifestEntry, manifest));
    ABUP_CHECK(tar.finish());
    if (::fsync(out.get()) != 0)
      return make_error(Errc::io, "fsync " + tmp_out + ": " + errno_text(errno));
  }
  if (::rename(tmp_out.c_str(), opt.out.c_str()) != 0)
    return make_error(Errc::io, "rename to " + opt.out + ": " + errno_text(errno));
  temps.pop_back();
  return m;
}

}  // namespace abup::image
