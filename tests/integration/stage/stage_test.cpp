// abup stage end to end: real abup-image, nginx, sgdisk, openssl.
#include <doctest/doctest.h>

#include "stage_helpers.hpp"
#include "support/nginx.hpp"
#include "support/world.hpp"

using namespace abup::test;

TEST_CASE("stage a signed image from a local file onto the inactive slot") {
  World w;
  auto image = w.build_signed("v2", "202607.02.0");
  auto before = w.snapshot();
  auto r = stage_ok(w, image.string(), "--json");
  INFO(r.out);
  auto after = w.snapshot();
  CHECK(after.booted_slot == before.booted_slot);
  CHECK(after.gpt == before.gpt);
  CHECK(json_field(r.out, "skippedBytes") == "0");
  CHECK(json_field(r.out, "rangeRequests") == "1");

  SUBCASE("staging the same image again re-verifies and skips every chunk") {
    check_restage_skips_all(w, image);
  }
  SUBCASE("a chunk damaged on the target after staging is detected and fetched again") {
    // A few bytes of garbage 2 MiB into slot B: the 1 MiB chunk there is written again.
    write_disk(w, partition_offset(w, kPartUsrB) + (2 << 20) + 100, "printf garbage");
    auto again = stage_ok(w, image.string(), "--json");
    INFO(again.out);
    CHECK(json_field(again.out, "rangeRequests") == "1");
    CHECK(json_field(again.out, "writtenBytes") == "1048576");
  }
}

TEST_CASE("stage over HTTP from nginx, and over HTTPS with a private CA") {
  World w;
  auto image = w.build_signed("v2", "202607.02.0");
  NginxServer nginx(image.parent_path(), NginxOptions{true, false});

  SUBCASE("plain http is refused without --allow-http") {
    auto r = w.stage(nginx.url("v2.cosi"));
    CHECK(r.exit_code != 0);
    CHECK(r.out.find("--allow-http") != std::string::npos);
    CHECK(w.snapshot().state.empty());
  }
  SUBCASE("http with --allow-http") {
    auto r = stage_ok(w, nginx.url("v2.cosi"), "--allow-http --json");
    INFO(r.out);
    auto size = std::filesystem::file_size(image);
    auto downloaded = std::stoull(json_field(r.out, "downloadedBytes"));
    // The frames once, plus a few 64 KiB read-ahead windows for the tar index and manifest.
    CHECK(downloaded < size + 400 * 1024);
    std::size_t gets = 0;
    for (const auto& line : nginx.access_log())
      if (line.rfind("GET /v2.cosi", 0) == 0) ++gets;
    MESSAGE("GET requests: ", gets);
    CHECK(gets <= 5);  // read-ahead windows for the index, then one coalesced range
  }
  SUBCASE("https with the CA file") {
    stage_ok(w, nginx.https_url("v2.cosi"), "--ca-file " + shell_quote(nginx.ca_file()));
  }
  SUBCASE("https without the CA fails TLS verification, nothing written") {
    auto before = w.snapshot();
    auto r = w.stage(nginx.https_url("v2.cosi"));
    CHECK(r.exit_code != 0);
    CHECK(w.snapshot() == before);
  }
}

TEST_CASE("identical chunks are copied from the booted slot instead of downloaded") {
  World w;
  stage_as_booted(w, w.build_signed("v1", "202607.01.0"));
  // v2 changes a few files of the same tree.
  run_ok("set -e; debugfs -w -R 'rm /bin/tool' " + shell_quote(w.usr_image().string()) +
         " >/dev/null 2>&1; head -c 300000 /dev/urandom > " + shell_quote(w.path("new").string()) +
         "; debugfs -w -R 'write " + w.path("new").string() + " /bin/tool2' " +
         shell_quote(w.usr_image().string()) + " >/dev/null 2>&1");
  auto v2 = w.build_signed("v2", "202607.02.0");
  // Slot B now holds other data (v1): nothing is "already there" by accident for changed chunks.
  auto r = stage_ok(w, v2.string(), "--json");
  INFO(r.out);
  CHECK(std::stoull(json_field(r.out, "reusedBytes")) > 0);
}

TEST_CASE("an image with a dm-verity hash image stages into the slot's hash partition too") {
  World w(32, "202601.01.0", true);
  auto hash = w.path("usr.hash");
  auto out = run_ok("veritysetup format " + shell_quote(w.usr_image().string()) + " " +
                    shell_quote(hash.string()) + " | awk '/Root hash/{print $3}'");
  auto roothash = out.substr(0, out.find('\n'));
  REQUIRE(roothash.size() == 64);
  auto img = w.build_signed("v", "202607.02.0",
                            "--usr-hash " + shell_quote(hash.string()) + " --roothash " + roothash);
  stage_ok(w, img.string(), "--json");
  const auto hash_bytes = read_file(hash);
  const auto on_disk = disk_bytes(w, partition_offset(w, kPartHashB), hash_bytes.size());
  CHECK_MESSAGE(on_disk == hash_bytes, "hash-b holds the hash image byte for byte");
  // The real dm-verity tool agrees that slot B and hash-b belong together.
  write_file(w.path("b.img"), w.slot_bytes('B', std::filesystem::file_size(w.usr_image())));
  write_file(w.path("h.img"), on_disk);
  run_ok("veritysetup verify " + shell_quote(w.path("b.img").string()) + " " +
         shell_quote(w.path("h.img").string()) + " " + roothash);

  SUBCASE("refused before writing on a disk without hash partitions") {
    World plain;
    run_ok("cp " + shell_quote((w.keyring() / "signer.pem").string()) + " " +
           shell_quote((plain.keyring() / "release.pem").string()));
    auto before = plain.snapshot();
    auto r2 = plain.stage(img.string());
    INFO(r2.out);
    CHECK(r2.exit_code != 0);
    CHECK(r2.out.find("has no hash partition") != std::string::npos);
    CHECK(plain.snapshot() == before);
  }
}
