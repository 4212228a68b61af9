// Source::read_ranges over HTTP: several ranges per request (multipart/byteranges) against nginx,
// the fallback to single ranges for servers that do not answer them, and hostile multipart bodies
// from the fault server.
#include <doctest/doctest.h>

#include <sstream>

#include "http_helpers.hpp"

namespace abup::protocol::test {
namespace {

// `n` ranges of 1000 + 37·i bytes, 50 KiB apart.
std::vector<Range> spread(std::size_t n) {
  std::vector<Range> out;
  for (std::size_t i = 0; i < n; ++i) out.push_back({i * (50 << 10) + 123, 1000 + 37 * i});
  return out;
}

struct Read {
  Result<std::uint64_t> requests;
  std::vector<std::string> data;
  bool in_order = true;
};

Read read(Source& src, const std::vector<Range>& ranges) {
  Read r{0, std::vector<std::string>(ranges.size()), true};
  std::size_t last = 0;
  r.requests = src.read_ranges(ranges, [&](std::size_t i, std::span<const std::uint8_t> p) {
    if (i < last) r.in_order = false;
    last = i;
    r.data.at(i).append(reinterpret_cast<const char*>(p.data()), p.size());
    return Status{};
  });
  return r;
}

// read() that must succeed, delivering each range's bytes of `image` in order.
Read read_checked(Source& src, const std::vector<Range>& ranges, const std::string& image) {
  Read r = read(src, ranges);
  REQUIRE_MESSAGE(r.requests.has_value(), (r.requests ? "" : r.requests.error().message));
  CHECK(r.in_order);
  for (std::size_t i = 0; i < ranges.size(); ++i)
    CHECK(r.data[i] == image.substr(ranges[i].offset, ranges[i].length));
  return r;
}

std::string third_word(const std::string& line) {
  std::istringstream in(line);
  std::string w;
  for (int i = 0; i < 3 && in >> w;) ++i;
  return w;
}

// Each request of the log from `first` on asked for a single range.
void check_single_ranges(const std::vector<std::string>& log, std::size_t first) {
  for (std::size_t i = first; i < log.size(); ++i)
    CHECK(third_word(log[i]).find(',') == std::string::npos);
}

std::uint64_t sum(const std::vector<Range>& ranges) {
  std::uint64_t n = 0;
  for (const auto& r : ranges) n += r.length;
  return n;
}

}  // namespace

TEST_CASE_FIXTURE(OnNginx, "nginx answers up to MaxRangesPerRequest ranges per request") {
  auto src = open_ok(nginx.url("image.bin"), fast_options());
  auto ranges = spread(40);
  auto r = read_checked(*src, ranges, d.image);
  CHECK(*r.requests == 3);  // 16 + 16 + 8
  auto log = nginx.access_log(4);
  REQUIRE(log.size() == 4);
  for (std::size_t i = 1; i < 4; ++i) {
    CHECK(log[i].find(" 206 ") != std::string::npos);
    auto range = third_word(log[i]);
    CHECK(std::count(range.begin(), range.end(), ',') == (i < 3 ? 15 : 7));
  }
  // Multipart headers cost a little over the payload, never whole gaps.
  CHECK(src->bytes_fetched() > sum(ranges));
  CHECK(src->bytes_fetched() < sum(ranges) + 40 * 200);

  TransportOptions one = fast_options();
  one.max_ranges_per_request = 1;
  auto single = open_ok(nginx.url("image.bin"), one);
  CHECK(*read_checked(*single, ranges, d.image).requests == 40);
  CHECK(single->bytes_fetched() == sum(ranges));
}

TEST_CASE_FIXTURE(OnNginx,
                  "a server that answers several ranges with 200 is asked one range at a time") {
  auto src = open_ok(nginx.url("onerange/image.bin"), fast_options());
  auto ranges = spread(20);
  CHECK(*read_checked(*src, ranges, d.image).requests ==
        1 + 20);  // the refused multi-range request, then one per range
  // The 200 was abandoned at its first piece: far from the 5 MiB of the whole file.
  CHECK(src->bytes_fetched() < sum(ranges) + (64 << 10));
  // Remembered: the next batch goes straight to single ranges.
  CHECK(*read_checked(*src, spread(3), d.image).requests == 3);
  auto log = nginx.access_log(1 + 21 + 3);
  REQUIRE(log.size() == 25);
  CHECK(log[1].find(" 200 ") != std::string::npos);
  for (std::size_t i = 2; i < log.size(); ++i) CHECK(log[i].find(" 206 ") != std::string::npos);
  check_single_ranges(log, 2);
}

TEST_CASE_FIXTURE(
    OnFaultServer,
    "a server that answers several ranges with one 206 range is asked one at a time") {
  auto src = open_ok(fault.url("firstrange/image.bin"), fast_options());
  CHECK(*read_checked(*src, spread(5), d.image).requests == 1 + 5);
  auto log = fault.requests();
  REQUIRE(log.size() == 1 + 1 + 5);
  CHECK(third_word(log[1]).find(',') != std::string::npos);
  check_single_ranges(log, 2);
}

TEST_CASE_FIXTURE(OnFaultServer, "a multipart body broken mid-part is resumed from the next byte") {
  auto src = open_ok(fault.url("multi/drop/image.bin"), fast_options());
  auto ranges = spread(4);
  auto r = read_checked(*src, ranges, d.image);
  auto log = fault.requests();
  // Each request breaks in the middle of its second part; the one after starts inside it.
  REQUIRE(log.size() >= 3);
  CHECK(third_word(log[2]).starts_with(
      "bytes=" + std::to_string(ranges[1].offset + ranges[1].length / 2) + "-"));
  CHECK(*r.requests == log.size() - 1);
}

TEST_CASE_FIXTURE(OnFaultServer,
                  "hostile multipart bodies are refused, naming the server and what was wrong") {
  const std::vector<std::pair<std::string, std::string>> faults{
      {"reorder", "part 1 is range 51323-52359 where 123-1122 was asked for (parts out of order)"},
      {"missing", "only 3 parts; range 153723-154833 and any after it are missing"},
      {"extra", "an extra part after the 4 ranges asked for"},
      {"short", "part 1 does not end where its range 123-1122 does"},
      {"long", "part 1 does not end where its range 123-1122 does"},
      {"wrongtotal", "part 1 names a resource of 5242881 bytes, not 5242880"},
      {"noboundary", "Content-Type \"multipart/byteranges\" (expected multipart/byteranges with a"},
  };
  for (const auto& [kind, what] : faults) {
    CAPTURE(kind);
    const std::string url = fault.url("multi/" + kind + "/image.bin");
    auto src = open_ok(url, fast_options());
    auto r = read(*src, spread(4));
    const Error& e = failure_of(r.requests);
    CHECK(e.code == Errc::invalid_input);
    CHECK(e.message.starts_with(url + ": "));
    CHECK(e.message.find(what) != std::string::npos);
  }
  // Not retried: a server that sends the wrong parts sends them again.
  std::size_t gets = 0;
  for (const auto& line : fault.requests()) gets += line.starts_with("GET ");
  CHECK(gets == faults.size());
}

}  // namespace abup::protocol::test
