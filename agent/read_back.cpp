#include "agent/read_back.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

#include "abup/digest.hpp"
#include "abup/fault.hpp"

namespace abup::agent {
namespace {

constexpr std::uint64_t kBlock = 4096;
constexpr std::uint64_t kPass = 64 << 20;
// Reads in flight: one is checked while the next comes from the device.
constexpr unsigned kDepth = 2;

std::uint64_t round_down(std::uint64_t n) {
  return n / kBlock * kBlock;
}
std::uint64_t round_up(std::uint64_t n) {
  return (n + kBlock - 1) / kBlock * kBlock;
}

bool all_zero(const std::uint8_t* p, std::size_t n) {
  return n == 0 || (p[0] == 0 && std::memcmp(p, p + 1, n - 1) == 0);
}

struct FreeAligned {
  void operator()(std::uint8_t* p) const { std::free(p); }
};

}  // namespace

ReadBack::ReadBack(partitions::BlockTarget& target, const protocol::ManifestImage& image,
                   std::size_t buffer, std::uint64_t flush_every)
    : target_(target),
      image_(image),
      buffer_(static_cast<std::size_t>(std::max(kBlock * kDepth, round_up(buffer)))),
      flush_every_(flush_every),
      state_(image.frames.size(), 0) {
  thread_ = std::thread([this] { run(); });
}

ReadBack::~ReadBack() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

std::uint64_t ReadBack::end_of(std::size_t frame) const {
  if (frame == 0) return 0;
  const auto& f = image_.frames[frame - 1];
  return f.uncompressed_offset + f.uncompressed_size;
}

void ReadBack::written(std::size_t index, Kind kind) {
  bool wake = false;
  {
    std::lock_guard lock(mu_);
    if (index >= state_.size() || state_[index] != 0) return;
    state_[index] = static_cast<std::uint8_t>(1 + static_cast<int>(kind));
    const auto before = ready_;
    while (ready_ < state_.size() && state_[ready_] != 0) ++ready_;
    wake = ready_ != before && end_of(ready_) - end_of(next_) >= kWindow;
  }
  if (wake) cv_.notify_all();
}

void ReadBack::run() {
  // Allocated on first use: a read-back with nothing to read holds no buffer.
  std::unique_ptr<std::uint8_t, FreeAligned> buf;
  std::optional<partitions::BlockTarget::AsyncReads> reads;  // after buf: ends before it is freed
  for (;;) {
    std::size_t from, to;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] {
        return stopping_ || error_ || next_ == state_.size() ||
               (ready_ > next_ && (finishing_ || end_of(ready_) - end_of(next_) >= kWindow)) ||
               (finishing_ && ready_ == next_);
      });
      if (stopping_ || error_ || next_ == state_.size()) return;
      if (ready_ == next_) {
        error_ = make_error(Errc::failed, "internal: read-back of " + target_.slot().label() +
                                              ": frame " + std::to_string(next_) + " of " +
                                              image_.path + " was never written");
        cv_.notify_all();
        return;
      }
      // At most kPass bytes at once, so that progress moves during a long final read-back.
      from = next_;
      to = from;
      do ++to;
      while (to < ready_ && end_of(to) - end_of(from) < kPass);
    }
    if (!buf) {
      buf.reset(static_cast<std::uint8_t*>(std::aligned_alloc(kBlock, buffer_)));
      if (!buf) {
        std::lock_guard lock(mu_);
        error_ = make_error(Errc::failed, "read-back: out of memory");
        cv_.notify_all();
        return;
      }
      reads.emplace(target_, kDepth);
    }
    // Crash and fault tests: a window is about to be read back (its frames are all written).
    fault_point("read-back-window");
    auto st = check(from, to, buf.get(), *reads);
    {
      std::lock_guard lock(mu_);
      if (!st) {
        if (!error_) error_ = st.error();
      } else {
        next_ = to;
        for (auto i = from; i < to; ++i) verified_ += image_.frames[i].uncompressed_size;
      }
    }
    cv_.notify_all();
  }
}

// Frames [from, to) tile [end_of(from), end_of(to)) (the frame table leaves no gaps): that range
// is read in aligned pieces, kDepth of them in flight, and each frame checked as its bytes pass.
Status ReadBack::check(std::size_t from, std::size_t to, std::uint8_t* buf,
                       partitions::BlockTarget::AsyncReads& reads) {
  const std::uint64_t begin = image_.frames[from].uncompressed_offset, end = end_of(to);
  // The writeback of the window first, so that the direct reads below find it on the device.
  if (end - flushed_ >= flush_every_) {
    ABUP_CHECK(target_.sync());
    flushed_ = end;
    ++flushes_;
  } else {
    ABUP_CHECK(target_.wait_written(begin, end - begin));
  }
  const std::uint64_t piece = std::max(kBlock, round_down(buffer_ / kDepth));
  struct Piece {
    std::uint64_t pos, size;
    std::uint8_t* data;
  };
  Piece pieces[kDepth];
  unsigned first = 0, count = 0;
  std::uint64_t next = round_down(begin);
  auto issue = [&](std::uint8_t* data) {
    if (next >= end) return;
    // Direct reads want whole 4 KiB blocks; past the image's end they read the target's own
    // bytes, which are not checked. At the target's end the read may stop short of a block.
    const std::uint64_t n = std::min({piece, round_up(end) - next, target_.size() - next});
    pieces[(first + count++) % kDepth] = {next, n, data};
    reads.start(next, {data, static_cast<std::size_t>(n)});
    next += n;
  };
  for (unsigned i = 0; i < kDepth; ++i) issue(buf + i * piece);

  std::size_t frame = from;
  std::unique_ptr<Xxh128Stream> hash;
  bool zeros = true;
  while (count > 0) {
    const Piece p = pieces[first];
    first = (first + 1) % kDepth;
    --count;
    ABUP_CHECK(reads.wait());
    while (frame < to) {
      const auto& f = image_.frames[frame];
      const std::uint64_t fend = f.uncompressed_offset + f.uncompressed_size;
      const std::uint64_t a = std::max(p.pos, f.uncompressed_offset),
                          b = std::min(p.pos + p.size, fend);
      const bool zero = state_[frame] == 1 + static_cast<int>(Kind::zero);
      if (b > a) {
        const std::uint8_t* d = p.data + (a - p.pos);
        if (zero) {
          zeros = zeros && all_zero(d, static_cast<std::size_t>(b - a));
        } else {
          if (!hash) hash = std::make_unique<Xxh128Stream>();
          hash->update({d, static_cast<std::size_t>(b - a)});
        }
      }
      if (fend > p.pos + p.size) break;  // the frame goes on in the next piece
      const bool match = zero ? zeros : (hash ? hash->finish() : xxh128({})) == f.chunk_xxh3;
      if (!match)
        return make_error(Errc::io, "read-back of " + target_.slot().label() + " at offset " +
                                        std::to_string(f.uncompressed_offset) +
                                        " does not match the signed manifest (chunk " +
                                        std::to_string(frame) +
                                        "): the device did not keep what was written");
      hash.reset();
      zeros = true;
      ++frame;
    }
    issue(p.data);
  }
  return {};
}

Status ReadBack::finish(const std::function<void(std::uint64_t)>& progress) {
  std::uint64_t reported = 0;
  std::unique_lock lock(mu_);
  finishing_ = true;
  cv_.notify_all();
  for (;;) {
    const bool done = error_ || next_ == state_.size();
    if (progress && verified_ > reported) {
      const auto n = verified_ - reported;
      reported = verified_;
      lock.unlock();
      progress(n);
      lock.lock();
      continue;
    }
    if (done) break;
    cv_.wait(lock);
  }
  if (error_) return *error_;
  return {};
}

std::optional<Error> ReadBack::error() const {
  std::lock_guard lock(mu_);
  return error_;
}

Status read_back_verify(partitions::BlockTarget& target, const protocol::ManifestImage& image,
                        const std::function<void(std::uint64_t)>& progress) {
  ReadBack rb(target, image, ReadBack::kBuffer, ReadBack::kNoFlush);
  for (std::size_t i = 0; i < image.frames.size(); ++i) rb.written(i);
  return rb.finish(progress);
}

}  // namespace abup::agent
