// abup-image build, checked by the stock tools a COSI consumer has: GNU tar, the zstd CLI,
// sha384sum, blkid and sgdisk.
#include <doctest/doctest.h>

#include "bench.hpp"

using namespace abup::test;

namespace {

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// The primary-GPT region of `cosi` placed at the start of a file of metadata disk.size bytes.
std::filesystem::path gpt_disk(const Bench& b, const std::filesystem::path& cosi,
                               const std::string& name) {
  auto md = nlohmann::json::parse(tar_member(cosi, "metadata.json"));
  auto disk = b / name;
  run_ok("set -e; tar -xOf " + q(cosi) + " images/primary-gpt.img.zst | zstd -dc > " +
         q(b / (name + ".gpt")) + "; truncate -s " + md["disk"]["size"].dump() + " " + q(disk) +
         "; dd if=" + q(b / (name + ".gpt")) + " of=" + q(disk) + " conv=notrunc status=none");
  return disk;
}

std::string disk_guid(const std::filesystem::path& disk) {
  auto out =
      run_ok("sgdisk -p " + q(disk) + " 2>/dev/null | sed -n 's/^Disk identifier (GUID): //p'");
  return trim(out);
}

}  // namespace

TEST_CASE("build writes a COSI 1.2 archive that tar, zstd, sha384sum and blkid agree with") {
  Bench b;
  auto cosi = b.build("img");

  CHECK(tar_names(cosi) == std::vector<std::string>{"cosi-marker", "metadata.json",
                                                    "images/primary-gpt.img.zst",
                                                    "images/usr.img.zst", "abup/manifest.json"});
  CHECK(tar_member(cosi, "cosi-marker").empty());

  // Stock readers decode the framed stream as one ordinary zstd stream.
  run_ok("tar -xOf " + q(cosi) + " images/usr.img.zst > " + q(b / "usr.img.zst"));
  run_ok("zstd -dc " + q(b / "usr.img.zst") + " > " + q(b / "usr.out"));
  CHECK_MESSAGE(read_file(b / "usr.out") == read_file(b.usr()), "usr.img byte for byte");

  auto md = nlohmann::json::parse(tar_member(cosi, "metadata.json"));
  INFO(md.dump(2));
  CHECK(md["version"] == "1.2");
  CHECK(md["osArch"] == "x86_64");
  CHECK(contains(md["osRelease"].get<std::string>(), "IMAGE_VERSION=202607.02.0"));
  REQUIRE(md["images"].size() == 1);
  const auto& img = md["images"][0];
  CHECK(img["mountPoint"] == "/usr");
  CHECK(img["partType"] == kUsrTypeGuid);
  CHECK(img["fsType"] == "ext4");
  CHECK(img["fsUuid"] == trim(run_ok("blkid -o value -s UUID " + q(b.usr()))));
  CHECK(img["verity"].is_null());
  CHECK(img["image"]["path"] == "images/usr.img.zst");
  CHECK(img["image"]["sha384"] == run_ok("sha384sum < " + q(b / "usr.img.zst")).substr(0, 96));
  CHECK(img["image"]["compressedSize"] == std::filesystem::file_size(b / "usr.img.zst"));
  CHECK(img["image"]["uncompressedSize"] == kUsrBytes);

  // The regions list the primary GPT first, then the partition, each with its own digest.
  const auto& regions = md["disk"]["gptRegions"];
  REQUIRE(regions.size() == 2);
  CHECK(regions[0]["type"] == "primary-gpt");
  CHECK(regions[0]["image"]["path"] == "images/primary-gpt.img.zst");
  CHECK(regions[0]["image"]["sha384"] ==
        run_ok("tar -xOf " + q(cosi) + " images/primary-gpt.img.zst | sha384sum").substr(0, 96));
  CHECK(regions[1]["type"] == "partition");
  CHECK(regions[1]["number"] == 1);
  CHECK(regions[1]["image"] == img["image"]);

  // The abup manifest pins metadata.json and holds one frame per MiB.
  auto manifest = nlohmann::json::parse(tar_member(cosi, "abup/manifest.json"));
  CHECK(manifest["metadataSha384"] ==
        run_ok("tar -xOf " + q(cosi) + " metadata.json | sha384sum").substr(0, 96));
  CHECK(manifest["version"] == "202607.02.0");
  auto j = inspect_json(cosi);
  CHECK(j["cosiVersion"] == "1.2");
  CHECK(j["manifest"]["frames"][0]["count"] == 10);
  CHECK(j["signatures"].empty());
  CHECK(contains(run_ok("zstd -l " + q(b / "usr.img.zst")), "\n    10 "));
}

TEST_CASE("the primary-GPT region is a GPT that sgdisk reads, with the usr partition") {
  Bench b;
  auto cosi = b.build("img");
  auto disk = gpt_disk(b, cosi, "disk.img");
  auto md = nlohmann::json::parse(tar_member(cosi, "metadata.json"));
  CHECK(std::filesystem::file_size(b / "disk.img.gpt") == 34 * 512);
  CHECK(md["disk"]["lbaSize"] == 512);
  CHECK(md["disk"]["type"] == "gpt");

  // Only the primary region is in the image: sgdisk notices the missing backup and says so, and
  // finds the primary header and table sound.
  auto verify = run("sgdisk -v " + q(disk));
  INFO(verify.out);
  CHECK(contains(verify.out, "Main header: OK"));
  CHECK(contains(verify.out, "Main partition table: OK"));
  CHECK(contains(verify.out, "Backup header: ERROR"));

  auto table = run_ok("sgdisk -p " + q(disk) + " 2>/dev/null");
  INFO(table);
  // 10 MiB rounded up to 1 MiB from sector 2048.
  CHECK(contains(table, "   1            2048           22527   10.0 MiB    8500  usr-a"));
  auto part = run_ok("sgdisk -i 1 " + q(disk) + " 2>/dev/null");
  CHECK(contains(part, "Partition GUID code: 5DFBF5F4-2848-4BAC-AA5E-0D9A20B745A6"));
  // The backup GPT belongs at the last sectors of a disk of metadata disk.size bytes.
  CHECK(contains(table, "last usable sector is " +
                            std::to_string(md["disk"]["size"].get<std::uint64_t>() / 512 - 34)));

  SUBCASE("every build gets its own random (version 4) disk and partition GUIDs") {
    auto other = gpt_disk(b, b.build("img2"), "disk2.img");
    auto g1 = disk_guid(disk), g2 = disk_guid(other);
    REQUIRE(g1.size() == 36);
    CHECK(g1 != g2);
    CHECK(g1[14] == '4');
    auto unique = [](const std::filesystem::path& d) {
      return trim(
          run_ok("sgdisk -i 1 " + q(d) + " 2>/dev/null | sed -n 's/^Partition unique GUID: //p'"));
    };
    CHECK(unique(disk) != unique(other));
    CHECK(unique(disk)[14] == '4');
  }
}

TEST_CASE("build frame size and a dm-verity hash image") {
  Bench b;

  SUBCASE("--chunker fixed: 4 MiB frames in a schema-1 manifest, 10 MiB in 3 frames") {
    auto cosi = b / "fixed.cosi";
    image_tool_ok("build --usr " + q(b.usr()) + " --version 202607.02.0 --chunker fixed --out " +
                  q(cosi));
    CHECK(inspect_json(cosi)["manifest"]["frames"][0]["count"] == 3);
    auto manifest = nlohmann::json::parse(tar_member(cosi, "abup/manifest.json"));
    CHECK(manifest["schemaVersion"] == 1);
    const auto& frames = manifest["images"][0]["frames"];
    REQUIRE(frames.size() == 3);
    CHECK(frames[0]["uncompressedSize"] == 4 << 20);
    CHECK(frames[2]["uncompressedSize"] == 2 << 20);
  }

  SUBCASE("the default: content-defined frames, still one zstd stream that decodes to the input") {
    auto cosi = b / "cdc.cosi";
    image_tool_ok("build --usr " + q(b.usr()) + " --version 202607.02.0 --out " + q(cosi));
    auto manifest = nlohmann::json::parse(tar_member(cosi, "abup/manifest.json"));
    CHECK(manifest["schemaVersion"] == 2);
    const auto& img = manifest["images"][0];
    CHECK(img["chunker"] == "cdc/16K/128K/512K");
    const auto& frames = img["frames"];
    REQUIRE(frames.size() > 10);
    std::uint64_t next = 0;
    for (std::size_t i = 0; i < frames.size(); ++i) {
      const auto off = frames[i][0].get<std::uint64_t>(), len = frames[i][1].get<std::uint64_t>();
      CHECK(off == next);
      CHECK(len <= 512u << 10);
      if (i + 1 < frames.size()) CHECK(len % 4096 == 0);
      next = off + len;
    }
    CHECK(next == kUsrBytes);
    // Stock readers see one ordinary zstd stream of as many frames, equal to the input.
    run_ok("tar -xOf " + q(cosi) + " images/usr.img.zst > " + q(b / "cdc.zst"));
    CHECK(run_ok("zstd -dc " + q(b / "cdc.zst") + " | cmp - " + q(b.usr()) + " && echo same") ==
          "same\n");
    CHECK(run_ok("zstd -lv " + q(b / "cdc.zst") +
                 " 2>/dev/null | sed -n 's/^# Zstandard Frames: *//p'") ==
          std::to_string(frames.size()) + "\n");
    image_tool_ok("sign --key " + q(b.key(kEd25519)) + " " + q(cosi));
    CHECK(contains(image_tool_ok("verify --keyring " + q(b.keyring()) + " " + q(cosi)),
                   std::to_string(frames.size()) + " frames verified"));
  }

  SUBCASE("--frame-size with a content-defined chunker is a usage error") {
    auto r = image_tool("build --usr " + q(b.usr()) + " --version 1.0.0 --chunker cdc " +
                        "--frame-size 1M --out " + q(b / "x.cosi"));
    CHECK(r.exit_code != 0);
    CHECK(contains(r.out, "--frame-size only applies to --chunker fixed"));
    r = image_tool("build --usr " + q(b.usr()) + " --version 1.0.0 --chunker cdc/16K/48K/1M " +
                   "--out " + q(b / "x.cosi"));
    CHECK(r.exit_code != 0);
    CHECK(contains(r.out, "--chunker 'cdc/16K/48K/1M'"));
  }

  SUBCASE("--usr-hash and --roothash add the verity image to metadata, manifest and GPT") {
    run_ok("head -c 1048576 /dev/urandom > " + q(b / "hash.img"));
    const std::string roothash(64, 'a');
    auto cosi = b.build("verity", "--usr-hash " + q(b / "hash.img") + " --roothash " + roothash);
    CHECK(tar_names(cosi) ==
          std::vector<std::string>{"cosi-marker", "metadata.json", "images/primary-gpt.img.zst",
                                   "images/usr.img.zst", "images/usr-verity.img.zst",
                                   "abup/manifest.json"});
    auto md = nlohmann::json::parse(tar_member(cosi, "metadata.json"));
    const auto& verity = md["images"][0]["verity"];
    REQUIRE(verity.is_object());
    CHECK(verity["roothash"] == roothash);
    CHECK(verity["image"]["path"] == "images/usr-verity.img.zst");
    CHECK(verity["image"]["uncompressedSize"] == 1 << 20);
    CHECK(run_ok("tar -xOf " + q(cosi) + " images/usr-verity.img.zst | zstd -dc | cmp - " +
                 q(b / "hash.img") + " && echo same") == "same\n");

    auto manifest = nlohmann::json::parse(tar_member(cosi, "abup/manifest.json"));
    REQUIRE(manifest["images"].size() == 2);
    CHECK(manifest["images"][0]["path"] == "images/usr.img.zst");
    CHECK(manifest["images"][1]["path"] == "images/usr-verity.img.zst");
    CHECK(inspect_json(cosi)["images"][0]["verity"] == true);

    auto table = run_ok("sgdisk -p " + q(gpt_disk(b, cosi, "disk.img")) + " 2>/dev/null");
    INFO(table);
    CHECK(contains(table, "usr-a"));
    CHECK(contains(table, "hash-a"));
  }

  SUBCASE("--usr-hash without --roothash is refused") {
    run_ok("head -c 65536 /dev/urandom > " + q(b / "hash.img"));
    auto r = image_tool("build --usr " + q(b.usr()) + " --usr-hash " + q(b / "hash.img") +
                        " --version 202607.02.0 --out " + q(b / "x.cosi"));
    INFO(r.out);
    CHECK(r.exit_code == 2);
    CHECK(contains(r.out, "--roothash"));
    CHECK_FALSE(std::filesystem::exists(b / "x.cosi"));
  }
}
