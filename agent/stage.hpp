// `abup stage`: the pipeline of docs/architecture.md §5. Verifies the signed image before writing a
// byte, plans each chunk (already on the target | same chunk in the booted slot | zero | download),
// downloads the rest in coalesced range requests, decodes frames on all cores, verifies and
// writes each chunk, fsyncs, reads the whole target back from the device and checks every chunk,
// and only then records the slot as staged.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "abup/result.hpp"
#include "agent/lifecycle.hpp"
#include "update-protocol/http/client.hpp"

namespace abup::agent {

struct StageProgress {
  const char* phase = "";   // "verify", "plan", "write", "read-back"
  std::uint64_t total = 0;  // bytes of the phase
  std::uint64_t done = 0;
  std::uint64_t downloaded = 0;  // payload bytes fetched so far
};

// Built by stage_options() only, so that a stage acts where the lifecycle acts.
struct StageOptions {
  // The disk, root and state dir; the bootloader's view, which decides whether the target may be
  // written (choose_stage_target in agent/lifecycle_guard.hpp); where boot files go.
  LifecycleOptions where;
  std::string source;  // URL or path of the signed COSI
  // The version the control plane or the update server named for `source`; when set, a signed
  // image of any other version is refused before writing (an Omaha reply is not signed, so it
  // could otherwise swap in another genuine release).
  std::string expected_version;
  protocol::TransportOptions transport;
  std::vector<std::filesystem::path> keyrings;
  int threshold = 1;
  bool allow_downgrade = false;
  bool require_expiry = false;         // [Security] RequireExpiry=
  bool allow_unknown_version = false;  // no IMAGE_VERSION/VERSION_ID in os-release: stage anyway
  bool allow_unknown_variant = false;  // no VARIANT_ID while the image names one: stage anyway
  std::optional<char> slot;            // explicit target slot; default: the one not booted
  bool force_slot = false;  // write the bootloader's default slot (the booted slot unknown)
  unsigned workers = 0;     // decode threads; 0 = all cores
  std::uint64_t memory_limit = 4 << 20;  // frame buffers in flight (compressed + decoded)
  bool reuse = true;                     // copy identical chunks from the booted slot
  std::function<void(const StageProgress&)> on_progress;
};

struct StageSummary {
  std::string version, slot_label, partuuid;
  std::uint64_t image_bytes = 0;
  std::uint64_t downloaded = 0;  // bytes fetched from the source (headers, manifest, frames)
  std::uint64_t reused = 0;      // uncompressed bytes copied from the booted slot
  std::uint64_t skipped = 0;     // uncompressed bytes already on the target (re-verified)
  std::uint64_t zeroed = 0;      // uncompressed bytes of all-zero chunks
  std::uint64_t written = 0;     // uncompressed bytes decoded from downloads and written
  std::uint64_t requests = 0;    // coalesced range requests for frames
  std::size_t frames = 0;
  bool resumed = false;
  double seconds = 0;
};

struct Config;
// What every stage on this node shares, from where the lifecycle acts and the configuration (the
// CLI, the daemon's autonomous and aks modes); the caller adds the source, the transport, the
// progress callback and its own overrides.
[[nodiscard]] StageOptions stage_options(const LifecycleOptions& where, const Config& config);

[[nodiscard]] Result<StageSummary> stage(const StageOptions& options);

}  // namespace abup::agent
