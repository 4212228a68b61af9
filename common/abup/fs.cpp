#include "abup/fs.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace abup {

Fd::~Fd() {
  if (fd_ >= 0) ::close(fd_);
}

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.release();
  }
  return *this;
}

std::string errno_text(int err) {
  return std::strerror(err);
}

Result<Fd> open_file(const std::filesystem::path& path, int flags, int mode) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) {
    int err = errno;
    return make_error(err == ENOENT ? Errc::not_found : Errc::io,
                      "open " + path.string() + ": " + errno_text(err));
  }
  return Fd(fd);
}

Result<std::string> read_file(const std::filesystem::path& path) {
  ABUP_TRY(Fd fd, open_file(path, O_RDONLY));
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return make_error(Errc::io, "read " + path.string() + ": " + errno_text(errno));
    }
    if (n == 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

Status pread_full(int fd, std::span<std::uint8_t> buf, std::uint64_t offset,
                  const std::string& what) {
  size_t done = 0;
  while (done < buf.size()) {
    ssize_t n =
        ::pread(fd, buf.data() + done, buf.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return make_error(Errc::io, "read " + what + " at offset " + std::to_string(offset + done) +
                                      ": " + errno_text(errno));
    }
    if (n == 0)
      return make_error(Errc::io, "read " + what + ": unexpected end of file at offset " +
                                      std::to_string(offset + done));
    done += static_cast<size_t>(n);
  }
  return {};
}

Status pwrite_full(int fd, std::span<const std::uint8_t> buf, std::uint64_t offset,
                   const std::string& what) {
  size_t done = 0;
  while (done < buf.size()) {
    ssize_t n =
        ::pwrite(fd, buf.data() + done, buf.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return make_error(Errc::io, "write " + what + " at offset " + std::to_string(offset + done) +
                                      ": " + errno_text(errno));
    }
    done += static_cast<size_t>(n);
  }
  return {};
}

Status write_all(int fd, std::span<const std::uint8_t> buf, const std::string& what) {
  size_t done = 0;
  while (done < buf.size()) {
    ssize_t n = ::write(fd, buf.data() + done, buf.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return make_error(Errc::io, "write " + what + ": " + errno_text(errno));
    }
    done += static_cast<size_t>(n);
  }
  return {};
}

Status fsync_dir(const std::filesystem::path& dir) {
  ABUP_TRY(Fd fd, open_file(dir.empty() ? "." : dir, O_RDONLY | O_DIRECTORY));
  if (::fsync(fd.get()) != 0)
    return make_error(Errc::io, "fsync " + dir.string() + ": " + errno_text(errno));
  return {};
}

Status atomic_write_file(const std::filesystem::path& path, std::string_view content, int mode) {
  auto tmp = path;
  tmp += ".tmp." + std::to_string(::getpid());
  {
    // A name left by a crashed run, or planted (a symlink to a file root owns), is removed and
    // never followed: O_EXCL makes the open create the file, or fail if one appeared again.
    ::unlink(tmp.c_str());
    ABUP_TRY(Fd fd, open_file(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode));
    auto st =
        write_all(fd.get(), {reinterpret_cast<const std::uint8_t*>(content.data()), content.size()},
                  tmp.string());
    if (st && ::fsync(fd.get()) != 0)
      st = make_error(Errc::io, "fsync " + tmp.string() + ": " + errno_text(errno));
    if (!st) {
      ::unlink(tmp.c_str());
      return st;
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return make_error(Errc::io,
                      "rename " + tmp.string() + " to " + path.string() + ": " + errno_text(err));
  }
  return fsync_dir(path.parent_path());
}

}  // namespace abup
