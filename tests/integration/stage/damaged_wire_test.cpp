// Bytes damaged between the server and abup (tests/support/fault_server.py): two frames in a row
// that fail their SHA-256 stop the response they came in, which is asked again from the first,
// so a byte duplicated or lost in a range response costs about two frames, not every later frame
// of the response; a server that damages the same frame every time fails the stage after a
// bounded number of downloads of it.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <regex>

#include "stage_helpers.hpp"
#include "support/fault_server.hpp"
#include "support/world.hpp"

using namespace abup::test;

namespace {

// libcurl hands abup at most this much at once (CURLOPT_BUFFERSIZE in http/curl/easy.cpp): what
// a response may have brought past the damaged frame before it is stopped.
constexpr std::uint64_t kCurlBuffer = 512 << 10;

struct FrameAt {
  std::size_t index = 0;
  std::uint64_t offset = 0;  // of its compressed bytes in the COSI file
  std::uint64_t size = 0;    // compressed
  std::uint64_t uncompressed_offset = 0;
  std::uint64_t next_end = 0;  // where the next frame abup downloads ends in the COSI file
};

// The first frame of the usr image that abup downloads (not a zero chunk) and that lies past
// the tar index's read-ahead window (256 KiB).
FrameAt first_downloaded_frame(const std::filesystem::path& cosi) {
  const auto data = usr_entry_offset(cosi);
  const auto frames = frames_of(cosi);
  FrameAt found;
  std::uint64_t offset = 0;
  for (std::size_t i = 0; i < frames.size(); ++i) {
    const auto& f = frames[i];
    const bool downloaded = !is_zero_chunk(f);
    const auto size = f[2].get<std::uint64_t>();
    if (downloaded && found.size > 0) {
      found.next_end = data + offset + size;
      return found;
    }
    if (downloaded && data + offset >= (256u << 10))
      found = {i, data + offset, size, f[0].get<std::uint64_t>(), 0};
    offset += size;
  }
  FAIL("no two downloaded frames in " << cosi);
  return {};
}

// Requests in the fault server's log ("GET PATH bytes=A-B[,C-D...]") whose ranges hold `byte`.
int requests_holding(const FaultServer& server, std::uint64_t byte) {
  int n = 0;
  static const std::regex range(R"((\d+)-(\d+))");
  for (const auto& line : server.requests()) {
    if (!line.starts_with("GET ")) continue;
    const auto ranges = line.substr(line.rfind(' ') + 1);
    for (std::sregex_iterator m(ranges.begin(), ranges.end(), range), end; m != end; ++m)
      if (std::stoull((*m)[1]) <= byte && byte <= std::stoull((*m)[2])) ++n;
  }
  return n;
}

}  // namespace

TEST_CASE(
    "a byte duplicated or lost inside a range response costs about two frames, not the rest of "
    "it") {
  World w;
  auto image = w.build_signed("v2", "202607.02.0", "--chunker cdc");
  const auto frame = first_downloaded_frame(image);
  const auto fault = duplicated_or_lost("dupbyte", "dropbyte");
  CAPTURE(fault);
  FaultServer server(image.parent_path());
  const auto damaged = frame.offset + frame.size / 2;
  auto r = stage_ok(w, server.url(fault + "/" + std::to_string(damaged) + "/v2.cosi"),
                    "--allow-http --json");
  INFO(r.out);
  // Every later byte of that response was shifted: the damaged frame and the next one failed
  // their SHA-256, abup stopped the response there and asked again from the damaged frame. Over
  // the wire: the image once, those frames again, and what the stopped response had handed over
  // past them (at most one curl buffer).
  CHECK(std::stoull(json_field(r.out, "downloadedBytes")) <=
        std::filesystem::file_size(image) + (frame.next_end - frame.offset) + kCurlBuffer);
  CHECK(std::stoull(json_field(r.out, "rangeRequests")) == 2);
  auto log = server.requests();
  REQUIRE(!log.empty());
  CHECK(log.back().find("bytes=" + std::to_string(frame.offset) + "-") != std::string::npos);
}

TEST_CASE("a server that damages the same frame every time fails the stage after 3 downloads") {
  World w;
  auto image = w.build_signed("v2", "202607.02.0", "--chunker cdc");
  const auto frame = first_downloaded_frame(image);
  const auto before = w.snapshot();
  FaultServer server(image.parent_path());
  const auto damaged = frame.offset + frame.size / 2;
  const auto url = server.url("corruptalways/" + std::to_string(damaged) + "/v2.cosi");
  auto r = w.stage(url, "--allow-http");
  INFO(r.out);
  CHECK(r.exit_code != 0);
  CHECK(r.out.find("images/usr.img.zst frame " + std::to_string(frame.index) +
                   ": compressed frame SHA-256 does not match the signed manifest after 3 "
                   "downloads (its " +
                   std::to_string(frame.size) + " bytes at offset " + std::to_string(frame.offset) +
                   " of " + url + ", uncompressed offset " +
                   std::to_string(frame.uncompressed_offset) + ")") != std::string::npos);
  // The documented limit (docs/design.md): the first download and two more, then no more.
  CHECK(requests_holding(server, damaged) == 3);
  auto status = nlohmann::json::parse(w.slot_state_json());
  CHECK(status["slots"][1]["state"] == "failed");
  const auto after = w.snapshot();
  CHECK(after.booted_slot == before.booted_slot);
  CHECK(after.gpt == before.gpt);
}
