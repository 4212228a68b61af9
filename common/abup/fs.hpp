// Small POSIX file helpers with Result errors that name the path.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>

#include "abup/result.hpp"

namespace abup {

// Owning file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd();
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  [[nodiscard]] int get() const { return fd_; }
  [[nodiscard]] bool valid() const { return fd_ >= 0; }
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }

 private:
  int fd_ = -1;
};

[[nodiscard]] Result<Fd> open_file(const std::filesystem::path& path, int flags, int mode = 0644);
[[nodiscard]] Result<std::string> read_file(const std::filesystem::path& path);
// Reads exactly buf.size() bytes at offset; a short read is an error naming `what`.
[[nodiscard]] Status pread_full(int fd, std::span<std::uint8_t> buf, std::uint64_t offset,
                                const std::string& what);
[[nodiscard]] Status pwrite_full(int fd, std::span<const std::uint8_t> buf, std::uint64_t offset,
                                 const std::string& what);
[[nodiscard]] Status write_all(int fd, std::span<const std::uint8_t> buf, const std::string& what);
// Crash-safe replace: write a temp file beside `path`, fsync it, rename over `path`, fsync the
// directory. After a crash at any point `path` holds the old or the new content.
[[nodiscard]] Status atomic_write_file(const std::filesystem::path& path, std::string_view content,
                                       int mode = 0644);
[[nodiscard]] Status fsync_dir(const std::filesystem::path& dir);
[[nodiscard]] std::string errno_text(int err);

}  // namespace abup
