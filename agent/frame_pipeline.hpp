// The decode stage of `abup stage`: compressed frames arrive in order from the download thread,
// worker threads verify (SHA-256 of the frame), decompress, check (XXH3-128 of the chunk) and
// write them at their offset on the target. Memory is a fixed set of buffers sized from the
// frame table and a budget: the download thread blocks while all of them are in flight.
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
#include "partitions/block_target.hpp"
#include "update-protocol/manifest/manifest.hpp"

namespace abup::agent {

// A heap buffer aligned for O_DIRECT, with a fixed capacity.
class AlignedBuffer {
 public:
  explicit AlignedBuffer(std::size_t capacity);
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
  FramePipeline(partitions::BlockTarget& target, const protocol::ManifestImage& image,
                unsigned workers, std::uint64_t memory_limit, int window_log_max);
  ~FramePipeline();
  FramePipeline(const FramePipeline&) = delete;
  FramePipeline& operator=(const FramePipeline&) = delete;

  // Whether a frame goes through the workers (else the caller streams it: too large to buffer).
  [[nodiscard]] bool buffered(const protocol::Frame& f) const {
    return f.size <= max_compressed_ && f.uncompressed_size <= max_uncompressed_;
  }
  // A buffer for the next frame's compressed bytes; blocks while all are in flight. nullptr
  // once a worker failed (error() says why).
  [[nodiscard]] AlignedBuffer* acquire();
  void submit(std::size_t frame_index, AlignedBuffer* buffer);
  // Waits until every submitted frame is written; the first error of any worker.
  [[nodiscard]] Status drain();
  [[nodiscard]] std::optional<Error> error() const;
  [[nodiscard]] std::uint64_t written() const;

 private:
  void work();

  partitions::BlockTarget& target_;
  const protocol::ManifestImage& image_;
  std::uint64_t max_compressed_ = 0, max_uncompressed_ = 0;
  int window_log_max_;
  std::vector<std::unique_ptr<AlignedBuffer>> buffers_;
  std::vector<AlignedBuffer*> free_;
  struct Job {
    std::size_t index;
    AlignedBuffer* buffer;
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

// Reads every chunk of the image back from the device (bypassing the page cache) on `workers`
// threads and checks its XXH3-128 against the signed manifest; progress(bytes) after each chunk.
[[nodiscard]] Status read_back_verify(partitions::BlockTarget& target,
                                      const protocol::ManifestImage& image, unsigned workers,
                                      const std::function<void(std::uint64_t)>& progress);

}  // namespace abup::agent
