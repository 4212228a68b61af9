// One manifest image onto one partition: the plan / local writes / downloads / read-back steps
// of `abup stage` (DESIGN.md §5). stage.cpp decides what goes where and keeps the state file.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "abup/result.hpp"
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
  // reuse from `reuse`, or download.
  [[nodiscard]] Status plan(bool resume, const ReuseSource& reuse);
  // Zeroes and copies (each copied chunk's SHA-256 checked; a mismatch is downloaded instead).
  [[nodiscard]] Status write_local(const ReuseSource& reuse);
  // Coalesced range requests decoded on `workers` threads within `memory_limit`.
  [[nodiscard]] Status download(unsigned workers, std::uint64_t memory_limit);
  // fsync, then every chunk read back from the device and checked.
  [[nodiscard]] Status sync_and_verify(unsigned workers);

 private:
  enum class Action { download, skip, reuse, zero };
  [[nodiscard]] Status stream_request(std::size_t first, std::size_t last,
                                      class FramePipeline& pipeline, std::uint64_t& streamed);

  const protocol::ManifestImage& img_;
  std::uint64_t base_;
  partitions::BlockTarget& target_;
  protocol::Source& source_;
  ProgressReporter& progress_;
  StageSummary& sum_;
  int window_log_max_;
  std::vector<Action> actions_;
  std::vector<std::uint64_t> reuse_from_;
};

}  // namespace abup::agent
