// abup stage end to end: real abup-image, nginx, sgdisk, openssl.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "support/nginx.hpp"
#include "support/world.hpp"

using namespace abup::test;

namespace {

void check_staged(const World& w, const std::string& version) {
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

}  // namespace

TEST_CASE("stage a signed image from a local file onto the inactive slot") {
  World w;
  auto image = w.build_signed("v2", "202607.02.0");
  auto before = w.snapshot();
  auto r = w.stage(image.string(), "--json");
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  check_staged(w, "202607.02.0");
  auto after = w.snapshot();
  CHECK(after.booted_slot == before.booted_slot);
  CHECK(after.gpt == before.gpt);
  CHECK(json_field(r.out, "skippedBytes") == "0");
  CHECK(json_field(r.out, "rangeRequests") == "1");

  SUBCASE("staging the same image again re-verifies and skips every chunk") {
    auto again = w.stage(image.string(), "--json");
    INFO(again.out);
    REQUIRE(again.exit_code == 0);
    CHECK(json_field(again.out, "rangeRequests") == "0");
    CHECK(json_field(again.out, "writtenBytes") == "0");
    CHECK(json_field(again.out, "resumed") == "true");
    check_staged(w, "202607.02.0");
  }
  SUBCASE("a chunk damaged on the target after staging is detected and fetched again") {
    auto usr = read_file(w.usr_image());
    // Overwrite 4 KiB at 2 MiB into slot B with garbage.
    auto off = std::string::npos;
    (void)off;
    run_ok("printf 'garbage' | dd of=" + shell_quote(w.disk().string()) +
           " bs=1 seek=$(( $(sgdisk -i 4 " + shell_quote(w.disk().string()) +
           " | awk '/First sector/{print $3}') * 512 + 2097152 + 100 )) conv=notrunc status=none");
    auto again = w.stage(image.string(), "--json");
    INFO(again.out);
    REQUIRE(again.exit_code == 0);
    CHECK(json_field(again.out, "rangeRequests") == "1");
    CHECK(json_field(again.out, "writtenBytes") == "1048576");
    check_staged(w, "202607.02.0");
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
    auto r = w.stage(nginx.url("v2.cosi"), "--allow-http --json");
    INFO(r.out);
    REQUIRE(r.exit_code == 0);
    check_staged(w, "202607.02.0");
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
    auto r = w.stage(nginx.https_url("v2.cosi"), "--ca-file " + shell_quote(nginx.ca_file()));
    INFO(r.out);
    REQUIRE(r.exit_code == 0);
    check_staged(w, "202607.02.0");
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
  auto v1 = w.build_signed("v1", "202607.01.0");
  // Put v1 on slot A (as if it was staged and booted) by staging it onto B and copying B to A.
  REQUIRE(w.stage(v1.string()).exit_code == 0);
  auto usr = read_file(w.usr_image());
  run_ok("set -e; d=" + shell_quote(w.disk().string()) +
         "; a=$(sgdisk -i 3 $d | awk '/First sector/{print $3}');"
         " b=$(sgdisk -i 4 $d | awk '/First sector/{print $3}');"
         " dd if=$d of=$d bs=512 skip=$b seek=$a count=" +
         std::to_string(usr.size() / 512) + " conv=notrunc status=none");
  // v2 changes a few files of the same tree.
  run_ok("set -e; debugfs -w -R 'rm /bin/tool' " + shell_quote(w.usr_image().string()) +
         " >/dev/null 2>&1; head -c 300000 /dev/urandom > " + shell_quote(w.path("new").string()) +
         "; debugfs -w -R 'write " + w.path("new").string() + " /bin/tool2' " +
         shell_quote(w.usr_image().string()) + " >/dev/null 2>&1");
  auto v2 = w.build_signed("v2", "202607.02.0");
  // Slot B now holds other data (v1): nothing is "already there" by accident for changed chunks.
  auto r = w.stage(v2.string(), "--json");
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  CHECK(std::stoull(json_field(r.out, "reusedBytes")) > 0);
  check_staged(w, "202607.02.0");
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
  auto r = w.stage(img.string(), "--json");
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  check_staged(w, "202607.02.0");
  auto hash_bytes = read_file(hash);
  auto on_disk = run_ok("set -e; d=" + shell_quote(w.disk().string()) +
                        "; s=$(sgdisk -i 7 $d | awk '/First sector/{print $3}');"
                        " dd if=$d bs=512 skip=$s count=" +
                        std::to_string(hash_bytes.size() / 512) + " status=none | sha256sum");
  auto expected = run_ok("sha256sum < " + shell_quote(hash.string()));
  CHECK(on_disk == expected);
  // The real dm-verity tool agrees that slot B and hash-b belong together.
  run_ok("set -e; d=" + shell_quote(w.disk().string()) +
         "; b=$(sgdisk -i 4 $d | awk '/First sector/{print $3}'); h=$(sgdisk -i 7 $d | awk '/First "
         "sector/{print $3}');"
         " dd if=$d of=" +
         shell_quote(w.path("b.img").string()) + " bs=512 skip=$b count=" +
         std::to_string(std::filesystem::file_size(w.usr_image()) / 512) +
         " status=none;"
         " dd if=$d of=" +
         shell_quote(w.path("h.img").string()) +
         " bs=512 skip=$h count=" + std::to_string(hash_bytes.size() / 512) +
         " status=none;"
         " veritysetup verify " +
         shell_quote(w.path("b.img").string()) + " " + shell_quote(w.path("h.img").string()) + " " +
         roothash);

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
