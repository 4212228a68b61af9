// BlockTarget::AsyncReads: Linux AIO (io_submit) on the target's O_DIRECT fd, through the raw
// system calls (no libaio).
#include <linux/aio_abi.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "partitions/block_target.hpp"

namespace abup::partitions {
namespace {

constexpr std::uint64_t kAlign = 4096;

long io_setup(unsigned n, aio_context_t* ctx) {
  return ::syscall(SYS_io_setup, n, ctx);
}
long io_destroy(aio_context_t ctx) {
  return ::syscall(SYS_io_destroy, ctx);
}
long io_submit(aio_context_t ctx, long n, iocb** cbs) {
  return ::syscall(SYS_io_submit, ctx, n, cbs);
}
long io_getevents(aio_context_t ctx, long min, long max, io_event* events) {
  return ::syscall(SYS_io_getevents, ctx, min, max, events, nullptr);
}

}  // namespace

struct BlockTarget::AsyncReads::Read {
  std::uint64_t offset = 0;
  std::span<std::uint8_t> buf;
  std::uint64_t id = 0;
  bool submitted = false;  // else wait() reads it with read_direct()
  bool done = false;
  long long result = 0;
  iocb cb{};
};

BlockTarget::AsyncReads::AsyncReads(BlockTarget& target, unsigned depth)
    : target_(target), reads_(std::max(1u, depth)) {
  aio_context_t ctx = 0;
  // Without O_DIRECT (the fadvise read-back) AIO would be synchronous and skip the page-cache
  // drop: every read goes through read_direct() then.
  if (target_.direct_fd_ && io_setup(static_cast<unsigned>(reads_.size()), &ctx) == 0) ctx_ = ctx;
}

BlockTarget::AsyncReads::~AsyncReads() {
  // Reads still in flight write into their buffers: they end before anything is freed.
  for (; count_ > 0; --count_, first_ = (first_ + 1) % reads_.size()) reap(reads_[first_]);
  if (ctx_) io_destroy(ctx_);
}

void BlockTarget::AsyncReads::reap(Read& r) {
  while (r.submitted && !r.done) {
    io_event events[8];
    const long n = io_getevents(ctx_, 1, 8, events);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      // What is in flight cannot be waited for: io_destroy waits for it, and AIO is off from
      // now on (wait() reads with read_direct()).
      io_destroy(ctx_);
      ctx_ = 0;
      for (auto& x : reads_) x.done = true, x.result = -1;
      return;
    }
    for (long i = 0; i < n; ++i)
      for (auto& x : reads_)
        if (x.submitted && !x.done && x.id == events[i].data) {
          x.done = true;
          x.result = events[i].res;
        }
  }
}

void BlockTarget::AsyncReads::start(std::uint64_t offset, std::span<std::uint8_t> buf) {
  if (count_ == reads_.size()) return;  // a caller bug: wait() will read nothing it did not ask
  Read& r = reads_[(first_ + count_) % reads_.size()];
  ++count_;
  r = Read{};
  r.offset = offset;
  r.buf = buf;
  r.id = ++next_id_;
  // Only whole aligned blocks within the target go out as AIO; read_direct() handles the rest
  // (and checks the arguments).
  const bool aligned = reinterpret_cast<std::uintptr_t>(buf.data()) % kAlign == 0 &&
                       offset % kAlign == 0 && buf.size() % kAlign == 0 && !buf.empty() &&
                       offset <= target_.size_ && buf.size() <= target_.size_ - offset;
  if (!ctx_ || !aligned) return;
  r.cb.aio_data = r.id;
  r.cb.aio_lio_opcode = IOCB_CMD_PREAD;
  r.cb.aio_fildes = static_cast<std::uint32_t>(target_.direct_fd_->get());
  r.cb.aio_buf = reinterpret_cast<std::uint64_t>(buf.data());
  r.cb.aio_nbytes = buf.size();
  r.cb.aio_offset = static_cast<std::int64_t>(target_.base_ + offset);
  iocb* p = &r.cb;
  r.submitted = io_submit(ctx_, 1, &p) == 1;
}

Status BlockTarget::AsyncReads::wait() {
  if (count_ == 0) return make_error(Errc::failed, "internal: AsyncReads::wait with no read");
  Read& r = reads_[first_];
  reap(r);
  first_ = (first_ + 1) % reads_.size();
  --count_;
  if (r.submitted && r.result == static_cast<long long>(r.buf.size())) return {};
  // Not submitted, failed or short: the synchronous read does it again and names any error.
  return target_.read_direct(r.offset, r.buf);
}

}  // namespace abup::partitions
