// The abup manifest (docs/architecture.md §4): tar entry abup/manifest.json, signed as exact bytes.
// It pins metadata.json (SHA-384), the release version and policy, and per image the frame table:
// each independent zstd frame's compressed offset/size and SHA-256 (what makes downloaded bytes
// authentic), its uncompressed size, and two digests of the uncompressed chunk: SHA-256 (used
// before trusting bytes abup did not just decode: resume and reuse) and XXH3-128 (the cheap
// read-back check of bytes decoded from authenticated frames). docs/design.md says why.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "abup/digest.hpp"
#include "abup/result.hpp"
#include "abup/version.hpp"

namespace abup::protocol {

struct Frame {
  std::uint64_t offset = 0;  // compressed, from the start of the image's tar entry data
  std::uint64_t size = 0;    // compressed bytes
  std::uint64_t uncompressed_offset = 0;  // v1: derived (sum of the previous sizes); v2: signed
  std::uint64_t uncompressed_size = 0;
  Sha256 sha256{};        // of the compressed frame
  Sha256 chunk_sha256{};  // of the uncompressed chunk
  Xxh128 chunk_xxh3{};    // of the uncompressed chunk
};

struct ManifestImage {
  std::string path;  // tar entry, as in metadata.json
  std::string mount_point;
  std::string part_type;
  std::uint64_t compressed_size = 0;
  std::uint64_t uncompressed_size = 0;
  std::vector<Frame> frames;
  // Schema 2: how the frames were cut ("cdc/16K/64K/256K", abup/chunker.hpp), so the agent can
  // cut the booted slot the same way. Empty in schema 1 (fixed-size frames).
  std::string chunker;
};

// Schema 1: frames are objects with a compressed offset, their uncompressed offsets derived; no
// boot files. Schema 2: an image with a `chunker` has content-defined frames, each a compact array
// carrying its uncompressed offset (see kFrameFields); one without keeps schema 1's frames; the
// manifest may list boot files. Boot files need schema 2 so that an agent that predates them (and
// would install the new /usr on the old kernel) refuses the image instead.
inline constexpr int kManifestSchemaFixed = 1;
inline constexpr int kManifestSchemaCdc = 2;
inline constexpr int kSchemaBootFiles = 2;

// A file the release boots with (kernel, UKI, initramfs, UKI addon), stored as its own zstd tar
// entry after the images. `name` is a logical name ("vmlinuz", "initrd", "uki", "addon-a",
// "addon-b"); where it goes on the ESP is the boot backend's business (partitions/boot/placement).
struct BootFile {
  std::string name;
  std::string path;                   // tar entry: "boot/<name>.zst"
  std::uint64_t size = 0;             // uncompressed bytes
  std::uint64_t compressed_size = 0;  // bytes of the tar entry
  Sha256 sha256{};                    // of the uncompressed file
};

inline constexpr std::uint64_t kMaxBootFileSize = std::uint64_t{512} << 20;

struct Manifest {
  int schema_version = kManifestSchemaFixed;
  std::string version;
  std::string min_version;       // oldest running version this image may replace; empty = any
  std::string variant;           // os-release VARIANT_ID it is for; empty = any
  std::string arch;              // x86_64 | arm64
  std::int64_t issued_at = 0;    // unix seconds
  std::int64_t expires_at = 0;   // 0 = never
  bool allow_downgrade = false;  // signed policy: may replace a newer running version
  std::string metadata_sha384;   // hex
  std::vector<ManifestImage> images;
  std::vector<BootFile> boot_files;

  [[nodiscard]] const ManifestImage* find_mount(std::string_view mount_point) const;
  [[nodiscard]] const BootFile* find_boot_file(std::string_view name) const;
};

// Mount point suffix naming an image's dm-verity hash image in the manifest ("/usr#verity").
inline constexpr std::string_view kVeritySuffix = "#verity";

inline constexpr std::uint64_t kMaxFrameUncompressed = std::uint64_t{1} << 40;
// An endless frame table is an attack on memory: 2^20 frames is 64 GiB of 64 KiB frames and
// ~110 MiB of parsed table; more is refused before it is parsed.
inline constexpr std::size_t kMaxFrames = std::size_t{1} << 20;
inline constexpr std::size_t kMaxManifestText = 64 << 20;
// Schema 2 frame: [uncompressedOffset, uncompressedSize, compressedSize, sha256, chunkSha256,
// chunkXxh3]; the compressed offsets are contiguous from 0 and so not repeated.
inline constexpr std::size_t kFrameFields = 6;

// A boot file's logical name: 1-64 of [A-Za-z0-9._-], not "." or "..", so it can never be a path
// (no '/', no absolute path, no NUL or control characters). Errc::invalid_input naming it.
[[nodiscard]] Status check_boot_file_name(std::string_view name);

[[nodiscard]] Result<Manifest> parse_manifest(std::string_view json);
// The release a manifest names, read without its images and frame tables (one pass that keeps
// two top-level strings): for showing and measuring manifests abup recorded once it had verified
// them, where parse_manifest of a 4 GiB image's (5 MB, 25 k frames) cost 0.2 s and 8 MiB.
// parse_manifest is what checks a manifest.
struct ManifestRelease {
  std::string version;
  std::int64_t issued_at = 0;  // unix seconds
};
[[nodiscard]] Result<ManifestRelease> parse_manifest_release(std::string_view json);
// Deterministic JSON (sorted keys, two-space indent, trailing newline).
[[nodiscard]] std::string serialize_manifest(const Manifest& manifest);

// RFC 3339 UTC ("2026-11-24T03:40:00Z") <-> unix seconds.
[[nodiscard]] Result<std::int64_t> parse_utc_time(std::string_view text);
[[nodiscard]] std::string format_utc_time(std::int64_t seconds);

struct PolicyInput {
  std::optional<Version> running;  // the booted image's version; nullopt = unknown
  std::string arch;                // normalized host arch
  std::string variant;             // host VARIANT_ID, may be empty
  std::int64_t now = 0;
  bool allow_downgrade = false;    // operator flag
  bool allow_same_version = true;  // re-staging the running version (repair) is fine
  // The highest version this node ever committed (state.json highestCommittedVersion); with the
  // running version it is the downgrade floor, so that after a rollback or a fall-back a signed
  // release between the running and the committed one is not accepted. nullopt = unknown.
  std::optional<Version> highest_committed;
  // issuedAt of the running release's signed manifest (0 = unknown): an allowDowngrade manifest
  // issued before it is superseded, so its replay cannot undo a release signed after it.
  std::int64_t running_issued_at = 0;
  bool require_expiry =
      false;  // [Security] RequireExpiry=yes: refuse a manifest that never expires
  // An unknown running version cannot be proven newer than minVersion nor older than the image,
  // and an unknown variant cannot be proven to match: both are refused unless the operator says
  // otherwise. The reasons name the file and what it lacks, for the message.
  bool allow_unknown_version = false;  // operator flag
  bool allow_unknown_variant = false;  // operator flag
  std::string unknown_version_reason;  // e.g. "/etc/os-release has no IMAGE_VERSION or VERSION_ID"
  std::string unknown_variant_reason;  // e.g. "/etc/os-release has no VARIANT_ID"
};

// Version policy, arch, variant, issue/expiry time; fails closed when the host's version or
// (for an image that names one) variant is unknown. Errc::policy with a message naming both sides.
// Below the floor (the running version, or the highest committed one if higher) only an operator's
// --allow-downgrade or a signed allowDowngrade admits a release; the signed flag counts only on a
// manifest that expires and was not issued before the running release's (docs/security.md G1, G2).
[[nodiscard]] Status check_policy(const Manifest& manifest, const PolicyInput& input);

}  // namespace abup::protocol
