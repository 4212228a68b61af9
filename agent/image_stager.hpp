// One manifest image onto one partition: the plan / local writes / downloads / read-back steps
// of `abup stage` (docs/architecture.md §5). stage.cpp decides what goes where and keeps the state
// file.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "abup/result.hpp"
#include "agent/read_back.hpp"
#include "agent/stage.hpp"
#include "partitions/block_target.hpp"
#include "update-protocol/manifest/manifest.hpp"
#include "update-protocol/source.hpp"

namespace abup::agent {

// Rate-limited progress callbacks.
class ProgressReporter {
 public:
  explicit ProgressReporter(std::function<void(const StageProgress&)> fn) : fn_(std::move(fn)) {}
  void phase(const char* name, std::uint64_t total);
  void add(std::uint64_t n, std::uint64_t downloaded);

 private:
  void emit(bool force);
  std::function<void(const StageProgress&)> fn_;
  StageProgress p_;
  std::chrono::steady_clock::time_point last_{};
};

// Where reusable chunks may come from: the booted slot's partition, and the manifest abup
// recorded when it staged it (may be absent).
struct ReuseSource {
  const partitions::SlotReader* reader = nullptr;
  std::optional<protocol::ManifestImage> recorded;
};

class ImageStager {
 public:
  ImageStager(const protocol::ManifestImage& image, std::uint64_t data_offset,
              partitions::BlockTarget& target, protocol::Source& source, ProgressReporter& progress,
              StageSummary& summary, int window_log_max)
      : img_(image),
        base_(data_offset),
        target_(target),
        source_(source),
        progress_(progress),
        sum_(summary),
        window_log_max_(window_log_max) {}

  // Decides per chunk: zero, already on the target (only when `resume`: re-hashed with SHA-256),
  // reuse from `reuse` (its booted slot cut on `workers` threads), or download.
  [[nodiscard]] Status plan(bool resume, const ReuseSource& reuse, unsigned workers = 1);
  // Starts the read-back (its thread checks what is written from now on, while later frames are
  // still written), then zeroes and copies on `workers` threads (each copied chunk's SHA-256
  // checked; a mismatch is downloaded instead).
  [[nodiscard]] Status write_local(const ReuseSource& reuse, unsigned workers = 1);
  // Coalesced range requests decoded on `workers` threads; the decode buffers, the compressed
  // frames in flight and the read-back's buffer within `memory_limit`. Frames whose compressed
  // bytes fail their SHA-256 are asked again; two in a row stop the response they came in (its
  // later bytes are shifted), which is asked again from the first of them.
  [[nodiscard]] Status download(unsigned workers, std::uint64_t memory_limit);
  // fsync, then waits until every chunk was read back from the device and matched.
  [[nodiscard]] Status sync_and_verify();

  // Downloads of one frame whose compressed bytes failed their SHA-256 before the stage fails,
  // and such failures in all of an image's frames.
  static constexpr int kMaxDownloadsOfFrame = 3;
  static constexpr int kMaxCorruptFrames = 16;

 private:
  enum class Action : std::uint8_t { download, skip, reuse, zero };
  class RunWriter;
  [[nodiscard]] Status copy_reused(const ReuseSource& reuse,
                                   const std::vector<std::uint32_t>& frames, unsigned workers);

  const protocol::ManifestImage& img_;
  std::uint64_t base_;
  partitions::BlockTarget& target_;
  protocol::Source& source_;
  ProgressReporter& progress_;
  StageSummary& sum_;
  int window_log_max_;
  std::vector<Action> actions_;
  std::vector<std::uint64_t> reuse_from_;  // per frame when any is reused, else empty
  std::unique_ptr<ReadBack> read_back_;
};

}  // namespace abup::agent
