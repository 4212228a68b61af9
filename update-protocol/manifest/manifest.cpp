#include "update-protocol/manifest/manifest.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>

#include "abup/hex.hpp"
#include "update-protocol/cosi/cosi.hpp"

namespace abup::protocol {
namespace {

using json = nlohmann::json;

Error bad(const std::string& path, const std::string& what) {
  return make_error(Errc::invalid_input, "abup/manifest.json: " + path + ": " + what);
}

template <typename T>
Result<T> get(const json& o, const std::string& path, const char* key, bool required = true) {
  auto it = o.find(key);
  std::string p = path.empty() ? key : path + "." + key;
  if (it == o.end() || it->is_null()) {
    if (required) return bad(p, "missing");
    return T{};
  }
  if constexpr (std::is_same_v<T, std::string>) {
    if (!it->is_string()) return bad(p, "expected a string");
    return it->get<std::string>();
  } else if constexpr (std::is_same_v<T, bool>) {
    if (!it->is_boolean()) return bad(p, "expected true or false");
    return it->get<bool>();
  } else {
    if (!it->is_number_integer() ||
        (it->is_number_integer() && !it->is_number_unsigned() && it->get<std::int64_t>() < 0))
      return bad(p, "expected a non-negative integer");
    return it->get<T>();
  }
}

template <std::size_t N>
Result<std::array<std::uint8_t, N>> get_digest(const json& o, const std::string& path,
                                               const char* key) {
  ABUP_TRY(auto text, get<std::string>(o, path, key));
  auto raw = from_hex(text);
  if (!raw || raw->size() != N)
    return bad(path + "." + key, "expected " + std::to_string(2 * N) + " hex digits");
  std::array<std::uint8_t, N> out;
  std::copy(raw->begin(), raw->end(), out.begin());
  return out;
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

Result<Manifest> parse_manifest(std::string_view text) {
  json doc = json::parse(text.begin(), text.end(), nullptr, false);
  if (doc.is_discarded())
    return make_error(Errc::invalid_input, "abup/manifest.json: not valid JSON");
  if (!doc.is_object()) return bad("(top)", "expected an object");
  Manifest m;
  ABUP_TRY(auto schema, get<std::uint64_t>(doc, "", "schemaVersion"));
  if (schema != 1 && schema != kSchemaBootFiles)
    return bad("schemaVersion", "unsupported schema " + std::to_string(schema) +
                                    " (this abup reads 1 and 2; a newer abup is needed)");
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
    auto frames = o.find("frames");
    if (frames == o.end() || !frames->is_array() || frames->empty())
      return bad(p + ".frames", "expected a non-empty array");
    std::uint64_t coff = 0, uoff = 0;
    img.frames.reserve(frames->size());
    for (std::size_t j = 0; j < frames->size(); ++j) {
      const auto& f = (*frames)[j];
      std::string fp = p + ".frames[" + std::to_string(j) + "]";
      if (!f.is_object()) return bad(fp, "expected an object");
      Frame fr;
      ABUP_TRY(fr.offset, get<std::uint64_t>(f, fp, "offset"));
      ABUP_TRY(fr.size, get<std::uint64_t>(f, fp, "size"));
      ABUP_TRY(fr.uncompressed_size, get<std::uint64_t>(f, fp, "uncompressedSize"));
      ABUP_TRY(fr.sha256, get_digest<32>(f, fp, "sha256"));
      ABUP_TRY(fr.chunk_sha256, get_digest<32>(f, fp, "chunkSha256"));
      ABUP_TRY(fr.chunk_xxh3, get_digest<16>(f, fp, "chunkXxh3"));
      if (fr.offset != coff) return bad(fp + ".offset", "frames must be contiguous");
      if (fr.size == 0 || fr.uncompressed_size == 0 || fr.uncompressed_size > kMaxFrameUncompressed)
        return bad(fp, "empty or oversized frame");
      if (fr.size > img.compressed_size - coff || img.compressed_size < coff)
        return bad(fp, "runs past compressedSize");
      fr.uncompressed_offset = uoff;
      coff += fr.size;
      uoff += fr.uncompressed_size;
      if (uoff > img.uncompressed_size) return bad(fp, "runs past uncompressedSize");
      img.frames.push_back(fr);
    }
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
  doc["schemaVersion"] =
      m.boot_files.empty() ? m.schema_version : std::max(m.schema_version, kSchemaBootFiles);
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
    j["frames"] = json::array();
    for (const auto& f : img.frames)
      j["frames"].push_back({{"offset", f.offset},
                             {"size", f.size},
                             {"uncompressedSize", f.uncompressed_size},
                             {"sha256", to_hex(f.sha256)},
                             {"chunkSha256", to_hex(f.chunk_sha256)},
                             {"chunkXxh3", to_hex(f.chunk_xxh3)}});
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
  return doc.dump(2) + "\n";
}

Status check_policy(const Manifest& m, const PolicyInput& in) {
  auto fail = [](const std::string& what) {
    return make_error(Errc::policy, "image policy: " + what);
  };
  if (!in.arch.empty() && m.arch != in.arch)
    return fail("image is for " + m.arch + ", this host is " + in.arch);
  if (!m.variant.empty() && !in.variant.empty() && m.variant != in.variant)
    return fail("image is for variant '" + m.variant + "', this host is '" + in.variant + "'");
  if (in.now && m.issued_at > in.now + 300)
    return fail("manifest issued in the future (" + format_utc_time(m.issued_at) +
                "); check the host clock");
  if (in.now && m.expires_at && in.now >= m.expires_at)
    return fail("manifest expired at " + format_utc_time(m.expires_at) + " (now " +
                format_utc_time(in.now) + ")");
  if (in.running) {
    ABUP_TRY(auto target, Version::parse(m.version));
    if (target < *in.running && !m.allow_downgrade && !in.allow_downgrade)
      return fail("downgrade from " + in.running->text + " to " + m.version +
                  " refused (the signed manifest does not allow it; an operator may pass "
                  "--allow-downgrade)");
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
