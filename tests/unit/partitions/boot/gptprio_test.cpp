#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <map>
#include <string>

#include "abup/fs.hpp"
#include "partitions/boot/backend.hpp"
#include "partitions/gpt.hpp"
#include "partitions/slots.hpp"
#include "support/disk.hpp"
#include "support/util.hpp"
#include "unit/partitions/boot/boot_helpers.hpp"
#include "unit/partitions/disk_helpers.hpp"
#include "unit/partitions/part_helpers.hpp"

using namespace abup;
using namespace abup::partitions;
using namespace abup::partitions::boot;
using namespace abup::test;

namespace {

constexpr std::uint64_t kSector = 512;

struct Prio {
  int p = 0, t = 0, s = 0;
  friend bool operator==(const Prio&, const Prio&) = default;
};
using Attrs = std::map<int, Prio>;  // partition number -> P/T/S

std::string text(const Attrs& a) {
  std::string out;
  for (const auto& [n, v] : a)
    out += "#" + std::to_string(n) + " P" + std::to_string(v.p) + " T" + std::to_string(v.t) +
           " S" + std::to_string(v.s) + " ";
  return out;
}

Prio decode(std::uint64_t attrs) {
  return {int((attrs >> 48) & 0xF), int((attrs >> 52) & 0xF), int((attrs >> 56) & 1)};
}

// The usr partitions' values as the real cgpt shows them (-P/-T/-S, one call each).
Attrs cgpt_attrs(const std::filesystem::path& disk) {
  Attrs a;
  const std::string q = shell_quote(disk.string());
  for (int n : {kPartUsrA, kPartUsrB}) {
    auto get = [&](const char* flag) {
      auto r = run("cgpt show " + std::string(flag) + " -i " + std::to_string(n) + " " + q +
                   " 2>/dev/null");
      REQUIRE_MESSAGE(r.exit_code == 0, r.out);
      return std::stoi(trimmed(r.out));
    };
    a[n] = {get("-P"), get("-T"), get("-S")};
  }
  return a;
}

// Faster: cgpt's raw attribute bits 48-63 (-A), one call per partition.
Attrs cgpt_raw_attrs(const std::filesystem::path& disk) {
  Attrs a;
  for (int n : {kPartUsrA, kPartUsrB}) {
    auto r = run("cgpt show -A -i " + std::to_string(n) + " " + shell_quote(disk.string()) +
                 " 2>/dev/null");
    REQUIRE_MESSAGE(r.exit_code == 0, r.out);
    a[n] = decode(std::stoull(trimmed(r.out), nullptr, 16) << 48);
  }
  return a;
}

Attrs attrs_of(const GptTable& t) {
  Attrs a;
  for (const auto& e : t.entries)
    if (e.number == kPartUsrA || e.number == kPartUsrB) a[int(e.number)] = decode(e.attributes);
  return a;
}

std::unique_ptr<Backend> backend(const SlotPair& pair, SectorWriter* writer = nullptr) {
  BackendContext ctx;
  ctx.pair = &pair;
  return value_of(make_backend(BootBackend::gptprio, ctx, {.writer = writer}));
}

void sgdisk_clean(const std::filesystem::path& disk) {
  std::string v = run_ok("sgdisk -v " + shell_quote(disk.string()) + " 2>&1");
  CHECK_MESSAGE(v.find("No problems found") != std::string::npos, v);
}

// sgdisk -v's per-structure verdicts ("Main header: ERROR", ...), printed when a CRC fails.
struct SgdiskVerdict {
  bool main_bad = false, backup_bad = false, clean = false;
  std::string out;
};
SgdiskVerdict sgdisk_verdict(const std::filesystem::path& disk) {
  SgdiskVerdict v;
  v.out = run("sgdisk -v " + shell_quote(disk.string()) + " 2>&1").out;
  v.main_bad = v.out.find("Main header: ERROR") != std::string::npos ||
               v.out.find("Main partition table: ERROR") != std::string::npos;
  v.backup_bad = v.out.find("Backup header: ERROR") != std::string::npos ||
                 v.out.find("Backup partition table: ERROR") != std::string::npos;
  v.clean = v.out.find("No problems found") != std::string::npos && !v.main_bad && !v.backup_bad;
  return v;
}

// Restores the GPT regions (first 34 and last 33 sectors) of `work` from `orig`.
void restore_gpt(const std::filesystem::path& orig, const std::filesystem::path& work,
                 std::uint64_t disk_size) {
  copy_range(orig, work, 0, 34 * kSector);
  copy_range(orig, work, disk_size - 33 * kSector, 33 * kSector);
}

// The backup copy alone: a same-size sparse image holding only the last 33 sectors of `disk`.
Attrs backup_attrs(const std::filesystem::path& disk, const std::filesystem::path& scratch,
                   std::uint64_t disk_size) {
  {
    int fd = ::open(scratch.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    REQUIRE(fd >= 0);
    REQUIRE(::ftruncate(fd, static_cast<off_t>(disk_size)) == 0);
    ::close(fd);
  }
  copy_range(disk, scratch, disk_size - 33 * kSector, 33 * kSector);
  auto t = read_ok(scratch);
  REQUIRE_FALSE(t.primary_valid);
  return attrs_of(t);
}

struct Replay {
  int prefixes = 0, identical = 0, torn_primary = 0, torn_backup = 0, differ = 0;
};

std::string bytes_at(const std::filesystem::path& file, std::uint64_t offset, std::size_t n) {
  std::string buf(n, '\0');
  int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  REQUIRE(::pread(fd, buf.data(), n, static_cast<off_t>(offset)) == static_cast<ssize_t>(n));
  ::close(fd);
  return buf;
}

// Every prefix of `ops` applied onto the original image: each copy valid or invalid as a whole
// (our reader and sgdisk agree), the copy a bootloader reads holds the old or the new
// attributes (cgpt agrees), and a valid non-used copy too. A prefix whose last write leaves the
// bytes as they were is the state already checked (e.g. the unchanged sectors of an entry
// array): counted, not re-run through the tools.
Replay replay_prefixes(const std::filesystem::path& orig, const std::filesystem::path& work,
                       const std::filesystem::path& scratch, std::uint64_t disk_size,
                       const std::vector<WriteOp>& ops, const Attrs& before, const Attrs& after,
                       bool full_cgpt) {
  Replay r;
  restore_gpt(orig, work, disk_size);
  for (std::size_t n = 0; n <= ops.size(); ++n) {
    CAPTURE(n);
    if (n > 0) {
      const WriteOp& op = ops[n - 1];
      if (op.sync) continue;  // nothing reaches the disk
      if (bytes_at(work, op.offset, op.bytes.size()) == op.bytes) {
        ++r.identical;
        continue;
      }
      apply_ops(work, {op}, 1);
    }
    ++r.prefixes;
    auto t = read_gpt_path(work.string());
    REQUIRE_MESSAGE(t.has_value(), "no valid GPT after ", n, " writes: ", t.error().message);
    Attrs seen = attrs_of(*t);
    CHECK_MESSAGE((seen == before || seen == after), "bootloader copy: ", text(seen));
    auto sg = sgdisk_verdict(work);
    CHECK_MESSAGE(sg.main_bad == !t->primary_valid, sg.out);
    if (!t->backup_valid) CHECK_MESSAGE(sg.backup_bad, sg.out);
    if (t->primary_valid && t->backup_valid && !t->copies_differ) CHECK_MESSAGE(sg.clean, sg.out);
    if (t->primary_valid && t->backup_valid && t->copies_differ) {
      ++r.differ;
      Attrs b = backup_attrs(work, scratch, disk_size);
      CHECK_MESSAGE((b == before || b == after), "backup copy: ", text(b));
    }
    r.torn_primary += !t->primary_valid;
    r.torn_backup += !t->backup_valid;
    Attrs c = full_cgpt ? cgpt_attrs(work) : cgpt_raw_attrs(work);
    CHECK_MESSAGE(c == seen, "cgpt shows ", text(c), " but the bootloader copy is ", text(seen));
  }
  return r;
}

struct Fixture {
  TempDir tmp;
  std::filesystem::path disk = tmp / "disk.img", orig = tmp / "orig.img", work = tmp / "work.img",
                        scratch = tmp / "scratch.img";
  std::uint64_t size = flatcar_disk_size({.usr_mib = 8});
  // One sgdisk/cgpt-made image per binary, copied (sparse) for each test.
  Fixture() { copy_small_flatcar_disk(disk); }
  void snapshot() {
    copy_sparse(disk, orig);
    copy_sparse(disk, work);
  }
};

const Attrs kFactory = {{kPartUsrA, {1, 0, 1}}, {kPartUsrB, {0, 0, 0}}};
const Attrs kArmedB = {{kPartUsrA, {1, 0, 1}}, {kPartUsrB, {2, 1, 0}}};
const Attrs kCommittedB = {{kPartUsrA, {1, 0, 1}}, {kPartUsrB, {2, 0, 1}}};

}  // namespace

TEST_CASE("gptprio arm gives the new slot one try: cgpt shows P2 T1 S0, the old P1 T0 S1") {
  Fixture f;
  auto pair = discover_ok(f.disk);
  auto b = backend(pair);
  CHECK(b->name() == "gptprio");
  CHECK(cgpt_attrs(f.disk) == kFactory);
  auto v0 = read_view(*b);
  CHECK(view_text(v0) == "next=A default=A");
  ok(b->arm('B'));
  CHECK_MESSAGE(cgpt_attrs(f.disk) == kArmedB, text(cgpt_attrs(f.disk)));
  sgdisk_clean(f.disk);
  auto v = read_view(*b);
  CHECK(view_text(v) == "next=B default=A");
  CHECK(v.slots['B'].tries == 1);
  CHECK(v.slots['B'].priority == 2);
  CHECK_FALSE(v.slots['B'].good);
  CHECK(v.slots['A'].good);
  // GRUB's gptprio.next spends the try (tries 1 -> 0); with no commit, A boots again.
  run_ok("cgpt add -i 4 -T 0 " + shell_quote(f.disk.string()));
  CHECK(view_text(read_view(*b)) == "next=A default=A");
}

TEST_CASE("gptprio commit makes the slot successful and prioritized, and a re-arm flips back") {
  Fixture f;
  auto pair = discover_ok(f.disk);
  auto b = backend(pair);
  ok(b->arm('B'));
  run_ok("cgpt add -i 4 -T 0 " + shell_quote(f.disk.string()));  // GRUB booted it once
  ok(b->commit('B'));
  CHECK_MESSAGE(cgpt_attrs(f.disk) == kCommittedB, text(cgpt_attrs(f.disk)));
  CHECK(view_text(read_view(*b)) == "next=B default=B");
  sgdisk_clean(f.disk);
  // Next update goes to A: A P2 T1 S0, B P1 T0 S1 (what cgpt add -S0 -T1 + prioritize give).
  ok(b->arm('A'));
  Attrs armed_a = {{kPartUsrA, {2, 1, 0}}, {kPartUsrB, {1, 0, 1}}};
  CHECK_MESSAGE(cgpt_attrs(f.disk) == armed_a, text(cgpt_attrs(f.disk)));
  CHECK(view_text(read_view(*b)) == "next=A default=B");
  ok(b->commit('A'));
  Attrs committed_a = {{kPartUsrA, {2, 0, 1}}, {kPartUsrB, {1, 0, 1}}};
  CHECK_MESSAGE(cgpt_attrs(f.disk) == committed_a, text(cgpt_attrs(f.disk)));
  // Committing again changes nothing and writes nothing.
  RecordingWriter rec(f.disk);
  auto b2 = backend(pair, &rec);
  ok(b2->commit('A'));
  CHECK(rec.ops.empty());
  sgdisk_clean(f.disk);
}

TEST_CASE("gptprio mark_bad zeroes the slot and the other slot boots") {
  Fixture f;
  auto pair = discover_ok(f.disk);
  auto b = backend(pair);
  ok(b->arm('B'));
  ok(b->mark_bad('B'));
  Attrs bad_b = {{kPartUsrA, {1, 0, 1}}, {kPartUsrB, {0, 0, 0}}};
  CHECK_MESSAGE(cgpt_attrs(f.disk) == bad_b, text(cgpt_attrs(f.disk)));
  auto v = read_view(*b);
  CHECK(view_text(v) == "next=A default=A");
  CHECK(v.slots['B'].priority == 0);
  CHECK_FALSE(b->arm('C').has_value());
}

TEST_CASE("gptprio read follows gptprio.next: ties go to the lower partition, priority 0 never") {
  Fixture f;
  auto pair = discover_ok(f.disk);
  auto b = backend(pair);
  const std::string q = shell_quote(f.disk.string());
  run_ok("cgpt add -i 4 -P 1 -T 0 -S 1 " + q);  // A and B both P1 S1: A (lower number)
  CHECK(view_text(read_view(*b)) == "next=A default=A");
  run_ok("cgpt add -i 3 -P 0 " + q);  // A priority 0: never
  CHECK(view_text(read_view(*b)) == "next=B default=B");
  run_ok("cgpt add -i 4 -S 0 -T 0 " + q);  // nothing bootable
  auto v = read_view(*b);
  CHECK(view_text(v) == "next=- default=-");
  CHECK(v.detail.find("no bootable") != std::string::npos);
  run_ok("cgpt add -i 4 -P 3 -T 2 -S 0 " + q);  // tries-only candidate: next, never default
  CHECK(view_text(read_view(*b)) == "next=B default=-");
}

TEST_CASE("gptprio arm and commit are crash-safe at every write and every sector") {
  Fixture f;
  auto pair = discover_ok(f.disk);
  f.snapshot();

  RecordingWriter arm_rec(f.disk);
  ok(backend(pair, &arm_rec)->arm('B'));
  CHECK(cgpt_attrs(f.disk) == kArmedB);
  // primary entries, primary header, sync, backup entries, backup header, sync
  REQUIRE(arm_rec.ops.size() == 6);
  CHECK(arm_rec.ops[0].offset == 2 * kSector);
  CHECK(arm_rec.ops[1].offset == 1 * kSector);
  CHECK(arm_rec.ops[2].sync);
  CHECK(arm_rec.ops[4].offset == f.size - kSector);
  CHECK(arm_rec.ops[5].sync);

  SUBCASE("arm, whole writes, cgpt -P/-T/-S") {
    auto r =
        replay_prefixes(f.orig, f.work, f.scratch, f.size, arm_rec.ops, kFactory, kArmedB, true);
    CHECK(r.prefixes == 5);
    CHECK(r.identical == 0);
    CHECK(r.differ == 1);  // primary new + backup old, after the first sync
  }
  SUBCASE("arm, sector by sector") {
    auto ops = split_sectors(arm_rec.ops, kSector);
    auto r = replay_prefixes(f.orig, f.work, f.scratch, f.size, ops, kFactory, kArmedB, false);
    CHECK(r.prefixes + r.identical == int(ops.size()) - 2 + 1);  // every non-sync prefix
    MESSAGE("sector prefixes: ", r.prefixes, " distinct states checked, ", r.identical,
            " left the bytes unchanged");
    CHECK(r.torn_primary > 0);  // entries written, header not yet: primary invalid, backup old
    CHECK(r.torn_backup > 0);
  }
  SUBCASE("commit, whole writes and sector by sector") {
    run_ok("cgpt add -i 4 -T 0 " + shell_quote(f.disk.string()));  // GRUB spent the try
    Attrs booted = {{kPartUsrA, {1, 0, 1}}, {kPartUsrB, {2, 0, 0}}};
    f.snapshot();
    RecordingWriter rec(f.disk);
    ok(backend(pair, &rec)->commit('B'));
    CHECK(cgpt_attrs(f.disk) == kCommittedB);
    replay_prefixes(f.orig, f.work, f.scratch, f.size, rec.ops, booted, kCommittedB, true);
    replay_prefixes(f.orig, f.work, f.scratch, f.size, split_sectors(rec.ops, kSector), booted,
                    kCommittedB, false);
  }
  // The full sequence leaves both copies equal and valid.
  restore_gpt(f.orig, f.work, f.size);
  apply_ops(f.work, arm_rec.ops, arm_rec.ops.size());
  sgdisk_clean(f.work);
}

TEST_CASE("gptprio reads a GPT whose primary copy is damaged from the backup and repairs it") {
  Fixture f;
  flip_byte(f.disk, kSector + 40);  // primary header CRC no longer matches
  REQUIRE_FALSE(read_ok(f.disk).primary_valid);
  auto pair = discover_ok(f.disk);
  auto b = backend(pair);
  CHECK(view_text(read_view(*b)) == "next=A default=A");
  CHECK(read_view(*b).detail.find("primary GPT header") != std::string::npos);
  ok(b->arm('B'));
  sgdisk_clean(f.disk);
  auto t = read_ok(f.disk);
  CHECK(t.primary_valid);
  CHECK(t.backup_valid);
  CHECK(cgpt_attrs(f.disk) == kArmedB);
}

TEST_CASE("gptprio repairs a damaged backup before writing, crash-safely at every sector") {
  Fixture f;
  flip_byte(f.disk, f.size - 33 * kSector + 48);  // backup entry array CRC no longer matches
  REQUIRE_FALSE(read_ok(f.disk).backup_valid);
  auto pair = discover_ok(f.disk);
  f.snapshot();
  RecordingWriter rec(f.disk);
  ok(backend(pair, &rec)->arm('B'));
  // The repair (old table, both copies) comes first, then the new table.
  CHECK(rec.ops.size() == 12);
  sgdisk_clean(f.disk);
  CHECK(cgpt_attrs(f.disk) == kArmedB);
  // Without the repair a torn primary write would leave no valid copy at all.
  auto ops = split_sectors(rec.ops, kSector);
  std::size_t valid_prefixes = 0;
  for (std::size_t n = 0; n <= ops.size(); ++n) {
    if (n > 0 && ops[n - 1].sync) continue;
    CAPTURE(n);
    restore_gpt(f.orig, f.work, f.size);
    apply_ops(f.work, ops, n);
    auto t = read_gpt_path(f.work.string());
    REQUIRE_MESSAGE(t.has_value(), t.error().message);
    Attrs seen = attrs_of(*t);
    CHECK_MESSAGE((seen == kFactory || seen == kArmedB), text(seen));
    ++valid_prefixes;
  }
  CHECK(valid_prefixes == ops.size() - 3);
}
