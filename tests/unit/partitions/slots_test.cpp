#include "partitions/slots.hpp"

#include <doctest/doctest.h>

#include "partitions/block_target.hpp"
#include "support/disk.hpp"
#include "support/util.hpp"
#include "unit/partitions/disk_helpers.hpp"
#include "unit/partitions/part_helpers.hpp"

using namespace abup;
using namespace abup::partitions;
using namespace abup::test;

namespace {

void sgdisk(const std::filesystem::path& disk, const std::string& args) {
  run_ok("sgdisk " + args + " " + shell_quote(disk.string()));
}

// The error discover_slots gives once `sgdisk_args` have changed the disk.
Error discover_err(const FlatcarDisk& d, const std::string& sgdisk_args) {
  sgdisk(d.disk, sgdisk_args);
  auto p = discover_slots(d.disk.string());
  REQUIRE_FALSE(p.has_value());
  return p.error();
}

}  // namespace

TEST_CASE("discover_slots finds USR-A/USR-B of a Flatcar disk") {
  FlatcarDisk d({.usr_mib = 32});
  auto pair = discover_ok(d.disk);
  CHECK(pair.disk == d.disk.string());
  CHECK_FALSE(pair.block_device);
  CHECK(pair.a.name == 'A');
  CHECK(pair.b.name == 'B');
  CHECK(pair.a.label() == "USR-A");
  CHECK(pair.b.label() == "USR-B");
  CHECK(pair.a.partuuid() == kUsrAPartuuid);
  CHECK(pair.b.partuuid() == kUsrBPartuuid);
  CHECK(pair.a.entry.number == 3);
  CHECK(pair.b.entry.number == 4);
  CHECK(pair.a.entry.type.str() == kUsrTypeGuid);
  CHECK_FALSE(pair.a.hash.has_value());
  CHECK_FALSE(pair.b.hash.has_value());
  CHECK(pair.a.size == 32u << 20);
  CHECK(pair.b.size == 32u << 20);
  CHECK(pair.a.offset == pair.a.entry.first_lba * 512);
  CHECK(pair.a.offset % (2 << 20) == 0);
  CHECK(pair.a.device.empty());
  CHECK(&pair.get('B') == &pair.b);
  CHECK(&pair.other('B') == &pair.a);
  // sgdisk agrees on where USR-B starts.
  std::string info = run_ok("sgdisk -i 4 " + shell_quote(d.disk.string()));
  CHECK(info.find("First sector: " + std::to_string(pair.b.offset / 512) + " ") !=
        std::string::npos);
}

TEST_CASE("discover_slots matches lower-case labels (Trident's ACL layout)") {
  FlatcarDisk d({.usr_mib = 16, .lowercase_labels = true});
  auto pair = discover_ok(d.disk);
  CHECK(pair.a.label() == "usr-a");
  CHECK(pair.b.label() == "usr-b");
  CHECK(pair.a.entry.number == 3);
}

TEST_CASE("discover_slots attaches hash-a/hash-b") {
  FlatcarDisk d({.usr_mib = 16, .hash_partitions = true});
  auto pair = discover_ok(d.disk);
  REQUIRE(pair.a.hash.has_value());
  REQUIRE(pair.b.hash.has_value());
  CHECK(pair.a.hash->number == 5);
  CHECK(pair.b.hash->number == 7);
  CHECK(pair.a.hash->name == "hash-a");
  CHECK(pair.b.hash->unique.str() == kHashBPartuuid);
  // The command line may name the slot by its hash partition.
  auto root = d.tmp / "root";
  make_root(root, 'A', "1.0.0");
  write_file(root / "proc/cmdline",
             std::string("systemd.verity_usr_hash=PARTUUID=") + kHashBPartuuid + "\n");
  auto booted = booted_slot(pair, root);
  REQUIRE(booted.has_value());
  CHECK(*booted == std::optional<char>('B'));
  // Upper-case hash labels too.
  sgdisk(d.disk, "-c 7:HASH-B");
  CHECK(discover_ok(d.disk).b.hash->number == 7);
}

TEST_CASE("discover_slots reads the backup GPT when the primary is corrupt") {
  FlatcarDisk d;
  flip_byte(d.disk, 512 + 40);
  auto pair = discover_ok(d.disk);
  CHECK_FALSE(pair.gpt.primary_valid);
  CHECK(pair.b.partuuid() == kUsrBPartuuid);
}

TEST_CASE("a missing USR-B is an error listing what was found") {
  FlatcarDisk d;
  auto err = discover_err(d, "-d 4");
  CHECK(err.code == Errc::not_found);
  CHECK(err.message == d.disk.string() +
                           ": no partition labelled USR-B/usr-b (found: EFI-SYSTEM, BIOS-BOOT, "
                           "USR-A, OEM, ROOT)");
}

TEST_CASE("a slot with the wrong type GUID is an error naming the partition") {
  FlatcarDisk d;
  auto err = discover_err(d, "-t 4:8300");
  INFO(err.message);
  CHECK(err.code == Errc::invalid_input);
  CHECK(
      err.message.find("partition 4 (USR-B) has type GUID 0fc63daf-8483-4772-8e79-3d69d8477de4") !=
      std::string::npos);
  CHECK(err.message.find(std::string(kUsrTypeGuid)) != std::string::npos);
}

TEST_CASE("the Discoverable Partitions usr types are accepted") {
  FlatcarDisk d;
  sgdisk(d.disk, std::string("-t 3:") + std::string(kUsrTypeGuidX86_64) +
                     " -t 4:" + std::string(kUsrTypeGuidArm64));
  auto pair = discover_ok(d.disk);
  CHECK(pair.a.entry.type.str() == kUsrTypeGuidX86_64);
  CHECK(pair.b.entry.type.str() == kUsrTypeGuidArm64);
}

TEST_CASE("a duplicate slot label is an error") {
  FlatcarDisk d;
  auto err = discover_err(d, "-c 9:usr-a");
  INFO(err.message);
  CHECK(err.message.find("2 partitions labelled usr-a") != std::string::npos);
  CHECK(err.message.find("3, 9") != std::string::npos);
}

TEST_CASE("booted_slot reads every form of the kernel command line") {
  FlatcarDisk d;
  auto pair = discover_ok(d.disk);
  auto root = d.tmp / "root";
  auto booted = [&](const std::string& cmdline) -> std::optional<char> {
    write_file(root / "proc/cmdline", cmdline + "\n");
    auto r = booted_slot(pair, root);
    REQUIRE_MESSAGE(r.has_value(), cmdline, ": ", (r ? "" : r.error().message));
    return *r;
  };
  const std::string a(kUsrAPartuuid), b(kUsrBPartuuid);
  std::string upper_a = a;
  for (char& c : upper_a) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));

  make_root(root, 'A', "4081.2.0");
  REQUIRE(booted_slot(pair, root).has_value());
  CHECK(*booted_slot(pair, root) == std::optional<char>('A'));
  make_root(root, 'B', "4081.2.0");
  CHECK(*booted_slot(pair, root) == std::optional<char>('B'));

  CHECK(booted("usr=PARTUUID=" + upper_a) == 'A');
  CHECK(booted("ro mount.usr=PARTUUID=" + b + " quiet") == 'B');
  CHECK(booted("mount.usr=/dev/mapper/usr verity.usr=PARTUUID=" + b) == 'B');
  CHECK(booted("mount.usr=PARTLABEL=USR-B") == 'B');
  CHECK(booted("mount.usr=PARTLABEL=usr-a") == 'A');
  CHECK(booted("verity.usr=/dev/disk/by-partuuid/" + b) == 'B');
  CHECK(booted("usr=/dev/disk/by-partlabel/USR-A") == 'A');
  CHECK(booted("mount.usr=\"PARTUUID=" + b + "\" console=\"ttyS0 115200\"") == 'B');
  // PARTNROFF counts from the named partition: EFI-SYSTEM (1) + 2 = USR-A (3).
  auto efi = pair.gpt.find_by_number(1)->unique.str();
  CHECK(booted("usr=PARTUUID=" + efi + "/PARTNROFF=2") == 'A');
  // No usr parameter: root= counts only when it names a slot.
  CHECK(booted("root=PARTUUID=" + a) == 'A');
  CHECK(booted("root=LABEL=ROOT console=ttyS0") == std::nullopt);
  CHECK(booted("mount.usr=/dev/mapper/usr root=LABEL=ROOT") == std::nullopt);
  CHECK(booted("") == std::nullopt);
}

TEST_CASE("booted_slot fails when the command line names a partition that is not a slot") {
  FlatcarDisk d;
  auto pair = discover_ok(d.disk);
  auto root = d.tmp / "root";
  make_root(root, 'A', "1.0.0");
  auto err = [&](const std::string& cmdline) {
    write_file(root / "proc/cmdline", cmdline + "\n");
    auto r = booted_slot(pair, root);
    REQUIRE_FALSE_MESSAGE(r.has_value(), cmdline);
    return r.error().message;
  };
  auto root_uuid = pair.gpt.find_by_number(9)->unique.str();
  std::string m = err("mount.usr=PARTUUID=" + root_uuid);
  INFO(m);
  CHECK(m.rfind("kernel command line names mount.usr=PARTUUID=" + root_uuid, 0) == 0);
  CHECK(m.find("partition 9 (ROOT)") != std::string::npos);
  CHECK(m.find("neither USR-A (PARTUUID " + std::string(kUsrAPartuuid) + ") nor USR-B") !=
        std::string::npos);
  CHECK(err("usr=PARTUUID=01234567-89ab-cdef-0123-456789abcdef").find("not on") !=
        std::string::npos);
  CHECK(err("usr=PARTLABEL=OEM").find("partition 6 (OEM)") != std::string::npos);
  CHECK(err("usr=PARTUUID=" + std::string(kUsrAPartuuid) +
            " verity.usr=PARTUUID=" + std::string(kUsrBPartuuid))
            .find("names both slots") != std::string::npos);

  std::filesystem::remove(root / "proc/cmdline");
  auto missing = booted_slot(pair, root);
  REQUIRE_FALSE(missing.has_value());
  CHECK(missing.error().code == Errc::not_found);
}

TEST_CASE("discover_slots on a block device resolves the partition nodes" *
          doctest::skip(!loop_devices_usable())) {
  FlatcarDisk d({.usr_mib = 16, .hash_partitions = true});
  LoopDevice loop(d.disk);
  if (!loop.ok()) ABUP_SKIP("cannot attach a loop device: " + loop.error());
  for (int n : {3, 4, 5, 7})
    if (!loop.wait_partition(n)) ABUP_SKIP("the kernel made no node for " + loop.part(n));
  auto pair = discover_ok(loop.dev());
  CHECK(pair.block_device);
  CHECK(pair.a.device == loop.part(3));
  CHECK(pair.b.device == loop.part(4));
  CHECK(pair.a.hash_device == loop.part(5));
  CHECK(pair.b.hash_device == loop.part(7));
  CHECK(pair.a.size == 16u << 20);

  // The command line may name the slot by its device node.
  auto root = d.tmp / "root";
  make_root(root, 'A', "1.0.0");
  write_file(root / "proc/cmdline", "mount.usr=" + loop.part(4) + "\n");
  auto b = booted_slot(pair, root);
  REQUIRE(b.has_value());
  CHECK(*b == std::optional<char>('B'));

  // SlotReader reads through the partition node what the image file holds.
  run_ok("printf 'slot-a-bytes' | dd of=" + shell_quote(d.disk.string()) +
         " bs=1 seek=" + std::to_string(pair.a.offset + 4096) + " conv=notrunc status=none");
  run_ok("blockdev --flushbufs " + loop.part(3));
  auto reader = SlotReader::open(pair, 'A');
  REQUIRE(reader.has_value());
  std::vector<std::uint8_t> buf(12);
  REQUIRE(reader->read_at(4096, buf));
  CHECK(std::string(buf.begin(), buf.end()) == "slot-a-bytes");
}
