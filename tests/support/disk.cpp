#include "support/disk.hpp"

#include <doctest/doctest.h>

#include <random>
#include <sstream>

#include "support/util.hpp"

namespace abup::test {
namespace {

constexpr const char* kUsrType = "5dfbf5f4-2848-4bac-aa5e-0d9a20b745a6";
constexpr const char* kUsrA = "7130c94a-213a-4e5a-8e26-6cce9662f132";
constexpr const char* kUsrB = "e03dd35c-7c2d-4a47-b3fe-27f15780a57c";
constexpr const char* kEfiType = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
constexpr const char* kBiosBootType = "21686148-6449-6e6f-744e-656564454649";
constexpr const char* kOemType = "be9067b9-ea49-4f15-b4f6-f36f8c9e1818";
constexpr const char* kRootType = "3884dd41-8582-4404-b9a8-e9b84f2df50e";

std::uint64_t round2(std::uint64_t mib) {
  return (mib + 1) / 2 * 2;
}

std::string label(const DiskLayout& l, const std::string& upper) {
  if (!l.lowercase_labels) return upper;
  std::string s = upper;
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string random_hex(std::size_t n) {
  std::random_device rd;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s;
  for (std::size_t i = 0; i < n; ++i) s += kHex[rd() % 16];
  return s;
}

}  // namespace

std::uint64_t flatcar_disk_size(const DiskLayout& l) {
  // 2 MiB before the first partition and for the backup GPT, each partition rounded to 2 MiB.
  std::uint64_t mib =
      2 + 16 + 2 + 2 * round2(l.usr_mib) + (l.hash_partitions ? 16 : 0) + 8 + 16 + 2;
  return mib << 20;
}

void make_flatcar_disk(const std::filesystem::path& path, const DiskLayout& l) {
  REQUIRE_MESSAGE(have_program("sgdisk"), "sgdisk (Debian package gdisk) is required");
  REQUIRE_MESSAGE(have_program("cgpt"), "cgpt (Debian package cgpt) is required");
  std::filesystem::remove(path);
  const std::string disk = shell_quote(path.string());
  run_ok("truncate -s " + std::to_string(flatcar_disk_size(l)) + " " + disk);
  std::ostringstream cmd;
  auto part = [&](int n, const std::string& size, const char* type, const std::string& name,
                  const char* uuid) {
    cmd << " -n " << n << ":0:+" << size << " -t " << n << ":" << type << " -c " << n << ":"
        << name;
    if (uuid) cmd << " -u " << n << ":" << uuid;
  };
  cmd << "sgdisk -a 4096 -U " << kFlatcarDiskGuid;
  part(kPartEfi, "16M", kEfiType, label(l, "EFI-SYSTEM"), nullptr);
  part(kPartBiosBoot, "1M", kBiosBootType, label(l, "BIOS-BOOT"), nullptr);
  part(kPartUsrA, std::to_string(l.usr_mib) + "M", kUsrType, label(l, "USR-A"), kUsrA);
  part(kPartUsrB, std::to_string(l.usr_mib) + "M", kUsrType, label(l, "USR-B"), kUsrB);
  if (l.hash_partitions) part(kPartHashA, "8M", kUsrVerityTypeGuid, "hash-a", kHashAPartuuid);
  part(kPartOem, "8M", kOemType, label(l, "OEM"), nullptr);
  if (l.hash_partitions) part(kPartHashB, "8M", kUsrVerityTypeGuid, "hash-b", kHashBPartuuid);
  part(kPartRoot, "16M", kRootType, label(l, "ROOT"), nullptr);
  cmd << " " << disk;
  run_ok(cmd.str());
  run_ok("cgpt add -i " + std::to_string(kPartUsrA) + " -P 1 -T 0 -S 1 " + disk);
  run_ok("cgpt add -i " + std::to_string(kPartUsrB) + " -P 0 -T 0 -S 0 " + disk);
  std::string verify = run_ok("sgdisk -v " + disk);
  INFO("sgdisk -v: ", verify);
  REQUIRE(verify.find("No problems found") != std::string::npos);
}

void make_root(const std::filesystem::path& root, char booted_slot, const std::string& version) {
  REQUIRE((booted_slot == 'A' || booted_slot == 'B'));
  namespace fs = std::filesystem;
  fs::create_directories(root / "proc/self");
  fs::create_directories(root / "proc/sys/kernel/random");
  fs::create_directories(root / "etc");
  const char* uuid = booted_slot == 'A' ? kUsrA : kUsrB;
  write_file(root / "proc/cmdline",
             std::string("BOOT_IMAGE=/flatcar/vmlinuz-") +
                 static_cast<char>(booted_slot - 'A' + 'a') + " mount.usr=PARTUUID=" + uuid +
                 " mount.usrflags=ro rootflags=rw consoleblank=0 root=LABEL=ROOT "
                 "console=ttyS0,115200n8 flatcar.first_boot=detected flatcar.oem.id=azure\n");
  // Device numbers of a virtio disk and a device-mapper /usr: never a loop device of a test.
  write_file(root / "proc/self/mountinfo",
             "21 1 254:9 / / rw,relatime shared:1 - ext4 /dev/vda9 rw\n"
             "22 21 253:0 / /usr ro,relatime shared:2 - ext4 /dev/mapper/usr ro\n"
             "23 21 0:5 / /dev rw,nosuid shared:3 - devtmpfs devtmpfs rw,mode=755\n"
             "24 21 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:4 - proc proc rw\n"
             "25 21 254:6 / /oem rw,relatime shared:5 - btrfs /dev/vda6 rw\n");
  std::string boot_id = random_hex(32);
  write_file(root / "proc/sys/kernel/random/boot_id",
             boot_id.substr(0, 8) + "-" + boot_id.substr(8, 4) + "-" + boot_id.substr(12, 4) + "-" +
                 boot_id.substr(16, 4) + "-" + boot_id.substr(20) + "\n");
  write_file(root / "etc/machine-id", random_hex(32) + "\n");
  write_file(root / "etc/os-release",
             "NAME=\"Azure Container Linux\"\nID=flatcar\nID_LIKE=coreos\nVERSION=" + version +
                 "\nVERSION_ID=" + version + "\nBUILD_ID=test\nIMAGE_VERSION=" + version +
                 "\nPRETTY_NAME=\"Azure Container Linux " + version +
                 "\"\nVARIANT_ID=azurecontainerlinux\n");
}

std::filesystem::path allow_no_boot_files(const std::filesystem::path& root) {
  const auto path = root / "etc/abup/abup.conf.d/00-no-boot-files.conf";
  std::filesystem::create_directories(path.parent_path());
  write_file(path, "[Boot]\nRequireBootFiles=no\n");
  return path;
}

}  // namespace abup::test
