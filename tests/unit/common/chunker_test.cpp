// The content-defined chunker: cuts depend on content only, so they survive data moving by whole
// blocks; sizes stay within min/max; free space does not shatter into small chunks.
#include "abup/chunker.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <vector>

using namespace abup;

namespace {

std::vector<std::uint8_t> random_bytes(std::size_t n, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::uint8_t> v(n);
  for (auto& b : v) b = static_cast<std::uint8_t>(rng());
  return v;
}

std::vector<std::uint64_t> cut_all(const std::vector<std::uint8_t>& data, const ChunkerParams& p) {
  std::vector<std::uint64_t> ends;
  for (std::uint64_t pos = 0; pos < data.size();) {
    pos += next_cut({data.data() + pos, data.size() - pos}, p);
    ends.push_back(pos);
  }
  return ends;
}

}  // namespace

TEST_CASE("chunks are 4 KiB-aligned and within min/max, averaging near avg") {
  const ChunkerParams p;
  auto data = random_bytes(32 << 20, 1);
  auto ends = cut_all(data, p);
  std::uint64_t prev = 0;
  for (std::size_t i = 0; i < ends.size(); ++i) {
    const auto len = ends[i] - prev;
    CHECK(len <= p.max);
    if (i + 1 < ends.size()) {
      CHECK(len >= p.min);
      CHECK(ends[i] % kChunkBlock == 0);
    }
    prev = ends[i];
  }
  const double avg = static_cast<double>(data.size()) / static_cast<double>(ends.size());
  INFO("average chunk " << avg);
  CHECK(avg > 0.75 * static_cast<double>(p.avg));
  CHECK(avg < 1.5 * static_cast<double>(p.avg));
}

TEST_CASE("inserting whole blocks moves later cuts with the data instead of changing them") {
  const ChunkerParams p;
  auto v1 = random_bytes(8 << 20, 2);
  auto v2 = v1;
  auto extra = random_bytes(3 * kChunkBlock, 3);
  v2.insert(v2.begin() + (1 << 20), extra.begin(), extra.end());
  auto a = cut_all(v1, p), b = cut_all(v2, p);
  std::size_t shared = 0;
  for (auto e : a)
    if (e > (1 << 20) + p.max && std::find(b.begin(), b.end(), e + extra.size()) != b.end())
      ++shared;
  std::size_t after = 0;
  for (auto e : a)
    if (e > (1 << 20) + p.max) ++after;
  CHECK(after > 30);
  CHECK(shared == after);
}

TEST_CASE("zeros become maximum-size chunks") {
  const ChunkerParams p;
  std::vector<std::uint8_t> zeros(4 << 20, 0);
  auto ends = cut_all(zeros, p);
  CHECK(ends.size() == (4 << 20) / p.max);
}

TEST_CASE("chunker names: what the manifest may say") {
  CHECK(ChunkerParams{}.name() == "cdc/16K/128K/512K");
  auto p = ChunkerParams::parse("cdc/32K/128K/1024K");
  REQUIRE(p);
  CHECK(p->min == 32 << 10);
  CHECK(p->max == 1 << 20);
  for (const char* bad : {"cdc/16K/64K", "cdc/16K/48K/256K", "cdc/64K/16K/256K", "cdc/6K/64K/256K",
                          "cdc/16K/64K/32768K", "cdc/16K/64K/256", "fixed", "cdc/16K/64K/256K/"})
    CHECK_MESSAGE(!ChunkerParams::parse(bad), bad);
}
