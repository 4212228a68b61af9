// Digests used across abup: SHA-256/SHA-384 (OpenSSL EVP, SHA-NI when the CPU has it) and
// XXH3-128 (the fast, non-cryptographic read-back check; see docs/design.md).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "abup/bytes.hpp"

namespace abup {

using Sha256 = std::array<std::uint8_t, 32>;
using Sha384 = std::array<std::uint8_t, 48>;
using Xxh128 = std::array<std::uint8_t, 16>;

class Sha2 {
 public:
  enum class Kind { sha256, sha384 };
  explicit Sha2(Kind kind);
  ~Sha2();
  Sha2(const Sha2&) = delete;
  Sha2& operator=(const Sha2&) = delete;
  void update(std::span<const std::uint8_t> data);
  void update(std::string_view data);
  // Writes the digest (32 or 48 bytes) and resets for reuse.
  void finish(std::span<std::uint8_t> out);
  // Writes the digest of what was fed so far, and goes on from there.
  void peek(std::span<std::uint8_t> out) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  Kind kind_;
};

[[nodiscard]] Sha256 sha256(std::span<const std::uint8_t> data);
[[nodiscard]] Sha384 sha384(std::span<const std::uint8_t> data);
[[nodiscard]] Xxh128 xxh128(std::span<const std::uint8_t> data);

class Xxh128Stream {
 public:
  Xxh128Stream();
  ~Xxh128Stream();
  Xxh128Stream(const Xxh128Stream&) = delete;
  Xxh128Stream& operator=(const Xxh128Stream&) = delete;
  void update(std::span<const std::uint8_t> data);
  [[nodiscard]] Xxh128 finish() const;

 private:
  void* state_;
};

}  // namespace abup
