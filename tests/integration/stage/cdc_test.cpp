// Content-defined frames (schema-2 manifests) through the whole stage, and images of the fixed
// format (schema 1) that keep installing.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <set>

#include "stage_helpers.hpp"
#include "support/fault_server.hpp"
#include "support/nginx.hpp"
#include "support/world.hpp"

using namespace abup::test;

namespace {

// Zeros over slot B where the image goes, so the next stage fetches it again.
void wipe_slot_b(const World& w) {
  fill_partition(w, kPartUsrB, "/dev/zero");
}

}  // namespace

TEST_CASE("an image of content-defined frames stages byte for byte, and re-staging skips it all") {
  World w;
  auto image = w.build_signed("v2", "202607.02.0", "--chunker cdc");
  auto manifest = nlohmann::json::parse(manifest_of(image));
  REQUIRE(manifest["schemaVersion"] == 2);
  REQUIRE(manifest["images"][0]["frames"].size() > 20);
  // The zero chunks (free space) are zeroed, not downloaded: every one of them, whatever its
  // size (the image's zero runs end in chunks of several sizes).
  std::uint64_t zero_bytes = 0;
  std::set<std::uint64_t> zero_sizes;
  for (const auto& f : frames_of(image))
    if (is_zero_chunk(f)) {
      zero_bytes += f[1].get<std::uint64_t>();
      zero_sizes.insert(f[1].get<std::uint64_t>());
    }
  REQUIRE(zero_sizes.size() >= 2);
  auto r = stage_ok(w, image.string(), "--json");
  CHECK(json_field(r.out, "zeroBytes") == std::to_string(zero_bytes));
  check_restage_skips_all(w, image);
}

TEST_CASE("an image built the old way (fixed 4 MiB frames, schema 1) still stages") {
  World w;
  auto image = w.build_signed("old", "202607.02.0", "--chunker fixed --frame-size 4M");
  auto manifest = nlohmann::json::parse(manifest_of(image));
  REQUIRE(manifest["schemaVersion"] == 1);
  CHECK(manifest["images"][0]["frames"][0]["uncompressedSize"] == 4 << 20);
  stage_ok(w, image.string(), "--json");
}

namespace {

// v1 on the booted slot A (staged onto B, copied to A: no manifest is recorded for A, so the
// stage must cut A itself), then usr.img rebuilt as v2 with an early file grown and a new one
// added, so mkfs places the files after them elsewhere. Returns v2's image.
std::filesystem::path moved_files_world(World& w) {
  const auto tree = shell_quote(w.path("tree").string());
  const auto img = shell_quote(w.usr_image().string());
  // 4 KiB blocks as on a real /usr (mkfs picks 1 KiB for so small a file system).
  const std::string mkfs = "truncate -s 24M " + img + "; mkfs.ext4 -q -F -b 4096 -d . " + img;
  run_ok("set -e; cd " + tree + "; rm -f " + img + "; " + mkfs);
  stage_as_booted(w, w.build_signed("v1", "202607.01.0", "--chunker cdc"));
  auto first_block = [&] {
    return run_ok("debugfs -R 'bmap /lib/libx.so 0' " + img + " 2>/dev/null");
  };
  const auto before = first_block();
  run_ok("set -e; cd " + tree +
         "; head -c 1000000 /dev/urandom >> bin/tool;"
         " head -c 700000 /dev/urandom > bin/aaa; rm -f " +
         img + "; " + mkfs);
  REQUIRE_MESSAGE(first_block() != before, "the test needs /lib/libx.so to move");
  return w.build_signed("v2", "202607.02.0", "--chunker cdc");
}

}  // namespace

namespace {

// Compressed bytes of v2's frames that neither v1 has nor are zeros: what a delta must fetch.
std::uint64_t needed_bytes(const std::filesystem::path& v1, const std::filesystem::path& v2) {
  std::set<std::string> have;
  for (const auto& f : frames_of(v1)) have.insert(f[5].get<std::string>());
  std::uint64_t total = 0;
  for (const auto& f : frames_of(v2))
    if (!have.count(f[5].get<std::string>()) && !is_zero_chunk(f))
      total += f[2].get<std::uint64_t>();
  return total;
}

}  // namespace

TEST_CASE("chunks that moved are found anywhere in the booted slot by cutting it like the image") {
  World w;
  auto v2 = moved_files_world(w);
  auto r = stage_ok(w, v2.string(), "--json");
  INFO(r.out);
  // Only what changed crosses the wire: the needed frames, gaps of at most 16 KiB between them,
  // the manifest and the tar index's read-ahead windows.
  const auto requests = std::stoull(json_field(r.out, "rangeRequests"));
  const auto manifest = manifest_of(v2).size();
  CHECK(std::stoull(json_field(r.out, "downloadedBytes")) <=
        needed_bytes(w.path("images/v1.cosi"), v2) + requests * (16 << 10) + manifest +
            (256 << 10));
  // /lib/libx.so (5 MB of random bytes) moved and is copied, not downloaded.
  CHECK(std::stoull(json_field(r.out, "reusedBytes")) >= 4u << 20);
  CHECK(std::stoull(json_field(r.out, "downloadedBytes")) + (4u << 20) <
        std::filesystem::file_size(v2));
}

TEST_CASE("a delta over HTTP: several ranges per request, or one per request when refused") {
  World w;
  auto v2 = moved_files_world(w);
  NginxServer nginx(v2.parent_path());
  auto r = stage_ok(w, nginx.url("v2.cosi"), "--allow-http --json");
  INFO(r.out);
  const auto multi_requests = std::stoull(json_field(r.out, "rangeRequests"));
  const auto multi_bytes = std::stoull(json_field(r.out, "downloadedBytes"));
  std::size_t multi_gets = 0;
  for (const auto& line : nginx.access_log())
    if (line.find(',') != std::string::npos && line.find(" 206 ") != std::string::npos)
      ++multi_gets;
  CHECK(multi_gets >= 1);

  // Slot B wiped: the same stage again through a server that answers ranges only one at a time.
  wipe_slot_b(w);
  auto one = stage_ok(w, nginx.url("onerange/v2.cosi"), "--allow-http --json");
  INFO(one.out);
  CHECK(std::stoull(json_field(one.out, "rangeRequests")) > multi_requests);
  // The refused multi-range request cost at most its first piece, never the whole image.
  CHECK(std::stoull(json_field(one.out, "downloadedBytes")) < multi_bytes + (64 << 10));
  std::size_t refused = 0;
  for (const auto& line : nginx.access_log())
    if (line.find("/onerange/") != std::string::npos && line.find(" 200 ") != std::string::npos &&
        line.starts_with("GET"))
      ++refused;
  CHECK(refused == 1);
}

TEST_CASE("a byte duplicated or lost inside a multipart part is fetched again, not fatal") {
  const auto fault = duplicated_or_lost("multidup", "multidrop");
  CAPTURE(fault);
  World w;
  auto v2 = moved_files_world(w);
  FaultServer server(v2.parent_path());
  auto clean = stage_ok(w, server.url("multi/ok/v2.cosi"), "--allow-http --json");
  INFO(clean.out);
  // The first multi-range GET's first range ends at the end of a frame: a byte shifted a few bytes
  // before that damages the part's last frame and then the part's end (its delimiter).
  std::string first_multi;
  for (const auto& line : server.requests()) {
    const auto range = line.substr(line.rfind(' ') + 1);
    if (line.starts_with("GET ") && range.find(',') != std::string::npos) {
      first_multi = range;
      break;
    }
  }
  REQUIRE_MESSAGE(!first_multi.empty(), "the delta made no multi-range request");
  const auto dash = first_multi.find('-');
  const auto last = std::stoull(first_multi.substr(dash + 1, first_multi.find(',') - dash - 1));
  wipe_slot_b(w);
  auto r = stage_ok(w, server.url(fault + "/" + std::to_string(last - 8) + "/v2.cosi"),
                    "--allow-http --json");
  INFO(r.out);
  // The reply stopped at the broken part is counted, and the rest is asked for in as many
  // requests as the first time: one request more in all.
  CHECK(std::stoull(json_field(r.out, "rangeRequests")) ==
        std::stoull(json_field(clean.out, "rangeRequests")) + 1);
}

TEST_CASE("a booted slot that changes after it was indexed costs a download, never a wrong byte") {
  World w;
  auto v2 = moved_files_world(w);
  const auto dir = w.dir();
  // abup stops (SIGSTOP) right after planning what to copy from the booted slot.
  run_ok("cd " + shell_quote(dir.string()) + "; (sh -c 'echo $$ > pid; exec env " +
         "ABUP_FAULT=reuse-planned:1:stop " + abup_bin() + " stage --no-progress --json --disk " +
         shell_quote(w.disk().string()) + " --root " + shell_quote(w.root().string()) +
         " --keyring " + shell_quote(w.keyring().string()) + " --source " +
         shell_quote(v2.string()) + "' > out 2>&1; echo $? > rc) >/dev/null 2>&1 &");
  auto stopped = [&] {
    auto pid = read_file(dir / "pid");
    auto stat = run("cat /proc/" + pid.substr(0, pid.find('\n')) + "/stat");
    return stat.out.find(") T ") != std::string::npos;
  };
  for (int i = 0; i < 600 && !(std::filesystem::exists(dir / "pid") && stopped()); ++i)
    run_ok("sleep 0.1");
  REQUIRE(stopped());
  // Every byte of the booted slot changes while abup is stopped.
  fill_partition(w, kPartUsrA, "/dev/urandom");
  const auto pid = read_file(dir / "pid");
  run_ok("kill -CONT " + pid.substr(0, pid.find('\n')));
  for (int i = 0; i < 600 && !std::filesystem::exists(dir / "rc"); ++i) run_ok("sleep 0.1");
  const auto out = read_file(dir / "out");
  INFO(out);
  REQUIRE(read_file(dir / "rc") == "0\n");
  CHECK(json_field(out, "reusedBytes") == "0");
  check_staged(w, "202607.02.0");
}

TEST_CASE("a frame damaged on the wire is fetched again, alone, instead of failing the stage") {
  World w;
  auto image = w.build_signed("v2", "202607.02.0", "--chunker cdc");
  // A byte in the middle of the first frame past the tar index's read-ahead window that is not
  // all zeros (those are not downloaded), inside the tar entry of the usr image.
  const auto data = usr_entry_offset(image);
  std::uint64_t offset = 0, size = 0;
  for (const auto& f : frames_of(image)) {
    if (offset >= (256u << 10) && !is_zero_chunk(f)) {
      size = f[2].get<std::uint64_t>();
      break;
    }
    offset += f[2].get<std::uint64_t>();
  }
  REQUIRE(size > 0);
  FaultServer server(image.parent_path());
  const auto corrupt = data + offset + size / 2;
  auto r = stage_ok(w, server.url("corruptonce/" + std::to_string(corrupt) + "/v2.cosi"),
                    "--allow-http --json");
  INFO(r.out);
  // One more request, for that frame's bytes alone.
  CHECK(std::stoull(json_field(r.out, "rangeRequests")) == 2);
  auto log = server.requests();
  REQUIRE(!log.empty());
  CHECK(log.back().find("bytes=" + std::to_string(data + offset) + "-" +
                        std::to_string(data + offset + size - 1)) != std::string::npos);
  CHECK(std::stoull(json_field(r.out, "downloadedBytes")) <
        std::filesystem::file_size(image) + size + (128 << 10));
}
