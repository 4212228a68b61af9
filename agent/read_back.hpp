// The read-back of `abup stage` (docs/architecture.md §3 invariant 3), overlapped with the write:
// a thread reads back from the device, bypassing the page cache, the frames already on the
// target while later frames are still downloaded, decoded and written, and checks each against
// the signed manifest. Frames are read back in order, in windows of frames that are all on the
// target: each window's writeback is waited for (sync_file_range; every `flush_every` bytes a
// sync() of the whole target instead), then it is read with O_DIRECT in pieces of one buffer, the
// only memory the read-back holds.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "abup/result.hpp"
#include "partitions/block_target.hpp"
#include "update-protocol/manifest/manifest.hpp"

namespace abup::agent {

class ReadBack {
 public:
  // What a frame holds once on the target: any chunk (its XXH3-128 is checked) or zeros (a zero
  // chunk, whose signed digest is that of zeros: checked byte by byte, without hashing).
  enum class Kind : std::uint8_t { chunk, zero };

  // `buffer`: bytes of the read buffer (rounded to 4 KiB; the larger, the fewer reads).
  // `flush_every`: bytes between two syncs of the target (kNoFlush: none).
  ReadBack(partitions::BlockTarget& target, const protocol::ManifestImage& image,
           std::size_t buffer, std::uint64_t flush_every = kFlushEvery);
  ~ReadBack();
  ReadBack(const ReadBack&) = delete;
  ReadBack& operator=(const ReadBack&) = delete;

  // Frame `index` is on the target as it will stay: nothing writes its bytes again. Thread-safe.
  void written(std::size_t index, Kind kind = Kind::chunk);
  // After the last written(): reads back what is left and returns the first mismatch or read
  // error (a frame never reported written is an error too). progress(bytes) runs on the calling
  // thread, also for what was read back before.
  [[nodiscard]] Status finish(const std::function<void(std::uint64_t)>& progress = {});
  // The first error so far (a mismatch already found while writing: the caller may stop early).
  [[nodiscard]] std::optional<Error> error() const;
  [[nodiscard]] std::size_t buffer_size() const { return buffer_; }
  // The syncs of the target done so far.
  [[nodiscard]] std::size_t flushes() const { return flushes_; }

  // Bytes of frames written and not yet read back before the thread takes them as one window:
  // fewer, larger waits for writeback.
  static constexpr std::uint64_t kWindow = 8 << 20;
  // The read buffer `abup stage` gives it, out of [Stage] MemoryLimitMiB: reads of 1 MiB and
  // more ran at the device's speed on the bench, 128 KiB ones at 2/3 of it.
  static constexpr std::size_t kBuffer = 1 << 20;
  // Every 64 MiB read back, the window waits for a sync() of the target (the device's write
  // cache flushed) rather than for its own writeback: the device persists the image while the
  // write goes on, not all of it in the final fsync before the stage may say "staged". On the
  // bench's VM that final fsync took ~0.25 s of idle CPUs (the host persisting ~850 MiB); with
  // these syncs the full stage went from 1.64 s to 1.44 s (median of 6; docs/design.md).
  static constexpr std::uint64_t kFlushEvery = 64 << 20;
  static constexpr std::uint64_t kNoFlush = UINT64_MAX;

 private:
  void run();
  [[nodiscard]] Status check(std::size_t from, std::size_t to, std::uint8_t* buf,
                             partitions::BlockTarget::AsyncReads& reads);
  [[nodiscard]] std::uint64_t end_of(std::size_t frame) const;

  partitions::BlockTarget& target_;
  const protocol::ManifestImage& image_;
  std::size_t buffer_;
  std::uint64_t flush_every_;
  std::uint64_t flushed_ = 0;  // the end of the last window read after a sync() (thread only)
  std::atomic<std::size_t> flushes_ = 0;
  std::vector<std::uint8_t> state_;  // per frame: 0 not written, 1 + Kind once written
  std::size_t ready_ = 0;            // frames [0, ready_) are all written
  std::size_t next_ = 0;             // frames [0, next_) are read back and matched
  std::uint64_t verified_ = 0;       // their bytes
  bool finishing_ = false, stopping_ = false;
  std::optional<Error> error_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::thread thread_;
};

// Reads every chunk of an image already on `target` back from the device (bypassing the page
// cache) and checks it against the signed manifest; progress(bytes) as chunks are checked.
[[nodiscard]] Status read_back_verify(partitions::BlockTarget& target,
                                      const protocol::ManifestImage& image,
                                      const std::function<void(std::uint64_t)>& progress);

}  // namespace abup::agent
