// Every bad input fails with a message naming what is wrong, and nothing that matters changes:
// failures found before the first write leave the booted slot, the GPT and the state file
// byte-identical; failures found while writing leave the booted slot and GPT intact and the
// target recorded as failed, never as staged.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "support/fault_server.hpp"
#include "support/nginx.hpp"
#include "support/world.hpp"

using namespace abup::test;

namespace {

void expect_refused_before_writing(World&, const RunResult& r, const std::string& message) {
  INFO(r.out);
  CHECK(r.exit_code != 0);
  CHECK_MESSAGE(r.out.find(message) != std::string::npos, "expected: ", message);
}

void expect_target_failed(const World& w) {
  auto status = nlohmann::json::parse(w.slot_state_json());
  CHECK(status["slots"][1]["state"] == "failed");
  CHECK(status["slots"][1].contains("error"));
}

// Rewrites the tar entry `name` of a COSI with new content of the same size.
void patch_entry(const std::filesystem::path& cosi, const std::string& name, std::size_t at,
                 const std::string& bytes) {
  auto listing = run_ok(
      "python3 -c \"import tarfile,sys; t=tarfile.open(sys.argv[1]); m=t.getmember(sys.argv[2]); "
      "print(m.offset_data)\" " +
      shell_quote(cosi.string()) + " " + shell_quote(name));
  auto offset = std::stoull(listing) + at;
  run_ok("printf '%s' " + shell_quote(bytes) + " | dd of=" + shell_quote(cosi.string()) +
         " bs=1 seek=" + std::to_string(offset) + " conv=notrunc status=none");
}

// Inverts the byte at `at` of the tar entry `name`: always a change, whatever the byte was
// (writing a fixed value was no change when the random ext4 UUIDs already held it).
void flip_byte(const std::filesystem::path& cosi, const std::string& name, std::size_t at) {
  run_ok(
      "python3 -c \"import tarfile,sys; t=tarfile.open(sys.argv[1]); "
      "o=t.getmember(sys.argv[2]).offset_data+int(sys.argv[3]); t.close(); "
      "f=open(sys.argv[1],'r+b'); f.seek(o); b=f.read(1)[0]; f.seek(o); "
      "f.write(bytes([b ^ 0xff])); f.close()\" " +
      shell_quote(cosi.string()) + " " + shell_quote(name) + " " + std::to_string(at));
}

}  // namespace

TEST_CASE("signature and policy failures write nothing") {
  World w;
  auto before = w.snapshot();
  SUBCASE("signed by a key not in the keyring") {
    auto img = w.build_signed("x", "202607.02.0", "", w.stranger().string());
    expect_refused_before_writing(w, w.stage(img.string()), "0 of 1 required signatures valid");
  }
  SUBCASE("unsigned image") {
    auto img = w.build("x", "202607.02.0");
    expect_refused_before_writing(w, w.stage(img.string()),
                                  "image is not signed (no abup/manifest.sig)");
  }
  SUBCASE("fewer signatures than the threshold") {
    auto img = w.build_signed("x", "202607.02.0");
    expect_refused_before_writing(w, w.stage(img.string(), "--threshold 2"),
                                  "1 of 2 required signatures valid");
  }
  SUBCASE("two trusted signers meet a threshold of 2") {
    auto img = w.build_signed("x", "202607.02.0");
    run_ok(abup_image_bin() + " sign --key " + shell_quote(w.signer2().string()) + " " +
           shell_quote(img.string()));
    auto r = w.stage(img.string(), "--threshold 2");
    INFO(r.out);
    CHECK(r.exit_code == 0);
    return;
  }
  SUBCASE("expired manifest") {
    auto img = w.build_signed("x", "202607.02.0",
                              "--issued-at 2020-01-01T00:00:00Z --expires-at 2020-02-01T00:00:00Z");
    expect_refused_before_writing(w, w.stage(img.string()),
                                  "manifest expired at 2020-02-01T00:00:00Z");
  }
  SUBCASE("downgrade") {
    auto img = w.build_signed("x", "202512.01.0");
    expect_refused_before_writing(w, w.stage(img.string()),
                                  "downgrade from 202601.01.0 to 202512.01.0 refused");
  }
  SUBCASE("too old to replace the running version") {
    auto img = w.build_signed("x", "202607.02.0", "--min-version 202602.0.0");
    expect_refused_before_writing(w, w.stage(img.string()), "may only replace 202602.0.0 or newer");
  }
  SUBCASE("wrong architecture") {
    auto img = w.build_signed("x", "202607.02.0", "--arch arm64");
    expect_refused_before_writing(w, w.stage(img.string()),
                                  "image is for arm64, this host is x86_64");
  }
  SUBCASE("metadata.json changed after signing") {
    auto img = w.build_signed("x", "202607.02.0");
    patch_entry(img, "metadata.json", 20, "X");
    expect_refused_before_writing(w, w.stage(img.string()),
                                  "metadata.json was changed after signing");
  }
  SUBCASE("manifest changed after signing") {
    auto img = w.build_signed("x", "202607.02.0");
    patch_entry(img, "abup/manifest.json", 30, " ");
    expect_refused_before_writing(w, w.stage(img.string()), "0 of 1 required signatures valid");
  }
  SUBCASE("truncated file") {
    auto img = w.build_signed("x", "202607.02.0");
    std::filesystem::resize_file(img, std::filesystem::file_size(img) / 2);
    expect_refused_before_writing(w, w.stage(img.string()), "truncated tar archive");
  }
  SUBCASE("the booted slot as target") {
    auto img = w.build_signed("x", "202607.02.0");
    expect_refused_before_writing(w, w.stage(img.string(), "--slot A"), "booted");
  }
  SUBCASE("an unknown slot") {
    auto img = w.build_signed("x", "202607.02.0");
    expect_refused_before_writing(w, w.stage(img.string(), "--slot C"),
                                  "--slot: expected A or B, got 'C'");
  }
  SUBCASE("a source that does not exist") {
    expect_refused_before_writing(w, w.stage(w.path("nope.cosi").string()), "nope.cosi");
  }
  SUBCASE("not a COSI file") {
    run_ok("head -c 100000 /dev/urandom > " + shell_quote(w.path("junk.cosi").string()));
    expect_refused_before_writing(w, w.stage(w.path("junk.cosi").string()), "not a ustar header");
  }
  CHECK(w.snapshot() == before);
}

TEST_CASE("a target partition smaller than the image is refused before writing") {
  World w(16);
  auto img = w.build_signed("x", "202607.02.0");
  auto before = w.snapshot();
  expect_refused_before_writing(w, w.stage(img.string()),
                                "the image needs 25165824 bytes (24.0 MiB) but USR-B");
  CHECK(w.snapshot() == before);
}

TEST_CASE("corrupt data found while writing: booted slot and GPT intact, target failed") {
  World w;
  auto img = w.build_signed("x", "202607.02.0");
  auto before = w.snapshot();
  SUBCASE("one flipped byte in a frame") {
    // The first frame of the usr image holds the ext4 superblock area: never a zero chunk.
    flip_byte(img, "images/usr.img.zst", 2000);
    auto r = w.stage(img.string());
    INFO(r.out);
    CHECK(r.exit_code != 0);
    CHECK(r.out.find("frame 0: compressed frame SHA-256 does not match the signed manifest") !=
          std::string::npos);
  }
  SUBCASE("a frame that decompresses past its declared size") {
    // Re-sign a manifest whose first two frames' sizes are shifted by 4 KiB (totals unchanged).
    run_ok("set -e; cd " + shell_quote(w.dir().string()) +
           "; rm -rf m; mkdir m; cd m;"
           " tar xf " +
           shell_quote(img.string()) +
           " abup/manifest.json;"
           " python3 - <<'EOF'\nimport json\nm=json.load(open('abup/manifest.json'))\n"
           "f=m['images'][0]['frames']\nf[0]['uncompressedSize']-=4096\nf[1]['uncompressedSize']+="
           "4096\n"
           "open('abup/manifest.json','w').write(json.dumps(m,indent=2)+'\\n')\nEOF\n"
           " tar --delete -f " +
           shell_quote(img.string()) +
           " abup/manifest.json abup/manifest.sig;"
           " tar --format=ustar -rf " +
           shell_quote(img.string()) + " --owner=0 --group=0 abup/manifest.json");
    run_ok(abup_image_bin() + " sign --key " + shell_quote(w.signer().string()) + " " +
           shell_quote(img.string()));
    auto r = w.stage(img.string());
    INFO(r.out);
    CHECK(r.exit_code != 0);
    CHECK(r.out.find("frame 0: frame declares 1048576 bytes, the manifest 1044480") !=
          std::string::npos);
  }
  expect_target_failed(w);
  auto after = w.snapshot();
  CHECK(after.booted_slot == before.booted_slot);
  CHECK(after.gpt == before.gpt);
}

TEST_CASE("misbehaving servers are refused") {
  World w;
  auto img = w.build_signed("x", "202607.02.0");
  auto before = w.snapshot();
  SUBCASE("a server that ignores Range and answers 200") {
    NginxServer nginx(img.parent_path());
    auto r = w.stage(nginx.url("norange/x.cosi"), "--allow-http");
    INFO(r.out);
    CHECK(r.exit_code != 0);
    CHECK(r.out.find("200") != std::string::npos);
    CHECK(w.snapshot() == before);
  }
  SUBCASE("a server that sends more bytes than asked") {
    FaultServer fault(img.parent_path());
    auto r = w.stage(fault.url("extra/x.cosi"), "--allow-http");
    INFO(r.out);
    CHECK(r.exit_code != 0);
    CHECK(r.out.find("more") != std::string::npos);
    CHECK(w.snapshot() == before);
  }
  SUBCASE("a server that drops connections: resumed, staged exactly") {
    FaultServer fault(img.parent_path());
    auto r = w.stage(fault.url("drop/3000000/x.cosi"), "--allow-http --json");
    INFO(r.out);
    REQUIRE(r.exit_code == 0);
    auto usr = read_file(w.usr_image());
    CHECK(w.slot_bytes('B', usr.size()) == usr);
    CHECK(w.snapshot().booted_slot == before.booted_slot);
  }
}
