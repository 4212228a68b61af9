// Helpers for the partitions tests: byte surgery on images and loop devices.
#pragma once

#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <thread>

#include "support/util.hpp"

namespace abup::test {

inline void flip_byte(const std::filesystem::path& p, std::uint64_t offset) {
  int fd = ::open(p.c_str(), O_RDWR | O_CLOEXEC);
  REQUIRE(fd >= 0);
  unsigned char b = 0;
  REQUIRE(::pread(fd, &b, 1, static_cast<off_t>(offset)) == 1);
  b ^= 0xFF;
  REQUIRE(::pwrite(fd, &b, 1, static_cast<off_t>(offset)) == 1);
  ::close(fd);
}

// Copies [offset, offset+length) of `from` over the same range of `to`.
inline void copy_range(const std::filesystem::path& from, const std::filesystem::path& to,
                       std::uint64_t offset, std::uint64_t length) {
  std::string buf(length, '\0');
  int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(in >= 0);
  REQUIRE(::pread(in, buf.data(), length, static_cast<off_t>(offset)) ==
          static_cast<ssize_t>(length));
  ::close(in);
  int fd = ::open(to.c_str(), O_RDWR | O_CLOEXEC);
  REQUIRE(fd >= 0);
  REQUIRE(::pwrite(fd, buf.data(), length, static_cast<off_t>(offset)) ==
          static_cast<ssize_t>(length));
  ::close(fd);
}

// Whether this process may use loop devices (root, /dev/loop-control). Cheap enough to decide a
// doctest::skip() decorator at registration time; attaching can still fail at run time.
inline bool loop_devices_usable() {
  return ::geteuid() == 0 && ::access("/dev/loop-control", R_OK | W_OK) == 0 &&
         (::access("/usr/sbin/losetup", X_OK) == 0 || ::access("/sbin/losetup", X_OK) == 0);
}

// A loop device over an image file, detached when the object dies.
class LoopDevice {
 public:
  explicit LoopDevice(const std::filesystem::path& file, unsigned sector_size = 512,
                      bool partscan = true) {
    std::string cmd = "losetup -f --show";
    if (sector_size != 512) cmd += " --sector-size " + std::to_string(sector_size);
    if (partscan) cmd += " -P";
    auto r = run(cmd + " " + shell_quote(file.string()));
    if (r.exit_code != 0 || r.out.rfind("/dev/loop", 0) != 0) {
      error_ = r.out;
      return;
    }
    dev_ = r.out.substr(0, r.out.find('\n'));
  }
  ~LoopDevice() {
    if (!dev_.empty()) run("losetup -d " + dev_);
  }
  LoopDevice(const LoopDevice&) = delete;
  LoopDevice& operator=(const LoopDevice&) = delete;

  [[nodiscard]] bool ok() const { return !dev_.empty(); }
  [[nodiscard]] const std::string& error() const { return error_; }
  [[nodiscard]] const std::string& dev() const { return dev_; }
  [[nodiscard]] std::string part(int n) const { return dev_ + "p" + std::to_string(n); }

  // Waits for the kernel's node of partition n (asking partx when the scan left it out).
  [[nodiscard]] bool wait_partition(int n) const {
    for (int i = 0; i < 50; ++i) {
      if (std::filesystem::exists(part(n))) return true;
      if (i % 10 == 0) run("partx -a " + dev_ + " >/dev/null 2>&1");
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

 private:
  std::string dev_, error_;
};

}  // namespace abup::test

// Loudly skips the rest of a test case: ctest would otherwise count it as a silent pass.
#define ABUP_SKIP(why)             \
  do {                             \
    MESSAGE("SKIPPED: " << (why)); \
    return;                        \
  } while (0)
