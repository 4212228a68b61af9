// parse_manifest reads the frame tables as the text streams by (never as one DOM), before it
// knows the schema, the chunker or the image's sizes: what it accepts and which error it names
// first must not depend on where in the text a key is.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "support/manifest_samples.hpp"
#include "update-protocol/manifest/manifest.hpp"

using namespace abup;
using namespace abup::protocol;
using ojson = nlohmann::ordered_json;

namespace {

using abup::test::cdc_image;

// Two schema-2 images of four frames each; `fixed`: schema 1, frames as objects.
Manifest sample(bool fixed = false) {
  Manifest m;
  m.schema_version = fixed ? kManifestSchemaFixed : kManifestSchemaCdc;
  m.version = "202607.02.0";
  m.arch = "x86_64";
  m.issued_at = 1'790'000'000;
  m.metadata_sha384 = std::string(96, 'c');
  m.images.push_back(
      cdc_image("images/usr.img.zst", "/usr", {64 << 10, 128 << 10, 64 << 10, (20 << 10) + 100}));
  m.images.push_back(cdc_image("images/usr.hash.zst", "/usr#verity",
                               {64 << 10, 128 << 10, 64 << 10, (20 << 10) + 100}));
  if (fixed)
    for (auto& img : m.images) img.chunker.clear();
  return m;
}

// The sample's JSON with its keys in text order (ordered_json keeps it), for edits.
ojson sample_json(bool fixed = false) {
  return ojson::parse(serialize_manifest(sample(fixed)));
}

std::string error_of(const std::string& text) {
  auto m = parse_manifest(text);
  return m ? std::string("(parsed)") : m.error().message;
}

std::string error_of(const ojson& doc) {
  return error_of(doc.dump());
}

// `doc` with the keys of every object in the order `first` names them, the others after.
ojson reordered(const ojson& doc, const std::vector<std::string>& first) {
  if (doc.is_array()) {
    ojson out = ojson::array();
    for (const auto& e : doc) out.push_back(reordered(e, first));
    return out;
  }
  if (!doc.is_object()) return doc;
  ojson out = ojson::object();
  for (const auto& k : first)
    if (doc.contains(k)) out[k] = reordered(doc[k], first);
  for (const auto& [k, v] : doc.items())
    if (!out.contains(k)) out[k] = reordered(v, first);
  return out;
}

constexpr const char* kMsg = "abup/manifest.json: ";

}  // namespace

TEST_CASE("a manifest parses the same whatever the order of its keys") {
  for (bool fixed : {false, true}) {
    CAPTURE(fixed);
    const auto want = serialize_manifest(sample(fixed));
    // Frames before everything they are checked against: schemaVersion, chunker, both sizes.
    const auto frames_first = reordered(sample_json(fixed), {"images", "frames", "offset"});
    REQUIRE(frames_first.dump().find("\"schemaVersion\"") > frames_first.dump().find("\"frames\""));
    auto m = parse_manifest(frames_first.dump());
    REQUIRE_MESSAGE(m.has_value(), m.error().message);
    CHECK(serialize_manifest(*m) == want);
    const auto frames_last =
        reordered(sample_json(fixed), {"schemaVersion", "chunker", "compressedSize",
                                       "uncompressedSize", "chunkXxh3", "sha256", "chunkSha256"});
    m = parse_manifest(frames_last.dump());
    REQUIRE_MESSAGE(m.has_value(), m.error().message);
    CHECK(serialize_manifest(*m) == want);
  }
}

TEST_CASE("a bad frame is named only after the errors checked before it") {
  auto doc = reordered(sample_json(), {"images", "frames"});
  doc["images"][0]["frames"][1][3] = "not hex";
  const std::string frame1 =
      std::string(kMsg) + "images[0].frames[1]: sha256: expected 64 hex digits";
  CHECK(error_of(doc) == frame1);
  SUBCASE("the top-level fields, though they come after the frames in the text") {
    doc.erase("schemaVersion");
    CHECK(error_of(doc) == std::string(kMsg) + "schemaVersion: missing");
  }
  SUBCASE("the image's own fields") {
    doc["images"][0]["path"] = 7;
    CHECK(error_of(doc) == std::string(kMsg) + "images[0].path: expected a string");
  }
  SUBCASE("the chunker") {
    doc["images"][0]["chunker"] = "cdc/1K/2K/3K";
    CHECK(error_of(doc).find("images[0].chunker: unsupported") != std::string::npos);
  }
  SUBCASE("an earlier frame's place in the table, a later one's not") {
    doc["images"][0]["frames"][0][0] = 4096;
    CHECK(error_of(doc).find("images[0].frames[0]: leaves a gap") != std::string::npos);
    doc["images"][0]["frames"][0][0] = 0;
    doc["images"][0]["frames"][2][0] = 0;  // out of order, after the bad frame 1
    CHECK(error_of(doc) == frame1);
  }
  SUBCASE("a later image's errors come after") {
    doc["images"][1].erase("mountPoint");
    doc["images"][1]["frames"][0] = 5;
    CHECK(error_of(doc) == frame1);
  }
  SUBCASE("in one frame, its fields before its place") {
    doc["images"][0]["frames"][1][0] = 0;
    CHECK(error_of(doc) == frame1);
  }
}

TEST_CASE("frames in the other schema's shape are refused at the first one") {
  SUBCASE("objects in a schema-2 image with a chunker") {
    auto doc = sample_json();
    doc["images"][0]["frames"] = sample_json(true)["images"][0]["frames"];
    CHECK(error_of(doc) == std::string(kMsg) +
                               "images[0].frames[0]: expected [uncompressedOffset, "
                               "uncompressedSize, compressedSize, sha256, chunkSha256, chunkXxh3]");
  }
  SUBCASE("arrays in an image without a chunker") {
    auto doc = sample_json();
    doc["images"][1].erase("chunker");
    CHECK(error_of(doc) == std::string(kMsg) + "images[1].frames[0]: expected an object");
  }
  SUBCASE("one object among arrays, and one array among objects") {
    auto doc = sample_json();
    doc["images"][0]["frames"][2] = sample_json(true)["images"][0]["frames"][2];
    CHECK(error_of(doc).find("images[0].frames[2]: expected [uncompressedOffset") !=
          std::string::npos);
    auto fixed = sample_json(true);
    fixed["images"][0]["frames"][3] = sample_json()["images"][0]["frames"][3];
    CHECK(error_of(fixed) == std::string(kMsg) + "images[0].frames[3]: expected an object");
  }
}

TEST_CASE("wrong types inside a frame are named with the frame and the field") {
  auto cdc = [](int field, const ojson& v) {
    auto doc = sample_json();
    doc["images"][0]["frames"][1][field] = v;
    return error_of(doc);
  };
  const std::string at = std::string(kMsg) + "images[0].frames[1]: ";
  CHECK(cdc(0, "65536") == at + "uncompressedOffset: expected a non-negative integer");
  CHECK(cdc(1, 131072.0) == at + "uncompressedSize: expected a non-negative integer");
  CHECK(cdc(2, nullptr) == at + "compressedSize: expected a non-negative integer");
  CHECK(cdc(3, 12) == at + "sha256: expected 64 hex digits");
  CHECK(cdc(4, ojson::array({"ab"})) == at + "chunkSha256: expected 64 hex digits");
  CHECK(cdc(5, std::string(64, 'a')) == at + "chunkXxh3: expected 32 hex digits");
  for (const ojson& element : {ojson(nullptr), ojson(3), ojson("x"), ojson::array()}) {
    auto doc = sample_json();
    doc["images"][0]["frames"][1] = element;
    CHECK(error_of(doc) == at + "expected [uncompressedOffset, uncompressedSize, compressedSize, "
                                "sha256, chunkSha256, chunkXxh3]");
  }
  auto doc = sample_json();
  doc["images"][0]["frames"][1].push_back(0);
  CHECK(error_of(doc).find("images[0].frames[1]: expected [") != std::string::npos);

  auto fixed = [](const char* key, const std::optional<ojson>& v) {
    auto doc = sample_json(true);
    if (v)
      doc["images"][0]["frames"][1][key] = *v;
    else
      doc["images"][0]["frames"][1].erase(key);
    return error_of(doc);
  };
  const std::string fat = std::string(kMsg) + "images[0].frames[1].";
  CHECK(fixed("offset", "1000") == fat + "offset: expected a non-negative integer");
  CHECK(fixed("size", -1) == fat + "size: expected a non-negative integer");
  CHECK(fixed("uncompressedSize", 1.5) ==
        fat + "uncompressedSize: expected a non-negative integer");
  CHECK(fixed("sha256", 1) == fat + "sha256: expected a string");
  CHECK(fixed("chunkSha256", nullptr) == fat + "chunkSha256: missing");
  CHECK(fixed("chunkXxh3", std::nullopt) == fat + "chunkXxh3: missing");
  CHECK(fixed("chunkXxh3", "zz") == fat + "chunkXxh3: expected 32 hex digits");
  // Keys abup does not know stay ignored, in frames too.
  CHECK(fixed("comment", ojson::object({{"frames", {1, 2}}})) == "(parsed)");
}

TEST_CASE("a key given twice in one object is refused, wherever it is") {
  const auto text = sample_json().dump(1);
  auto twice = [&](const std::string& anchor, const std::string& insert) {
    auto t = text;
    const auto at = t.find(anchor);
    REQUIRE(at != std::string::npos);
    t.insert(at + anchor.size(), insert);
    return error_of(t);
  };
  CHECK(twice("{", "\"version\": \"202607.03.0\",") ==
        std::string(kMsg) + "(top): key 'version' appears twice");
  CHECK(twice("\"mountPoint\": \"/usr#verity\",", "\"frames\": [],") ==
        std::string(kMsg) + "images[1]: key 'frames' appears twice");
  CHECK(twice("\"mountPoint\": \"/usr\",", "\"x\": {\"a\": 1, \"a\": 2},") ==
        std::string(kMsg) + "images[0].x: key 'a' appears twice");
  const auto fixed = sample_json(true).dump(1);
  auto t = fixed;
  t.insert(t.find("\"offset\": 1000,") + 15, "\"offset\": 1000,");
  CHECK(error_of(t) == std::string(kMsg) + "images[0].frames[1]: key 'offset' appears twice");
  // Text that is not JSON at all says so first.
  CHECK(error_of(text.substr(0, text.size() - 2) + ",\"version\": 1") ==
        std::string(kMsg) + "not valid JSON");
}

TEST_CASE("a frames key anywhere but in an image is ordinary data") {
  const ojson frames = sample_json()["images"][0]["frames"];
  auto doc = sample_json();
  doc["frames"] = frames;
  doc["images"][0]["extra"] = {{"frames", frames}};
  doc["images"][1]["extra"] = ojson::array({frames, {{"frames", 1}}});
  CHECK(error_of(doc) == "(parsed)");

  const std::string msg = std::string(kMsg) + "images[0].frames: expected a non-empty array";
  for (const ojson& v : {ojson(nullptr), ojson::array(), ojson::object(), ojson(1)}) {
    doc = sample_json();
    doc["images"][0]["frames"] = v;
    CHECK(error_of(doc) == msg);
  }
  doc = sample_json();
  doc["images"][0].erase("frames");
  CHECK(error_of(doc) == msg);
  doc = sample_json();
  doc["images"] = {{"frames", frames}};
  CHECK(error_of(doc) == std::string(kMsg) + "images: expected a non-empty array");
  doc = sample_json();
  doc["images"][0] = ojson::array({{{"frames", frames}}});
  CHECK(error_of(doc) == std::string(kMsg) + "images[0]: expected an object");
  doc = ojson::array({sample_json()});
  CHECK(error_of(doc) == std::string(kMsg) + "(top): expected an object");
}

TEST_CASE("the frame limit counts the frames of all images together") {
  auto doc = sample_json();
  auto& frames = doc["images"][1]["frames"];
  while (frames.size() <= kMaxFrames - 4) frames.push_back(0);
  CHECK(error_of(doc) == std::string(kMsg) +
                             "images[1].frames: more than 1048576 frames in the manifest (an "
                             "endless frame table?)");
  // Exactly at the limit, the elements are judged as frames: the last real one is no longer last.
  frames.erase(frames.size() - 1);
  CHECK(error_of(doc) == std::string(kMsg) +
                             "images[1].frames[3]: uncompressedSize 20580 is not a multiple of "
                             "4096 of at least the chunker's minimum");
}
