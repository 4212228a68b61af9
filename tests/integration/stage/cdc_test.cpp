// Content-defined frames (schema-2 manifests) through the whole stage, and images of the fixed
// format (schema 1) that keep installing.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "world.hpp"

using namespace abup::test;

namespace {

void check_staged(const World& w, const std::string& version) {
  auto usr = read_file(w.usr_image());
  CHECK_MESSAGE(w.slot_bytes('B', usr.size()) == usr, "slot B holds the image byte for byte");
  auto status = nlohmann::json::parse(w.slot_state_json());
  REQUIRE(status["slots"].size() == 2);
  CHECK(status["slots"][1]["state"] == "staged");
  CHECK(status["slots"][1]["version"] == version);
}

std::string manifest_of(const std::filesystem::path& cosi) {
  return run_ok("tar -xOf " + shell_quote(cosi.string()) + " abup/manifest.json");
}

}  // namespace

TEST_CASE("an image of content-defined frames stages byte for byte, and re-staging skips it all") {
  World w;
  auto image = w.build_signed("v2", "202607.02.0", "--chunker cdc");
  auto manifest = nlohmann::json::parse(manifest_of(image));
  REQUIRE(manifest["schemaVersion"] == 2);
  REQUIRE(manifest["images"][0]["frames"].size() > 20);
  auto r = w.stage(image.string(), "--json");
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  check_staged(w, "202607.02.0");
  auto again = w.stage(image.string(), "--json");
  INFO(again.out);
  REQUIRE(again.exit_code == 0);
  CHECK(json_field(again.out, "writtenBytes") == "0");
  CHECK(json_field(again.out, "rangeRequests") == "0");
  check_staged(w, "202607.02.0");
}

TEST_CASE("an image built the old way (fixed 4 MiB frames, schema 1) still stages") {
  World w;
  auto image = w.build_signed("old", "202607.02.0", "--chunker fixed --frame-size 4M");
  auto manifest = nlohmann::json::parse(manifest_of(image));
  REQUIRE(manifest["schemaVersion"] == 1);
  CHECK(manifest["images"][0]["frames"][0]["uncompressedSize"] == 4 << 20);
  auto r = w.stage(image.string(), "--json");
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  check_staged(w, "202607.02.0");
}
