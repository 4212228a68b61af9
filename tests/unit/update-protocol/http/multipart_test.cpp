// The multipart/byteranges parser on its own: well-formed bodies in any split, and every way a
// body can differ from what was asked for.
#include "update-protocol/http/multipart.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

namespace abup::protocol::test {
namespace {

constexpr std::uint64_t kTotal = 1000;
const std::string kBoundary = "b0und";

std::string part(std::uint64_t first, std::uint64_t last, std::uint64_t total = kTotal,
                 const std::string& extra_header = "") {
  std::string data;
  for (auto i = first; i <= last; ++i) data += static_cast<char>('a' + i % 26);
  return "\r\n--" + kBoundary + "\r\nContent-Type: application/octet-stream\r\n" + extra_header +
         "Content-Range: bytes " + std::to_string(first) + "-" + std::to_string(last) + "/" +
         std::to_string(total) + "\r\n\r\n" + data;
}

const std::string kClose = "\r\n--" + kBoundary + "--\r\n";

struct Outcome {
  Status status;
  bool complete = false;
  std::vector<std::string> parts;
};

// Feeds `body` in pieces of `step` bytes.
Outcome parse(const std::string& body, std::vector<ContentRange> want, std::size_t step = 1 << 20) {
  ByterangesParser p(kBoundary, std::move(want), kTotal);
  Outcome out;
  auto on_data = [&](std::size_t i, std::span<const std::uint8_t> d) -> Status {
    if (out.parts.size() <= i) out.parts.resize(i + 1);
    out.parts[i].append(reinterpret_cast<const char*>(d.data()), d.size());
    return {};
  };
  for (std::size_t off = 0; off < body.size() && out.status; off += step) {
    auto n = std::min(step, body.size() - off);
    out.status = p.feed({reinterpret_cast<const std::uint8_t*>(body.data()) + off, n}, on_data);
  }
  out.complete = p.complete();
  return out;
}

std::string error_of(const Outcome& o) {
  REQUIRE_FALSE(o.status.has_value());
  CHECK(o.status.error().code == Errc::invalid_input);
  return o.status.error().message;
}

const std::vector<ContentRange> kTwo{{10, 19, kTotal}, {100, 104, kTotal}};

}  // namespace

TEST_CASE("a well-formed body delivers each part's bytes, whatever the piece size") {
  const std::string body = part(10, 19) + part(100, 104) + kClose;
  for (std::size_t step : {std::size_t{1}, std::size_t{2}, std::size_t{7}, body.size()}) {
    CAPTURE(step);
    auto o = parse(body, kTwo, step);
    REQUIRE(o.status.has_value());
    CHECK(o.complete);
    REQUIRE(o.parts.size() == 2);
    CHECK(o.parts[0] == "klmnopqrst");
    CHECK(o.parts[1] == "wxyza");
  }
  // Bare LF ends of header lines, a preamble, transport padding and headers in any case are
  // tolerated (the CRLF after a part's data is not optional: it is what proves the part's end).
  std::string lax = "preamble text\n--" + kBoundary + "  \ncontent-range: bytes 10-19/1000\n\n" +
                    "klmnopqrst\r\n--" + kBoundary + "\r\nX-Other: 1\r\nCONTENT-RANGE:bytes " +
                    "100-104/1000\r\n\r\nwxyza\r\n--" + kBoundary + "--";
  auto o = parse(lax, kTwo, 3);
  REQUIRE(o.status.has_value());
  CHECK(o.complete);
}

TEST_CASE("a body that ends early is not complete, and says so without an error") {
  const std::string body = part(10, 19) + part(100, 104) + kClose;
  auto o = parse(body.substr(0, body.size() - kClose.size() - 2), kTwo);
  REQUIRE(o.status.has_value());
  CHECK_FALSE(o.complete);
}

TEST_CASE("parts that differ from the ranges asked for are refused, naming the difference") {
  CHECK(error_of(parse(part(100, 104) + part(10, 19) + kClose, kTwo))
            .find("part 1 is range 100-104 where 10-19 was asked for (parts out of order)") !=
        std::string::npos);
  CHECK(error_of(parse(part(10, 19) + kClose, kTwo))
            .find("only 1 parts; range 100-104 and any after it are missing") != std::string::npos);
  CHECK(error_of(parse(part(10, 19) + part(100, 104) + part(0, 0) + kClose, kTwo))
            .find("an extra part after the 2 ranges asked for") != std::string::npos);
  CHECK(error_of(parse(part(10, 19) + part(101, 104) + kClose, kTwo))
            .find("part 2 is range 101-104 where 100-104 was asked for (a range not asked for)") !=
        std::string::npos);
  CHECK(error_of(parse(part(10, 19, 999) + part(100, 104) + kClose, kTwo))
            .find("part 1 names a resource of 999 bytes, not 1000") != std::string::npos);
  CHECK(error_of(parse(kClose, kTwo)).find("closing delimiter comes before any part") !=
        std::string::npos);
}

TEST_CASE("parts longer or shorter than their Content-Range are refused") {
  std::string longer = part(10, 19) + "X" + part(100, 104) + kClose;
  const std::string what = "part 1 does not end where its range 10-19 does";
  CHECK(error_of(parse(longer, kTwo)).find(what) != std::string::npos);
  // Short by one or two: the CR (LF) of the delimiter line is taken as data, then no CRLF follows.
  std::string p1 = part(10, 19);
  for (std::size_t cut : {1, 2, 5}) {
    CAPTURE(cut);
    std::string shorter = p1.substr(0, p1.size() - cut) + part(100, 104) + kClose;
    CHECK(error_of(parse(shorter, kTwo)).find(what) != std::string::npos);
  }
}

TEST_CASE("malformed part headers and endless non-payload are refused") {
  CHECK(error_of(parse("\r\n--" + kBoundary + "\r\n\r\nabc", kTwo))
            .find("part 1 has no Content-Range") != std::string::npos);
  CHECK(error_of(parse("\r\n--" + kBoundary + "\r\nContent-Range: bytes 19-10/1000\r\n\r\n", kTwo))
            .find("part 1 has an invalid Content-Range") != std::string::npos);
  CHECK(error_of(parse(part(10, 19, kTotal, "Content-Range: bytes 10-19/1000\r\n"), kTwo))
            .find("two Content-Range headers") != std::string::npos);
  CHECK(error_of(parse("\r\n--" + kBoundary + "\r\nno colon here\r\n", kTwo))
            .find("malformed header line") != std::string::npos);
  CHECK(error_of(parse(std::string(3000, 'p'), kTwo)).find("a line of more than") !=
        std::string::npos);
  std::string many_lines;
  for (int i = 0; i < 200; ++i) many_lines += "preamble line\r\n";
  CHECK(error_of(parse(many_lines, kTwo)).find("no delimiter line") != std::string::npos);
  std::string many_headers = "\r\n--" + kBoundary + "\r\n";
  for (int i = 0; i < 1000; ++i) many_headers += "X-Pad: 0123456789\r\n";
  CHECK(error_of(parse(many_headers, kTwo)).find("bytes of headers") != std::string::npos);
  CHECK(error_of(parse(part(10, 19) + part(100, 104) + kClose + "trailing junk", kTwo))
            .find("data after the closing delimiter") != std::string::npos);
  CHECK(error_of(parse(part(10, 19) + "\r\n--other\r\n", kTwo))
            .find("expected the delimiter after part 1") != std::string::npos);
}

TEST_CASE("a sink's error stops the parser and comes back unchanged") {
  ByterangesParser p(kBoundary, kTwo, kTotal);
  const std::string body = part(10, 19) + part(100, 104) + kClose;
  auto st = p.feed({reinterpret_cast<const std::uint8_t*>(body.data()), body.size()},
                   [](std::size_t, std::span<const std::uint8_t>) -> Status {
                     return make_error(Errc::io, "disk full");
                   });
  REQUIRE_FALSE(st.has_value());
  CHECK(st.error().code == Errc::io);
  CHECK(st.error().message == "disk full");
}

TEST_CASE("the boundary comes from a multipart/byteranges Content-Type only") {
  CHECK(byteranges_boundary("multipart/byteranges; boundary=abc") == "abc");
  CHECK(byteranges_boundary("Multipart/ByteRanges;charset=x; BOUNDARY=\"a b:c\"") == "a b:c");
  CHECK_FALSE(byteranges_boundary("multipart/byteranges"));
  CHECK_FALSE(byteranges_boundary("multipart/mixed; boundary=abc"));
  CHECK_FALSE(byteranges_boundary("application/octet-stream"));
  CHECK_FALSE(byteranges_boundary("multipart/byteranges; boundary="));
  CHECK_FALSE(byteranges_boundary("multipart/byteranges; boundary=" + std::string(71, 'a')));
  CHECK_FALSE(byteranges_boundary("multipart/byteranges; boundary=a;boundary=b"));
  CHECK_FALSE(byteranges_boundary("multipart/byteranges; boundary=a\r\nb"));
  CHECK(range_header(kTwo) == "bytes=10-19,100-104");
}

}  // namespace abup::protocol::test
