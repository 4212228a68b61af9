#include "partitions/block_target.hpp"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <vector>

namespace abup::partitions {
namespace {

constexpr std::uint64_t kDirectAlign = 4096;
constexpr std::size_t kZeroChunk = 1 << 20;

std::string mib(std::uint64_t bytes) {
  std::ostringstream s;
  s.precision(1);
  s << std::fixed << static_cast<double>(bytes) / (1 << 20) << " MiB";
  return s.str();
}

std::string majmin(dev_t d) {
  return std::to_string(major(d)) + ":" + std::to_string(minor(d));
}

// mountinfo escapes spaces and the like as \ooo.
std::string unescape_mountinfo(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      int v = 0;
      bool ok = true;
      for (int k = 1; k <= 3; ++k) {
        char c = s[i + k];
        if (c < '0' || c > '7') ok = false;
        v = v * 8 + (c - '0');
      }
      if (ok) {
        out += static_cast<char>(v);
        i += 3;
        continue;
      }
    }
    out += s[i];
  }
  return out;
}

// Where the device `dev` (MAJ:MIN) is mounted according to mountinfo; empty when not.
Result<std::string> mount_point_of(const std::filesystem::path& root, const std::string& dev) {
  auto path = root / "proc/self/mountinfo";
  ABUP_TRY(std::string text, read_file(path));
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream f(line);
    std::string id, parent, devnum, fsroot, mountpoint;
    if (!(f >> id >> parent >> devnum >> fsroot >> mountpoint)) continue;
    if (devnum == dev) return unescape_mountinfo(mountpoint);
  }
  return std::string();
}

// Device-mapper (dm-verity, dm-linear) or md devices stacked on the partition.
std::string holders_of(const std::string& dev) {
  std::string out;
  std::error_code ec;
  for (const auto& h :
       std::filesystem::directory_iterator("/sys/dev/block/" + dev + "/holders", ec))
    out += (out.empty() ? "" : ", ") + h.path().filename().string();
  return out;
}

Status write_zeros(int fd, std::uint64_t offset, std::uint64_t length, const std::string& what) {
  static const std::vector<std::uint8_t> zeros(kZeroChunk, 0);
  while (length > 0) {
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(length, zeros.size()));
    ABUP_CHECK(pwrite_full(fd, {zeros.data(), n}, offset, what));
    offset += n;
    length -= n;
  }
  return {};
}

struct AlignedFree {
  void operator()(std::uint8_t* p) const { std::free(p); }
};

// "pid 1234 (abup)" for the process /proc/locks names as holding a flock on (dev, ino).
std::string lock_holder(dev_t dev, ino_t ino) {
  auto text = read_file("/proc/locks");
  if (!text) return {};
  char want[64];
  std::snprintf(want, sizeof want, "%02x:%02x:%lu", major(dev), minor(dev),
                static_cast<unsigned long>(ino));
  std::istringstream lines(*text);
  std::string line;
  while (std::getline(lines, line)) {
    // "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF" (blocked waiters start with "->")
    std::istringstream f(line);
    std::string id, kind, mode, rw, pid, where;
    if (!(f >> id >> kind >> mode >> rw >> pid >> where) || kind != "FLOCK" || where != want)
      continue;
    std::string comm;
    if (auto c = read_file("/proc/" + pid + "/comm")) comm = *c;
    while (!comm.empty() && comm.back() == '\n') comm.pop_back();
    return "pid " + pid + (comm.empty() ? "" : " (" + comm + ")");
  }
  return {};
}

}  // namespace

Result<Fd> lock_disk(const std::string& disk) {
  // O_RDONLY: the lock needs no write access, and a reader never conflicts with O_EXCL openers.
  ABUP_TRY(Fd fd, open_file(disk, O_RDONLY | O_CLOEXEC));
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) == 0) return fd;
  const int err = errno;
  if (err != EWOULDBLOCK) return make_error(Errc::io, "lock " + disk + ": " + errno_text(err));
  struct stat st {};
  std::string holder;
  if (::fstat(fd.get(), &st) == 0) holder = lock_holder(st.st_dev, st.st_ino);
  return make_error(Errc::refused, disk + " is locked by " +
                                       (holder.empty() ? std::string("another process") : holder) +
                                       " (another abup writes its slots, possibly with another "
                                       "--state-dir); wait for it to finish");
}

Result<BlockTarget> BlockTarget::open(const SlotPair& pair, char target, std::optional<char> booted,
                                      std::uint64_t needed, const std::filesystem::path& root) {
  return open_part(pair, target, false, booted, needed, root);
}

Result<BlockTarget> BlockTarget::open_hash(const SlotPair& pair, char target,
                                           std::optional<char> booted, std::uint64_t needed,
                                           const std::filesystem::path& root) {
  return open_part(pair, target, true, booted, needed, root);
}

Result<BlockTarget> BlockTarget::open_part(const SlotPair& pair, char target, bool hash,
                                           std::optional<char> booted, std::uint64_t needed,
                                           const std::filesystem::path& root) {
  if (target != 'A' && target != 'B')
    return make_error(Errc::invalid_input,
                      std::string("target slot must be A or B, not '") + target + "'");
  BlockTarget t;
  t.slot_ = pair.get(target);
  if (hash && !t.slot_.hash)
    return make_error(Errc::not_found, pair.disk + ": slot " + target +
                                           " has no verity hash partition (hash-" +
                                           static_cast<char>(target - 'A' + 'a') + ")");
  t.part_ = hash ? *t.slot_.hash : t.slot_.entry;
  const std::uint32_t ss = pair.gpt.sector_size;
  t.size_ = (t.part_.last_lba - t.part_.first_lba + 1) * ss;
  t.block_device_ = pair.block_device;
  std::string desc = t.part_.name + " (partition " + std::to_string(t.part_.number) +
                     ", PARTUUID " + t.part_.unique.str() + ")";
  t.what_ = pair.disk + " " + t.part_.name;

  if (booted && *booted == target)
    return make_error(Errc::refused, "refusing to write " + desc + " on " + pair.disk +
                                         ": it belongs to the booted slot " + target +
                                         "; only the other slot can be updated");
  // A crafted table could make the target overlap the booted slot or a partition outside the
  // pair; the bounds checks below would then not protect them.
  for (const auto& e : pair.gpt.entries) {
    if (e.number == t.part_.number) continue;
    if (e.first_lba <= t.part_.last_lba && t.part_.first_lba <= e.last_lba)
      return make_error(Errc::refused, "refusing to write " + desc + " on " + pair.disk +
                                           ": it overlaps partition " + std::to_string(e.number) +
                                           " (" + e.name + ")");
  }
  if (needed > t.size_)
    return make_error(Errc::refused, "the image needs " + std::to_string(needed) + " bytes (" +
                                         mib(needed) + ") but " + desc + " on " + pair.disk +
                                         " holds only " + std::to_string(t.size_) + " bytes (" +
                                         mib(t.size_) + ")");

  if (t.block_device_) {
    t.path_ = hash ? t.slot_.hash_device : t.slot_.device;
    if (t.path_.empty())
      return make_error(Errc::not_found, pair.disk + ": the kernel has no device node for " + desc +
                                             " (run `partx -u " + pair.disk + "` or partprobe)");
    struct stat st {};
    if (::stat(t.path_.c_str(), &st) != 0 || !S_ISBLK(st.st_mode))
      return make_error(Errc::io, t.path_ + ": not a block device (" + desc + ")");
    std::string dev = majmin(st.st_rdev);
    ABUP_TRY(std::string mp, mount_point_of(root, dev));
    if (!mp.empty())
      return make_error(Errc::refused, "refusing to write " + desc + " (" + t.path_ + ", " + dev +
                                           "): it is mounted at " + mp);
    if (std::string h = holders_of(dev); !h.empty())
      return make_error(Errc::refused,
                        "refusing to write " + desc + " (" + t.path_ + "): it is in use by " + h);
    int fd = ::open(t.path_.c_str(), O_RDWR | O_EXCL | O_CLOEXEC);
    if (fd < 0) {
      int err = errno;
      if (err == EBUSY)
        return make_error(Errc::refused, "refusing to write " + desc + " (" + t.path_ +
                                             "): in use (mounted or opened exclusively)");
      return make_error(Errc::io, "open " + t.path_ + ": " + errno_text(err));
    }
    t.fd_ = std::make_shared<Fd>(fd);
    std::uint64_t kernel_size = 0;
    if (::ioctl(fd, BLKGETSIZE64, &kernel_size) != 0 || kernel_size != t.size_)
      return make_error(Errc::io, t.path_ + ": the kernel's size " + std::to_string(kernel_size) +
                                      " differs from the GPT's " + std::to_string(t.size_) +
                                      " for " + desc + " (stale partition table? run partx -u)");
    t.base_ = 0;
  } else {
    t.path_ = pair.disk;
    ABUP_TRY(Fd fd, open_file(pair.disk, O_RDWR));
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode))
      return make_error(Errc::invalid_input, pair.disk + ": no longer a regular file");
    t.base_ = t.part_.first_lba * ss;
    if (static_cast<std::uint64_t>(st.st_size) < t.base_ + t.size_)
      return make_error(
          Errc::invalid_input,
          pair.disk + ": the file (" + std::to_string(st.st_size) + " bytes) ends before " + desc);
    t.fd_ = std::make_shared<Fd>(std::move(fd));
  }
  int dfd = ::open(t.path_.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
  if (dfd >= 0)
    t.direct_fd_ = std::make_shared<Fd>(dfd);
  else if (errno != EINVAL)
    return make_error(Errc::io, "open " + t.path_ + " (O_DIRECT): " + errno_text(errno));
  return t;
}

Status BlockTarget::check_range(std::uint64_t offset, std::uint64_t length, const char* op) const {
  if (offset > size_ || length > size_ - offset)
    return make_error(Errc::invalid_input, std::string(op) + " of " + std::to_string(length) +
                                               " bytes at offset " + std::to_string(offset) +
                                               " goes past the end of " + what_ + " (" +
                                               std::to_string(size_) + " bytes)");
  return {};
}

Status BlockTarget::write_at(std::uint64_t offset, std::span<const std::uint8_t> data) {
  ABUP_CHECK(check_range(offset, data.size(), "write"));
  return pwrite_full(fd_->get(), data, base_ + offset, what_);
}

void BlockTarget::start_writeback(std::uint64_t offset, std::uint64_t length) {
  if (offset > size() || length > size() - offset) return;
  (void)::sync_file_range(fd_->get(), static_cast<off64_t>(base_ + offset),
                          static_cast<off64_t>(length), SYNC_FILE_RANGE_WRITE);
}

Status BlockTarget::wait_written(std::uint64_t offset, std::uint64_t length) {
  ABUP_CHECK(check_range(offset, length, "write-back"));
  if (length == 0) return {};
  if (::sync_file_range(
          fd_->get(), static_cast<off64_t>(base_ + offset), static_cast<off64_t>(length),
          SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER) != 0)
    return make_error(Errc::io, "write back " + std::to_string(length) + " bytes at offset " +
                                    std::to_string(offset) + " of " + what_ + ": " +
                                    errno_text(errno));
  return {};
}

Status BlockTarget::zero_range(std::uint64_t offset, std::uint64_t length) {
  ABUP_CHECK(check_range(offset, length, "zero"));
  if (length == 0) return {};
  const int fd = fd_->get();
  const std::uint64_t pos = base_ + offset;
  if (block_device_) {
    if (pos % 512 == 0 && length % 512 == 0) {
      std::uint64_t range[2] = {pos, length};
      if (::ioctl(fd, BLKZEROOUT, range) == 0) return {};
    }
  } else {
    auto off = static_cast<off_t>(pos);
    auto len = static_cast<off_t>(length);
    if (::fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, off, len) == 0) return {};
    if (::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len) == 0) return {};
  }
  return write_zeros(fd, pos, length, what_);
}

Status BlockTarget::sync() {
  int rc = block_device_ ? ::fsync(fd_->get()) : ::fdatasync(fd_->get());
  if (rc != 0) return make_error(Errc::io, "sync " + what_ + ": " + errno_text(errno));
  return {};
}

Status BlockTarget::read_at(std::uint64_t offset, std::span<std::uint8_t> buf) {
  ABUP_CHECK(check_range(offset, buf.size(), "read"));
  return pread_full(fd_->get(), buf, base_ + offset, what_);
}

// Drops the range from the page cache (after flushing it, as dirty pages are not dropped) and
// reads it: for filesystems without O_DIRECT (tmpfs, some overlays).
Status BlockTarget::read_cached(std::uint64_t offset, std::span<std::uint8_t> buf) {
  const int fd = fd_->get();
  if (::fdatasync(fd) != 0) return make_error(Errc::io, "sync " + what_ + ": " + errno_text(errno));
  int rc = ::posix_fadvise(fd, static_cast<off_t>(base_ + offset), static_cast<off_t>(buf.size()),
                           POSIX_FADV_DONTNEED);
  if (rc != 0) return make_error(Errc::io, "drop cached pages of " + what_ + ": " + errno_text(rc));
  return pread_full(fd, buf, base_ + offset, what_);
}

Status BlockTarget::read_direct(std::uint64_t offset, std::span<std::uint8_t> buf) {
  ABUP_CHECK(check_range(offset, buf.size(), "read"));
  if (reinterpret_cast<std::uintptr_t>(buf.data()) % kDirectAlign != 0 ||
      offset % kDirectAlign != 0 ||
      (buf.size() % kDirectAlign != 0 && offset + buf.size() != size_))
    return make_error(Errc::invalid_input,
                      "read_direct on " + what_ + ": buffer, offset " + std::to_string(offset) +
                          " and size " + std::to_string(buf.size()) +
                          " must be 4096-aligned (the size may end at the end of the target)");
  if (!direct_fd_) return read_cached(offset, buf);
  const int dfd = direct_fd_->get();
  const std::size_t body = buf.size() / kDirectAlign * kDirectAlign;
  std::size_t done = 0;
  while (done < body) {
    ssize_t n =
        ::pread(dfd, buf.data() + done, body - done, static_cast<off_t>(base_ + offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EINVAL) return read_cached(offset, buf);  // unaligned base
    if (n < 0)
      return make_error(Errc::io, "read " + what_ + " (O_DIRECT) at offset " +
                                      std::to_string(offset + done) + ": " + errno_text(errno));
    if (n == 0)
      return make_error(Errc::io, "read " + what_ + " (O_DIRECT): unexpected end at offset " +
                                      std::to_string(offset + done));
    done += static_cast<std::size_t>(n);
  }
  const std::size_t tail = buf.size() - body;
  if (tail == 0) return {};
  // The last partial block: read a whole aligned block into a bounce buffer. On a partition node
  // the read stops at the device's end; on an image file it may read the neighbour (read-only).
  std::unique_ptr<std::uint8_t, AlignedFree> bounce(
      static_cast<std::uint8_t*>(std::aligned_alloc(kDirectAlign, kDirectAlign)));
  if (!bounce) return make_error(Errc::failed, "out of memory");
  for (;;) {
    ssize_t n = ::pread(dfd, bounce.get(), kDirectAlign, static_cast<off_t>(base_ + offset + body));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EINVAL) return read_cached(offset + body, buf.subspan(body));
    if (n < 0)
      return make_error(Errc::io, "read " + what_ + " (O_DIRECT) at offset " +
                                      std::to_string(offset + body) + ": " + errno_text(errno));
    if (static_cast<std::size_t>(n) < tail)
      return make_error(Errc::io, "read " + what_ + " (O_DIRECT): short read at offset " +
                                      std::to_string(offset + body));
    std::copy_n(bounce.get(), tail, buf.data() + body);
    return {};
  }
}

Result<SlotReader> SlotReader::open(const SlotPair& pair, char slot) {
  if (slot != 'A' && slot != 'B')
    return make_error(Errc::invalid_input, std::string("slot must be A or B, not '") + slot + "'");
  SlotReader r;
  r.slot_ = pair.get(slot);
  r.what_ = pair.disk + " " + r.slot_.label();
  std::string path = pair.disk;
  r.base_ = r.slot_.offset;
  if (pair.block_device && !r.slot_.device.empty()) {
    path = r.slot_.device;
    r.base_ = 0;
  }
  ABUP_TRY(Fd fd, open_file(path, O_RDONLY));
  r.fd_ = std::make_shared<Fd>(std::move(fd));
  return r;
}

Status SlotReader::read_at(std::uint64_t offset, std::span<std::uint8_t> buf) const {
  if (offset > slot_.size || buf.size() > slot_.size - offset)
    return make_error(Errc::invalid_input, "read of " + std::to_string(buf.size()) +
                                               " bytes at offset " + std::to_string(offset) +
                                               " goes past the end of " + what_ + " (" +
                                               std::to_string(slot_.size) + " bytes)");
  return pread_full(fd_->get(), buf, base_ + offset, what_);
}

}  // namespace abup::partitions
