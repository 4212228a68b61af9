// The body of a reply to a multi-range request (RFC 9110 §14.6, `multipart/byteranges`), parsed
// as it streams in. Pure (no I/O), so it is fuzzed (tests/fuzz/fuzz_byteranges.cpp). Strict: the
// parts must be exactly the ranges asked for, in the order asked, each of exactly its
// Content-Range's length; anything else is an error naming what was wrong.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "abup/result.hpp"

namespace abup::protocol {

struct ContentRange {
  std::uint64_t first = 0;
  std::uint64_t last = 0;  // inclusive
  std::uint64_t total = 0;
};

// "bytes FIRST-LAST/TOTAL" (RFC 9110 §14.4); an unknown total ("*") is not accepted.
[[nodiscard]] std::optional<ContentRange> parse_content_range(std::string_view v);

// The boundary of a `multipart/byteranges; boundary=...` Content-Type (quoted or not, 1-70
// characters); nullopt for any other type or a missing or malformed boundary.
[[nodiscard]] std::optional<std::string> byteranges_boundary(std::string_view content_type);

// The value of a Range header asking for each [first, last] in order: "bytes=a-b,c-d".
[[nodiscard]] std::string range_header(std::span<const ContentRange> ranges);

class ByterangesParser {
 public:
  // Receives the bytes of part `part` (an index into the expected ranges) in order.
  using OnData = std::function<Status(std::size_t part, std::span<const std::uint8_t>)>;

  // `expected`: the ranges asked for (first/last; their totals must be `total`).
  ByterangesParser(std::string boundary, std::vector<ContentRange> expected, std::uint64_t total);

  // Errc::invalid_input for a body that breaks the format or does not match what was asked;
  // an error from on_data is returned unchanged (and the parser must not be fed again).
  [[nodiscard]] Status feed(std::span<const std::uint8_t> in, const OnData& on_data);
  // The whole body was parsed up to its closing delimiter (which may end the body unterminated).
  [[nodiscard]] bool complete() const;
  // Where a body that ended early stopped: the part being received and its bytes delivered.
  [[nodiscard]] std::size_t part() const { return part_; }
  [[nodiscard]] std::uint64_t part_delivered() const { return delivered_; }

 private:
  enum class State { preamble, headers, data, after_data, delimiter, epilogue };
  [[nodiscard]] Status line(std::string_view text);
  [[nodiscard]] Status end_of_headers();
  [[nodiscard]] Status error(const std::string& what) const;

  std::string delimiter_;  // "--" + boundary
  std::vector<ContentRange> expected_;
  std::uint64_t total_;
  State state_ = State::preamble;
  std::string line_;
  std::size_t part_ = 0;
  std::uint64_t delivered_ = 0;  // of the current part
  std::uint64_t left_ = 0;       // of the current part's data
  int crlf_ = 0;                 // bytes of the CRLF after a part's data seen
  std::size_t header_bytes_ = 0;
  std::size_t preamble_bytes_ = 0;
  std::optional<ContentRange> range_;
  std::uint64_t offset_ = 0;  // bytes of the body consumed, for messages
};

}  // namespace abup::protocol
