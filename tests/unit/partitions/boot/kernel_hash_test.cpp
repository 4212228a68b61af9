#include "partitions/boot/kernel_hash.hpp"

#include <doctest/doctest.h>

#include <cctype>
#include <filesystem>

#include "support/util.hpp"

using namespace abup;
using namespace abup::partitions::boot;
using namespace abup::test;

namespace {

constexpr const char* kStub = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";
const std::string kHash(64, 'a');
const std::string kOther = std::string(63, 'b') + "c";

std::vector<std::uint8_t> bytes(const std::string& s) {
  return {s.begin(), s.end()};
}

// A UKI as ukify/objcopy make one: systemd's stub with .cmdline (and a dummy .linux) added.
std::vector<std::uint8_t> make_uki(const TempDir& t, const std::string& cmdline) {
  write_file(t / "cmdline", cmdline);
  write_file(t / "linux", std::string(4096, 'L'));
  run_ok("objcopy --add-section .cmdline=" + (t / "cmdline").string() +
         " --change-section-vma .cmdline=0x30000 --add-section .linux=" + (t / "linux").string() +
         " --change-section-vma .linux=0x2000000 " + kStub + " " + (t / "uki.efi").string());
  return bytes(read_file(t / "uki.efi"));
}

}  // namespace

TEST_CASE("a UKI made with systemd's stub and objcopy: .cmdline usrhash= is found") {
  if (!std::filesystem::exists(kStub)) {
    MESSAGE("SKIPPED: " << kStub << " not installed (Debian systemd-boot-efi)");
    return;
  }
  TempDir t;
  auto uki = make_uki(t, "mount.usr=PARTUUID=x usrhash=" + kHash + " console=ttyS0");
  auto sections = pe_sections(uki);
  REQUIRE_MESSAGE(sections.has_value(), (sections ? "" : sections.error().message));
  bool has_cmdline = false;
  for (const auto& s : *sections) has_cmdline |= s.name == ".cmdline";
  CHECK(has_cmdline);
  auto h = embedded_usrhash(uki, "x86_64");
  REQUIRE(h.has_value());
  REQUIRE(h->has_value());
  CHECK(**h == kHash);

  auto flatcar_style = make_uki(t, "verity.usrhash=" + kOther);
  CHECK(**embedded_usrhash(flatcar_style, "x86_64") == kOther);
  auto none = make_uki(t, "console=ttyS0");
  CHECK_FALSE(embedded_usrhash(none, "x86_64")->has_value());
}

TEST_CASE("a Flatcar kernel carries its root hash at offset 0x40 (x86_64) or 512 (arm64)") {
  std::string img(4096, '\0');
  img[0] = 'M';
  img[1] = 'Z';
  img.replace(0x40, 64, kHash);
  CHECK(**embedded_usrhash(bytes(img), "x86_64") == kHash);
  CHECK_FALSE(embedded_usrhash(bytes(img), "arm64")->has_value());
  img.replace(0x40, 1, "G");  // not all hex: no hash
  CHECK_FALSE(embedded_usrhash(bytes(img), "x86_64")->has_value());
}

TEST_CASE("check_usrhash_binding: the embedded hash must be the image's, in any case") {
  std::string img(4096, '\0');
  img[0] = 'M';
  img[1] = 'Z';
  img.replace(0x40, 64, kHash);
  std::string upper = kHash;
  for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  CHECK(check_usrhash_binding(bytes(img), "x86_64", upper, "vmlinuz"));
  auto other = check_usrhash_binding(bytes(img), "x86_64", kOther, "vmlinuz");
  REQUIRE_FALSE(other);
  CHECK(other.error().code == abup::Errc::refused);
  CHECK(other.error().message == "boot file 'vmlinuz' carries /usr root hash " + kHash +
                                     ", the image's /usr has " + kOther +
                                     ": kernel and /usr do not belong together");
  auto unhashed = check_usrhash_binding(bytes(img), "x86_64", "", "vmlinuz");
  REQUIRE_FALSE(unhashed);
  CHECK(unhashed.error().message.find("the image has no /usr verity hash") != std::string::npos);
  // A kernel that carries no hash is not bound, whatever the image has.
  CHECK(check_usrhash_binding(bytes(img), "arm64", kOther, "vmlinuz"));
}

TEST_CASE("command lines: conflicting or malformed root hashes are errors") {
  CHECK_FALSE(usrhash_from_cmdline("console=ttyS0")->has_value());
  CHECK(**usrhash_from_cmdline("usrhash=" + std::string(64, 'A')) == std::string(64, 'a'));
  auto two = usrhash_from_cmdline("usrhash=" + kHash + " verity.usrhash=" + kOther);
  REQUIRE_FALSE(two.has_value());
  CHECK(two.error().message.find("two different") != std::string::npos);
  CHECK_FALSE(usrhash_from_cmdline("usrhash=xyz").has_value());
}

TEST_CASE("malformed PE images are refused with what is wrong") {
  CHECK(pe_sections(bytes("not a pe")).error().message.find("MZ") != std::string::npos);
  std::string img(256, '\0');
  img[0] = 'M';
  img[1] = 'Z';
  img[0x3c] = static_cast<char>(0x80);
  img.replace(0x80, 4, std::string("PE\0\0", 4));
  img[0x86] = 1;                        // one section, whose table entry is past the end
  img[0x94] = static_cast<char>(0xf0);  // SizeOfOptionalHeader
  CHECK(pe_sections(bytes(img)).error().message.find("section table") != std::string::npos);
}
