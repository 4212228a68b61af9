// A foreign COSI whose kernel lives in its ESP image (as Microsoft's does: a vfat image with the
// UKI and its addons in EFI/Linux/): `abup-image sign` extracts them with mtools and lists them
// as boot files, leaving a first-boot addon out; abup stages them for the inactive slot. The ESP
// image is made by mkfs.vfat and mcopy, the COSI by tar and the zstd CLI.
#include <doctest/doctest.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "bench.hpp"
#include "support/disk.hpp"
#include "support/util.hpp"

using namespace abup::test;
namespace fs = std::filesystem;

namespace {

const std::string kOsRelease = "NAME=\"Azure Linux\"\nID=azurelinux\nIMAGE_VERSION=202608.02.0\n";

nlohmann::json image_json(const Bench& b, const std::string& raw, const std::string& zst) {
  return {{"path", "images/" + zst},
          {"compressedSize", fs::file_size(b / ("cosi/images/" + zst))},
          {"uncompressedSize", fs::file_size(b / raw)},
          {"sha384", run_ok("sha384sum < " + q(b / ("cosi/images/" + zst))).substr(0, 96)}};
}

// esp.img (vfat, `mib` MiB) holding EFI/Linux/acl.efi and `addons` in its .extra.d/, each
// file NAME holding b/NAME's bytes.
void make_esp(const Bench& b, int mib, const std::vector<std::string>& addons) {
  const std::string i = "MTOOLS_SKIP_CHECK=1 ";
  const std::string img = q(b / "esp.img");
  run_ok("mkfs.vfat -C " + img + " " + std::to_string(mib * 1024) + " >/dev/null");
  run_ok(i + "mmd -i " + img + " ::/EFI ::/EFI/Linux ::/EFI/Linux/acl.efi.extra.d ::/EFI/BOOT");
  run_ok(i + "mcopy -i " + img + " " + q(b / "acl.efi") + " ::/EFI/Linux/acl.efi");
  write_file(b / "shim.efi", "MZ shim");
  run_ok(i + "mcopy -i " + img + " " + q(b / "shim.efi") + " ::/EFI/BOOT/BOOTX64.EFI");
  for (const auto& a : addons)
    run_ok(i + "mcopy -i " + img + " " + q(b / a) + " ::/EFI/Linux/acl.efi.extra.d/" + a);
}

// COSI with /usr and the ESP at /boot/efi (the ESP type GUID), packed by GNU tar.
fs::path pack(const Bench& b) {
  fs::create_directories(b / "cosi/images");
  run_ok("zstd -q -3 " + q(b.usr()) + " -o " + q(b / "cosi/images/usr.img.zst"));
  run_ok("zstd -q -3 " + q(b / "esp.img") + " -o " + q(b / "cosi/images/esp.img.zst"));
  nlohmann::json usr = {{"image", image_json(b, "usr.img", "usr.img.zst")},
                        {"mountPoint", "/usr"},
                        {"fsType", "ext4"},
                        {"fsUuid", run_ok("blkid -o value -s UUID " + q(b.usr())).substr(0, 36)},
                        {"partType", kUsrTypeGuid},
                        {"verity", nullptr}};
  nlohmann::json esp = {{"image", image_json(b, "esp.img", "esp.img.zst")},
                        {"mountPoint", "/boot/efi"},
                        {"fsType", "vfat"},
                        {"fsUuid", "ABCD-0001"},
                        {"partType", "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"},
                        {"verity", nullptr}};
  nlohmann::json md = {{"version", "1.2"},
                       {"osArch", "x86_64"},
                       {"osRelease", kOsRelease},
                       {"id", "6e1f9a57-3f8c-4c50-9a7b-0a3c3a3d0002"},
                       {"images", nlohmann::json::array({esp, usr})},
                       {"bootloader", {{"type", "systemd-boot"}}}};
  write_file(b / "cosi/cosi-marker", "");
  write_file(b / "cosi/metadata.json", md.dump(2));
  auto out = b / "ms.cosi";
  run_ok("tar --format=pax -C " + q(b / "cosi") + " -cf " + q(out) +
         " cosi-marker metadata.json images/esp.img.zst images/usr.img.zst");
  return out;
}

}  // namespace

TEST_CASE(
    "sign lists the UKI and addons of a COSI's ESP image as boot files, without the "
    "first-boot addon, and abup stages them for the inactive slot") {
  Bench b;
  b.key(kEd25519);
  write_file(b / "acl.efi", "MZ uki " + std::string(300000, 'u'));
  write_file(b / "slot-a.addon.efi", "MZ addon usrhash for A");
  write_file(b / "slot-b.addon.efi", "MZ addon usrhash for B");
  write_file(b / "console.addon.efi", "MZ addon console=ttyS0");
  write_file(b / "ignition.addon.efi",
             "MZ addon .cmdline ignition.firstboot ignition.platform.id=azure");
  write_file(b / "10-firstboot.addon.efi", "MZ addon first boot by its name");
  make_esp(b, 16,
           {"slot-a.addon.efi", "slot-b.addon.efi", "console.addon.efi", "ignition.addon.efi",
            "10-firstboot.addon.efi"});
  auto cosi = pack(b);
  auto signed_ = image_tool("sign --key " + q(b / "ed25519.pem") + " " + q(cosi));
  INFO(signed_.out);
  REQUIRE(signed_.exit_code == 0);
  CHECK(contains(signed_.out,
                 "left out the first-boot addon "
                 "EFI/Linux/acl.efi.extra.d/ignition.addon.efi"));
  CHECK(contains(signed_.out,
                 "left out the first-boot addon "
                 "EFI/Linux/acl.efi.extra.d/10-firstboot.addon.efi"));

  auto m = inspect_json(cosi)["manifest"];
  INFO(m.dump(2));
  std::map<std::string, std::string> digests;
  for (const auto& f : m["bootFiles"]) digests[f["name"]] = f["sha256"];
  CHECK(digests == std::map<std::string, std::string>{
                       {"uki", sha256_file(b / "acl.efi")},
                       {"addon-a", sha256_file(b / "slot-a.addon.efi")},
                       {"addon-b", sha256_file(b / "slot-b.addon.efi")},
                       {"addon.console", sha256_file(b / "console.addon.efi")}});
  // Stock readers still see a COSI: the boot entries come after the images, before the manifest.
  auto names = tar_names(cosi);
  CHECK(names.back() == "abup/manifest.sig");
  CHECK(std::find(names.begin(), names.end(), "boot/uki.zst") != names.end());
  CHECK(tar_member(cosi, "images/esp.img.zst") == read_file(b / "cosi/images/esp.img.zst"));

  // abup, systemd-boot backend, stages the kernel of slot B onto a directory ESP.
  make_flatcar_disk(b / "disk.img", DiskLayout{16, false, false});
  make_root(b / "root", 'A', "202601.01.0");
  fs::create_directories(b / "root/boot/efi");
  fs::create_directories(b / "root/sys/firmware/efi/efivars");
  fs::create_directories(b / "root/etc/abup");
  write_file(b / "root/etc/abup/abup.conf",
             "[Update]\nBootBackend=systemd-boot\n[Boot]\nESP=/boot/efi\n");
  auto r = run(abup_bin() + " stage --no-progress --disk " + q(b / "disk.img") + " --root " +
               q(b / "root") + " --keyring " + q(b.keyring()) + " --source " + q(cosi));
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  const auto esp = b / "root/boot/efi/EFI/Linux";
  CHECK(read_file(esp / "acl-usr-b.efi") == read_file(b / "acl.efi"));
  CHECK(read_file(esp / "acl-usr-b.efi.extra.d/slot-b.addon.efi") ==
        read_file(b / "slot-b.addon.efi"));
  CHECK(read_file(esp / "acl-usr-b.efi.extra.d/console.addon.efi") ==
        read_file(b / "console.addon.efi"));
  std::vector<std::string> placed;
  for (const auto& e : fs::directory_iterator(esp / "acl-usr-b.efi.extra.d"))
    placed.push_back(e.path().filename().string());
  std::sort(placed.begin(), placed.end());
  CHECK(placed == std::vector<std::string>{"console.addon.efi", "slot-b.addon.efi"});
}

TEST_CASE("an ESP image with two UKIs is refused by sign, naming them") {
  Bench b;
  b.key(kEd25519);
  write_file(b / "acl.efi", "MZ uki");
  make_esp(b, 8, {});
  run_ok("MTOOLS_SKIP_CHECK=1 mcopy -i " + q(b / "esp.img") + " " + q(b / "acl.efi") +
         " ::/EFI/Linux/other.efi");
  auto cosi = pack(b);
  auto r = image_tool("sign --key " + q(b / "ed25519.pem") + " " + q(cosi));
  INFO(r.out);
  CHECK(r.exit_code != 0);
  CHECK(contains(r.out, "2 UKIs in EFI/Linux/ (acl.efi, other.efi)"));
}

TEST_CASE("sign refuses an ESP image whose UKI binds /usr to a root hash the image lacks") {
  Bench b;
  b.key(kEd25519);
  // Flatcar's convention: 64 hex digits at offset 0x40 name the /usr root hash; this COSI's /usr
  // has no verity hash at all, so every node would refuse the kernel.
  write_file(b / "acl.efi", "MZ" + std::string(62, 'x') + std::string(64, 'b') + " kernel");
  make_esp(b, 8, {});
  auto cosi = pack(b);
  const auto before = sha256_file(cosi);
  auto r = image_tool("sign --key " + q(b / "ed25519.pem") + " " + q(cosi));
  INFO(r.out);
  CHECK(r.exit_code != 0);
  CHECK(contains(r.out, "boot file 'uki' binds /usr to root hash " + std::string(64, 'b') +
                            " but the image has no /usr verity hash"));
  CHECK(sha256_file(cosi) == before);  // nothing appended
}

TEST_CASE("measured: extracting the kernel from a ~100 MiB ESP image") {
  Bench b;
  b.key(kEd25519);
  run_ok("head -c 60000000 /dev/urandom > " + q(b / "acl.efi"));  // a UKI of ~57 MiB
  write_file(b / "slot-b.addon.efi", "MZ addon");
  make_esp(b, 100, {"slot-b.addon.efi"});
  auto cosi = pack(b);
  const auto t0 = std::chrono::steady_clock::now();
  auto r = image_tool("sign --key " + q(b / "ed25519.pem") + " " + q(cosi));
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  MESSAGE("sign of a COSI with a 100 MiB ESP image holding a 57 MiB UKI: " << ms << " ms");
  CHECK(inspect_json(cosi)["manifest"]["bootFiles"].size() == 2);
}

TEST_CASE("build --esp-image takes the UKI and addons of a raw vfat ESP image as boot files") {
  Bench b;
  write_file(b / "acl.efi", "MZ uki built by our pipeline");
  write_file(b / "slot-a.addon.efi", "MZ addon A");
  write_file(b / "ignition.addon.efi", "MZ addon ignition.firstboot");
  make_esp(b, 8, {"slot-a.addon.efi", "ignition.addon.efi"});
  auto r = image_tool("build --usr " + q(b.usr()) + " --version 202608.03.0 --esp-image " +
                      q(b / "esp.img") + " --out " + q(b / "e.cosi"));
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  CHECK(contains(r.out,
                 "left out the first-boot addon EFI/Linux/acl.efi.extra.d/ignition.addon.efi"));
  std::map<std::string, std::string> digests;
  const auto built = inspect_json(b / "e.cosi")["manifest"];
  INFO(built.dump(2));
  for (const auto& f : built["bootFiles"]) digests[f["name"]] = f["sha256"];
  CHECK(digests ==
        std::map<std::string, std::string>{{"uki", sha256_file(b / "acl.efi")},
                                           {"addon-a", sha256_file(b / "slot-a.addon.efi")}});
  // An ESP without a UKI is a mistake on the command line, said so.
  run_ok("mkfs.vfat -C " + q(b / "empty.img") + " 1024 >/dev/null");
  auto none = image_tool("build --usr " + q(b.usr()) + " --version 202608.03.0 --esp-image " +
                         q(b / "empty.img") + " --out " + q(b / "f.cosi"));
  CHECK(none.exit_code == 2);
  CHECK(contains(none.out, "no UKI in EFI/Linux/"));
}
