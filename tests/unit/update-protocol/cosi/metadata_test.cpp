#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "update-protocol/cosi/cosi.hpp"

using namespace abup::protocol;
using json = nlohmann::json;

namespace {

json valid() {
  json file = {{"path", "images/usr.img.zst"},
               {"compressedSize", 10},
               {"uncompressedSize", 20},
               {"sha384", std::string(96, 'a')}};
  return {{"version", "1.2"},
          {"osArch", "amd64"},
          {"osRelease", "ID=flatcar\n"},
          {"images",
           {{{"image", file},
             {"mountPoint", "/usr"},
             {"fsType", "ext4"},
             {"fsUuid", "x"},
             {"partType", "5dfbf5f4-2848-4bac-aa5e-0d9a20b745a6"},
             {"verity", nullptr},
             {"someFutureField", 1}}}},
          {"disk",
           {{"size", 1 << 30},
            {"type", "gpt"},
            {"lbaSize", 512},
            {"gptRegions",
             {{{"image",
                {{"path", "images/gpt.zst"},
                 {"compressedSize", 1},
                 {"uncompressedSize", 2},
                 {"sha384", std::string(96, 'b')}}},
               {"type", "primary-gpt"}},
              {{"image", file}, {"type", "partition"}, {"number", 3}}}}}}};
}

std::string error_of(const json& j) {
  auto r = parse_cosi_metadata(j.dump());
  REQUIRE_FALSE(r.has_value());
  return r.error().message;
}

}  // namespace

TEST_CASE("valid metadata parses, unknown fields ignored, arch normalized") {
  auto r = parse_cosi_metadata(valid().dump());
  REQUIRE_MESSAGE(r.has_value(), r.error().message);
  CHECK(r->os_arch == "x86_64");
  REQUIRE(r->images.size() == 1);
  CHECK(r->images[0].mount_point == "/usr");
  CHECK(r->find_mount("/usr") != nullptr);
  CHECK(r->gpt_regions.size() == 2);
  CHECK(r->gpt_regions[1].number == 3);
}

TEST_CASE("each metadata violation names its JSON path") {
  auto j = valid();
  SUBCASE("version") {
    j["version"] = "2.0";
    CHECK(error_of(j) == "metadata.json: version: unsupported COSI version '2.0' (expected 1.x)");
  }
  SUBCASE("sha384") {
    j["images"][0]["image"]["sha384"] = "abc";
    CHECK(error_of(j) == "metadata.json: images[0].image.sha384: expected 96 hex digits");
  }
  SUBCASE("path outside images/") {
    j["images"][0]["image"]["path"] = "etc/passwd";
    CHECK(error_of(j).find("images[0].image.path: 'etc/passwd' must start with images/") !=
          std::string::npos);
  }
  SUBCASE("dot-dot") {
    j["images"][0]["image"]["path"] = "images/../x";
    CHECK(error_of(j).find("must not contain '..'") != std::string::npos);
  }
  SUBCASE("missing field") {
    j["images"][0].erase("partType");
    CHECK(error_of(j) == "metadata.json: images[0].partType: missing");
  }
  SUBCASE("arch") {
    j["osArch"] = "riscv64";
    CHECK(error_of(j) == "metadata.json: osArch: unknown architecture 'riscv64'");
  }
  SUBCASE("first region not primary gpt") {
    std::swap(j["disk"]["gptRegions"][0], j["disk"]["gptRegions"][1]);
    CHECK(error_of(j).find("disk.gptRegions[0].type: the first region must be the primary GPT") !=
          std::string::npos);
  }
  SUBCASE("lba size") {
    j["disk"]["lbaSize"] = 1024;
    CHECK(error_of(j) == "metadata.json: disk.lbaSize: expected 512 or 4096");
  }
  SUBCASE("negative size") {
    j["images"][0]["image"]["compressedSize"] = -1;
    CHECK(error_of(j).find("compressedSize: expected a non-negative integer") != std::string::npos);
  }
  SUBCASE("not json") {
    auto r = parse_cosi_metadata("{");
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().message == "metadata.json: not valid JSON");
  }
}

TEST_CASE("os-release values") {
  std::string osr = "NAME=\"Azure Container Linux\"\nVERSION_ID=202607.02.0\nIMAGE_VERSION='x'\n";
  CHECK(os_release_value(osr, "NAME") == "Azure Container Linux");
  CHECK(os_release_value(osr, "VERSION_ID") == "202607.02.0");
  CHECK(os_release_value(osr, "IMAGE_VERSION") == "x");
  CHECK(os_release_value(osr, "VERSION") == "");
}
