// Helpers for the stage tests: what a staged slot B looks like, bytes written over the test
// disk's partitions, and where the usr image's frames lie in a COSI file.
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "abup/bytes.hpp"
#include "abup/digest.hpp"
#include "abup/hex.hpp"
#include "support/world.hpp"

namespace abup::test {

// Slot B holds usr.img byte for byte, and `abup status` reports it staged with `version` beside
// the booted USR-A.
inline void check_staged(const World& w, const std::string& version) {
  auto usr = read_file(w.usr_image());
  CHECK_MESSAGE(w.slot_bytes('B', usr.size()) == usr, "slot B holds the image byte for byte");
  auto status = nlohmann::json::parse(w.slot_state_json());
  REQUIRE(status["slots"].size() == 2);
  CHECK(status["slots"][0]["booted"] == true);
  CHECK(status["slots"][0]["label"] == "USR-A");
  CHECK(status["slots"][1]["label"] == "USR-B");
  CHECK(status["slots"][1]["partuuid"] == "e03dd35c-7c2d-4a47-b3fe-27f15780a57c");
  CHECK(status["slots"][1]["state"] == "staged");
  CHECK(status["slots"][1]["version"] == version);
}

// Stages `source` with `extra` options, requires it to succeed and slot B to hold `version`. The
// run is returned for the caller's own checks (which log its output with INFO themselves).
inline RunResult stage_ok(const World& w, const std::string& source, const std::string& extra,
                          const std::string& version = "202607.02.0") {
  auto r = w.stage(source, extra);
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  check_staged(w, version);
  return r;
}

// Stages `image` again onto the slot it already fills: abup verifies every chunk in place and
// fetches and writes none.
inline void check_restage_skips_all(const World& w, const std::filesystem::path& image) {
  auto again = stage_ok(w, image.string(), "--json");
  INFO(again.out);
  CHECK(json_field(again.out, "rangeRequests") == "0");
  CHECK(json_field(again.out, "writtenBytes") == "0");
  CHECK(json_field(again.out, "resumed") == "true");
}

// One SUBCASE for each way the fault server damages a byte of a response: it sends the byte twice
// (fault `duplicated`) or not at all (fault `lost`). Returns the fault of the running SUBCASE.
inline std::string duplicated_or_lost(const std::string& duplicated, const std::string& lost) {
  std::string fault;
  SUBCASE("duplicated") {
    fault = duplicated;
  }
  SUBCASE("lost") {
    fault = lost;
  }
  return fault;
}

// Byte offset of partition `number` (kPartUsrA, ...) on the world's disk, as sgdisk reads it.
inline std::uint64_t partition_offset(const World& w, int number) {
  return 512 *
         std::stoull(run_ok("sgdisk -i " + std::to_string(number) + " " +
                            shell_quote(w.disk().string()) + " | awk '/First sector/{print $3}'"));
}

// Writes what the shell command `producer` prints over the world's disk from byte `offset` on.
inline void write_disk(const World& w, std::uint64_t offset, const std::string& producer) {
  run_ok("set -e; " + producer + " | dd of=" + shell_quote(w.disk().string()) +
         " bs=64K oflag=seek_bytes seek=" + std::to_string(offset) + " conv=notrunc status=none");
}

// `len` bytes of the world's disk from byte `offset` on.
inline std::string disk_bytes(const World& w, std::uint64_t offset, std::uint64_t len) {
  std::ifstream f(w.disk(), std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  std::string out(len, '\0');
  f.read(out.data(), static_cast<std::streamsize>(len));
  REQUIRE(static_cast<std::uint64_t>(f.gcount()) == len);
  return out;
}

// As many bytes as usr.img has, read from `device` (/dev/zero, /dev/urandom), over the start of
// partition `number`.
inline void fill_partition(const World& w, int number, const std::string& device) {
  write_disk(w, partition_offset(w, number),
             "head -c " + std::to_string(std::filesystem::file_size(w.usr_image())) + " " + device);
}

// Stages `image` onto slot B and copies it to slot A, as if it had been staged and booted: abup
// records no manifest for A, so a later stage must cut A itself to reuse its chunks.
inline void stage_as_booted(const World& w, const std::filesystem::path& image) {
  REQUIRE(w.stage(image.string()).exit_code == 0);
  const auto size = std::filesystem::file_size(w.usr_image());
  write_disk(w, partition_offset(w, kPartUsrA),
             "dd if=" + shell_quote(w.disk().string()) +
                 " bs=512 skip=" + std::to_string(partition_offset(w, kPartUsrB) / 512) +
                 " count=" + std::to_string(size / 512) + " status=none");
}

// The signed manifest (abup/manifest.json) of a COSI file, as text.
inline std::string manifest_of(const std::filesystem::path& cosi) {
  return run_ok("tar -xOf " + shell_quote(cosi.string()) + " abup/manifest.json");
}

// The frames of the usr image; content-defined ones (schema 2) are [uncompressedOffset,
// uncompressedSize, size, sha256, chunkSha256, chunkXxh3].
inline nlohmann::json frames_of(const std::filesystem::path& cosi) {
  return nlohmann::json::parse(manifest_of(cosi))["images"][0]["frames"];
}

// Whether a content-defined frame's chunk is all zeros: abup writes those without downloading.
inline bool is_zero_chunk(const nlohmann::json& frame) {
  const std::string zeros(frame[1].get<std::size_t>(), '\0');
  return frame[4].get<std::string>() == to_hex(sha256(as_bytes(zeros)));
}

// Where the data of the usr image's tar entry starts in a COSI file.
inline std::uint64_t usr_entry_offset(const std::filesystem::path& cosi) {
  const auto listing = run_ok("tar --block-number -tvf " + shell_quote(cosi.string()));
  const auto at = listing.find(" images/usr");
  REQUIRE(at != std::string::npos);
  const auto line_start = listing.rfind('\n', at) + 1;
  return (std::stoull(listing.substr(line_start + 6)) + 1) * 512;  // "block N: ..."
}

}  // namespace abup::test
