#include "update-protocol/manifest/manifest.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>

#include "abup/chunker.hpp"
#include "abup/hex.hpp"
#include "update-protocol/cosi/cosi.hpp"
#include "update-protocol/manifest/manifest_json.hpp"

namespace abup::protocol {
namespace {

using json = nlohmann::json;
using manifest_json::bad;
using manifest_json::FrameTable;
using manifest_json::get;
using manifest_json::get_digest;

std::string frame_path(const std::string& p, std::size_t j) {
  return p + ".frames[" + std::to_string(j) + "]";
}

// The elements after the last good one: the decoding error, or past the frame limit.
Status rest_of_table(const FrameTable& t, std::size_t ok, const std::optional<Error>& error,
                     const std::string& p) {
  if (ok == t.count) return {};
  if (error) return *error;
  return bad(p + ".frames", "more than " + std::to_string(kMaxFrames) +
                                " frames in the manifest (an endless frame table?)");
}

// Schema 1: objects with a compressed offset; each frame starts where the previous one ended.
Status parse_frames_fixed(FrameTable& t, const std::string& p, ManifestImage& img) {
  std::uint64_t coff = 0, uoff = 0;
  for (std::size_t j = 0; j < t.fixed_ok; ++j) {
    Frame& fr = t.frames[j];
    if (fr.offset != coff) return bad(frame_path(p, j) + ".offset", "frames must be contiguous");
    if (fr.size == 0 || fr.uncompressed_size == 0 || fr.uncompressed_size > kMaxFrameUncompressed)
      return bad(frame_path(p, j), "empty or oversized frame");
    if (fr.size > img.compressed_size - coff || img.compressed_size < coff)
      return bad(frame_path(p, j), "runs past compressedSize");
    fr.uncompressed_offset = uoff;
    coff += fr.size;
    uoff += fr.uncompressed_size;
    if (uoff > img.uncompressed_size) return bad(frame_path(p, j), "runs past uncompressedSize");
  }
  ABUP_CHECK(rest_of_table(t, t.fixed_ok, t.fixed_error, p));
  img.frames = std::move(t.frames);
  return {};
}

// Schema 2: [uncompressedOffset, uncompressedSize, compressedSize, sha256, chunkSha256,
// chunkXxh3]. The signed uncompressed offsets must tile the image exactly: in order, no overlap,
// no gap; every frame but the last a whole number of 4 KiB blocks within the chunker's sizes (the
// read-back reads them with O_DIRECT); compressed frames contiguous and no larger than zstd's
// bound for their content.
Status parse_frames_cdc(FrameTable& t, const std::string& p, ManifestImage& img) {
  auto params = ChunkerParams::parse(img.chunker);
  if (!params)
    return bad(p + ".chunker", "unsupported '" + img.chunker + "' (expected cdc/MINK/AVGK/MAXK)");
  std::uint64_t coff = 0, uoff = 0;
  for (std::size_t j = 0; j < t.cdc_ok; ++j) {
    Frame& fr = t.frames[j];
    const std::string fp = frame_path(p, j);
    auto at = [&] {
      return " (uncompressedOffset " + std::to_string(fr.uncompressed_offset) +
             ", previous frame ends at " + std::to_string(uoff) + ")";
    };
    if (j > 0 && fr.uncompressed_offset <= t.frames[j - 1].uncompressed_offset)
      return bad(fp, "frames out of order" + at());
    if (fr.uncompressed_offset < uoff) return bad(fp, "overlaps the previous frame" + at());
    if (fr.uncompressed_offset > uoff)
      return bad(fp, "leaves a gap after the previous frame" + at());
    if (fr.uncompressed_size == 0 || fr.size == 0) return bad(fp, "zero-size frame");
    const bool last = j + 1 == t.count;
    if (fr.uncompressed_size > params->max)
      return bad(fp, "oversized frame: " + std::to_string(fr.uncompressed_size) +
                         " bytes, the chunker's maximum is " + std::to_string(params->max));
    if (!last && (fr.uncompressed_size % kChunkBlock || fr.uncompressed_size < params->min))
      return bad(fp, "uncompressedSize " + std::to_string(fr.uncompressed_size) +
                         " is not a multiple of 4096 of at least the chunker's minimum");
    // zstd never needs more than its bound (ZSTD_compressBound: n + n/256 + a small constant).
    if (fr.size > fr.uncompressed_size + (fr.uncompressed_size >> 8) + 1024)
      return bad(fp, "oversized frame: compressedSize " + std::to_string(fr.size) + " for " +
                         std::to_string(fr.uncompressed_size) + " uncompressed bytes");
    if (img.compressed_size < coff || fr.size > img.compressed_size - coff)
      return bad(fp, "runs past compressedSize");
    if (fr.uncompressed_size > img.uncompressed_size - uoff)
      return bad(fp, "runs past uncompressedSize");
    fr.offset = coff;
    coff += fr.size;
    uoff += fr.uncompressed_size;
  }
  ABUP_CHECK(rest_of_table(t, t.cdc_ok, t.cdc_error, p));
  img.frames = std::move(t.frames);
  return {};
}

json frames_fixed_json(const ManifestImage& img) {
  json out = json::array();
  for (const auto& f : img.frames)
    out.push_back({{"offset", f.offset},
                   {"size", f.size},
                   {"uncompressedSize", f.uncompressed_size},
                   {"sha256", to_hex(f.sha256)},
                   {"chunkSha256", to_hex(f.chunk_sha256)},
                   {"chunkXxh3", to_hex(f.chunk_xxh3)}});
  return out;
}

std::string frames_placeholder(std::size_t image) {
  return "@abup-frames-" + std::to_string(image) + "@";
}

std::string frames_cdc_text(const ManifestImage& img, const std::string& indent) {
  std::string out = "[\n";
  out.reserve(img.frames.size() * 190);
  for (std::size_t i = 0; i < img.frames.size(); ++i) {
    const auto& f = img.frames[i];
    out += indent + "  [" + std::to_string(f.uncompressed_offset) + ", " +
           std::to_string(f.uncompressed_size) + ", " + std::to_string(f.size) + ", \"" +
           to_hex(f.sha256) + "\", \"" + to_hex(f.chunk_sha256) + "\", \"" + to_hex(f.chunk_xxh3) +
           "\"]" + (i + 1 < img.frames.size() ? ",\n" : "\n");
  }
  return out + indent + "]";
}

}  // namespace

const ManifestImage* Manifest::find_mount(std::string_view mount_point) const {
  for (const auto& i : images)
    if (i.mount_point == mount_point) return &i;
  return nullptr;
}

const BootFile* Manifest::find_boot_file(std::string_view name) const {
  for (const auto& b : boot_files)
    if (b.name == name) return &b;
  return nullptr;
}

Status check_boot_file_name(std::string_view name) {
  std::string shown;
  for (char c : name.substr(0, 80)) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", u);
      shown += hex;
    } else {
      shown += c;
    }
  }
  auto fail = [&](const char* why) {
    return make_error(Errc::invalid_input, "boot file name '" + shown + "': " + why);
  };
  if (name.empty() || name.size() > 64) return fail("must be 1 to 64 characters");
  if (name == "." || name == "..") return fail("'.' and '..' are not names");
  for (char c : name) {
    auto u = static_cast<unsigned char>(c);
    if (c == '/') return fail("contains '/' (a logical name, not a path)");
    if (u < 0x20 || u == 0x7f) return fail("contains a control character");
    if (!(std::isalnum(u) || c == '.' || c == '_' || c == '-'))
      return fail("only letters, digits, '.', '_' and '-' are allowed");
  }
  return {};
}

Result<std::int64_t> parse_utc_time(std::string_view s) {
  // YYYY-MM-DDTHH:MM:SSZ (fractional seconds not accepted: keep the signed text unambiguous)
  auto fail = [&] {
    return make_error(Errc::invalid_input,
                      "time '" + std::string(s) + "': expected YYYY-MM-DDTHH:MM:SSZ (UTC)");
  };
  if (s.size() != 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
      s[16] != ':' || s[19] != 'Z')
    return fail();
  auto num = [&](std::size_t at, std::size_t len, int& out) {
    out = 0;
    for (std::size_t i = at; i < at + len; ++i) {
      if (s[i] < '0' || s[i] > '9') return false;
      out = out * 10 + (s[i] - '0');
    }
    return true;
  };
  int y, mo, d, h, mi, se;
  if (!num(0, 4, y) || !num(5, 2, mo) || !num(8, 2, d) || !num(11, 2, h) || !num(14, 2, mi) ||
      !num(17, 2, se) || y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
      se > 60)
    return fail();
  // No 2026-02-31: the day must exist in that month (leap years as the Gregorian calendar).
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (d > kDays[mo - 1] + (mo == 2 && leap ? 1 : 0)) return fail();
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = se;
  return static_cast<std::int64_t>(timegm(&tm));
}

std::string format_utc_time(std::int64_t seconds) {
  std::time_t t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

Result<ManifestRelease> parse_manifest_release(std::string_view text) {
  if (text.size() > kMaxManifestText)
    return make_error(Errc::invalid_input, "abup/manifest.json: " + std::to_string(text.size()) +
                                               " bytes, more than the limit of " +
                                               std::to_string(kMaxManifestText));
  ABUP_TRY(auto top, manifest_json::read_top_strings(text, {"version", "issuedAt"}));
  auto version = top.find("version"), issued = top.find("issuedAt");
  if (version == top.end()) return bad("version", "missing or not a string");
  if (issued == top.end()) return bad("issuedAt", "missing or not a string");
  if (auto v = Version::parse(version->second); !v) return bad("version", v.error().message);
  auto at = parse_utc_time(issued->second);
  if (!at) return bad("issuedAt", at.error().message);
  return ManifestRelease{std::move(version->second), *at};
}

Result<Manifest> parse_manifest(std::string_view text) {
  if (text.size() > kMaxManifestText)
    return make_error(Errc::invalid_input, "abup/manifest.json: " + std::to_string(text.size()) +
                                               " bytes, more than the limit of " +
                                               std::to_string(kMaxManifestText));
  ABUP_TRY(auto read, manifest_json::read(text));
  const json& doc = read.top;
  if (!doc.is_object()) return bad("(top)", "expected an object");
  Manifest m;
  ABUP_TRY(auto schema, get<std::uint64_t>(doc, "", "schemaVersion"));
  if (schema != kManifestSchemaFixed && schema != kManifestSchemaCdc)
    return bad("schemaVersion", "unsupported schema " + std::to_string(schema) +
                                    " (this abup reads 1 and 2; a newer abup may be needed)");
  m.schema_version = static_cast<int>(schema);
  ABUP_TRY(m.version, get<std::string>(doc, "", "version"));
  if (auto v = Version::parse(m.version); !v) return bad("version", v.error().message);
  ABUP_TRY(m.min_version, get<std::string>(doc, "", "minVersion", false));
  if (!m.min_version.empty())
    if (auto v = Version::parse(m.min_version); !v) return bad("minVersion", v.error().message);
  ABUP_TRY(m.variant, get<std::string>(doc, "", "variant", false));
  ABUP_TRY(auto arch, get<std::string>(doc, "", "arch"));
  m.arch = normalize_arch(arch);
  if (m.arch.empty()) return bad("arch", "unknown architecture '" + arch + "'");
  ABUP_TRY(auto issued, get<std::string>(doc, "", "issuedAt"));
  auto it = parse_utc_time(issued);
  if (!it) return bad("issuedAt", it.error().message);
  m.issued_at = *it;
  ABUP_TRY(auto expires, get<std::string>(doc, "", "expiresAt", false));
  if (!expires.empty()) {
    auto et = parse_utc_time(expires);
    if (!et) return bad("expiresAt", et.error().message);
    m.expires_at = *et;
    if (m.expires_at <= m.issued_at) return bad("expiresAt", "not after issuedAt");
  }
  ABUP_TRY(m.allow_downgrade, get<bool>(doc, "", "allowDowngrade", false));
  ABUP_TRY(auto md, get_digest<48>(doc, "", "metadataSha384"));
  m.metadata_sha384 = to_hex(md);
  ABUP_TRY(auto chunk_digest, get<std::string>(doc, "", "chunkDigest"));
  if (chunk_digest != "sha256+xxh3-128")
    return bad("chunkDigest", "unsupported '" + chunk_digest + "' (expected sha256+xxh3-128)");

  std::size_t total_frames = 0;
  auto images = doc.find("images");
  if (images == doc.end() || !images->is_array() || images->empty())
    return bad("images", "expected a non-empty array");
  for (std::size_t i = 0; i < images->size(); ++i) {
    const auto& o = (*images)[i];
    std::string p = "images[" + std::to_string(i) + "]";
    if (!o.is_object()) return bad(p, "expected an object");
    ManifestImage img;
    ABUP_TRY(img.path, get<std::string>(o, p, "path"));
    ABUP_TRY(img.mount_point, get<std::string>(o, p, "mountPoint"));
    ABUP_TRY(img.part_type, get<std::string>(o, p, "partType", false));
    ABUP_TRY(img.compressed_size, get<std::uint64_t>(o, p, "compressedSize"));
    ABUP_TRY(img.uncompressed_size, get<std::uint64_t>(o, p, "uncompressedSize"));
    auto table = read.frames.find(i);
    if (table == read.frames.end() || table->second.count == 0)
      return bad(p + ".frames", "expected a non-empty array");
    total_frames += table->second.count;
    if (total_frames > kMaxFrames)
      return bad(p + ".frames", "more than " + std::to_string(kMaxFrames) +
                                    " frames in the manifest (an endless frame table?)");
    // Schema 2 images name their chunker, unless their frames are schema 1's fixed ones.
    if (schema == kManifestSchemaCdc && o.contains("chunker")) {
      ABUP_TRY(img.chunker, get<std::string>(o, p, "chunker"));
      ABUP_CHECK(parse_frames_cdc(table->second, p, img));
    } else {
      ABUP_CHECK(parse_frames_fixed(table->second, p, img));
    }
    const std::uint64_t coff = img.frames.back().offset + img.frames.back().size;
    const std::uint64_t uoff =
        img.frames.back().uncompressed_offset + img.frames.back().uncompressed_size;
    if (coff != img.compressed_size) return bad(p, "frames do not add up to compressedSize");
    if (uoff != img.uncompressed_size) return bad(p, "frames do not add up to uncompressedSize");
    for (const auto& other : m.images)
      if (other.path == img.path || other.mount_point == img.mount_point)
        return bad(p, "image listed twice");
    m.images.push_back(std::move(img));
  }

  if (auto boot = doc.find("bootFiles"); boot != doc.end() && !boot->is_null()) {
    if (m.schema_version < kSchemaBootFiles)
      return bad("bootFiles", "needs schemaVersion 2 (older agents would ignore the kernel)");
    if (!boot->is_array()) return bad("bootFiles", "expected an array");
    for (std::size_t i = 0; i < boot->size(); ++i) {
      const auto& o = (*boot)[i];
      std::string p = "bootFiles[" + std::to_string(i) + "]";
      if (!o.is_object()) return bad(p, "expected an object");
      BootFile b;
      ABUP_TRY(b.name, get<std::string>(o, p, "name"));
      if (auto st = check_boot_file_name(b.name); !st) return bad(p + ".name", st.error().message);
      ABUP_TRY(b.path, get<std::string>(o, p, "path"));
      if (b.path != "boot/" + b.name + ".zst")
        return bad(p + ".path", "expected 'boot/" + b.name + ".zst'");
      ABUP_TRY(b.size, get<std::uint64_t>(o, p, "size"));
      ABUP_TRY(b.compressed_size, get<std::uint64_t>(o, p, "compressedSize"));
      ABUP_TRY(b.sha256, get_digest<32>(o, p, "sha256"));
      if (b.size == 0 || b.size > kMaxBootFileSize || b.compressed_size == 0)
        return bad(p, "empty or larger than 512 MiB");
      if (m.find_boot_file(b.name)) return bad(p, "boot file '" + b.name + "' listed twice");
      m.boot_files.push_back(std::move(b));
    }
  }
  return m;
}

std::string serialize_manifest(const Manifest& m) {
  json doc;
  int schema = m.boot_files.empty() ? kManifestSchemaFixed : kSchemaBootFiles;
  for (const auto& img : m.images)
    if (!img.chunker.empty()) schema = kManifestSchemaCdc;
  doc["schemaVersion"] = std::max(m.schema_version, schema);
  doc["version"] = m.version;
  if (!m.min_version.empty()) doc["minVersion"] = m.min_version;
  if (!m.variant.empty()) doc["variant"] = m.variant;
  doc["arch"] = m.arch;
  doc["issuedAt"] = format_utc_time(m.issued_at);
  if (m.expires_at) doc["expiresAt"] = format_utc_time(m.expires_at);
  if (m.allow_downgrade) doc["allowDowngrade"] = true;
  doc["metadataSha384"] = m.metadata_sha384;
  doc["chunkDigest"] = "sha256+xxh3-128";
  doc["images"] = json::array();
  for (const auto& img : m.images) {
    json j;
    j["path"] = img.path;
    j["mountPoint"] = img.mount_point;
    if (!img.part_type.empty()) j["partType"] = img.part_type;
    j["compressedSize"] = img.compressed_size;
    j["uncompressedSize"] = img.uncompressed_size;
    if (!img.chunker.empty()) {
      j["chunker"] = img.chunker;
      // A placeholder, replaced below by one line per frame: dump(2) would spend a line on
      // every field, tripling the bytes every node downloads.
      j["frames"] = frames_placeholder(doc["images"].size());
    } else {
      j["frames"] = frames_fixed_json(img);
    }
    doc["images"].push_back(std::move(j));
  }
  if (!m.boot_files.empty()) {
    doc["bootFiles"] = json::array();
    for (const auto& b : m.boot_files)
      doc["bootFiles"].push_back({{"name", b.name},
                                  {"path", b.path},
                                  {"size", b.size},
                                  {"compressedSize", b.compressed_size},
                                  {"sha256", to_hex(b.sha256)}});
  }
  std::string text = doc.dump(2) + "\n";
  for (std::size_t i = 0; i < m.images.size(); ++i)
    if (!m.images[i].chunker.empty()) {
      const std::string placeholder = "\"frames\": " + json(frames_placeholder(i)).dump();
      auto at = text.find(placeholder);
      text.replace(at, placeholder.size(), "\"frames\": " + frames_cdc_text(m.images[i], "      "));
    }
  return text;
}

Status check_policy(const Manifest& m, const PolicyInput& in) {
  auto fail = [](const std::string& what) {
    return make_error(Errc::policy, "image policy: " + what);
  };
  if (!in.arch.empty() && m.arch != in.arch)
    return fail("image is for " + m.arch + ", this host is " + in.arch);
  if (!m.variant.empty() && in.variant.empty() && !in.allow_unknown_variant)
    return fail("image is for variant '" + m.variant + "' and this host's variant is unknown (" +
                (in.unknown_variant_reason.empty() ? "no VARIANT_ID in os-release"
                                                   : in.unknown_variant_reason) +
                "); an operator may pass --allow-unknown-variant");
  if (!m.variant.empty() && !in.variant.empty() && m.variant != in.variant)
    return fail("image is for variant '" + m.variant + "', this host is '" + in.variant + "'");
  if (in.now && m.issued_at > in.now + 300)
    return fail("manifest issued in the future (" + format_utc_time(m.issued_at) +
                "); check the host clock");
  if (in.now && m.expires_at && in.now >= m.expires_at)
    return fail("manifest expired at " + format_utc_time(m.expires_at) + " (now " +
                format_utc_time(in.now) + ")");
  if (in.require_expiry && !m.expires_at)
    return fail("the signed manifest of " + m.version +
                " has no expiresAt and [Security] RequireExpiry=yes refuses one that never "
                "expires (sign releases with abup-image --expires-in-days N, or set "
                "RequireExpiry=no)");
  if (!in.running && !in.allow_unknown_version)
    return fail("the running version is unknown (" +
                (in.unknown_version_reason.empty() ? "no IMAGE_VERSION or VERSION_ID in os-release"
                                                   : in.unknown_version_reason) +
                "), so " + m.version + " cannot be shown not to be a downgrade" +
                (m.min_version.empty() ? ""
                                       : " nor the running version to be " + m.min_version +
                                             " or newer (minVersion)") +
                "; an operator may pass --allow-unknown-version");
  if (!in.running && !in.highest_committed) return {};
  ABUP_TRY(auto target, Version::parse(m.version));
  // The floor: the running version, or the highest one ever committed here when higher (after a
  // rollback or a fall-back, or when the running version is unknown). The running version itself
  // is never below it (a repair).
  const bool below_running = in.running && target < *in.running;
  const bool below_committed = in.highest_committed && target < *in.highest_committed &&
                               !(in.running && target == *in.running);
  if ((below_running || below_committed) && !in.allow_downgrade) {
    const std::string what =
        below_running ? "downgrade from " + in.running->text + " to " + m.version
                      : "downgrade to " + m.version + " below " + in.highest_committed->text +
                            ", the highest version this node committed (" +
                            (in.running ? "it runs " + in.running->text
                                        : std::string("its running version is unknown")) +
                            "; state.json highestCommittedVersion),";
    if (!m.allow_downgrade)
      return fail(what +
                  " refused (the signed manifest does not allow it; an operator may pass "
                  "--allow-downgrade)");
    // A signed downgrade is a recall: replayable by whoever holds a copy, so it must expire, and
    // a release signed after it (the fix that follows the recall) supersedes it.
    if (!m.expires_at)
      return fail(what +
                  " refused: the signed manifest allows downgrade but has no expiresAt, so it "
                  "could be replayed forever (sign recalls with abup-image --allow-downgrade "
                  "--expires-in-days N; an operator may pass --allow-downgrade)");
    if (in.running && in.running_issued_at && m.issued_at < in.running_issued_at)
      return fail(what + " refused: the signed manifest allows downgrade but was issued at " +
                  format_utc_time(m.issued_at) + ", before the running release " +
                  in.running->text + " (issued " + format_utc_time(in.running_issued_at) +
                  "), which supersedes it (an operator may pass --allow-downgrade)");
  }
  if (in.running) {
    if (target == *in.running && !in.allow_same_version)
      return fail("version " + m.version + " is already running");
    if (!m.min_version.empty()) {
      ABUP_TRY(auto min, Version::parse(m.min_version));
      if (*in.running < min)
        return fail("image " + m.version + " may only replace " + m.min_version +
                    " or newer; this host runs " + in.running->text);
    }
  }
  return {};
}

}  // namespace abup::protocol
