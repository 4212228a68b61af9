// The decode stage of `abup stage`: compressed frames, their SHA-256 already matched by the
// download thread, arrive in order; worker threads decompress, check (XXH3-128 of the chunk),
// write them at their offset on the target and hand them to the read-back. Memory: a decode
// buffer per worker (the largest chunk) and compressed frames in flight, each in a buffer of its
// own size, up to the budget left (at most kMaxInFlight): the download thread blocks while they
// hold it.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "abup/result.hpp"
#include "agent/read_back.hpp"
#include "partitions/block_target.hpp"
#include "update-protocol/manifest/manifest.hpp"

namespace abup::agent {

// A heap buffer with a fixed capacity: aligned for O_DIRECT and rounded up to 4 KiB blocks, or
// (`direct` false: compressed frames, which only memory reads) exactly `capacity` bytes, so that
// the ~40 KiB frames in flight do not each waste up to a block of rounding and one of alignment.
class AlignedBuffer {
 public:
  explicit AlignedBuffer(std::size_t capacity, bool direct = true);
  ~AlignedBuffer();
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  [[nodiscard]] std::uint8_t* data() { return data_; }
  [[nodiscard]] std::size_t capacity() const { return capacity_; }
  [[nodiscard]] std::span<std::uint8_t> span(std::size_t n) { return {data_, n}; }

 private:
  std::uint8_t* data_;
  std::size_t capacity_;
};

class FramePipeline {
 public:
  // Each frame written is reported to `read_back` (may be null).
  FramePipeline(partitions::BlockTarget& target, const protocol::ManifestImage& image,
                unsigned workers, std::uint64_t memory_limit, int window_log_max,
                ReadBack* read_back);
  ~FramePipeline();
  FramePipeline(const FramePipeline&) = delete;
  FramePipeline& operator=(const FramePipeline&) = delete;

  // Whether a frame goes through the workers (else the caller streams it: too large to buffer).
  [[nodiscard]] bool buffered(const protocol::Frame& f) const {
    return f.size <= max_compressed_ && f.uncompressed_size <= max_uncompressed_;
  }
  // A buffer for a frame's `size` compressed bytes; blocks while the frames in flight hold the
  // budget. nullptr once a worker failed (error() says why).
  [[nodiscard]] std::unique_ptr<AlignedBuffer> acquire(std::uint64_t size);
  // Hands an acquired buffer, filled with the frame's compressed bytes whose SHA-256 matched,
  // to the workers.
  void submit(std::size_t frame_index, std::unique_ptr<AlignedBuffer> buffer);
  // Gives back the budget of an acquired buffer that will not be submitted (a frame cut short).
  void release(std::unique_ptr<AlignedBuffer> buffer);
  // Waits until every submitted frame is written; the first error of any worker.
  [[nodiscard]] Status drain();
  [[nodiscard]] std::optional<Error> error() const;
  [[nodiscard]] std::uint64_t written() const;

  // Compressed frames in flight at most, whatever the memory limit leaves: on the bench's 4 GiB
  // image (24,727 content-defined frames) 1 MiB kept both workers as busy as 2.5 MiB did (same
  // CPU, no slower), and peak RSS fell by that difference, the room the frame table of a large
  // image needs within the stage's 24 MiB.
  static constexpr std::uint64_t kMaxInFlight = 1 << 20;

 private:
  void work();

  partitions::BlockTarget& target_;
  const protocol::ManifestImage& image_;
  ReadBack* read_back_;
  std::uint64_t max_compressed_ = 0, max_uncompressed_ = 0;
  int window_log_max_;
  std::uint64_t budget_ = 0;           // bytes of compressed frames in flight at most
  std::uint64_t in_flight_bytes_ = 0;  // acquired and not yet decoded
  struct Job {
    std::size_t index;
    std::unique_ptr<AlignedBuffer> buffer;
  };
  std::deque<Job> jobs_;
  std::size_t in_flight_ = 0;
  bool stopping_ = false;
  std::optional<Error> error_;
  std::uint64_t written_ = 0;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::thread> threads_;
};

}  // namespace abup::agent
