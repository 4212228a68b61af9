// `abup-image sign | digest | attach-signature`: add the abup manifest and its signatures to a
// COSI file, ours or another tool's, without disturbing what stock COSI readers see.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "abup/result.hpp"
#include "update-protocol/manifest/manifest.hpp"
#include "update-protocol/manifest/signature.hpp"

namespace abup::image {

struct ManifestDefaults {
  std::string version;  // used when the COSI has no manifest yet (else os-release from metadata)
  std::string min_version;
  std::string variant;
  std::int64_t expires_at = 0;
  bool allow_downgrade = false;
};

// Returns the exact manifest bytes of the COSI at `path`, first appending an abup manifest
// computed from the image data (frame table by scanning each zstd stream) when it has none.
[[nodiscard]] Result<std::string> ensure_manifest(const std::string& path,
                                                  const ManifestDefaults& defaults);

// Adds signatures to the envelope entry (abup/manifest.sig, kept as the last entry), keeping
// the signatures already there (a signer's key id appears once: a new one replaces it).
[[nodiscard]] Status add_signatures(const std::string& path,
                                    const std::vector<protocol::SignatureEntry>& sigs);

// The frame table of one zstd stream (one or many frames), scanned with bounded memory; an error
// when expected_sha384 (lowercase hex, as metadata.json gives it) is not that of the stream.
[[nodiscard]] Result<protocol::ManifestImage> scan_frames(const std::string& cosi_path,
                                                          std::uint64_t data_offset,
                                                          std::uint64_t size,
                                                          std::string_view expected_sha384 = {});

}  // namespace abup::image
