// The schema-2 frame table (content-defined frames): what the signed uncompressed offsets and
// sizes may be, and the limits that keep an endless table from exhausting memory.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "support/manifest_samples.hpp"
#include "update-protocol/manifest/manifest.hpp"

using namespace abup;
using namespace abup::protocol;

namespace {

// Three frames of 64, 128 and 20 KiB (the last one need not be whole blocks).
Manifest cdc_sample() {
  return abup::test::cdc_manifest({abup::test::cdc_image("images/usr.img.zst", "/usr",
                                                         {64 << 10, 128 << 10, (20 << 10) + 100})});
}

// Parses the sample after `edit` changed its JSON; the error message (empty when it parsed).
template <typename Edit>
std::string error_after(Edit&& edit) {
  auto doc = nlohmann::json::parse(serialize_manifest(cdc_sample()));
  edit(doc["images"][0]);
  auto m = parse_manifest(doc.dump());
  return m ? std::string() : m.error().message;
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("a schema-2 manifest round-trips, one line per frame, offsets as signed") {
  const auto text = serialize_manifest(cdc_sample());
  CHECK(contains(text, "\"schemaVersion\": 2"));
  CHECK(contains(text, "\"chunker\": \"cdc/16K/64K/256K\""));
  CHECK(contains(text, "        [65536, 131072, 1001, \""));
  auto m = parse_manifest(text);
  REQUIRE_MESSAGE(m.has_value(), m.error().message);
  CHECK(m->schema_version == 2);
  const auto& f = m->images[0].frames;
  REQUIRE(f.size() == 3);
  CHECK(f[1].uncompressed_offset == 64 << 10);
  CHECK(f[1].offset == 1000);  // compressed offsets are contiguous, derived
  CHECK(f[2].offset == 2001);
  CHECK(f[2].chunk_xxh3 == cdc_sample().images[0].frames[2].chunk_xxh3);
  CHECK(serialize_manifest(*m) == text);
  // One line per frame: a schema-1 object takes ~400 bytes, what every node downloads.
  const auto line = text.substr(text.find("        [65536"));
  CHECK(line.find('\n') < 210);
}

TEST_CASE("schema-2 frame tables that do not tile the image exactly are refused") {
  SUBCASE("overlapping") {
    auto e = error_after([](auto& img) { img["frames"][1][0] = 60 << 10; });
    CHECK(e ==
          "abup/manifest.json: images[0].frames[1]: overlaps the previous frame "
          "(uncompressedOffset 61440, previous frame ends at 65536)");
  }
  SUBCASE("unordered") {
    auto e = error_after([](auto& img) { img["frames"][1][0] = 0; });
    CHECK(contains(e, "images[0].frames[1]: frames out of order (uncompressedOffset 0"));
  }
  SUBCASE("gap-leaving") {
    auto e = error_after([](auto& img) { img["frames"][1][0] = 68 << 10; });
    CHECK(contains(e, "images[0].frames[1]: leaves a gap after the previous frame"));
  }
  SUBCASE("the first frame not at 0") {
    auto e = error_after([](auto& img) { img["frames"][0][0] = 4096; });
    CHECK(contains(e, "images[0].frames[0]: leaves a gap"));
  }
  SUBCASE("zero-size, uncompressed or compressed") {
    CHECK(contains(error_after([](auto& img) { img["frames"][2][1] = 0; }),
                   "images[0].frames[2]: zero-size frame"));
    CHECK(contains(error_after([](auto& img) { img["frames"][0][2] = 0; }),
                   "images[0].frames[0]: zero-size frame"));
  }
  SUBCASE("oversized: past the chunker's maximum") {
    auto e = error_after([](auto& img) {
      img["frames"][1][1] = 512 << 10;
      img["frames"][2][0] = (64 + 512) << 10;
      img["uncompressedSize"] = ((64 + 512 + 20) << 10) + 100;
    });
    CHECK(e ==
          "abup/manifest.json: images[0].frames[1]: oversized frame: 524288 bytes, the "
          "chunker's maximum is 262144");
  }
  SUBCASE("oversized: more compressed bytes than zstd could ever need") {
    auto e = error_after([](auto& img) {
      img["frames"][2][2] = 100000;
      img["compressedSize"] = 2001 + 100000;
    });
    CHECK(contains(e, "images[0].frames[2]: oversized frame: compressedSize 100000"));
  }
  SUBCASE("a middle frame that is not whole 4 KiB blocks (the read-back needs them)") {
    auto e = error_after([](auto& img) {
      img["frames"][0][1] = (64 << 10) + 1;
      img["frames"][1][0] = (64 << 10) + 1;
      img["frames"][2][0] = (192 << 10) + 1;
      img["uncompressedSize"] = (212 << 10) + 101;
    });
    CHECK(contains(e, "images[0].frames[0]: uncompressedSize 65537 is not a multiple of 4096"));
  }
  SUBCASE("frames that add up to less than the image") {
    auto e = error_after([](auto& img) { img["uncompressedSize"] = 1 << 20; });
    CHECK(contains(e, "images[0]: frames do not add up to uncompressedSize"));
  }
  SUBCASE("a frame that is not the six-field array") {
    auto e = error_after([](auto& img) { img["frames"][1].erase(5); });
    CHECK(contains(e, "images[0].frames[1]: expected [uncompressedOffset, uncompressedSize"));
    e = error_after([](auto& img) { img["frames"][1][4] = "abcd"; });
    CHECK(contains(e, "images[0].frames[1]: chunkSha256: expected 64 hex digits"));
    e = error_after([](auto& img) { img["frames"][1][0] = -4096; });
    CHECK(contains(e, "uncompressedOffset: expected a non-negative integer"));
  }
  SUBCASE("an unknown or missing chunker") {
    CHECK(contains(error_after([](auto& img) { img["chunker"] = "cdc/16K/48K/256K"; }),
                   "images[0].chunker: unsupported 'cdc/16K/48K/256K'"));
    // Without a chunker, a schema-2 image's frames are read as schema 1's objects.
    CHECK(contains(error_after([](auto& img) { img.erase("chunker"); }), "images[0].frames[0]"));
  }
}

TEST_CASE("an endless frame table or manifest is refused before it is parsed into memory") {
  SUBCASE("frame count") {
    auto doc = nlohmann::json::parse(serialize_manifest(cdc_sample()));
    auto& frames = doc["images"][0]["frames"];
    // Counted before any frame is looked at: the entries need not even be frames.
    while (frames.size() <= kMaxFrames) frames.push_back(0);
    auto m = parse_manifest(doc.dump());
    REQUIRE_FALSE(m.has_value());
    CHECK(m.error().message ==
          "abup/manifest.json: images[0].frames: more than 1048576 frames "
          "in the manifest (an endless frame table?)");
  }
  SUBCASE("text size") {
    std::string text = serialize_manifest(cdc_sample());
    text.append(kMaxManifestText, ' ');
    auto m = parse_manifest(text);
    REQUIRE_FALSE(m.has_value());
    CHECK(contains(m.error().message, "bytes, more than the limit of 67108864"));
  }
}

TEST_CASE("schema-1 manifests (fixed frames) still parse and keep their format") {
  auto m = cdc_sample();
  m.schema_version = kManifestSchemaFixed;
  m.images[0].chunker.clear();
  const auto text = serialize_manifest(m);
  CHECK(contains(text, "\"offset\": 1000"));
  CHECK_FALSE(contains(text, "chunker"));
  auto parsed = parse_manifest(text);
  REQUIRE_MESSAGE(parsed.has_value(), parsed.error().message);
  CHECK(parsed->schema_version == 1);
  CHECK(parsed->images[0].frames[2].uncompressed_offset == 192 << 10);
  CHECK(serialize_manifest(*parsed) == text);
}
