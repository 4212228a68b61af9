// Test fixtures shared by every module: a Flatcar-layout GPT disk image made by the real sgdisk
// and cgpt, and a running-system tree (/proc, /etc) for --root.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

namespace abup::test {

struct DiskLayout {
  std::uint64_t usr_mib = 64;
  bool hash_partitions = false;
  bool lowercase_labels = false;
};

// Partition numbers and fixed GUIDs of the layout below.
inline constexpr int kPartEfi = 1, kPartBiosBoot = 2, kPartUsrA = 3, kPartUsrB = 4, kPartHashA = 5,
                     kPartOem = 6, kPartHashB = 7, kPartRoot = 9;
inline constexpr const char* kFlatcarDiskGuid = "00000000-0000-4000-a000-00000000ac1d";
inline constexpr const char* kUsrVerityTypeGuid = "77ff5f63-e7b6-4633-acf4-1565b864c0e6";
inline constexpr const char* kHashAPartuuid = "a5a5a5a5-0000-4000-8000-00000000000a";
inline constexpr const char* kHashBPartuuid = "b5b5b5b5-0000-4000-8000-00000000000b";

// GPT disk image with the Flatcar layout made by sgdisk (1 EFI-SYSTEM 16MiB, 2 BIOS-BOOT 1MiB,
// 3 USR-A, 4 USR-B (type 5dfbf5f4-…, PARTUUIDs 7130c94a-… / e03dd35c-…), [5 hash-a, 7 hash-b if
// hash_partitions, 8MiB each], 6 OEM 8MiB, 9 ROOT 16MiB), 2 MiB alignment; USR-A attrs priority 1
// successful 1 (set with cgpt add), USR-B 0. lowercase_labels gives usr-a/usr-b/efi-system/...
// (Trident's ACL spelling). Verified with sgdisk -v. The file is sparse (partitions read as
// zeros).
void make_flatcar_disk(const std::filesystem::path& path, const DiskLayout& layout = {});

// The size in bytes make_flatcar_disk gives the image.
std::uint64_t flatcar_disk_size(const DiskLayout& layout = {});

// A running-system tree: proc/cmdline ("mount.usr=PARTUUID=<slot uuid> ..."),
// proc/self/mountinfo (valid, naming no loop or partition device of the test disks),
// proc/sys/kernel/random/boot_id, etc/machine-id, etc/os-release with IMAGE_VERSION=version,
// VERSION_ID=version, ID=flatcar, VARIANT_ID=azurecontainerlinux. booted_slot is 'A' or 'B'.
void make_root(const std::filesystem::path& root, char booted_slot, const std::string& version);

// For tests about something other than kernels: ROOT/etc/abup/abup.conf.d/00-no-boot-files.conf
// sets [Boot] RequireBootFiles=no, so that an image without boot files stages on gptprio, uefi
// and systemd-boot (which refuse it by default). Its path is returned, to remove it again.
std::filesystem::path allow_no_boot_files(const std::filesystem::path& root);

}  // namespace abup::test
