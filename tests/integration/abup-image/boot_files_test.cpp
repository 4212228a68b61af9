// abup-image build --boot-file: each boot file is its own zstd tar entry after the images, listed
// in the (schema 2) manifest with its size and SHA-256; checked with GNU tar, zstd and sha256sum.
#include <doctest/doctest.h>

#include "bench.hpp"

using namespace abup::test;

TEST_CASE("build --boot-file stores each boot file as a zstd tar entry the manifest pins") {
  Bench b;
  write_file(b / "vmlinuz", std::string(300000, 'K') + "kernel-202607.03.0");
  write_file(b / "initrd", "initramfs-marker");
  auto cosi = b.build(
      "img", "--boot-file vmlinuz=" + q(b / "vmlinuz") + " --boot-file initrd=" + q(b / "initrd"));

  CHECK(tar_names(cosi) == std::vector<std::string>{"cosi-marker", "metadata.json",
                                                    "images/primary-gpt.img.zst",
                                                    "images/usr.img.zst", "boot/vmlinuz.zst",
                                                    "boot/initrd.zst", "abup/manifest.json"});
  run_ok("tar -xOf " + q(cosi) + " boot/vmlinuz.zst | zstd -dc > " + q(b / "vmlinuz.out"));
  CHECK(read_file(b / "vmlinuz.out") == read_file(b / "vmlinuz"));

  auto m = nlohmann::json::parse(tar_member(cosi, "abup/manifest.json"));
  CHECK(m["schemaVersion"] == 2);
  REQUIRE(m["bootFiles"].size() == 2);
  CHECK(m["bootFiles"][0]["name"] == "vmlinuz");
  CHECK(m["bootFiles"][0]["sha256"] == sha256_file(b / "vmlinuz"));
  CHECK(m["bootFiles"][0]["size"] == std::filesystem::file_size(b / "vmlinuz"));

  auto text = image_tool_ok("inspect " + q(cosi));
  CHECK(contains(text, "boot file: vmlinuz"));
  CHECK(contains(text, sha256_file(b / "initrd")));
  auto j = inspect_json(cosi);
  CHECK(j["manifest"]["bootFiles"][1]["name"] == "initrd");

  // Signed and verified end to end: verify decompresses each boot file and checks its digest.
  auto key = b.key(kEd25519);
  image_tool_ok("sign --key " + q(key) + " " + q(cosi));
  CHECK(contains(image_tool_ok("verify --keyring " + q(b.keyring()) + " " + q(cosi)), ": OK:"));
}

TEST_CASE("an image without boot files keeps manifest schema 1 and inspect says none") {
  Bench b;
  auto cosi = b.build("img");
  auto m = nlohmann::json::parse(tar_member(cosi, "abup/manifest.json"));
  CHECK(m["schemaVersion"] == 1);
  CHECK_FALSE(m.contains("bootFiles"));
  CHECK(contains(image_tool_ok("inspect " + q(cosi)), "boot files: none"));
}

TEST_CASE("build refuses boot file names that are paths, naming the entry") {
  Bench b;
  write_file(b / "vmlinuz", "k");
  for (const char* name : {"../vmlinuz", "/boot/vmlinuz", "EFI/Linux/x.efi", ".."}) {
    CAPTURE(name);
    auto r = image_tool("build --usr " + q(b.usr()) + " --version 202607.02.0 --out " +
                        q(b / "bad.cosi") + " --boot-file '" + name + "'=" + q(b / "vmlinuz"));
    CHECK(r.exit_code != 0);
    CHECK(contains(r.out, "boot file name"));
    CHECK(contains(r.out, name));
    CHECK_FALSE(std::filesystem::exists(b / "bad.cosi"));
  }
}

TEST_CASE("verify refuses a boot file whose bytes do not match its signed digest") {
  Bench b;
  write_file(b / "vmlinuz", std::string(4096, 'A'));
  auto cosi = b.build("img", "--boot-file vmlinuz=" + q(b / "vmlinuz"));
  auto key = b.key(kEd25519);
  image_tool_ok("sign --key " + q(key) + " " + q(cosi));
  // Same compressed size, different content: a zstd stream of 4096 'B's at the same level.
  write_file(b / "other", std::string(4096, 'B'));
  run_ok("zstd -q -3 --no-check -c " + q(b / "other") + " > " + q(b / "other.zst"));
  auto off = tar_data_offset(cosi, "boot/vmlinuz.zst");
  auto orig = tar_member(cosi, "boot/vmlinuz.zst");
  auto repl = read_file(b / "other.zst");
  REQUIRE(orig.size() == repl.size());
  run_ok("dd if=" + q(b / "other.zst") + " of=" + q(cosi) + " bs=1 seek=" + std::to_string(off) +
         " conv=notrunc status=none");
  auto r = image_tool("verify --keyring " + q(b.keyring()) + " " + q(cosi));
  CHECK(r.exit_code != 0);
  CHECK(contains(r.out, "boot file 'vmlinuz'"));
  CHECK(contains(r.out, "does not match the signed"));
}
