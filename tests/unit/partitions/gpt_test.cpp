#include "partitions/gpt.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>

#include <cstdio>
#include <sstream>

#include "abup/fs.hpp"
#include "support/disk.hpp"
#include "support/util.hpp"
#include "unit/partitions/disk_helpers.hpp"
#include "unit/partitions/part_helpers.hpp"

using namespace abup;
using namespace abup::partitions;
using namespace abup::test;

namespace {

// The value after "label" on its line of sgdisk/cgpt output, up to the first space.
std::string field(const std::string& out, const std::string& label) {
  auto pos = out.find(label);
  REQUIRE_MESSAGE(pos != std::string::npos, label, " in ", out);
  pos += label.size();
  auto end = out.find_first_of(" \n", pos);
  return out.substr(pos, end - pos);
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string trimmed(const std::string& s) {
  auto b = s.find_first_not_of(" \n");
  auto e = s.find_last_not_of(" \n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

std::vector<std::uint8_t> bytes_of(const std::string& s) {
  return {s.begin(), s.end()};
}

// Offset of the first byte where `built` differs from `disk` at `at`; -1 when equal.
long first_diff(const std::vector<std::uint8_t>& built, const std::string& disk, std::size_t at,
                std::size_t from = 0) {
  for (std::size_t i = from; i < built.size(); ++i)
    if (at + i >= disk.size() || built[i] != static_cast<std::uint8_t>(disk[at + i]))
      return static_cast<long>(i);
  return -1;
}

}  // namespace

TEST_CASE("crc32 is the IEEE/zlib CRC-32") {
  const std::string check = "123456789";
  CHECK(crc32(bytes_of(check)) == 0xCBF43926u);
  CHECK(crc32({}) == 0u);
  // Chaining equals one pass, as with zlib's crc32(crc, buf, len).
  auto a = bytes_of("1234"), b = bytes_of("56789");
  CHECK(crc32(b, crc32(a)) == 0xCBF43926u);
}

TEST_CASE("GUIDs parse case-insensitively and keep the on-disk mixed-endian order") {
  auto g = Guid::parse("7130C94A-213A-4E5A-8E26-6CCE9662F132");
  REQUIRE(g.has_value());
  CHECK(g->str() == "7130c94a-213a-4e5a-8e26-6cce9662f132");
  CHECK(g->bytes[0] == 0x4a);
  CHECK(g->bytes[3] == 0x71);
  CHECK(g->bytes[4] == 0x3a);
  CHECK(g->bytes[8] == 0x8e);
  CHECK(g->bytes[15] == 0x32);
  CHECK_FALSE(g->is_zero());
  CHECK(Guid{}.is_zero());
  auto bad = Guid::parse("7130c94a-213a-4e5a-8e26-6cce9662f13");
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().message.find("7130c94a-213a-4e5a-8e26-6cce9662f13") != std::string::npos);
  CHECK_FALSE(Guid::parse("7130c94a+213a-4e5a-8e26-6cce9662f132").has_value());
  CHECK_FALSE(Guid::parse("7130c94a-213a-4e5a-8e26-6cce9662f13g").has_value());
  auto r1 = Guid::random(), r2 = Guid::random();
  CHECK(r1 != r2);
  CHECK(r1.str()[14] == '4');
}

TEST_CASE("read_gpt of an sgdisk image matches sgdisk -i and cgpt show") {
  FlatcarDisk d({.usr_mib = 64, .hash_partitions = true});
  auto t = read_ok(d.disk);
  CHECK(t.sector_size == 512);
  CHECK(t.disk_size == flatcar_disk_size({.usr_mib = 64, .hash_partitions = true}));
  CHECK(t.primary_valid);
  CHECK(t.backup_valid);
  CHECK_FALSE(t.copies_differ);
  CHECK(t.problems.empty());
  CHECK(t.protective_mbr);
  CHECK(t.header.my_lba == 1);
  CHECK(t.header.alternate_lba == t.last_lba());
  CHECK(t.header.first_usable == 34);
  CHECK(t.header.last_usable == t.last_lba() - 33);
  CHECK(t.header.entries_lba == 2);
  CHECK(t.header.num_entries == 128);
  CHECK(t.header.entry_size == 128);
  CHECK(t.header.disk_guid.str() == kFlatcarDiskGuid);
  CHECK(t.backup_header.my_lba == t.last_lba());
  CHECK(t.backup_header.entries_lba == t.last_lba() - 32);

  std::vector<std::uint32_t> numbers;
  for (const auto& e : t.entries) numbers.push_back(e.number);
  CHECK(numbers == std::vector<std::uint32_t>{1, 2, 3, 4, 5, 6, 7, 9});

  const std::string q = shell_quote(d.disk.string());
  for (const auto& e : t.entries) {
    CAPTURE(e.number);
    std::string out = run_ok("sgdisk -i " + std::to_string(e.number) + " " + q);
    CHECK(lower(field(out, "Partition GUID code: ")) == e.type.str());
    CHECK(lower(field(out, "Partition unique GUID: ")) == e.unique.str());
    CHECK(field(out, "First sector: ") == std::to_string(e.first_lba));
    CHECK(field(out, "Last sector: ") == std::to_string(e.last_lba));
    char attrs[32];
    std::snprintf(attrs, sizeof attrs, "%016llX", static_cast<unsigned long long>(e.attributes));
    CHECK(field(out, "Attribute flags: ") == attrs);
    auto name_pos = out.find("Partition name: '");
    REQUIRE(name_pos != std::string::npos);
    name_pos += 17;
    CHECK(out.substr(name_pos, out.find('\'', name_pos) - name_pos) == e.name);
    for (auto [flag, shift, bits] : {std::tuple{"-P", 48, 0xF}, {"-T", 52, 0xF}, {"-S", 56, 1}}) {
      std::string v = trimmed(
          run_ok(std::string("cgpt show ") + flag + " -i " + std::to_string(e.number) + " " + q));
      CHECK_MESSAGE(v == std::to_string((e.attributes >> shift) & bits), flag);
    }
  }
  const GptEntry* usr_a = t.find_by_number(3);
  REQUIRE(usr_a);
  CHECK(usr_a->name == "USR-A");
  CHECK(usr_a->unique.str() == "7130c94a-213a-4e5a-8e26-6cce9662f132");
  CHECK(usr_a->attributes == ((1ull << 48) | (1ull << 56)));
  CHECK(t.find_by_number(4)->attributes == 0);
  CHECK(t.find_by_number(8) == nullptr);
}

TEST_CASE("a corrupt primary header is reported and the backup is used") {
  FlatcarDisk d;
  auto good = read_ok(d.disk);
  flip_byte(d.disk, 512 + 40);  // first_usable, covered by the header CRC
  auto t = read_ok(d.disk);
  CHECK_FALSE(t.primary_valid);
  CHECK(t.backup_valid);
  CHECK_FALSE(t.copies_differ);
  CHECK(t.header.my_lba == t.last_lba());
  CHECK(t.problems.find("primary GPT header (LBA 1): header CRC32 mismatch") != std::string::npos);
  REQUIRE(t.entries.size() == good.entries.size());
  for (std::size_t i = 0; i < t.entries.size(); ++i) {
    CHECK(t.entries[i].unique == good.entries[i].unique);
    CHECK(t.entries[i].first_lba == good.entries[i].first_lba);
    CHECK(t.entries[i].attributes == good.entries[i].attributes);
    CHECK(t.entries[i].name == good.entries[i].name);
  }
}

TEST_CASE("a bad signature in the backup is reported while the primary is used") {
  FlatcarDisk d;
  auto size = std::filesystem::file_size(d.disk);
  flip_byte(d.disk, size - 512);  // 'E' of "EFI PART"
  auto t = read_ok(d.disk);
  CHECK(t.primary_valid);
  CHECK_FALSE(t.backup_valid);
  CHECK(t.header.my_lba == 1);
  CHECK(t.problems.find("backup GPT header") != std::string::npos);
  CHECK(t.problems.find("no \"EFI PART\" signature") != std::string::npos);
}

TEST_CASE("both copies corrupt is an error naming the disk and both problems") {
  FlatcarDisk d;
  flip_byte(d.disk, 512 + 40);
  flip_byte(d.disk, std::filesystem::file_size(d.disk) - 512 + 40);
  auto t = read_gpt_path(d.disk.string());
  REQUIRE_FALSE(t.has_value());
  const auto& msg = t.error().message;
  INFO(msg);
  CHECK(t.error().code == Errc::invalid_input);
  CHECK(msg.rfind(d.disk.string() + ": no valid GPT", 0) == 0);
  CHECK(msg.find("primary GPT header (LBA 1): header CRC32 mismatch") != std::string::npos);
  CHECK(msg.find("backup GPT header (LBA") != std::string::npos);
}

TEST_CASE("a corrupt entry array is detected by its CRC32") {
  FlatcarDisk d;
  flip_byte(d.disk, 2 * 512 + 2 * 128 + 56);  // a character of partition 3's name
  auto t = read_ok(d.disk);
  CHECK_FALSE(t.primary_valid);
  CHECK(t.backup_valid);
  CHECK(t.problems.find("partition entry array CRC32 mismatch") != std::string::npos);
  CHECK(t.find_by_number(3)->name == "USR-A");

  // And in the backup array too: nothing valid is left.
  auto size = std::filesystem::file_size(d.disk);
  flip_byte(d.disk, size - 33 * 512 + 2 * 128 + 56);
  auto both = read_gpt_path(d.disk.string());
  REQUIRE_FALSE(both.has_value());
  CHECK(both.error().message.find("backup GPT header") != std::string::npos);
  CHECK(both.error().message.find("partition entry array CRC32 mismatch") != std::string::npos);
}

TEST_CASE("a disk image that is not a GPT disk is an error") {
  TempDir tmp;
  auto disk = tmp / "blank.img";
  run_ok("truncate -s 8M " + shell_quote(disk.string()));
  auto t = read_gpt_path(disk.string());
  REQUIRE_FALSE(t.has_value());
  CHECK(t.error().message.find("no \"EFI PART\" signature") != std::string::npos);
  auto missing = read_gpt_path((tmp / "missing.img").string());
  REQUIRE_FALSE(missing.has_value());
  CHECK(missing.error().code == Errc::not_found);
}

TEST_CASE("two valid copies that differ (a crash between the GPT writes) are reported") {
  TempDir tmp;
  auto old_disk = tmp / "old.img", new_disk = tmp / "new.img";
  make_flatcar_disk(old_disk, {.usr_mib = 16});
  copy_sparse(old_disk, new_disk);
  run_ok("cgpt add -i 4 -P 2 -T 1 -S 0 " + shell_quote(new_disk.string()));
  copy_range(new_disk, old_disk, 0, 34 * 512);  // only the primary copy was written
  auto t = read_ok(old_disk);
  CHECK(t.primary_valid);
  CHECK(t.backup_valid);
  CHECK(t.copies_differ);
  CHECK(t.problems.empty());
  CHECK(t.find_by_number(4)->attributes == ((2ull << 48) | (1ull << 52)));
}

TEST_CASE("build_primary_region and build_backup_region reproduce sgdisk's bytes") {
  TempDir tmp;
  auto disk = tmp / "disk.img";
  DiskLayout layout{.usr_mib = 32, .hash_partitions = true};
  make_flatcar_disk(disk, layout);
  auto t = read_ok(disk);
  const std::string sg = abup::test::read_file(disk);

  auto primary = build_primary_region(t.disk_size, 512, t.header.disk_guid, t.entries);
  REQUIRE(primary.size() == 34 * 512);
  CHECK(first_diff(primary, sg, 0) == -1);
  auto backup = build_backup_region(t.disk_size, 512, t.header.disk_guid, t.entries);
  CHECK(backup.offset == t.disk_size - 33 * 512);
  REQUIRE(backup.bytes.size() == 33 * 512);
  CHECK(first_diff(backup.bytes, sg, backup.offset) == -1);

  // Written to a fresh file, sgdisk accepts it.
  auto fresh = tmp / "fresh.img";
  run_ok("truncate -s " + std::to_string(t.disk_size) + " " + shell_quote(fresh.string()));
  {
    auto fd = open_file(fresh, O_RDWR);
    REQUIRE(fd.has_value());
    REQUIRE(pwrite_full(fd->get(), primary, 0, "fresh"));
    REQUIRE(pwrite_full(fd->get(), backup.bytes, backup.offset, "fresh"));
  }
  std::string v = run_ok("sgdisk -v " + shell_quote(fresh.string()));
  CHECK_MESSAGE(v.find("No problems found") != std::string::npos, v);
  CHECK(run_ok("sgdisk -i 4 " + shell_quote(fresh.string())).find("Partition name: 'USR-B'") !=
        std::string::npos);
}

TEST_CASE("build_primary_region handles non-ASCII names and a disk from scratch") {
  TempDir tmp;
  const std::uint64_t size = 64ull << 20;
  auto guid = Guid::random();
  GptEntry e;
  e.number = 2;
  e.type = *Guid::parse("0fc63daf-8483-4772-8e79-3d69d8477de4");
  e.unique = Guid::random();
  e.first_lba = 2048;
  e.last_lba = 4095;
  e.attributes = 1ull << 56;
  e.name = "dätä-€-\xF0\x9F\x98\x80";  // 2-, 3- and 4-byte UTF-8 (a surrogate pair in UTF-16)
  auto disk = tmp / "scratch.img";
  run_ok("truncate -s " + std::to_string(size) + " " + shell_quote(disk.string()));
  {
    auto fd = open_file(disk, O_RDWR);
    REQUIRE(fd.has_value());
    auto primary = build_primary_region(size, 512, guid, {e});
    auto backup = build_backup_region(size, 512, guid, {e});
    REQUIRE(pwrite_full(fd->get(), primary, 0, "scratch"));
    REQUIRE(pwrite_full(fd->get(), backup.bytes, backup.offset, "scratch"));
  }
  std::string v = run_ok("sgdisk -v " + shell_quote(disk.string()));
  CHECK_MESSAGE(v.find("No problems found") != std::string::npos, v);
  auto t = read_ok(disk);
  REQUIRE(t.entries.size() == 1);
  CHECK(t.entries[0].number == 2);
  CHECK(t.entries[0].name == e.name);
  CHECK(t.entries[0].unique == e.unique);
  CHECK(t.header.disk_guid == guid);
  CHECK(lower(field(run_ok("sgdisk -i 2 " + shell_quote(disk.string())),
                    "Partition unique GUID: ")) == e.unique.str());
}

TEST_CASE("write_gpt writes both copies, which cgpt and sgdisk read back") {
  FlatcarDisk d;
  const std::string q = shell_quote(d.disk.string());
  auto t = read_ok(d.disk);
  for (auto& e : t.entries) {
    if (e.number == 4) e.attributes = (2ull << 48) | (1ull << 52);  // armed: P2 T1 S0
  }
  {
    auto fd = open_file(d.disk, O_RDWR);
    REQUIRE(fd.has_value());
    auto st = write_gpt(fd->get(), t, d.disk.string());
    REQUIRE_MESSAGE(st.has_value(), (st ? "" : st.error().message));
  }
  CHECK(trimmed(run_ok("cgpt show -P -i 4 " + q)) == "2");
  CHECK(trimmed(run_ok("cgpt show -T -i 4 " + q)) == "1");
  CHECK(trimmed(run_ok("cgpt show -S -i 4 " + q)) == "0");
  CHECK(trimmed(run_ok("cgpt show -P -i 3 " + q)) == "1");
  std::string v = run_ok("sgdisk -v " + q);
  CHECK_MESSAGE(v.find("No problems found") != std::string::npos, v);
  auto back = read_ok(d.disk);
  CHECK(back.primary_valid);
  CHECK(back.backup_valid);
  CHECK_FALSE(back.copies_differ);
}

TEST_CASE("write_gpt repairs an invalid copy from the valid one") {
  FlatcarDisk d;
  flip_byte(d.disk, 512 + 40);
  auto t = read_ok(d.disk);
  REQUIRE_FALSE(t.primary_valid);
  {
    auto fd = open_file(d.disk, O_RDWR);
    REQUIRE(fd.has_value());
    REQUIRE(write_gpt(fd->get(), t, d.disk.string()));
  }
  auto back = read_ok(d.disk);
  CHECK(back.primary_valid);
  CHECK(back.backup_valid);
  CHECK(back.problems.empty());
  std::string v = run_ok("sgdisk -v " + shell_quote(d.disk.string()));
  CHECK_MESSAGE(v.find("No problems found") != std::string::npos, v);
}

TEST_CASE("a GPT with 4096-byte sectors is found in an image file" *
          doctest::skip(!loop_devices_usable())) {
  // sgdisk on a regular file always uses 512-byte sectors; a loop device with 4096-byte logical
  // sectors makes it write a 4Kn GPT into the file.
  TempDir tmp;
  auto disk = tmp / "4kn.img";
  run_ok("truncate -s 64M " + shell_quote(disk.string()));
  {
    LoopDevice loop(disk, 4096, false);
    if (!loop.ok()) ABUP_SKIP("cannot attach a 4096-byte-sector loop device: " + loop.error());
    run_ok("sgdisk -a 512 -n 3:0:+16M -t 3:5dfbf5f4-2848-4bac-aa5e-0d9a20b745a6 -c 3:USR-A " +
           loop.dev());
    auto dev = read_gpt_path(loop.dev());
    REQUIRE_MESSAGE(dev.has_value(), (dev ? "" : dev.error().message));
    CHECK(dev->sector_size == 4096);
  }
  auto t = read_ok(disk);
  CHECK(t.sector_size == 4096);
  CHECK(t.header.first_usable == 6);  // 128 entries * 128 bytes = 4 sectors after LBA 2
  REQUIRE(t.entries.size() == 1);
  CHECK(t.entries[0].number == 3);
  CHECK(t.entries[0].name == "USR-A");
  CHECK((t.entries[0].last_lba - t.entries[0].first_lba + 1) * 4096 == 16u << 20);
  // With the sector size forced to 512 there is no GPT.
  auto fd = open_file(disk, O_RDONLY);
  REQUIRE(fd.has_value());
  CHECK_FALSE(read_gpt(fd->get(), 0, 512, disk.string()).has_value());

  // build_primary_region at 4096 matches what sgdisk wrote.
  auto primary = build_primary_region(t.disk_size, 4096, t.header.disk_guid, t.entries);
  REQUIRE(primary.size() == 6 * 4096);
  std::string sg = abup::test::read_file(disk);
  CHECK(first_diff(primary, sg, 0, 512) == -1);
}
