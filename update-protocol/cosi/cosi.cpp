#include "update-protocol/cosi/cosi.hpp"

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>
#include <set>

namespace abup::protocol {
namespace {

using json = nlohmann::json;

struct Ctx {
  std::string path;
  Error fail(const std::string& what) const {
    return make_error(Errc::invalid_input, "metadata.json: " + path + ": " + what);
  }
  Ctx operator/(const std::string& key) const { return {path.empty() ? key : path + "." + key}; }
  Ctx operator[](std::size_t i) const { return {path + "[" + std::to_string(i) + "]"}; }
};

Result<const json*> member(const json& obj, const Ctx& ctx, const char* key, bool required = true) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    if (required) return (ctx / key).fail("missing");
    return static_cast<const json*>(nullptr);
  }
  return &*it;
}

Result<std::string> get_string(const json& obj, const Ctx& ctx, const char* key,
                               bool required = true) {
  ABUP_TRY(auto v, member(obj, ctx, key, required));
  if (!v) return std::string();
  if (!v->is_string()) return (ctx / key).fail("expected a string");
  return v->get<std::string>();
}

Result<std::uint64_t> get_u64(const json& obj, const Ctx& ctx, const char* key) {
  ABUP_TRY(auto v, member(obj, ctx, key));
  if (!v->is_number_unsigned() && !(v->is_number_integer() && v->get<std::int64_t>() >= 0))
    return (ctx / key).fail("expected a non-negative integer");
  return v->get<std::uint64_t>();
}

bool is_hex(std::string_view s, std::size_t len) {
  return s.size() == len && std::all_of(s.begin(), s.end(), [](char c) {
           return std::isxdigit(static_cast<unsigned char>(c));
         });
}

bool is_guid(std::string_view s) {
  if (s.size() != 36) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !std::isxdigit(static_cast<unsigned char>(s[i]))) return false;
  }
  return true;
}

Result<ImageFile> parse_image_file(const json& obj, const Ctx& ctx) {
  if (!obj.is_object()) return ctx.fail("expected an object");
  ImageFile f;
  ABUP_TRY(f.path, get_string(obj, ctx, "path"));
  if (f.path.rfind("images/", 0) != 0 || f.path.size() <= 7)
    return (ctx / "path").fail("'" + f.path + "' must start with images/");
  if (f.path.find("..") != std::string::npos)
    return (ctx / "path").fail("'" + f.path + "' must not contain '..'");
  ABUP_TRY(f.compressed_size, get_u64(obj, ctx, "compressedSize"));
  ABUP_TRY(f.uncompressed_size, get_u64(obj, ctx, "uncompressedSize"));
  ABUP_TRY(f.sha384, get_string(obj, ctx, "sha384"));
  if (!is_hex(f.sha384, 96)) return (ctx / "sha384").fail("expected 96 hex digits");
  std::transform(f.sha384.begin(), f.sha384.end(), f.sha384.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return f;
}

}  // namespace

std::string normalize_arch(std::string_view arch) {
  if (arch == "x86_64" || arch == "amd64" || arch == "x64") return "x86_64";
  if (arch == "arm64" || arch == "aarch64") return "arm64";
  return {};
}

std::string os_release_value(std::string_view text, std::string_view key) {
  while (!text.empty()) {
    auto nl = text.find('\n');
    auto line = text.substr(0, nl);
    text = nl == text.npos ? std::string_view() : text.substr(nl + 1);
    if (line.size() > key.size() && line.substr(0, key.size()) == key && line[key.size()] == '=') {
      auto v = line.substr(key.size() + 1);
      if (v.size() >= 2 && (v.front() == '"' || v.front() == '\'') && v.back() == v.front())
        v = v.substr(1, v.size() - 2);
      return std::string(v);
    }
  }
  return {};
}

const FilesystemImage* CosiMetadata::find_mount(std::string_view mount_point) const {
  for (const auto& i : images)
    if (i.mount_point == mount_point) return &i;
  return nullptr;
}

Result<CosiMetadata> parse_cosi_metadata(std::string_view text) {
  json doc = json::parse(text.begin(), text.end(), nullptr, false);
  if (doc.is_discarded()) return make_error(Errc::invalid_input, "metadata.json: not valid JSON");
  if (!doc.is_object()) return make_error(Errc::invalid_input, "metadata.json: expected an object");
  Ctx root;
  CosiMetadata m;
  ABUP_TRY(m.version, get_string(doc, root, "version"));
  auto dot = m.version.find('.');
  if (dot == std::string::npos || m.version.substr(0, dot) != "1" ||
      !std::all_of(m.version.begin() + static_cast<long>(dot) + 1, m.version.end(),
                   [](char c) { return c >= '0' && c <= '9'; }) ||
      dot + 1 == m.version.size())
    return (root / "version").fail("unsupported COSI version '" + m.version + "' (expected 1.x)");
  ABUP_TRY(auto arch, get_string(doc, root, "osArch"));
  m.os_arch = normalize_arch(arch);
  if (m.os_arch.empty()) return (root / "osArch").fail("unknown architecture '" + arch + "'");
  ABUP_TRY(m.os_release, get_string(doc, root, "osRelease"));
  ABUP_TRY(m.id, get_string(doc, root, "id", false));

  ABUP_TRY(auto images, member(doc, root, "images"));
  if (!images->is_array() || images->empty())
    return (root / "images").fail("expected a non-empty array");
  std::set<std::string> paths, mounts;
  for (std::size_t i = 0; i < images->size(); ++i) {
    const auto& o = (*images)[i];
    auto ctx = (root / "images")[i];
    if (!o.is_object()) return ctx.fail("expected an object");
    FilesystemImage fi;
    ABUP_TRY(auto file, member(o, ctx, "image"));
    ABUP_TRY(fi.image, parse_image_file(*file, ctx / "image"));
    ABUP_TRY(fi.mount_point, get_string(o, ctx, "mountPoint"));
    if (fi.mount_point.empty() || fi.mount_point[0] != '/')
      return (ctx / "mountPoint").fail("'" + fi.mount_point + "' is not an absolute path");
    ABUP_TRY(fi.fs_type, get_string(o, ctx, "fsType"));
    ABUP_TRY(fi.fs_uuid, get_string(o, ctx, "fsUuid", false));
    ABUP_TRY(fi.part_type, get_string(o, ctx, "partType"));
    if (!is_guid(fi.part_type))
      return (ctx / "partType").fail("'" + fi.part_type + "' is not a GUID");
    ABUP_TRY(auto verity, member(o, ctx, "verity", false));
    if (verity) {
      auto vctx = ctx / "verity";
      if (!verity->is_object()) return vctx.fail("expected an object or null");
      VerityImage v;
      ABUP_TRY(auto vfile, member(*verity, vctx, "image"));
      ABUP_TRY(v.image, parse_image_file(*vfile, vctx / "image"));
      ABUP_TRY(v.roothash, get_string(*verity, vctx, "roothash"));
      if (v.roothash.empty() || v.roothash.size() % 2 || !is_hex(v.roothash, v.roothash.size()))
        return (vctx / "roothash").fail("expected hex digits");
      if (!paths.insert(v.image.path).second)
        return (vctx / "image" / "path").fail("'" + v.image.path + "' is used twice");
      fi.verity = std::move(v);
    }
    if (!paths.insert(fi.image.path).second)
      return (ctx / "image" / "path").fail("'" + fi.image.path + "' is used twice");
    if (!mounts.insert(fi.mount_point).second)
      return (ctx / "mountPoint").fail("'" + fi.mount_point + "' is used twice");
    m.images.push_back(std::move(fi));
  }

  ABUP_TRY(auto disk, member(doc, root, "disk", false));
  if (disk) {
    auto dctx = root / "disk";
    if (!disk->is_object()) return dctx.fail("expected an object");
    ABUP_TRY(m.disk_size, get_u64(*disk, dctx, "size"));
    ABUP_TRY(auto type, get_string(*disk, dctx, "type"));
    if (type != "gpt")
      return (dctx / "type").fail("'" + type + "' is not supported (expected gpt)");
    ABUP_TRY(auto lba, get_u64(*disk, dctx, "lbaSize"));
    if (lba != 512 && lba != 4096) return (dctx / "lbaSize").fail("expected 512 or 4096");
    m.lba_size = static_cast<std::uint32_t>(lba);
    ABUP_TRY(auto regions, member(*disk, dctx, "gptRegions"));
    if (!regions->is_array() || regions->empty())
      return (dctx / "gptRegions").fail("expected a non-empty array");
    for (std::size_t i = 0; i < regions->size(); ++i) {
      auto rctx = (dctx / "gptRegions")[i];
      const auto& r = (*regions)[i];
      if (!r.is_object()) return rctx.fail("expected an object");
      GptRegion g;
      ABUP_TRY(auto file, member(r, rctx, "image"));
      ABUP_TRY(g.image, parse_image_file(*file, rctx / "image"));
      ABUP_TRY(g.type, get_string(r, rctx, "type"));
      if (g.type != "primary-gpt" && g.type != "partition")
        return (rctx / "type").fail("unknown region type '" + g.type + "'");
      if (i == 0 && g.type != "primary-gpt")
        return (rctx / "type").fail("the first region must be the primary GPT");
      if (i > 0 && g.type == "primary-gpt") return (rctx / "type").fail("a second primary GPT");
      if (g.type == "partition") {
        ABUP_TRY(auto n, get_u64(r, rctx, "number"));
        if (n == 0 || n > 128) return (rctx / "number").fail("expected 1..128");
        g.number = static_cast<std::uint32_t>(n);
      }
      m.gpt_regions.push_back(std::move(g));
    }
  }

  ABUP_TRY(auto comp, member(doc, root, "compression", false));
  if (comp) {
    if (!comp->is_object()) return (root / "compression").fail("expected an object");
    ABUP_TRY(auto wl, member(*comp, root / "compression", "maxWindowLog", false));
    if (wl) {
      if (!wl->is_number_integer() || wl->get<std::int64_t>() < 10 || wl->get<std::int64_t>() > 31)
        return (root / "compression" / "maxWindowLog").fail("expected an integer 10..31");
      m.max_window_log = wl->get<int>();
    }
  }
  ABUP_TRY(auto boot, member(doc, root, "bootloader", false));
  if (boot && boot->is_object()) {
    ABUP_TRY(m.bootloader, get_string(*boot, root / "bootloader", "type", false));
  }
  return m;
}

Result<std::string> read_entry(Source& source, const TarEntry& entry, std::size_t limit) {
  if (entry.size > limit)
    return make_error(Errc::invalid_input, source.describe() + ": '" + entry.name + "' is " +
                                               std::to_string(entry.size) +
                                               " bytes, more than the limit of " +
                                               std::to_string(limit));
  std::string out(entry.size, '\0');
  ABUP_CHECK(
      source.read_at(entry.data_offset, {reinterpret_cast<std::uint8_t*>(out.data()), out.size()}));
  return out;
}

Result<CosiArchive> read_cosi(Source& source) {
  CosiArchive a;
  ABUP_TRY(a.tar, read_tar_index(source));
  const auto& e = a.tar.entries;
  auto bad = [&](const std::string& what) {
    return make_error(Errc::invalid_input, source.describe() + ": not a COSI image: " + what);
  };
  if (e.empty() || e[0].name != "cosi-marker") return bad("the first entry is not cosi-marker");
  if (e[0].size != 0) return bad("cosi-marker is not empty");
  if (e.size() < 2 || e[1].name != "metadata.json")
    return bad("the second entry is not metadata.json");
  ABUP_TRY(a.metadata_json, read_entry(source, e[1], kMaxMetadataSize));
  auto md = parse_cosi_metadata(a.metadata_json);
  if (!md) return std::move(md).error().with_context(source.describe());
  a.metadata = std::move(*md);
  auto check = [&](const ImageFile& f) -> Status {
    auto* t = a.tar.find(f.path);
    if (!t) return bad("metadata.json names '" + f.path + "', which the archive does not hold");
    if (t->type != '0') return bad("'" + f.path + "' is not a regular file");
    if (t->size != f.compressed_size)
      return bad("'" + f.path + "' holds " + std::to_string(t->size) +
                 " bytes but metadata.json says compressedSize " +
                 std::to_string(f.compressed_size));
    return {};
  };
  for (const auto& img : a.metadata.images) {
    ABUP_CHECK(check(img.image));
    if (img.verity) ABUP_CHECK(check(img.verity->image));
  }
  for (const auto& r : a.metadata.gpt_regions) ABUP_CHECK(check(r.image));
  if (auto* m = a.tar.find(kManifestEntry)) a.manifest = *m;
  if (auto* s = a.tar.find(kSignatureEntry)) a.signature = *s;
  return a;
}

}  // namespace abup::protocol
