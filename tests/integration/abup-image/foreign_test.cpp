// A COSI another tool made (GNU tar --format=pax, the zstd CLI, no abup manifest): abup-image sign
// adds the manifest and a signature, and the real abup stages it.
#include <doctest/doctest.h>

#include "bench.hpp"
#include "support/disk.hpp"

using namespace abup::test;

namespace {

constexpr const char* kUsrB = "e03dd35c-7c2d-4a47-b3fe-27f15780a57c";

// Writes DIR/cosi-marker, DIR/metadata.json (COSI 1.2, sizes and SHA-384 of images/usr.img.zst
// as found) and packs them with the image already in DIR/images/ into OUT, in COSI order.
void pack_foreign(const Bench& b, const std::string& dir, const std::string& os_release,
                  const std::filesystem::path& out, std::string sha384 = "",
                  int max_window_log = 0) {
  auto d = b / dir;
  write_file(d / "cosi-marker", "");
  auto zst = d / "images/usr.img.zst";
  if (sha384.empty()) sha384 = run_ok("sha384sum < " + q(zst)).substr(0, 96);
  nlohmann::json usr = {{"image",
                         {{"path", "images/usr.img.zst"},
                          {"compressedSize", std::filesystem::file_size(zst)},
                          {"uncompressedSize", std::filesystem::file_size(b.usr())},
                          {"sha384", sha384}}},
                        {"mountPoint", "/usr"},
                        {"fsType", "ext4"},
                        {"fsUuid", run_ok("blkid -o value -s UUID " + q(b.usr())).substr(0, 36)},
                        {"partType", kUsrTypeGuid},
                        {"verity", nullptr}};
  nlohmann::json md = {{"version", "1.2"},
                       {"osArch", "x86_64"},
                       {"osRelease", os_release},
                       {"id", "6e1f9a57-3f8c-4c50-9a7b-0a3c3a3d0001"},
                       {"images", nlohmann::json::array({usr})},
                       {"bootloader", {{"type", "systemd-boot"}}}};
  if (max_window_log) md["compression"] = {{"maxWindowLog", max_window_log}};
  write_file(d / "metadata.json", md.dump(2));
  run_ok("tar --format=pax -C " + q(d) + " -cf " + q(out) +
         " cosi-marker metadata.json images/usr.img.zst");
  REQUIRE(tar_names(out) ==
          std::vector<std::string>{"cosi-marker", "metadata.json", "images/usr.img.zst"});
}

// A foreign COSI whose /usr is one zstd frame made by the zstd CLI.
std::filesystem::path single_frame(const Bench& b, const std::string& name,
                                   const std::string& os_release, const std::string& sha384 = "") {
  std::filesystem::create_directories(b / name / "images");
  run_ok("zstd -q -3 " + q(b.usr()) + " -o " + q(b / name / "images/usr.img.zst"));
  auto out = b / (name + ".cosi");
  pack_foreign(b, name, os_release, out, sha384);
  return out;
}

const std::string kOsRelease =
    "NAME=\"Other Linux\"\nID=other\nVERSION_ID=3.0\nIMAGE_VERSION=202608.01.0\n";

std::uint64_t first_sector(const std::filesystem::path& disk, int part) {
  auto out = run_ok("sgdisk -i " + std::to_string(part) + " " + q(disk) +
                    " | sed -n 's/^First sector: \\([0-9]*\\).*/\\1/p'");
  return std::stoull(out);
}

}  // namespace

TEST_CASE("sign adds an abup manifest to a COSI made by GNU tar and zstd, and abup stages it") {
  Bench b;
  b.key(kP256);
  auto cosi = single_frame(b, "foreign", kOsRelease);
  auto unsigned_copy = b.copy(cosi, "unsigned");
  auto j = inspect_json(cosi);
  CHECK(j["manifest"].is_null());
  CHECK(j["signatures"].empty());

  auto out = image_tool_ok("sign --key " + q(b / "p256.pem") + " " + q(cosi));
  CHECK(contains(out, openssl_keyid(b.pub("p256"))));
  // What stock readers see is unchanged; the manifest and signature follow the image.
  CHECK(tar_names(cosi) == std::vector<std::string>{"cosi-marker", "metadata.json",
                                                    "images/usr.img.zst", "abup/manifest.json",
                                                    "abup/manifest.sig"});
  CHECK(tar_member(cosi, "metadata.json") == read_file(b / "foreign/metadata.json"));
  CHECK(run_ok("tar -xOf " + q(cosi) + " images/usr.img.zst | zstd -dc | cmp - " + q(b.usr()) +
               " && echo same") == "same\n");
  auto manifest = nlohmann::json::parse(tar_member(cosi, "abup/manifest.json"));
  CHECK(manifest["version"] == "202608.01.0");  // IMAGE_VERSION of metadata osRelease
  CHECK(manifest["metadataSha384"] ==
        run_ok("sha384sum < " + q(b / "foreign/metadata.json")).substr(0, 96));
  REQUIRE(manifest["images"].size() == 1);
  CHECK(manifest["images"][0]["frames"].size() == 1);
  CHECK(manifest["images"][0]["uncompressedSize"] == kUsrBytes);
  CHECK(manifest["images"][0]["compressedSize"] ==
        std::filesystem::file_size(b / "foreign/images/usr.img.zst"));
  auto v = image_tool("verify --keyring " + q(b.keyring()) + " " + q(cosi));
  INFO(v.out);
  CHECK(v.exit_code == 0);
  CHECK(contains(v.out, "OK: version 202608.01.0"));
  CHECK(contains(v.out, "1 frames verified"));

  {  // --version wins over the os-release
    auto other = b.copy(unsigned_copy, "versioned");
    image_tool_ok("sign --version 202609.01.0 --key " + q(b / "p256.pem") + " " + q(other));
    CHECK(inspect_json(other)["manifest"]["version"] == "202609.01.0");
  }

  {  // abup stages it onto the inactive slot of a Flatcar-layout disk
    make_flatcar_disk(b / "disk.img", DiskLayout{16, false, false});
    make_root(b / "root", 'A', "202601.01.0");
    allow_no_boot_files(b / "root");  // this COSI carries no kernel
    auto r =
        run(abup_bin() + " stage --no-progress --json --disk " + q(b / "disk.img") + " --root " +
            q(b / "root") + " --keyring " + q(b.keyring()) + " --source " + q(cosi));
    INFO(r.out);
    REQUIRE(r.exit_code == 0);
    auto summary = nlohmann::json::parse(r.out.substr(r.out.find('{')), nullptr, false);
    REQUIRE_FALSE(summary.is_discarded());
    CHECK(summary["version"] == "202608.01.0");
    CHECK(summary["partuuid"] == kUsrB);
    CHECK(summary["frames"] == 1);
    run_ok("dd if=" + q(b / "disk.img") + " of=" + q(b / "slot-b.img") +
           " bs=512 skip=" + std::to_string(first_sector(b / "disk.img", kPartUsrB)) +
           " count=" + std::to_string(kUsrBytes / 512) + " status=none");
    CHECK_MESSAGE(read_file(b / "slot-b.img") == read_file(b.usr()), "slot B holds usr.img");
    auto status = nlohmann::json::parse(run_ok(abup_bin() + " status --json --disk " +
                                               q(b / "disk.img") + " --root " + q(b / "root")));
    REQUIRE(status["slots"].size() == 2);
    CHECK(status["slots"][1]["partuuid"] == kUsrB);
    CHECK(status["slots"][1]["state"] == "staged");
    CHECK(status["slots"][1]["version"] == "202608.01.0");
  }
}

TEST_CASE("sign of a foreign COSI without any release version is refused and changes nothing") {
  Bench b;
  b.key(kEd25519);
  auto cosi = single_frame(b, "foreign", "NAME=\"Other Linux\"\nID=other\n");
  const auto before = sha256_file(cosi);
  auto r = image_tool("sign --key " + q(b / "ed25519.pem") + " " + q(cosi));
  INFO(r.out);
  CHECK(r.exit_code == 2);
  CHECK(contains(r.out, "no release version"));
  CHECK(contains(r.out, "--version"));
  CHECK(sha256_file(cosi) == before);
  auto d = image_tool("digest --alg ed25519 " + q(cosi));
  CHECK(d.exit_code == 2);
  CHECK(sha256_file(cosi) == before);

  // VERSION_ID is the fallback when IMAGE_VERSION is absent.
  auto with_id = single_frame(b, "with-id", "ID=other\nVERSION_ID=\"2026.3.1\"\n");
  image_tool_ok("sign --key " + q(b / "ed25519.pem") + " " + q(with_id));
  CHECK(inspect_json(with_id)["manifest"]["version"] == "2026.3.1");
}

TEST_CASE("a foreign stream of two zstd frames (cat a.zst b.zst) is scanned into 2 frames") {
  Bench b;
  b.key(kEd25519);
  auto d = b / "two";
  std::filesystem::create_directories(d / "images");
  const auto half = std::to_string(kUsrBytes / 2 + 12345);  // frames need not be aligned
  run_ok("set -e; cd " + q(d) + "; head -c " + half + " " + q(b.usr()) + " | zstd -q -c > a.zst;" +
         " tail -c +$((" + half + " + 1)) " + q(b.usr()) + " | zstd -q -19 -c > b.zst;" +
         " cat a.zst b.zst > images/usr.img.zst; rm a.zst b.zst");
  CHECK(contains(run_ok("zstd -l " + q(d / "images/usr.img.zst")), "\n     2 "));
  auto cosi = b / "two.cosi";
  pack_foreign(b, "two", kOsRelease, cosi);

  image_tool_ok("sign --key " + q(b / "ed25519.pem") + " " + q(cosi));
  CHECK(inspect_json(cosi)["manifest"]["frames"][0]["count"] == 2);
  auto manifest = nlohmann::json::parse(tar_member(cosi, "abup/manifest.json"));
  const auto& frames = manifest["images"][0]["frames"];
  REQUIRE(frames.size() == 2);
  CHECK(frames[0]["offset"] == 0);
  CHECK(frames[0]["uncompressedSize"] == std::stoull(half));
  CHECK(frames[1]["offset"] == frames[0]["size"]);
  CHECK(frames[1]["uncompressedSize"] == kUsrBytes - std::stoull(half));
  auto v = image_tool("verify --keyring " + q(b.keyring()) + " " + q(cosi));
  INFO(v.out);
  CHECK(v.exit_code == 0);
  CHECK(contains(v.out, "2 frames verified"));
}

TEST_CASE("sign refuses a foreign COSI whose metadata.json has the wrong SHA-384 for an image") {
  Bench b;
  b.key(kEd25519);
  // Stock COSI readers check this digest; a signature must not vouch for metadata that lies.
  auto cosi = single_frame(b, "lying", kOsRelease, std::string(96, 'a'));
  const auto before = sha256_file(cosi);
  auto r = image_tool("sign --key " + q(b / "ed25519.pem") + " " + q(cosi));
  INFO(r.out);
  CHECK(r.exit_code == 1);  // malformed data, not a usage error
  CHECK(contains(r.out, "images/usr.img.zst"));
  CHECK(contains(r.out, "metadata.json says " + std::string(96, 'a')));
  CHECK(sha256_file(cosi) == before);
}

namespace {

// A foreign COSI whose /usr is one frame with a 256 MiB window: zstd --long=28 reading a pipe
// cannot shrink the window to the input size. COSI allows this when metadata.json declares it
// (compression.maxWindowLog), and readers must set that limit on their decoder.
std::filesystem::path long_window(const Bench& b, int declared_window_log) {
  const std::string dir = "long" + std::to_string(declared_window_log);
  std::filesystem::create_directories(b / dir / "images");
  run_ok("zstd -q --long=28 -c < " + q(b.usr()) + " > " + q(b / dir / "images/usr.img.zst"));
  REQUIRE(
      contains(run_ok("zstd -lv " + q(b / dir / "images/usr.img.zst")), "Window Size: 256 MiB"));
  auto out = b / (dir + ".cosi");
  pack_foreign(b, dir, kOsRelease, out, "", declared_window_log);
  image_tool_ok("sign --key " + q(b / "ed25519.pem") + " " + q(out));
  return out;
}

abup::test::RunResult stage_onto_fresh_disk(const Bench& b, const std::filesystem::path& cosi) {
  make_flatcar_disk(b / "disk.img", DiskLayout{16, false, false});
  make_root(b / "root", 'A', "202601.01.0");
  allow_no_boot_files(b / "root");  // these COSIs carry no kernel
  return run(abup_bin() + " stage --no-progress --disk " + q(b / "disk.img") + " --root " +
             q(b / "root") + " --keyring " + q(b.keyring()) + " --source " + q(cosi));
}

}  // namespace

TEST_CASE("a foreign image with a declared 256 MiB zstd window is staged and verified, streamed") {
  Bench b;
  b.key(kEd25519);
  auto cosi = long_window(b, 28);
  auto r = stage_onto_fresh_disk(b, cosi);
  INFO(r.out);
  CHECK(r.exit_code == 0);
  auto v = image_tool("verify --keyring " + q(b.keyring()) + " " + q(cosi));
  INFO(v.out);
  CHECK(v.exit_code == 0);
}

TEST_CASE("a foreign image whose zstd window exceeds what its metadata declares is refused") {
  Bench b;
  b.key(kEd25519);
  auto cosi = long_window(b, 0);  // not declared: readers cap the window at 2^27
  auto r = stage_onto_fresh_disk(b, cosi);
  INFO(r.out);
  CHECK(r.exit_code != 0);
  CHECK(contains(r.out, "maxWindowLog"));
  auto v = image_tool("verify --keyring " + q(b.keyring()) + " " + q(cosi));
  INFO(v.out);
  CHECK(v.exit_code != 0);
  CHECK(contains(v.out, "maxWindowLog"));
}
