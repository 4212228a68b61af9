// uefi: the slot's Boot#### entry names the loader file stage placed on the ESP, with the
// configured command line; an entry of ours naming another loader is rewritten at arming, the
// running slot's entry is left as it is.
#include <doctest/doctest.h>

#include "support/node.hpp"

using namespace abup::test;
namespace fs = std::filesystem;

namespace {

const std::string kGlobal = "-8be4df61-93ca-11d2-aa0d-00e098032b8c";

std::string utf16(const std::string& ascii) {
  std::string out;
  for (char c : ascii) out += std::string{c, '\0'};
  return out;
}

// The Boot#### file whose description is "Azure Container Linux S".
std::string entry_of(const Node& n, char slot) {
  const std::string desc =
      utf16(std::string("Azure Container Linux ") + slot) + std::string(2, '\0');
  for (const auto& e : fs::directory_iterator(n.efivars())) {
    const auto name = e.path().filename().string();
    if (name.rfind("Boot", 0) != 0 || name.size() != 8 + kGlobal.size()) continue;
    if (name.find("BootOrder") == 0 || name.find("BootNext") == 0) continue;
    auto text = read_file(e.path());
    if (text.size() > 10 && text.compare(10, desc.size(), desc) == 0) return text;
  }
  FAIL("no Boot#### entry for slot " << slot);
  return "";
}

void configure(const Node& n, const std::string& extra) {
  write_file(n.root() / "etc/abup/abup.conf", Node::boot_section() + extra);
}

}  // namespace

TEST_CASE("uefi: finalize points B's Boot#### at the loader stage placed, with its command line") {
  Node n("uefi");
  n.stage("202607.02.0");
  REQUIRE(n.abup("finalize").exit_code == 0);
  const std::string a_entry = entry_of(n, 'A');
  CHECK(entry_of(n, 'B').find(utf16("\\EFI\\acl\\usr-b.efi")) != std::string::npos);
  REQUIRE(n.abup("disarm").exit_code == 0);

  // The UKI moves and B's command line changes: stage writes it to the new place, finalize
  // rewrites B's entry (the stale one named \EFI\acl\usr-b.efi) to name it.
  configure(n, "BootFilePath.uki=EFI/custom/uki-%s.efi\nUefiCmdlineB=quiet\n");
  n.stage("202607.03.0");
  CHECK(fs::exists(n.esp() / "EFI/custom/uki-b.efi"));
  // The file stage placed and verified is recorded: the entry names it even when the
  // configuration changes again before finalize.
  configure(n, "UefiCmdlineB=quiet\n");
  auto fin = n.abup("finalize");
  INFO(fin.out);
  REQUIRE(fin.exit_code == 0);
  const std::string b = entry_of(n, 'B');
  CHECK(b.find(utf16("\\EFI\\custom\\uki-b.efi")) != std::string::npos);
  CHECK(b.find(utf16("\\EFI\\acl\\usr-b.efi")) == std::string::npos);
  CHECK(b.substr(b.size() - utf16("quiet").size() - 2) == utf16("quiet") + std::string(2, '\0'));
  CHECK(entry_of(n, 'A') == a_entry);  // the running slot's entry: not rewritten
  CHECK(n.uefi_firmware_next(false) == 'B');
  REQUIRE(n.reboot() == 'B');
  auto c = n.abup("commit");
  INFO(c.out);
  CHECK(c.exit_code == 0);
  CHECK(entry_of(n, 'B') == b);
}
