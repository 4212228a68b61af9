// Where persistent boot state is written: positioned writes and a durability barrier. The
// production implementation is a file descriptor; tests record every call and replay prefixes
// of the sequence to prove crash safety (docs/architecture.md §3 invariant 5).
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "abup/result.hpp"

namespace abup::partitions {

class SectorWriter {
 public:
  virtual ~SectorWriter() = default;
  [[nodiscard]] virtual Status write(std::uint64_t offset, std::span<const std::uint8_t> data) = 0;
  [[nodiscard]] virtual Status sync() = 0;
};

// pwrite + fsync on a file descriptor it does not own; `what` names the file in errors.
class FdSectorWriter final : public SectorWriter {
 public:
  FdSectorWriter(int fd, std::string what) : fd_(fd), what_(std::move(what)) {}
  [[nodiscard]] Status write(std::uint64_t offset, std::span<const std::uint8_t> data) override;
  [[nodiscard]] Status sync() override;

 private:
  int fd_;
  std::string what_;
};

}  // namespace abup::partitions
