#include "partitions/block_target.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>

#include "support/disk.hpp"
#include "support/util.hpp"
#include "unit/partitions/part_helpers.hpp"

using namespace abup;
using namespace abup::partitions;
using namespace abup::test;

namespace {

constexpr DiskLayout kLayout{.usr_mib = 8, .hash_partitions = true};

// A Flatcar disk whose partitions hold random bytes, so a stray write shows.
struct Fixture {
  TempDir tmp;
  std::filesystem::path disk = tmp / "disk.img";
  std::filesystem::path root = tmp / "root";
  SlotPair pair;

  Fixture() {
    make_flatcar_disk(disk, kLayout);
    auto mib = flatcar_disk_size(kLayout) >> 20;
    run_ok("dd if=/dev/urandom of=" + shell_quote(disk.string()) +
           " bs=1M seek=2 count=" + std::to_string(mib - 4) + " conv=notrunc status=none");
    make_root(root, 'A', "4081.2.0");
    auto p = discover_slots(disk.string());
    REQUIRE_MESSAGE(p.has_value(), (p ? "" : p.error().message));
    pair = *p;
  }
};

struct AlignedBuf {
  explicit AlignedBuf(std::size_t n)
      : size(n),
        p(static_cast<std::uint8_t*>(std::aligned_alloc(4096, (n + 4095) / 4096 * 4096))) {}
  ~AlignedBuf() { std::free(p); }
  AlignedBuf(const AlignedBuf&) = delete;
  AlignedBuf& operator=(const AlignedBuf&) = delete;
  std::span<std::uint8_t> span() { return {p, size}; }
  std::size_t size;
  std::uint8_t* p;
};

std::vector<std::uint8_t> pattern(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<std::uint8_t> v(n);
  for (auto& b : v) b = static_cast<std::uint8_t>(rng());
  return v;
}

// Every byte of `after` outside [begin, end) equals `before`; the first difference otherwise.
long outside_diff(const std::string& before, const std::string& after, std::uint64_t begin,
                  std::uint64_t end) {
  if (before.size() != after.size()) return -2;
  for (std::size_t i = 0; i < before.size(); ++i) {
    if (i == begin) i = end;
    if (i >= before.size()) break;
    if (before[i] != after[i]) return static_cast<long>(i);
  }
  return -1;
}

BlockTarget open_ok(const SlotPair& pair, char target, std::optional<char> booted,
                    std::uint64_t needed, const std::filesystem::path& root) {
  auto t = BlockTarget::open(pair, target, booted, needed, root);
  REQUIRE_MESSAGE(t.has_value(), (t ? "" : t.error().message));
  return std::move(*t);
}

std::string sha256_range(const std::string& path, std::uint64_t offset, std::uint64_t length) {
  return run_ok("dd if=" + shell_quote(path) +
                " iflag=skip_bytes,count_bytes bs=1M skip=" + std::to_string(offset) +
                " count=" + std::to_string(length) + " status=none | sha256sum");
}

}  // namespace

TEST_CASE("BlockTarget refuses the booted slot") {
  Fixture f;
  auto t = BlockTarget::open(f.pair, 'A', 'A', 1, f.root);
  REQUIRE_FALSE(t.has_value());
  CHECK(t.error().code == Errc::refused);
  INFO(t.error().message);
  CHECK(t.error().message.find("USR-A (partition 3, PARTUUID " + std::string(kUsrAPartuuid)) !=
        std::string::npos);
  CHECK(t.error().message.find("booted slot A") != std::string::npos);
  auto h = BlockTarget::open_hash(f.pair, 'B', 'B', 1, f.root);
  REQUIRE_FALSE(h.has_value());
  CHECK(h.error().code == Errc::refused);
  CHECK(h.error().message.find("hash-b") != std::string::npos);
  // Unknown booted slot: the caller decides; both slots open.
  CHECK(BlockTarget::open(f.pair, 'A', std::nullopt, 1, f.root).has_value());
  auto bad = BlockTarget::open(f.pair, 'C', 'A', 1, f.root);
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().code == Errc::invalid_input);
}

TEST_CASE("BlockTarget refuses a target smaller than the image") {
  Fixture f;
  const std::uint64_t size = f.pair.b.size;
  CHECK(BlockTarget::open(f.pair, 'B', 'A', size, f.root).has_value());
  auto t = BlockTarget::open(f.pair, 'B', 'A', size + 1, f.root);
  REQUIRE_FALSE(t.has_value());
  CHECK(t.error().code == Errc::refused);
  INFO(t.error().message);
  CHECK(t.error().message.find(std::to_string(size + 1) + " bytes") != std::string::npos);
  CHECK(t.error().message.find(std::to_string(size) + " bytes (8.0 MiB)") != std::string::npos);
  CHECK(t.error().message.find("USR-B") != std::string::npos);
}

TEST_CASE("BlockTarget writes stay inside the target partition") {
  Fixture f;
  const std::string before = test::read_file(f.disk);
  std::vector<std::string> others;
  for (const auto& e : f.pair.gpt.entries)
    if (e.number != 4)
      others.push_back(
          sha256_range(f.disk, e.first_lba * 512, (e.last_lba - e.first_lba + 1) * 512));

  auto t = open_ok(f.pair, 'B', 'A', 1 << 20, f.root);
  CHECK(t.size() == 8u << 20);
  CHECK(t.partition().number == 4);
  CHECK(t.path() == f.disk.string());
  auto head = pattern(4096, 1), tail = pattern(4096, 2), mid = pattern(12345, 3);
  REQUIRE(t.write_at(0, head));
  REQUIRE(t.write_at(t.size() - tail.size(), tail));
  REQUIRE(t.write_at(777777, mid));
  // Past the end: an error, and nothing of it is written.
  auto over = t.write_at(t.size() - 100, pattern(200, 4));
  REQUIRE_FALSE(over.has_value());
  CHECK(over.error().message.find("past the end of " + f.disk.string() + " USR-B") !=
        std::string::npos);
  CHECK_FALSE(t.write_at(t.size() + 1, {}).has_value());
  CHECK_FALSE(t.write_at(~std::uint64_t{0} - 10, pattern(20, 5)).has_value());  // overflow
  REQUIRE(t.sync());

  const std::string after = test::read_file(f.disk);
  const std::uint64_t b0 = f.pair.b.offset, b1 = b0 + f.pair.b.size;
  CHECK(outside_diff(before, after, b0, b1) == -1);
  CHECK(std::equal(head.begin(), head.end(), after.begin() + b0,
                   [](std::uint8_t x, char y) { return x == static_cast<std::uint8_t>(y); }));
  CHECK(std::equal(tail.begin(), tail.end(), after.begin() + b1 - 4096,
                   [](std::uint8_t x, char y) { return x == static_cast<std::uint8_t>(y); }));
  std::size_t i = 0;
  for (const auto& e : f.pair.gpt.entries) {
    if (e.number == 4) continue;
    CAPTURE(e.number);
    CHECK(sha256_range(f.disk, e.first_lba * 512, (e.last_lba - e.first_lba + 1) * 512) ==
          others[i++]);
  }
  // The GPT is untouched too.
  std::string v = run_ok("sgdisk -v " + shell_quote(f.disk.string()));
  CHECK(v.find("No problems found") != std::string::npos);
}

TEST_CASE("BlockTarget::zero_range reads back zeros and nothing else changes") {
  Fixture f;
  const std::string before = test::read_file(f.disk);
  auto t = open_ok(f.pair, 'B', 'A', 1, f.root);
  // Unaligned, aligned, and the whole partition.
  REQUIRE(t.zero_range(1000, 100000));
  std::vector<std::uint8_t> buf(100000);
  REQUIRE(t.read_at(1000, buf));
  CHECK(std::all_of(buf.begin(), buf.end(), [](std::uint8_t b) { return b == 0; }));
  std::vector<std::uint8_t> edge(2);
  REQUIRE(t.read_at(999, edge));
  CHECK(edge[0] == static_cast<std::uint8_t>(before[f.pair.b.offset + 999]));
  REQUIRE(t.read_at(101000, edge));
  CHECK(edge[0] == static_cast<std::uint8_t>(before[f.pair.b.offset + 101000]));
  CHECK_FALSE(t.zero_range(t.size() - 10, 11).has_value());
  REQUIRE(t.zero_range(0, t.size()));
  REQUIRE(t.sync());
  AlignedBuf all(t.size());
  REQUIRE(t.read_direct(0, all.span()));
  CHECK(std::all_of(all.p, all.p + all.size, [](std::uint8_t b) { return b == 0; }));
  const std::string after = test::read_file(f.disk);
  CHECK(after.size() == before.size());
  CHECK(outside_diff(before, after, f.pair.b.offset, f.pair.b.offset + f.pair.b.size) == -1);
}

TEST_CASE("BlockTarget::read_direct returns what was written after sync") {
  Fixture f;
  auto t = open_ok(f.pair, 'B', 'A', 1, f.root);
  auto data = pattern(3 << 20, 7);
  REQUIRE(t.write_at(1 << 20, data));
  REQUIRE(t.sync());
  AlignedBuf back(data.size());
  REQUIRE(t.read_direct(1 << 20, back.span()));
  CHECK(std::equal(data.begin(), data.end(), back.p));
  // The last block of the target.
  AlignedBuf last(4096);
  REQUIRE(t.read_direct(t.size() - 4096, last.span()));
  std::vector<std::uint8_t> cached(4096);
  REQUIRE(t.read_at(t.size() - 4096, cached));
  CHECK(std::equal(cached.begin(), cached.end(), last.p));
  // Misaligned requests are refused, not silently served from the cache.
  CHECK_FALSE(t.read_direct(100, back.span().subspan(0, 4096)).has_value());
  CHECK_FALSE(t.read_direct(0, back.span().subspan(1, 4096)).has_value());
  CHECK_FALSE(t.read_direct(0, back.span().subspan(0, 1000)).has_value());
  CHECK_FALSE(t.read_direct(t.size(), back.span().subspan(0, 4096)).has_value());
}

TEST_CASE("BlockTarget::read_direct without O_DIRECT drops the cache and reads the data") {
  Fixture f;
  auto t = open_ok(f.pair, 'B', 'A', 1, f.root);
  t.use_fadvise_read_back();
  auto data = pattern(1 << 20, 8);
  REQUIRE(t.write_at(4096, data));  // not synced: the fallback must flush before dropping
  AlignedBuf back(data.size());
  REQUIRE(t.read_direct(4096, back.span()));
  CHECK(std::equal(data.begin(), data.end(), back.p));
  CHECK_FALSE(t.read_direct(100, back.span()).has_value());
}

TEST_CASE(
    "BlockTarget::AsyncReads keeps direct reads in flight with read_direct's bytes and errors") {
  Fixture f;
  auto t = open_ok(f.pair, 'B', 'A', 1, f.root);
  auto data = pattern(3 << 20, 21);
  REQUIRE(t.write_at(0, data));
  REQUIRE(t.wait_written(0, data.size()));
  CHECK_FALSE(t.wait_written(t.size() - 4096, 8192).has_value());
  AlignedBuf a(1 << 20), b(1 << 20);
  auto same = [&](const AlignedBuf& buf, std::size_t at) {
    return std::equal(buf.p, buf.p + buf.size, data.begin() + static_cast<std::ptrdiff_t>(at));
  };

  SUBCASE("two in flight, waited for in the order started") {
    BlockTarget::AsyncReads reads(t, 2);
    reads.start(0, a.span());
    reads.start(1 << 20, b.span());
    REQUIRE(reads.wait());
    CHECK(same(a, 0));
    reads.start(2 << 20, a.span());
    REQUIRE(reads.wait());
    CHECK(same(b, 1 << 20));
    REQUIRE(reads.wait());
    CHECK(same(a, 2 << 20));
    CHECK_FALSE(reads.wait().has_value());  // nothing left to wait for
  }
  SUBCASE("what AIO cannot take is read by read_direct, errors included") {
    BlockTarget::AsyncReads reads(t, 2);
    AlignedBuf last(4096);
    reads.start(t.size() - 4096, last.span());
    reads.start(100, a.span().subspan(0, 4096));  // misaligned
    REQUIRE(reads.wait());
    std::vector<std::uint8_t> cached(4096);
    REQUIRE(t.read_at(t.size() - 4096, cached));
    CHECK(std::equal(cached.begin(), cached.end(), last.p));
    auto bad = reads.wait();
    REQUIRE_FALSE(bad.has_value());
    CHECK(bad.error().message.find("4096-aligned") != std::string::npos);
  }
  SUBCASE("without O_DIRECT every read drops the cache and reads the data") {
    t.use_fadvise_read_back();
    BlockTarget::AsyncReads reads(t, 2);
    reads.start(1 << 20, a.span());
    REQUIRE(reads.wait());
    CHECK(same(a, 1 << 20));
  }
  SUBCASE("reads still in flight end before the object goes") {
    auto reads = std::make_unique<BlockTarget::AsyncReads>(t, 2);
    reads->start(0, a.span());
    reads->start(1 << 20, b.span());
    reads.reset();
    CHECK(same(a, 0));
    CHECK(same(b, 1 << 20));
  }
}

TEST_CASE("BlockTarget::open_hash writes the target's hash partition only") {
  Fixture f;
  const std::string before = test::read_file(f.disk);
  auto t = BlockTarget::open_hash(f.pair, 'B', 'A', 4096, f.root);
  REQUIRE_MESSAGE(t.has_value(), (t ? "" : t.error().message));
  CHECK(t->partition().number == 7);
  CHECK(t->size() == 8u << 20);
  REQUIRE(t->write_at(0, pattern(8192, 9)));
  CHECK_FALSE(t->write_at(t->size() - 1, pattern(2, 9)).has_value());
  REQUIRE(t->sync());
  const auto& h = *f.pair.b.hash;
  CHECK(outside_diff(before, test::read_file(f.disk), h.first_lba * 512, (h.last_lba + 1) * 512) ==
        -1);
}

TEST_CASE("SlotReader reads the booted slot") {
  Fixture f;
  const std::string disk = test::read_file(f.disk);
  auto r = SlotReader::open(f.pair, 'A');
  REQUIRE(r.has_value());
  CHECK(r->size() == f.pair.a.size);
  std::vector<std::uint8_t> buf(4096);
  REQUIRE(r->read_at(8192, buf));
  CHECK(std::equal(buf.begin(), buf.end(), disk.begin() + f.pair.a.offset + 8192,
                   [](std::uint8_t x, char y) { return x == static_cast<std::uint8_t>(y); }));
  CHECK_FALSE(r->read_at(r->size() - 1, buf).has_value());
}

TEST_CASE("BlockTarget on a block device: O_EXCL, mounts, BLKZEROOUT, O_DIRECT" *
          doctest::skip(!loop_devices_usable())) {
  Fixture f;
  LoopDevice loop(f.disk);
  if (!loop.ok()) ABUP_SKIP("cannot attach a loop device: " + loop.error());
  for (int n : {3, 4, 5, 6, 7})
    if (!loop.wait_partition(n)) ABUP_SKIP("the kernel made no node for " + loop.part(n));
  auto p = discover_slots(loop.dev());
  REQUIRE_MESSAGE(p.has_value(), (p ? "" : p.error().message));
  const SlotPair& pair = *p;
  REQUIRE(pair.block_device);
  const std::string before = test::read_file(f.disk);

  SUBCASE("booted and too-small are refused as for files") {
    auto booted = BlockTarget::open(pair, 'A', 'A', 1, f.root);
    REQUIRE_FALSE(booted.has_value());
    CHECK(booted.error().code == Errc::refused);
    auto small = BlockTarget::open(pair, 'B', 'A', pair.b.size + 1, f.root);
    REQUIRE_FALSE(small.has_value());
    CHECK(small.error().code == Errc::refused);
  }

  SUBCASE("a target listed in mountinfo is refused") {
    struct stat st {};
    REQUIRE(::stat(loop.part(4).c_str(), &st) == 0);
    std::string dev = std::to_string(major(st.st_rdev)) + ":" + std::to_string(minor(st.st_rdev));
    write_file(f.root / "proc/self/mountinfo",
               "21 1 254:9 / / rw,relatime shared:1 - ext4 /dev/vda9 rw\n"
               "30 21 " +
                   dev + " / /mnt/usr\\040b ro,relatime - ext4 " + loop.part(4) + " ro\n");
    auto t = BlockTarget::open(pair, 'B', 'A', 1, f.root);
    REQUIRE_FALSE(t.has_value());
    CHECK(t.error().code == Errc::refused);
    CHECK(t.error().message.find("mounted at /mnt/usr b") != std::string::npos);
  }

  SUBCASE("a target really mounted is refused") {
    run_ok("mkfs.ext4 -q -F " + loop.part(4));
    auto mnt = f.tmp / "mnt";
    std::filesystem::create_directories(mnt);
    if (::mount(loop.part(4).c_str(), mnt.c_str(), "ext4", MS_RDONLY, nullptr) != 0)
      ABUP_SKIP(std::string("cannot mount ext4 here: ") + std::strerror(errno));
    auto t = BlockTarget::open(pair, 'B', 'A', 1, "/");
    ::umount(mnt.c_str());
    REQUIRE_FALSE(t.has_value());
    CHECK(t.error().code == Errc::refused);
    CHECK(t.error().message.find("mounted at " + mnt.string()) != std::string::npos);
  }

  SUBCASE("writes, BLKZEROOUT and O_DIRECT read-back through the partition node") {
    auto t = open_ok(pair, 'B', 'A', 1, f.root);
    CHECK(t.path() == loop.part(4));
    // O_EXCL: a second writer is refused while the first holds the target.
    auto second = BlockTarget::open(pair, 'B', 'A', 1, f.root);
    REQUIRE_FALSE(second.has_value());
    CHECK(second.error().code == Errc::refused);
    CHECK(second.error().message.find("in use") != std::string::npos);

    auto data = pattern(1 << 20, 11);
    REQUIRE(t.write_at(0, data));
    REQUIRE(t.write_at(t.size() - 4096, pattern(4096, 12)));
    CHECK_FALSE(t.write_at(t.size() - 1, pattern(2, 13)).has_value());
    REQUIRE(t.zero_range(4096, 8192));  // BLKZEROOUT
    REQUIRE(t.zero_range(1, 10));       // unaligned: written zeros
    REQUIRE(t.sync());
    AlignedBuf back(1 << 20);
    REQUIRE(t.read_direct(0, back.span()));
    std::fill(data.begin() + 4096, data.begin() + 4096 + 8192, 0);
    std::fill(data.begin() + 1, data.begin() + 11, 0);
    CHECK(std::equal(data.begin(), data.end(), back.p));

    run_ok("sync");
    const std::string after = test::read_file(f.disk);
    CHECK(outside_diff(before, after, pair.b.offset, pair.b.offset + pair.b.size) == -1);
    CHECK(std::equal(data.begin(), data.end(), after.begin() + pair.b.offset,
                     [](std::uint8_t x, char y) { return x == static_cast<std::uint8_t>(y); }));
  }

  SUBCASE("an O_EXCL holder makes the target busy") {
    Fd holder(::open(loop.part(4).c_str(), O_RDONLY | O_EXCL | O_CLOEXEC));
    REQUIRE(holder.valid());
    auto t = BlockTarget::open(pair, 'B', 'A', 1, f.root);
    REQUIRE_FALSE(t.has_value());
    CHECK(t.error().message.find("in use") != std::string::npos);
  }
}
