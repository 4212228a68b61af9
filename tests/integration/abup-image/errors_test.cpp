// abup-image refuses bad input with a message naming what is wrong: damaged frames, files that are
// not COSI, missing inputs, unknown options (exit status 2 for usage errors).
#include <doctest/doctest.h>

#include <fstream>

#include "bench.hpp"

using namespace abup::test;

namespace {

void xor_byte(const std::filesystem::path& file, std::uint64_t offset, char mask) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  f.get(c);
  f.seekp(static_cast<std::streamoff>(offset));
  f.put(static_cast<char>(c ^ mask));
  REQUIRE(f.good());
}

void expect_failure(const RunResult& r, int code, const std::string& needle) {
  INFO(r.out);
  CHECK(r.exit_code == code);
  CHECK_MESSAGE(contains(r.out, needle), "expected: ", needle);
  CHECK_MESSAGE(r.out.rfind("abup-image: ", 0) == 0, "one error line, prefixed");
}

}  // namespace

TEST_CASE("verify names the frame that was damaged, and a changed metadata.json") {
  Bench b;
  b.key(kEd25519);
  auto cosi = b.build("img");
  image_tool_ok("sign --key " + q(b / "ed25519.pem") + " " + q(cosi));
  auto pristine = b.copy(cosi, "pristine");
  auto manifest = nlohmann::json::parse(tar_member(cosi, "abup/manifest.json"));
  const auto& frame = manifest["images"][0]["frames"][3];
  const auto base = tar_data_offset(cosi, "images/usr.img.zst");
  xor_byte(cosi,
           base + frame["offset"].get<std::uint64_t>() + frame["size"].get<std::uint64_t>() / 2,
           0x01);

  auto r = image_tool("verify --keyring " + q(b.keyring()) + " " + q(cosi));
  expect_failure(r, 1, "images/usr.img.zst frame 3: compressed frame SHA-256 does not match");
  // --shallow checks signatures and structure only, which are intact.
  auto shallow = image_tool("verify --shallow --keyring " + q(b.keyring()) + " " + q(cosi));
  INFO(shallow.out);
  CHECK(shallow.exit_code == 0);

  // metadata.json changed after signing (same size, still valid JSON).
  auto md = b.copy(pristine, "metadata");
  const auto text = tar_member(md, "metadata.json");
  const auto at = text.find("Azure Container Linux");
  REQUIRE(at != std::string::npos);
  xor_byte(md, tar_data_offset(md, "metadata.json") + at, 0x20);  // 'A' -> 'a'
  CHECK(contains(tar_member(md, "metadata.json"), "azure Container Linux"));
  auto m = image_tool("verify --shallow --keyring " + q(b.keyring()) + " " + q(md));
  expect_failure(m, 1, "metadata.json was changed after signing");

  // The signed manifest itself changed: no signature verifies any more.
  auto changed = b.copy(pristine, "manifest");
  const auto mtext = tar_member(changed, "abup/manifest.json");
  xor_byte(changed, tar_data_offset(changed, "abup/manifest.json") + mtext.find("202607.02.0"),
           0x01);  // '2' -> '3'
  auto s = image_tool("verify --keyring " + q(b.keyring()) + " " + q(changed));
  expect_failure(s, 1, "does not verify");
}

TEST_CASE("inspect and verify of files that are not COSI images fail clearly") {
  Bench b;
  run_ok("head -c 65536 /dev/urandom > " + q(b / "random.bin"));
  auto r = image_tool("inspect " + q(b / "random.bin"));
  INFO(r.out);
  CHECK(r.exit_code == 1);  // malformed data, not a usage error
  CHECK(r.out.rfind("abup-image: ", 0) == 0);
  CHECK(contains(r.out, "tar"));
  // Known gap (update-protocol/cosi/tar.cpp parse_tar_header): the message names neither the
  // file nor the offset, and echoes the random "magic" bytes.
  WARN_MESSAGE(contains(r.out, "random.bin"), "the error should name the file: ", r.out);

  write_file(b / "empty.cosi", "");
  expect_failure(image_tool("inspect " + q(b / "empty.cosi")), 1, "empty file, not a tar archive");

  // A tar archive, but not a COSI one.
  run_ok("tar --format=ustar -C " + q(b.dir()) + " -cf " + q(b / "plain.tar") + " usr.img");
  expect_failure(image_tool("inspect " + q(b / "plain.tar")), 1,
                 "not a COSI image: the first entry is not cosi-marker");
  std::filesystem::create_directories(b.keyring());
  expect_failure(image_tool("verify --keyring " + q(b.keyring()) + " " + q(b / "plain.tar")), 1,
                 "not a COSI image");

  expect_failure(image_tool("inspect " + q(b / "missing.cosi")), 1, "missing.cosi");
}

TEST_CASE("build refuses missing inputs and a missing release version") {
  Bench b;
  auto out = b / "out.cosi";

  expect_failure(
      image_tool("build --usr " + q(b / "no-such-usr.img") + " --version 1.0.0 --out " + q(out)), 1,
      "no-such-usr.img");
  CHECK_FALSE(std::filesystem::exists(out));

  auto none = image_tool("build --usr " + q(b.usr()) + " --out " + q(out));
  expect_failure(none, 2, "no release version");
  CHECK(contains(none.out, "--version"));
  CHECK(contains(none.out, "--os-release"));
  CHECK_FALSE(std::filesystem::exists(out));

  write_file(b / "os-release.bare", "ID=acl\nNAME=\"Azure Container Linux\"\n");
  expect_failure(image_tool("build --usr " + q(b.usr()) + " --os-release " +
                            q(b / "os-release.bare") + " --out " + q(out)),
                 2, "no release version");

  expect_failure(image_tool("build --usr " + q(b.usr()) + " --version 1.0.0 --os-release " +
                            q(b / "no-such-os-release") + " --out " + q(out)),
                 1, "no-such-os-release");

  expect_failure(image_tool("build --version 1.0.0 --out " + q(out)), 2, "--usr");
  expect_failure(image_tool("build --usr " + q(b.usr()) + " --version 1.0.0"), 2, "--out");
  expect_failure(image_tool("build --usr " + q(b.usr()) + " --version 1.0.0 --frame-size 1000 " +
                            "--out " + q(out)),
                 2, "--frame-size");
  CHECK_FALSE(std::filesystem::exists(out));

  // The version from an --os-release file, when --version is absent.
  write_file(b / "os-release", "ID=acl\nVERSION_ID=202607.01.0\nIMAGE_VERSION=202607.03.0\n");
  image_tool_ok("build --usr " + q(b.usr()) + " --os-release " + q(b / "os-release") + " --out " +
                q(out));
  CHECK(inspect_json(out)["manifest"]["version"] == "202607.03.0");
  // No temporary files are left next to the output.
  std::size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(b.dir()))
    if (contains(e.path().filename().string(), "out.cosi")) ++files;
  CHECK(files == 1);
}

TEST_CASE("unknown options, commands and missing arguments are usage errors with exit status 2") {
  Bench b;
  for (const char* cmd : {"build", "sign", "digest", "attach-signature", "inspect", "verify"}) {
    CAPTURE(cmd);
    expect_failure(image_tool(std::string(cmd) + " --bogus-option x.cosi"), 2, "--bogus-option");
    auto help = image_tool(std::string(cmd) + " --help");
    CHECK(help.exit_code == 0);
    CHECK(contains(help.out, std::string("usage: abup-image ") + cmd));
  }
  expect_failure(image_tool("frobnicate"), 2, "unknown command 'frobnicate'");
  CHECK(image_tool("").exit_code == 2);

  auto cosi = q(b / "any.cosi");
  expect_failure(image_tool("sign " + cosi), 2, "--key");
  expect_failure(image_tool("sign --key k.pem"), 2, "IMAGE");
  expect_failure(image_tool("verify " + cosi), 2, "--keyring");
  expect_failure(image_tool("digest " + cosi), 2, "--alg or --public-key");
  expect_failure(image_tool("digest --alg rsa-pkcs1 " + cosi), 2, "unknown signature algorithm");
  expect_failure(image_tool("attach-signature " + cosi), 2, "--public-key and --signature");
  expect_failure(image_tool("inspect a.cosi b.cosi"), 2, "exactly one IMAGE");
}
