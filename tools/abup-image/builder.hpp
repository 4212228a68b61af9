// `abup-image build`: raw partition images → a COSI 1.2 file with framed zstd images and an
// unsigned abup manifest (signed afterwards by `sign` or `digest` + `attach-signature`).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "abup/chunker.hpp"
#include "abup/result.hpp"
#include "update-protocol/manifest/manifest.hpp"

namespace abup::image {

struct BuildInput {
  std::string mount_point;  // "/usr"
  std::string path;         // raw filesystem image
  std::string part_type;    // GPT type GUID; default from the mount point
  std::string verity_path;  // optional dm-verity hash image
  std::string roothash;     // required with verity_path
};

struct BootFileInput {
  std::string name;  // logical name (protocol::check_boot_file_name)
  std::string path;  // the file on the build host
};

struct BuildOptions {
  std::vector<BuildInput> images;
  std::vector<BootFileInput> boot_files;
  std::string os_release;  // verbatim text
  std::string version;     // default: IMAGE_VERSION / VERSION_ID of os_release
  std::string arch = "x86_64";
  std::string variant;  // default: VARIANT_ID of os_release
  std::string min_version;
  bool allow_downgrade = false;  // signed: may replace a newer running version (needs an expiry)
  std::int64_t issued_at = 0;    // 0 = now
  std::int64_t expires_at = 0;
  // Content-defined frames (schema-2 manifest); nullopt: fixed frames of frame_size (schema 1).
  std::optional<ChunkerParams> chunker = ChunkerParams{};
  std::uint64_t frame_size = 4 << 20;
  int level = 3;
  int threads = 0;  // 0 = all cores
  std::string out;
  // A boot file whose embedded /usr root hash differs from --roothash is refused (nodes would
  // refuse the image); false only to build such an image for testing that refusal.
  bool check_usrhash = true;
};

// Reads and compresses one boot file (one zstd frame; boot files are small) into its manifest
// entry and the bytes of its tar entry.
struct PackedBootFile {
  protocol::BootFile entry;
  std::vector<std::uint8_t> packed;
};
// What a boot file's embedded /usr root hash must be (partitions/boot/kernel_hash.hpp): the
// image's /usr verity root hash (empty: it has none) on `arch`.
struct UsrBinding {
  std::string arch, roothash;
};
[[nodiscard]] Result<PackedBootFile> pack_boot_file(const BootFileInput& input, int level,
                                                    const std::optional<UsrBinding>& binding);

[[nodiscard]] Result<protocol::Manifest> build_cosi(const BuildOptions& options);

// Probes a filesystem image with libblkid: {TYPE, UUID}; empty strings when unknown.
struct FsProbe {
  std::string type, uuid;
};
[[nodiscard]] FsProbe probe_filesystem(const std::string& path);

using protocol::kVeritySuffix;

}  // namespace abup::image
