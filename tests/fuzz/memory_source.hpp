// A Source over the fuzzer's input bytes, so the archive readers can be fuzzed without files.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>

#include "update-protocol/source.hpp"

namespace abup::fuzz {

class MemorySource final : public protocol::Source {
 public:
  explicit MemorySource(std::span<const std::uint8_t> data) : data_(data) {}
  [[nodiscard]] const std::string& describe() const override { return name_; }
  [[nodiscard]] std::uint64_t size() const override { return data_.size(); }
  [[nodiscard]] Status read_at(std::uint64_t offset, std::span<std::uint8_t> buf) override {
    if (offset > data_.size() || buf.size() > data_.size() - offset)
      return make_error(Errc::io, name_ + ": short read");
    std::copy_n(data_.begin() + static_cast<std::ptrdiff_t>(offset), buf.size(), buf.begin());
    fetched_ += buf.size();
    return {};
  }
  [[nodiscard]] Status read_range(std::uint64_t offset, std::uint64_t length,
                                  const Sink& sink) override {
    if (offset > data_.size() || length > data_.size() - offset)
      return make_error(Errc::io, name_ + ": short read");
    fetched_ += length;
    return sink(data_.subspan(offset, length));
  }
  [[nodiscard]] std::uint64_t bytes_fetched() const override { return fetched_; }

 private:
  std::span<const std::uint8_t> data_;
  std::string name_ = "fuzz-input";
  std::uint64_t fetched_ = 0;
};

}  // namespace abup::fuzz
