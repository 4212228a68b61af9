// The read-back that runs beside the write: it proves every frame from the device, in any order
// frames are written, zero frames as zeros, and finds a bad chunk while later ones are written.
#include "agent/read_back.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <random>
#include <thread>

#include "abup/digest.hpp"
#include "partitions/slots.hpp"
#include "support/disk.hpp"
#include "support/util.hpp"

namespace abup::agent {
namespace {

// A Flatcar disk whose USR-B holds random bytes, and an image of frames of mixed sizes (4 KiB
// multiples, as the frame table requires) over 12 MiB, every fourth one a zero chunk.
struct Fixture {
  test::TempDir tmp;
  std::filesystem::path disk = tmp / "disk.img";
  std::filesystem::path root = tmp / "root";
  partitions::SlotPair pair;
  protocol::ManifestImage image;
  std::vector<std::uint8_t> bytes;

  Fixture() {
    test::make_flatcar_disk(disk, {.usr_mib = 16});
    test::make_root(root, 'A', "4081.2.0");
    auto p = partitions::discover_slots(disk.string());
    REQUIRE(p.has_value());
    pair = *p;
    test::run_ok("dd if=/dev/urandom of=" + test::shell_quote(disk.string()) +
                 " bs=512 seek=" + std::to_string(pair.b.offset / 512) +
                 " count=" + std::to_string(pair.b.size / 512) + " conv=notrunc status=none");
    std::mt19937_64 rng(5);
    image.path = "images/usr.img.zst";
    for (std::uint64_t off = 0, i = 0; off < (12u << 20); ++i) {
      protocol::Frame f;
      f.uncompressed_offset = off;
      f.uncompressed_size = std::min<std::uint64_t>((1 + rng() % 128) * 4096, (12u << 20) - off);
      bytes.resize(off + f.uncompressed_size);
      if (i % 4 != 3)
        for (auto j = off; j < bytes.size(); ++j) bytes[j] = static_cast<std::uint8_t>(rng());
      f.chunk_xxh3 = xxh128({bytes.data() + off, f.uncompressed_size});
      image.frames.push_back(f);
      off += f.uncompressed_size;
    }
    image.uncompressed_size = bytes.size();
  }

  partitions::BlockTarget target() {
    auto t = partitions::BlockTarget::open(pair, 'B', 'A', bytes.size(), root);
    REQUIRE_MESSAGE(t.has_value(), (t ? "" : t.error().message));
    return std::move(*t);
  }
  bool zero(std::size_t i) const { return i % 4 == 3; }
  // Puts frame i on the target as the stager does: zeros by zero_range, the rest written.
  void put(partitions::BlockTarget& t, std::size_t i) {
    const auto& f = image.frames[i];
    if (zero(i)) {
      REQUIRE(t.zero_range(f.uncompressed_offset, f.uncompressed_size));
    } else {
      REQUIRE(t.write_at(f.uncompressed_offset,
                         {bytes.data() + f.uncompressed_offset, f.uncompressed_size}));
    }
  }
  ReadBack::Kind kind(std::size_t i) const {
    return zero(i) ? ReadBack::Kind::zero : ReadBack::Kind::chunk;
  }
};

}  // namespace

TEST_CASE("the read-back proves frames written in any order, zero frames as zeros") {
  Fixture f;
  auto t = f.target();
  const auto n = f.image.frames.size();
  REQUIRE(n > 40);
  SUBCASE("through O_DIRECT") {}
  SUBCASE("through fdatasync and POSIX_FADV_DONTNEED") {
    t.use_fadvise_read_back();
  }
  ReadBack rb(t, f.image, ReadBack::kBuffer);
  // Two writers, each in its own order, as the decode workers finish frames.
  std::thread odd([&] {
    for (std::size_t i = n - 1 - (n % 2 == 0 ? 0 : 1); i < n; i -= 2) {
      f.put(t, i);
      rb.written(i, f.kind(i));
    }
  });
  for (std::size_t i = 0; i < n; i += 2) {
    f.put(t, i);
    rb.written(i, f.kind(i));
  }
  odd.join();
  std::uint64_t progress = 0;
  auto st = rb.finish([&](std::uint64_t bytes) { progress += bytes; });
  REQUIRE_MESSAGE(st.has_value(), (st ? "" : st.error().message));
  CHECK(progress == f.bytes.size());
}

TEST_CASE("the read-back syncs the target every flush_every bytes while frames are written") {
  Fixture f;
  auto t = f.target();
  std::uint64_t flush_every = 0;
  std::size_t expected_min = 0, expected_max = 0;
  SUBCASE("every 2 MiB of the 12 MiB image: a sync before each window after the first 2 MiB") {
    flush_every = 2 << 20;
    expected_min = 1;
    expected_max = 6;
  }
  SUBCASE("the default, 64 MiB: none for 12 MiB") {
    flush_every = ReadBack::kFlushEvery;
  }
  SUBCASE("kNoFlush: none") {
    flush_every = ReadBack::kNoFlush;
  }
  ReadBack rb(t, f.image, ReadBack::kBuffer, flush_every);
  for (std::size_t i = 0; i < f.image.frames.size(); ++i) {
    f.put(t, i);
    rb.written(i, f.kind(i));
  }
  auto st = rb.finish();
  REQUIRE_MESSAGE(st.has_value(), (st ? "" : st.error().message));
  CHECK(rb.flushes() >= expected_min);
  CHECK(rb.flushes() <= expected_max);
}

TEST_CASE("a chunk the device does not return as written fails the read-back, naming it") {
  Fixture f;
  auto t = f.target();
  const auto n = f.image.frames.size();
  std::size_t bad = 0;
  SUBCASE("a chunk with one byte changed") {
    bad = 5;
    REQUIRE_FALSE(f.zero(bad));
  }
  SUBCASE("a zero chunk that does not read as zeros") {
    bad = 7;
    REQUIRE(f.zero(bad));
  }
  ReadBack rb(t, f.image, ReadBack::kBuffer);
  for (std::size_t i = 0; i < n; ++i) {
    f.put(t, i);
    if (i == bad) {
      const auto& fr = f.image.frames[i];
      std::uint8_t x = f.bytes[fr.uncompressed_offset + fr.uncompressed_size / 2] ^ 0x40;
      REQUIRE(t.write_at(fr.uncompressed_offset + fr.uncompressed_size / 2, {&x, 1}));
    }
    rb.written(i, f.kind(i));
  }
  auto st = rb.finish();
  REQUIRE_FALSE(st.has_value());
  CHECK(st.error().message ==
        "read-back of USR-B at offset " + std::to_string(f.image.frames[bad].uncompressed_offset) +
            " does not match the signed manifest (chunk " + std::to_string(bad) +
            "): the device did not keep what was written");
}

TEST_CASE("the read-back finds a bad chunk while later frames are still being written") {
  Fixture f;
  auto t = f.target();
  ReadBack rb(t, f.image, ReadBack::kBuffer);
  // Frame 0 is not what the manifest says; the frames after it make a window of more than
  // kWindow bytes, which the read-back takes without waiting for finish().
  std::size_t i = 0;
  for (std::uint64_t done = 0; done <= ReadBack::kWindow; ++i) {
    f.put(t, i);
    if (i == 0) {
      std::uint8_t x = 0x5a ^ f.bytes[100];
      REQUIRE(t.write_at(100, {&x, 1}));
    }
    rb.written(i, f.kind(i));
    done += f.image.frames[i].uncompressed_size;
  }
  REQUIRE(i < f.image.frames.size());
  std::optional<Error> e;
  for (int k = 0; k < 200 && !(e = rb.error()); ++k)
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  REQUIRE(e.has_value());
  CHECK(e->message.find("at offset 0 does not match the signed manifest (chunk 0)") !=
        std::string::npos);
}

TEST_CASE("a frame never reported written fails finish() instead of waiting for it") {
  Fixture f;
  auto t = f.target();
  ReadBack rb(t, f.image, ReadBack::kBuffer);
  for (std::size_t i = 0; i < f.image.frames.size(); ++i) {
    f.put(t, i);
    if (i != 9) rb.written(i, f.kind(i));
  }
  auto st = rb.finish();
  REQUIRE_FALSE(st.has_value());
  CHECK(st.error().message.find("frame 9 of images/usr.img.zst was never written") !=
        std::string::npos);
}

}  // namespace abup::agent
