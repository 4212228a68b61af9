// Shared by the http tests: a document root with a random 5 MiB file, and fast-retry options.
#pragma once

#include <doctest/doctest.h>

#include <chrono>
#include <cstdint>
#include <random>
#include <string>

#include "support/util.hpp"
#include "update-protocol/http/client.hpp"

namespace abup::protocol::test {

using namespace std::chrono_literals;

inline constexpr std::size_t kImageSize = 5 << 20;

struct Docroot {
  abup::test::TempDir dir;
  std::filesystem::path root = dir / "www";
  std::string image;  // the bytes of www/image.bin

  Docroot() {
    std::filesystem::create_directories(root);
    std::mt19937_64 rng(0xab0b);
    image.resize(kImageSize);
    for (std::size_t i = 0; i < image.size(); i += 8) {
      std::uint64_t v = rng();
      for (std::size_t j = 0; j < 8 && i + j < image.size(); ++j)
        image[i + j] = static_cast<char>(v >> (8 * j));
    }
    abup::test::write_file(root / "image.bin", image);
    abup::test::write_file(root / "small.txt", "hello, abup\n");
  }
};

// Plain http allowed (the loopback servers), retries quick enough for a test.
inline TransportOptions fast_options() {
  TransportOptions o;
  o.allow_http = true;
  o.max_retries = 3;
  o.retry_base = 10ms;
  o.retry_max = 40ms;
  o.connect_timeout = 5s;
  return o;
}

inline std::unique_ptr<Source> open_ok(const std::string& url, const TransportOptions& o) {
  auto r = open_http_source(url, o);
  INFO(url);
  REQUIRE_MESSAGE(r.has_value(), (r ? std::string() : r.error().message));
  return std::move(r).value();
}

// The whole of [offset, offset + length) through read_range.
inline std::string read_all(Source& s, std::uint64_t offset, std::uint64_t length) {
  std::string out;
  Status st = s.read_range(offset, length, [&](std::span<const std::uint8_t> piece) -> Status {
    out.append(reinterpret_cast<const char*>(piece.data()), piece.size());
    return {};
  });
  REQUIRE_MESSAGE(st.has_value(), (st ? std::string() : st.error().message));
  return out;
}

inline std::string error_of(const Status& st) {
  REQUIRE_FALSE(st.has_value());
  return st.error().message;
}

}  // namespace abup::protocol::test
