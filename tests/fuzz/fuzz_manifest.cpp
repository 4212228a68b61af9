// libFuzzer: abup/manifest.json is parsed before its signature is known to be good; parsing must
// never crash or throw. Properties: parse_manifest_release reads the release of whatever parses
// whole; whatever parses survives serialize → parse unchanged (the
// image builder signs serialize_manifest() output, the agent trusts parse_manifest() of it), in
// both frame-table schemas (1: fixed frames as objects; 2: content-defined frames as arrays with
// signed uncompressed offsets, and the image's chunker).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <tuple>

#include "update-protocol/manifest/manifest.hpp"

namespace {

using abup::protocol::Frame;
using abup::protocol::Manifest;
using abup::protocol::ManifestImage;

auto fields(const Frame& f) {
  return std::tie(f.offset, f.size, f.uncompressed_offset, f.uncompressed_size, f.sha256,
                  f.chunk_sha256, f.chunk_xxh3);
}
bool same(const Frame& a, const Frame& b) {
  return fields(a) == fields(b);
}

bool same(const ManifestImage& a, const ManifestImage& b) {
  return std::tie(a.path, a.mount_point, a.part_type, a.compressed_size, a.uncompressed_size,
                  a.chunker) == std::tie(b.path, b.mount_point, b.part_type, b.compressed_size,
                                         b.uncompressed_size, b.chunker) &&
         std::equal(a.frames.begin(), a.frames.end(), b.frames.begin(), b.frames.end(),
                    [](const Frame& x, const Frame& y) { return same(x, y); });
}

bool same_boot(const Manifest& a, const Manifest& b) {
  auto f = [](const abup::protocol::BootFile& x) {
    return std::tie(x.name, x.path, x.size, x.compressed_size, x.sha256);
  };
  return std::equal(a.boot_files.begin(), a.boot_files.end(), b.boot_files.begin(),
                    b.boot_files.end(), [&](const auto& x, const auto& y) { return f(x) == f(y); });
}

bool same(const Manifest& a, const Manifest& b) {
  auto top = [](const Manifest& m) {
    return std::tie(m.schema_version, m.version, m.min_version, m.variant, m.arch, m.issued_at,
                    m.expires_at, m.allow_downgrade, m.metadata_sha384);
  };
  return top(a) == top(b) && same_boot(a, b) &&
         std::equal(a.images.begin(), a.images.end(), b.images.begin(), b.images.end(),
                    [](const ManifestImage& x, const ManifestImage& y) { return same(x, y); });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto release = abup::protocol::parse_manifest_release(text);
  auto first = abup::protocol::parse_manifest(text);
  if (!first) return 0;
  // What parses whole names the same release when only its header is read.
  if (!release || release->version != first->version || release->issued_at != first->issued_at) {
    std::fprintf(stderr, "PROPERTY FAILED: parse_manifest_release disagrees with parse_manifest\n");
    std::abort();
  }
  auto serialized = abup::protocol::serialize_manifest(*first);
  auto second = abup::protocol::parse_manifest(serialized);
  if (!second) {
    std::fprintf(stderr,
                 "PROPERTY FAILED: serialized manifest does not parse: %s\n--- serialized:\n%s\n",
                 second.error().message.c_str(), serialized.c_str());
    std::abort();
  }
  if (!same(*first, *second)) {
    std::fprintf(stderr,
                 "PROPERTY FAILED: manifest changed in serialize/parse\n--- serialized:\n%s\n",
                 serialized.c_str());
    std::abort();
  }
  return 0;
}
