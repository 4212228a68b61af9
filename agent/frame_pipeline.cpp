#include "agent/frame_pipeline.hpp"

#include <algorithm>
#include <cstdlib>
#include <new>
#include <utility>

#include "abup/digest.hpp"
#include "abup/fault.hpp"
#include "update-protocol/image.hpp"

namespace abup::agent {

namespace {
constexpr std::size_t kAlign = 4096;

std::size_t round_up(std::uint64_t n) {
  return static_cast<std::size_t>((n + kAlign - 1) / kAlign * kAlign);
}
}  // namespace

AlignedBuffer::AlignedBuffer(std::size_t capacity, bool direct)
    : capacity_(direct ? round_up(std::max<std::size_t>(capacity, 1))
                       : std::max<std::size_t>(capacity, 1)) {
  data_ = static_cast<std::uint8_t*>(direct ? std::aligned_alloc(kAlign, capacity_)
                                            : std::malloc(capacity_));
  if (!data_) throw std::bad_alloc();
}
AlignedBuffer::~AlignedBuffer() {
  std::free(data_);
}

FramePipeline::FramePipeline(partitions::BlockTarget& target, const protocol::ManifestImage& image,
                             unsigned workers, std::uint64_t memory_limit, int window_log_max,
                             ReadBack* read_back)
    : target_(target), image_(image), read_back_(read_back), window_log_max_(window_log_max) {
  for (const auto& f : image.frames) {
    if (f.uncompressed_size > protocol::kMaxBufferedFrame || f.size > protocol::kMaxBufferedFrame)
      continue;
    max_compressed_ = std::max(max_compressed_, f.size);
    max_uncompressed_ = std::max(max_uncompressed_, f.uncompressed_size);
  }
  if (max_uncompressed_ == 0) max_uncompressed_ = max_compressed_ = 0;
  workers = std::max(1u, workers);
  // Each worker owns a decode buffer; the rest of the budget, up to kMaxInFlight, holds compressed
  // frames in flight (at least the largest one per worker). Compressed frames of content-defined
  // chunks average ~40 KiB, and a pool of largest-frame buffers would hold far more.
  const std::uint64_t decode = workers * max_uncompressed_;
  budget_ = std::max(std::min(memory_limit > decode ? memory_limit - decode : 0, kMaxInFlight),
                     workers * max_compressed_);
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

std::unique_ptr<AlignedBuffer> FramePipeline::acquire(std::uint64_t size) {
  const std::uint64_t need = std::max<std::uint64_t>(size, 1);
  {
    std::unique_lock lock(mu_);
    cv_.wait(lock,
             [&] { return error_ || in_flight_bytes_ == 0 || in_flight_bytes_ + need <= budget_; });
    if (error_) return nullptr;
    in_flight_bytes_ += need;
  }
  return std::make_unique<AlignedBuffer>(static_cast<std::size_t>(need), false);
}

void FramePipeline::submit(std::size_t index, std::unique_ptr<AlignedBuffer> buffer) {
  {
    std::lock_guard lock(mu_);
    jobs_.push_back({index, std::move(buffer)});
    ++in_flight_;
  }
  cv_.notify_all();
}

void FramePipeline::release(std::unique_ptr<AlignedBuffer> buffer) {
  if (!buffer) return;
  {
    std::lock_guard lock(mu_);
    in_flight_bytes_ -= buffer->capacity();
  }
  cv_.notify_all();
}

void FramePipeline::work() {
  auto decoder = protocol::FrameDecoder::open(window_log_max_);
  AlignedBuffer out(max_uncompressed_);
  for (;;) {
    Job job;
    bool failed;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
      failed = error_.has_value();
    }
    const auto& f = image_.frames[job.index];
    Status st;
    if (!failed && !decoder)
      st = decoder.error();
    else if (!failed)
      st = decoder->decode_verified({job.buffer->data(), f.size}, f, out.span(f.uncompressed_size),
                                    image_.path + " frame " + std::to_string(job.index));
    // The compressed bytes are done with: give their budget back before the write, so that the
    // download thread fetches more while this worker writes.
    release(std::move(job.buffer));
    if (!failed && st) st = target_.write_at(f.uncompressed_offset, out.span(f.uncompressed_size));
    if (!failed && st) {
      target_.start_writeback(f.uncompressed_offset, f.uncompressed_size);
      if (read_back_) read_back_->written(job.index);
    }
    {
      std::lock_guard lock(mu_);
      if (!st && !error_) error_ = st.error();
      if (st && !failed) written_ += f.uncompressed_size;
      if (st && !failed) fault_point("chunk-written");
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

}  // namespace abup::agent
