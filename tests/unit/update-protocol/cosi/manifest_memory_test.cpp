// What parsing a manifest costs in heap: the frame table, not a DOM of the text. A DOM of a
// schema-2 frame table costs ~500 bytes of small objects per frame (an array of six values, three
// hex strings), several times the 112-byte Frame; `abup stage` holds the peak of both.
#include <doctest/doctest.h>
#include <malloc.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <string>

#include "support/manifest_samples.hpp"
#include "update-protocol/manifest/manifest.hpp"

using namespace abup;
using namespace abup::protocol;

// Every operator new of this test binary is counted (live bytes and their high-water mark); the
// other test cases only pay two relaxed atomic additions per allocation.
namespace {
std::atomic<std::size_t> g_live{0};
std::atomic<std::size_t> g_peak{0};

void* counted(std::size_t n) {
  void* p = std::malloc(n ? n : 1);
  if (!p) throw std::bad_alloc();
  const std::size_t live = g_live.fetch_add(malloc_usable_size(p)) + malloc_usable_size(p);
  std::size_t peak = g_peak.load();
  while (live > peak && !g_peak.compare_exchange_weak(peak, live)) {
  }
  return p;
}
void uncounted(void* p) {
  if (!p) return;
  g_live.fetch_sub(malloc_usable_size(p));
  std::free(p);
}
}  // namespace

void* operator new(std::size_t n) {
  return counted(n);
}
void* operator new[](std::size_t n) {
  return counted(n);
}
void operator delete(void* p) noexcept {
  uncounted(p);
}
void operator delete[](void* p) noexcept {
  uncounted(p);
}
void operator delete(void* p, std::size_t) noexcept {
  uncounted(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  uncounted(p);
}

namespace {

// One /usr image of `frames` content-defined frames of 128 KiB, as abup-image writes them.
std::string manifest_text(std::size_t frames) {
  ManifestImage img;
  img.path = "images/usr.img.zst";
  img.mount_point = "/usr";
  img.chunker = "cdc/16K/128K/512K";
  img.frames.resize(frames);
  for (std::size_t i = 0; i < frames; ++i) {
    Frame& f = img.frames[i];
    f.offset = img.compressed_size;
    f.size = 40000 + i % 1000;
    f.uncompressed_offset = img.uncompressed_size;
    f.uncompressed_size = 128 << 10;
    for (std::size_t b = 0; b < f.sha256.size(); ++b) {
      f.sha256[b] = static_cast<std::uint8_t>(i * 7 + b);
      f.chunk_sha256[b] = static_cast<std::uint8_t>(i * 13 + b);
    }
    f.chunk_xxh3.fill(static_cast<std::uint8_t>(i));
    img.compressed_size += f.size;
    img.uncompressed_size += f.uncompressed_size;
  }
  return serialize_manifest(abup::test::cdc_manifest({std::move(img)}));
}

}  // namespace

TEST_CASE("parsing a manifest holds its frame table, not a DOM of its text") {
  constexpr std::size_t kFrames = 20000;  // a 2.5 GiB image: 3.8 MB of manifest
  const std::string text = manifest_text(kFrames);
  const std::size_t before = g_live.load();
  g_peak.store(before);
  auto m = parse_manifest(text);
  if (!m) FAIL(m.error().message);
  REQUIRE(m->images[0].frames.size() == kFrames);
  const std::size_t peak = g_peak.load() - before;
  const std::size_t table = kFrames * sizeof(Frame);
  MESSAGE("text ", text.size(), " bytes; frame table ", table, " bytes; parse peak ", peak,
          " bytes");
  // The table is reserved once from the text's size (no frame is shorter than 177 bytes of
  // text), so it never exists twice; a DOM of the frames alone would be several times more.
  CHECK(peak <= table + table / 2 + (256 << 10));
  CHECK(peak < text.size());
}
