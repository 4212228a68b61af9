#include "agent/frame_pipeline.hpp"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <functional>
#include <new>

#include "abup/digest.hpp"
#include "abup/fault.hpp"
#include "update-protocol/image.hpp"

namespace abup::agent {

namespace {
constexpr std::size_t kAlign = 4096;
constexpr std::size_t kReadPiece = 4 << 20;

std::size_t round_up(std::uint64_t n) {
  return static_cast<std::size_t>((n + kAlign - 1) / kAlign * kAlign);
}
}  // namespace

AlignedBuffer::AlignedBuffer(std::size_t capacity)
    : capacity_(round_up(std::max<std::size_t>(capacity, 1))) {
  data_ = static_cast<std::uint8_t*>(std::aligned_alloc(kAlign, capacity_));
  if (!data_) throw std::bad_alloc();
}
AlignedBuffer::~AlignedBuffer() {
  std::free(data_);
}

FramePipeline::FramePipeline(partitions::BlockTarget& target, const protocol::ManifestImage& image,
                             unsigned workers, std::uint64_t memory_limit, int window_log_max)
    : target_(target), image_(image), window_log_max_(window_log_max) {
  for (const auto& f : image.frames) {
    if (f.uncompressed_size > protocol::kMaxBufferedFrame || f.size > protocol::kMaxBufferedFrame)
      continue;
    max_compressed_ = std::max(max_compressed_, f.size);
    max_uncompressed_ = std::max(max_uncompressed_, f.uncompressed_size);
  }
  if (max_uncompressed_ == 0) max_uncompressed_ = max_compressed_ = 0;
  workers = std::max(1u, workers);
  // Budget: each worker owns a decode buffer; the rest holds compressed frames in flight, at
  // least one per worker plus one being filled by the download thread.
  std::uint64_t decode = workers * max_uncompressed_;
  std::uint64_t left = memory_limit > decode ? memory_limit - decode : 0;
  std::size_t n = max_compressed_ ? static_cast<std::size_t>(left / max_compressed_) : 0;
  n = std::clamp<std::size_t>(n, workers, 64);
  for (std::size_t i = 0; i < n && max_compressed_; ++i) {
    buffers_.push_back(std::make_unique<AlignedBuffer>(max_compressed_));
    free_.push_back(buffers_.back().get());
  }
  for (unsigned i = 0; i < workers && max_compressed_; ++i)
    threads_.emplace_back([this] { work(); });
}

FramePipeline::~FramePipeline() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

AlignedBuffer* FramePipeline::acquire() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return !free_.empty() || error_; });
  if (error_) return nullptr;
  auto* b = free_.back();
  free_.pop_back();
  return b;
}

void FramePipeline::submit(std::size_t index, AlignedBuffer* buffer) {
  {
    std::lock_guard lock(mu_);
    jobs_.push_back({index, buffer});
    ++in_flight_;
  }
  cv_.notify_all();
}

void FramePipeline::work() {
  protocol::FrameDecoder decoder(window_log_max_);
  AlignedBuffer out(max_uncompressed_);
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;
      job = jobs_.front();
      jobs_.pop_front();
    }
    const auto& f = image_.frames[job.index];
    Status st;
    bool skip;
    {
      {
        std::lock_guard lock(mu_);
        skip = error_.has_value();
      }
      if (!skip)
        st = decoder.decode({job.buffer->data(), f.size}, f, out.span(f.uncompressed_size),
                            image_.path + " frame " + std::to_string(job.index));
      // The compressed bytes are done with: hand the buffer back before the write, so that the
      // download thread can refill it while this worker writes (fewer buffers for full speed).
      {
        std::lock_guard lock(mu_);
        free_.push_back(job.buffer);
      }
      cv_.notify_all();
      if (!skip && st) st = target_.write_at(f.uncompressed_offset, out.span(f.uncompressed_size));
      if (!skip && st) target_.start_writeback(f.uncompressed_offset, f.uncompressed_size);
    }
    {
      std::lock_guard lock(mu_);
      if (!st && !error_) error_ = st.error();
      if (st && !skip) written_ += f.uncompressed_size;
      if (st && !skip) fault_point("chunk-written");
      --in_flight_;
    }
    cv_.notify_all();
  }
}

Status FramePipeline::drain() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return in_flight_ == 0; });
  if (error_) return *error_;
  return {};
}

std::optional<Error> FramePipeline::error() const {
  std::lock_guard lock(mu_);
  return error_;
}

std::uint64_t FramePipeline::written() const {
  std::lock_guard lock(mu_);
  return written_;
}

Status read_back_verify(partitions::BlockTarget& target, const protocol::ManifestImage& image,
                        unsigned workers, const std::function<void(std::uint64_t)>& progress) {
  std::atomic<std::size_t> next{0};
  std::mutex mu;
  std::optional<Error> error;
  auto work = [&] {
    AlignedBuffer buf(kReadPiece);
    for (std::size_t i; (i = next++) < image.frames.size();) {
      {
        std::lock_guard lock(mu);
        if (error) return;
      }
      const auto& f = image.frames[i];
      Xxh128Stream h;
      Status st;
      for (std::uint64_t off = 0; off < f.uncompressed_size && st;) {
        auto n = std::min<std::uint64_t>(kReadPiece, f.uncompressed_size - off);
        // Direct reads want whole 4 KiB blocks; past the image's end they read the target's
        // own bytes, which are not hashed.
        auto aligned =
            std::min<std::uint64_t>(round_up(n), target.size() - (f.uncompressed_offset + off));
        st = target.read_direct(f.uncompressed_offset + off, buf.span(std::max(aligned, n)));
        if (st) h.update(buf.span(n));
        off += n;
      }
      if (st && h.finish() != f.chunk_xxh3)
        st = make_error(Errc::io, "read-back of " + target.slot().label() + " at offset " +
                                      std::to_string(f.uncompressed_offset) +
                                      " does not match the signed manifest (chunk " +
                                      std::to_string(i) +
                                      "): the device did not keep what was written");
      std::lock_guard lock(mu);
      if (!st) {
        if (!error) error = st.error();
        return;
      }
      if (progress) progress(f.uncompressed_size);
    }
  };
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < std::max(1u, workers); ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  if (error) return *error;
  return {};
}

}  // namespace abup::agent
