#include "tools/abup-serve/catalog.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <vector>

#include "abup/bytes.hpp"
#include "abup/digest.hpp"
#include "abup/fs.hpp"
#include "abup/hex.hpp"
#include "abup/version.hpp"
#include "update-protocol/cosi/cosi.hpp"
#include "update-protocol/manifest/manifest.hpp"
#include "update-protocol/source.hpp"

namespace abup::serve {
namespace {

using protocol::omaha::xml_escape;

std::string attr(const char* name, const std::string& value) {
  return std::string(" ") + name + "=\"" + xml_escape(value) + "\"";
}

Result<std::string> file_sha256_base64(const std::filesystem::path& path) {
  ABUP_TRY(Fd fd, open_file(path, O_RDONLY));
  Sha2 h(Sha2::Kind::sha256);
  std::vector<std::uint8_t> buf(1 << 20);
  for (;;) {
    ssize_t n = ::read(fd.get(), buf.data(), buf.size());
    if (n < 0) return make_error(Errc::io, path.string() + ": read: " + errno_text(errno));
    if (n == 0) break;
    h.update(std::span<const std::uint8_t>(buf.data(), static_cast<std::size_t>(n)));
  }
  Sha256 d;
  h.finish(d);
  return base64_encode(d);
}

}  // namespace

Catalog::Catalog(std::filesystem::path dir, std::string base_url) : dir_(std::move(dir)) {
  set_base_url(std::move(base_url));
}

void Catalog::set_base_url(std::string url) {
  base_url_ = std::move(url);
  if (base_url_.empty() || base_url_.back() != '/') base_url_ += '/';
}

Result<std::map<std::string, std::string>> Catalog::tracks() {
  const auto path = dir_ / "tracks.json";
  auto text = read_file(path);
  if (!text)
    return make_error(Errc::failed, text.error().message +
                                        " (abup-serve needs DIR/tracks.json, "
                                        "e.g. {\"stable\": \"202607.2.0\"})");
  auto j = nlohmann::json::parse(*text, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return make_error(Errc::failed, path.string() +
                                        ": expected a JSON object of track names to versions, e.g. "
                                        "{\"stable\": \"202607.2.0\"}");
  std::map<std::string, std::string> out;
  for (const auto& [track, version] : j.items()) {
    if (!version.is_string())
      return make_error(Errc::failed,
                        path.string() + ": track '" + track + "': expected a version string");
    out[track] = version.get<std::string>();
  }
  return out;
}

Result<Image> Catalog::describe(const std::filesystem::path& path) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  const auto mtime = std::filesystem::last_write_time(path, ec);
  if (ec) return make_error(Errc::io, path.string() + ": " + ec.message());
  if (auto it = cache_.find(path);
      it != cache_.end() && it->second.size == size && it->second.mtime == mtime)
    return it->second.image;
  auto context = [&](Error e) { return std::move(e).with_context(path.string()); };
  auto source = protocol::open_file_source(path.string());
  if (!source) return context(std::move(source).error());
  auto archive = protocol::read_cosi(**source);
  if (!archive) return context(std::move(archive).error());
  if (!archive->manifest)
    return make_error(Errc::invalid_input,
                      path.string() + ": no abup/manifest.json (sign it with abup-image sign)");
  auto manifest_text =
      protocol::read_entry(**source, *archive->manifest, protocol::kMaxManifestSize);
  if (!manifest_text) return context(std::move(manifest_text).error());
  auto manifest = protocol::parse_manifest(*manifest_text);
  if (!manifest) return context(std::move(manifest).error());
  Image image;
  image.path = path;
  image.name = std::filesystem::relative(path, dir_).generic_string();
  image.version = manifest->version;
  image.size = size;
  image.metadata_sha384 = base64_encode(sha384(as_bytes(archive->metadata_json)));
  ABUP_TRY(image.file_sha256, file_sha256_base64(path));
  cache_[path] = Cached{size, mtime, image};
  return image;
}

Result<Image> Catalog::offer(const std::string& track) {
  std::lock_guard lock(mutex_);
  ABUP_TRY(auto all, tracks());
  auto it = all.find(track);
  if (it == all.end())
    return make_error(Errc::not_found,
                      "no track '" + track + "' in " + (dir_ / "tracks.json").string());
  ABUP_TRY(Version wanted, Version::parse(it->second));
  std::error_code ec;
  std::vector<std::string> problems;
  for (auto entry = std::filesystem::recursive_directory_iterator(dir_, ec);
       !ec && entry != std::filesystem::recursive_directory_iterator(); entry.increment(ec)) {
    if (!entry->is_regular_file() || entry->path().extension() != ".cosi") continue;
    auto image = describe(entry->path());
    if (!image) {
      problems.push_back(image.error().message);
      continue;
    }
    auto v = Version::parse(image->version);
    if (v && *v == wanted) return std::move(*image);
  }
  if (ec) return make_error(Errc::io, dir_.string() + ": " + ec.message());
  std::string detail;
  for (const auto& p : problems) detail += "; skipped " + p;
  return make_error(Errc::failed, "track '" + track + "' wants version " + it->second +
                                      ", but no signed .cosi image in " + dir_.string() +
                                      " has it" + detail);
}

std::string Catalog::reply(const protocol::omaha::Request& request) {
  const auto& who = request.who;
  std::string app_status = "ok";
  std::string check;
  if (request.update_check) {
    auto image = offer(who.track);
    auto running = Version::parse(who.version);
    auto offered = image ? Version::parse(image->version) : Result<Version>(image.error());
    if (!image && image.error().code == Errc::not_found) {
      app_status = "error-unknownTrack";
    } else if (!offered) {
      std::fprintf(stderr, "abup-serve: %s\n", offered.error().message.c_str());
      check = "    <updatecheck status=\"error-internal\"></updatecheck>\n";
    } else if (running && *running >= *offered) {
      check = "    <updatecheck status=\"noupdate\"></updatecheck>\n";
    } else {
      check = "    <updatecheck status=\"ok\">\n      <urls><url" + attr("codebase", base_url_) +
              "></url></urls>\n      <manifest" + attr("version", image->version) +
              ">\n        <packages>\n          <package" +
              attr("name", percent_encode(image->name, "/")) +
              attr("hash", image->metadata_sha384) + attr("size", std::to_string(image->size)) +
              attr("required", "true") +
              "></package>\n        </packages>\n        <actions>\n          <action" +
              attr("event", "postinstall") + attr("sha256", image->file_sha256) +
              "></action>\n        </actions>\n      </manifest>\n    </updatecheck>\n";
    }
  }
  std::string x =
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<response protocol=\"3.0\" "
      "server=\"abup-serve\">\n  <daystart elapsed_seconds=\"0\"></daystart>\n";
  x += "  <app" + attr("appid", who.app_id) + attr("status", app_status) + ">\n";
  for (std::size_t i = 0; i < request.events.size(); ++i)
    x += "    <event status=\"ok\"></event>\n";
  if (request.ping) x += "    <ping status=\"ok\"></ping>\n";
  if (app_status == "ok") x += check;
  x += "  </app>\n</response>\n";
  return x;
}

}  // namespace abup::serve
