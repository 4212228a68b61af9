// Hand-made manifests for the manifest and frame-table tests: a content-defined (schema 2) image
// whose frames tile its sizes, each digest a distinct fill byte so a test can tell frames apart.
// Header-only: the test support library does not link the update-protocol code.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "update-protocol/manifest/manifest.hpp"

namespace abup::test {

inline protocol::ManifestImage cdc_image(const std::string& path, const std::string& mount,
                                         std::initializer_list<std::uint64_t> sizes) {
  protocol::ManifestImage img;
  img.path = path;
  img.mount_point = mount;
  img.chunker = "cdc/16K/64K/256K";
  int i = 0;
  for (const auto size : sizes) {
    protocol::Frame f;
    f.offset = img.compressed_size;
    f.size = 1000 + static_cast<std::uint64_t>(i);
    f.uncompressed_offset = img.uncompressed_size;
    f.uncompressed_size = size;
    f.sha256.fill(static_cast<std::uint8_t>(i));
    f.chunk_sha256.fill(static_cast<std::uint8_t>(i + 10));
    f.chunk_xxh3.fill(static_cast<std::uint8_t>(i + 20));
    img.compressed_size += f.size;
    img.uncompressed_size += f.uncompressed_size;
    img.frames.push_back(f);
    ++i;
  }
  return img;
}

// A signed-manifest header as abup-image writes one for 202607.02.0 on x86_64 (schema 2), with
// `images`.
inline protocol::Manifest cdc_manifest(std::vector<protocol::ManifestImage> images) {
  protocol::Manifest m;
  m.schema_version = protocol::kManifestSchemaCdc;
  m.version = "202607.02.0";
  m.arch = "x86_64";
  m.issued_at = 1'790'000'000;
  m.metadata_sha384 = std::string(96, 'c');
  m.images = std::move(images);
  return m;
}

}  // namespace abup::test
