// COSI 1.x (Composable OS Image): metadata.json and the archive around it
// (docs/reference/cosi.md). The reader validates structure; trust comes from the abup
// manifest's signature, which pins the SHA-384 of metadata.json.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "abup/result.hpp"
#include "update-protocol/cosi/tar.hpp"
#include "update-protocol/source.hpp"

namespace abup::protocol {

struct ImageFile {
  std::string path;  // "images/…"
  std::uint64_t compressed_size = 0;
  std::uint64_t uncompressed_size = 0;
  std::string sha384;  // hex, of the compressed bytes
};

struct VerityImage {
  ImageFile image;
  std::string roothash;
};

struct FilesystemImage {
  ImageFile image;
  std::string mount_point, fs_type, fs_uuid, part_type;
  std::optional<VerityImage> verity;
};

struct GptRegion {
  ImageFile image;
  std::string type;  // "primary-gpt" | "partition"
  std::uint32_t number = 0;
};

struct CosiMetadata {
  std::string version;  // "1.2"
  std::string os_arch;  // normalized: x86_64 | arm64
  std::string os_release;
  std::string id;
  std::vector<FilesystemImage> images;
  std::uint64_t disk_size = 0;
  std::uint32_t lba_size = 0;
  std::vector<GptRegion> gpt_regions;  // empty for COSI < 1.1 without a disk section
  int max_window_log = 0;              // 0 = not given
  std::string bootloader;

  // The filesystem image mounted at mount_point, or nullptr.
  [[nodiscard]] const FilesystemImage* find_mount(std::string_view mount_point) const;
};

// Parses and validates metadata.json. Unknown fields are ignored; each violation is reported
// with its JSON path ("metadata.json: images[0].image.sha384: expected 96 hex digits").
[[nodiscard]] Result<CosiMetadata> parse_cosi_metadata(std::string_view json);
// "x86_64", "amd64", "x64" → "x86_64"; "arm64", "aarch64" → "arm64"; else empty.
[[nodiscard]] std::string normalize_arch(std::string_view arch);
// Value of KEY in os-release text (quotes removed), or empty.
[[nodiscard]] std::string os_release_value(std::string_view os_release, std::string_view key);

inline constexpr std::string_view kManifestEntry = "abup/manifest.json";
inline constexpr std::string_view kSignatureEntry = "abup/manifest.sig";
inline constexpr std::size_t kMaxMetadataSize = 4 << 20;
inline constexpr std::size_t kMaxManifestSize = 16 << 20;

struct CosiArchive {
  TarIndex tar;
  std::string metadata_json;  // exact bytes, for the signed SHA-384
  CosiMetadata metadata;
  std::optional<TarEntry> manifest;   // abup/manifest.json, if present
  std::optional<TarEntry> signature;  // abup/manifest.sig, if present

  // The tar entry holding an image file; nullptr when absent.
  [[nodiscard]] const TarEntry* entry(const ImageFile& f) const { return tar.find(f.path); }
};

// Reads the tar index and metadata.json and checks that every image named exists with its
// compressed size. Does not read image data.
[[nodiscard]] Result<CosiArchive> read_cosi(Source& source);
// Reads an entry's bytes (bounded by `limit`).
[[nodiscard]] Result<std::string> read_entry(Source& source, const TarEntry& entry,
                                             std::size_t limit);

}  // namespace abup::protocol
