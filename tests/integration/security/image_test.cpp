// docs/security.md, hostile images: each COSI here is signed by a trusted key (or starts from
// one) and then attacked the way an attacker who controls the download could; the real abup
// refuses it before writing, and the booted slot, the GPT and state.json stay byte-identical.
#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>

#include "support/world.hpp"

using namespace abup::test;
namespace fs = std::filesystem;

namespace {

// Rewrites COSI `src` into `dst` entry by entry (Python's tarfile), appending `pad` spaces to
// the data of entry `name` (JSON stays valid, the size grows).
void pad_entry(const fs::path& src, const fs::path& dst, const std::string& name, std::size_t pad) {
  run_ok("python3 - " + shell_quote(src.string()) + " " + shell_quote(dst.string()) + " " +
         shell_quote(name) + " " + std::to_string(pad) +
         " <<'EOF'\n"
         "import io, sys, tarfile\n"
         "src, dst, name, pad = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])\n"
         "with tarfile.open(src) as t, tarfile.open(dst, 'w', format=tarfile.USTAR_FORMAT) as o:\n"
         "    for m in t.getmembers():\n"
         "        data = t.extractfile(m).read() if m.isfile() else None\n"
         "        if m.name == name:\n"
         "            data += b' ' * pad\n"
         "            m.size = len(data)\n"
         "        o.addfile(m, io.BytesIO(data) if data is not None else None)\n"
         "EOF\n");
}

// Appends an entry after the last one (tarfile's append mode writes over the end marker).
void append_entry(const fs::path& cosi, const std::string& name, const std::string& data) {
  write_file(cosi.string() + ".entry", data);
  run_ok("python3 - " + shell_quote(cosi.string()) + " " + shell_quote(name) +
         " <<'EOF'\n"
         "import sys, tarfile\n"
         "with tarfile.open(sys.argv[1], 'a', format=tarfile.USTAR_FORMAT) as t:\n"
         "    t.add(sys.argv[1] + '.entry', arcname=sys.argv[2])\n"
         "EOF\n");
}

std::uint64_t entry_offset(const fs::path& cosi, const std::string& name) {
  return std::stoull(
      run_ok("python3 -c \"import tarfile,sys; t=tarfile.open(sys.argv[1]); "
             "print(t.getmember(sys.argv[2]).offset_data + t.getmember(sys.argv[2]).size)\" " +
             shell_quote(cosi.string()) + " " + shell_quote(name)));
}

void expect_refused(const RunResult& r, const std::string& message) {
  INFO(r.out);
  CHECK(r.exit_code != 0);
  CHECK_MESSAGE(r.out.find(message) != std::string::npos, "expected: ", message);
}

// ROOT/etc/abup/abup.conf for a Flatcar node whose ESP is ROOT/efi, with the booted kernel.
fs::path esp_node(const World& w) {
  fs::create_directories(w.root() / "etc/abup");
  fs::create_directories(w.root() / "efi/flatcar");
  write_file(w.root() / "etc/abup/abup.conf",
             "[Update]\nBootBackend=gptprio\n[Boot]\nESP=/efi\nRequireBootFiles=yes\n");
  write_file(w.root() / "efi/flatcar/vmlinuz-a", "factory kernel A");
  return w.root() / "efi";
}

// A node with a signed image to attack (built with `extra` abup-image options) and the node as it
// was before any stage, which every refusal must leave byte-identical.
class Target : public World {
 public:
  explicit Target(const std::string& extra = "")
      : image(build_signed("x", "202607.02.0", extra)), before(snapshot()) {}

  const fs::path image;
  const Snapshot before;
};

}  // namespace

TEST_CASE("security: a second abup/manifest.json after the signed one is refused (duplicates)") {
  // A reader that took the last entry of a name would use the unsigned manifest; abup's tar
  // index refuses any name seen twice.
  Target w;
  SUBCASE("the manifest") {
    append_entry(w.image, "abup/manifest.json",
                 "{\"schemaVersion\": 1, \"allowDowngrade\": true}\n");
    expect_refused(w.stage(w.image.string()), "duplicate entry 'abup/manifest.json'");
  }
  SUBCASE("a partition image") {
    append_entry(w.image, "images/usr.img.zst", std::string(4096, 'z'));
    expect_refused(w.stage(w.image.string()), "duplicate entry 'images/usr.img.zst'");
  }
  CHECK(w.snapshot() == w.before);
}

TEST_CASE("security: oversized metadata.json and manifest are refused before they are read") {
  Target w;
  SUBCASE("metadata.json over 4 MiB") {
    pad_entry(w.image, w.path("big-md.cosi"), "metadata.json", 5 << 20);
    auto r = w.stage(w.path("big-md.cosi").string());
    expect_refused(r, "'metadata.json' is ");
    expect_refused(r, "more than the limit of 4194304");
  }
  SUBCASE("abup/manifest.json over 16 MiB") {
    pad_entry(w.image, w.path("big-m.cosi"), "abup/manifest.json", 17 << 20);
    expect_refused(w.stage(w.path("big-m.cosi").string()), "more than the limit of 16777216");
  }
  CHECK(w.snapshot() == w.before);
}

TEST_CASE("security: an entry whose size runs past the end of the file is refused") {
  Target w;
  // Cut the file inside the partition image: its header now promises bytes that are not there.
  fs::resize_file(w.image, entry_offset(w.image, "images/usr.img.zst") - 4096);
  expect_refused(w.stage(w.image.string()), "runs past the end of the file");
  CHECK(w.snapshot() == w.before);
}

TEST_CASE("security: a boot file changed after signing is refused before the ESP is written") {
  World w;
  auto esp = esp_node(w);
  // Incompressible, so zstd stores it in raw blocks: a changed byte still decodes (abup-image
  // writes no zstd checksum) and only the signed SHA-256 can tell.
  run_ok("head -c 300000 /dev/urandom > " + shell_quote(w.path("vmlinuz").string()));
  auto img =
      w.build_signed("k", "202607.03.0", "--boot-file vmlinuz=" + w.path("vmlinuz").string());
  const auto name = run_ok(
      "python3 -c \"import tarfile,sys; print([m.name for m in "
      "tarfile.open(sys.argv[1]) if 'vmlinuz' in m.name][0])\" " +
      shell_quote(img.string()));
  const auto end = entry_offset(img, name.substr(0, name.size() - 1));
  run_ok("printf 'X' | dd of=" + shell_quote(img.string()) +
         " bs=1 seek=" + std::to_string(end - 1000) + " conv=notrunc status=none");
  const auto before = w.snapshot();
  expect_refused(w.stage(img.string()), "does not match the signed");
  CHECK(w.snapshot() == before);
  CHECK_FALSE(fs::exists(esp / "flatcar/vmlinuz-b"));
  CHECK(read_file(esp / "flatcar/vmlinuz-a") == "factory kernel A");
}

TEST_CASE("security: an image for another variant (wrong hardware) is refused") {
  Target w("--variant some-other-board");  // on VARIANT_ID=azurecontainerlinux
  expect_refused(w.stage(w.image.string()),
                 "image is for variant 'some-other-board', this host is 'azurecontainerlinux'");
  CHECK(w.snapshot() == w.before);
}

TEST_CASE("security: a keyring another user can change is refused, not trusted") {
  Target w;
  SUBCASE("the directory writable by every user") {
    fs::permissions(w.keyring(), fs::perms::others_write, fs::perm_options::add);
    expect_refused(w.stage(w.image.string()), "is writable by every user");
  }
  SUBCASE("a key file writable by every user") {
    fs::permissions(w.keyring() / "signer.pem", fs::perms::others_write, fs::perm_options::add);
    expect_refused(w.stage(w.image.string()), "signer.pem is writable by every user");
  }
  SUBCASE("a key file owned by another user") {
    if (::geteuid() != 0) {
      MESSAGE("SKIPPED: needs root to chown a key file");
      return;
    }
    REQUIRE(::chown((w.keyring() / "signer.pem").c_str(), 4242, 4242) == 0);
    expect_refused(w.stage(w.image.string()), "signer.pem is owned by uid 4242");
  }
  CHECK(w.snapshot() == w.before);
}
