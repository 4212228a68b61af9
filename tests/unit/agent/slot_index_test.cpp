// The booted-slot index: cut in slices on several threads, it finds every chunk a single pass
// finds, and nothing that is not a real chunk of the slot.
#include "agent/slot_index.hpp"

#include <doctest/doctest.h>

#include <cstring>
#include <fstream>
#include <random>

#include "abup/bytes.hpp"
#include "abup/digest.hpp"
#include "partitions/slots.hpp"
#include "support/disk.hpp"
#include "support/util.hpp"

namespace abup::agent {

TEST_CASE("cutting the booted slot in slices on two threads finds what one pass finds") {
  test::TempDir dir;
  const auto disk = dir / "disk.img";
  test::make_flatcar_disk(disk, {.usr_mib = 96});
  auto pair = partitions::discover_slots(disk.string());
  REQUIRE(pair.has_value());
  // Random bytes with a stretch of zeros (free space) across the boundary of the two slices.
  std::string bytes(pair->a.size, '\0');
  std::mt19937_64 rng(7);
  for (std::size_t i = 0; i < bytes.size(); i += 8) {
    const auto v = rng();
    std::memcpy(bytes.data() + i, &v, std::min<std::size_t>(8, bytes.size() - i));
  }
  std::fill(bytes.begin() + (46 << 20), bytes.begin() + (49 << 20) + 4096 * 3, '\0');
  {
    std::fstream f(disk, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(pair->a.offset));
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  auto reader = partitions::SlotReader::open(*pair, 'A');
  REQUIRE(reader.has_value());
  protocol::ManifestImage image;
  image.path = "images/usr.zst";
  image.chunker = "cdc/16K/128K/512K";
  auto all = [](const Xxh128&) { return true; };

  auto one = index_slot(*reader, bytes.size(), image, all, 1);
  auto two = index_slot(*reader, bytes.size(), image, all, 2);
  REQUIRE(one.has_value());
  REQUIRE(two.has_value());
  CHECK(one->size() > 300);
  for (const auto& [key, where] : *one) {
    CAPTURE(where.offset);
    CHECK(two->count(key) == 1);
  }
  for (const auto& [key, where] : *two) {
    CAPTURE(where.offset);
    REQUIRE(where.offset + where.size <= bytes.size());
    CHECK(xxh128(as_bytes(std::string_view(bytes).substr(where.offset, where.size))) == key);
  }
}

}  // namespace abup::agent
