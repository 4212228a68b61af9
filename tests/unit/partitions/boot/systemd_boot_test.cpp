#include "partitions/boot/systemd_boot.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "partitions/boot/backend.hpp"
#include "support/util.hpp"
#include "unit/partitions/boot/boot_helpers.hpp"

using namespace abup;
using namespace abup::partitions;
using namespace abup::partitions::boot;
using namespace abup::test;

namespace {

// systemd's Boot Loader Interface vendor GUID (docs/BOOT_LOADER_INTERFACE.md in systemd).
const std::string kLoader = "-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";
const std::string kGlobal = "-8be4df61-93ca-11d2-aa0d-00e098032b8c";

// efivarfs file content: 4 bytes of attributes, then the UTF-16LE string and its NUL.
std::string var_file(std::uint32_t attrs, const std::string& ascii) {
  std::string s;
  for (int i = 0; i < 4; ++i) s += char(attrs >> (8 * i));
  for (char c : ascii) s += std::string{c, '\0'};
  return s + std::string(2, '\0');
}

struct Efi : EfivarsFixture {
  Efi() : EfivarsFixture(BootBackend::systemd_boot, kLoader) {}
  void set(const std::string& name, const std::string& value, std::uint32_t attrs = 7) const {
    write_file(file(name), var_file(attrs, value));
  }
};

}  // namespace

TEST_CASE("systemd-boot arm writes LoaderEntryDefault = the running slot, then the one-shot") {
  Efi e;
  auto b = e.backend();
  CHECK(b->name() == "systemd-boot");
  CHECK(view_text(read_view(*b)) == "next=- default=-");
  RecordingVars rec(e.dir, kLoaderInterfaceGuid);
  ok(e.backend(&rec)->arm('B'));
  // The fallback is in place before the one try exists.
  REQUIRE(rec.ops.size() == 2);
  CHECK(rec.ops[0].name == "LoaderEntryDefault");
  CHECK(rec.ops[1].name == "LoaderEntryOneShot");
  // Byte for byte what bootctl set-oneshot writes: NV|BS|RT, UTF-16LE, NUL-terminated, under
  // the Boot Loader Interface GUID (nothing under the EFI global one).
  CHECK(e.get("LoaderEntryOneShot") == var_file(7, "acl-usr-b.efi"));
  CHECK(e.get("LoaderEntryDefault") == var_file(7, "acl-usr-a.efi"));
  for (const auto& [name, content] : e.snapshot())
    CHECK_MESSAGE(name.find(kGlobal) == std::string::npos, name);
  auto v = read_view(*b);
  CHECK(view_text(v) == "next=B default=A");
  CHECK(v.slots['B'].tries == 1);
  CHECK_FALSE(v.slots['B'].good);
  CHECK(v.slots['A'].good);
  CHECK(v.detail.find("LoaderEntryOneShot=acl-usr-b.efi") != std::string::npos);
  // Armed again: nothing to write.
  RecordingVars again(e.dir, kLoaderInterfaceGuid);
  ok(e.backend(&again)->arm('B'));
  CHECK(again.ops.empty());
}

TEST_CASE("systemd-boot arm from a committed slot writes only the one-shot") {
  Efi e;
  e.set("LoaderEntryDefault", "acl-usr-b.efi");
  RecordingVars rec(e.dir, kLoaderInterfaceGuid);
  ok(e.backend(&rec)->arm('A'));  // the rollback from a good B
  REQUIRE(rec.ops.size() == 1);
  CHECK(rec.ops[0].name == "LoaderEntryOneShot");
  CHECK(view_text(read_view(*e.backend())) == "next=A default=B");
}

TEST_CASE("systemd-boot commit sets LoaderEntryDefault and clears the slot's pending one-shot") {
  Efi e;
  ok(e.backend()->arm('B'));
  ok(e.backend()->commit('B'));
  CHECK(e.get("LoaderEntryDefault") == var_file(7, "acl-usr-b.efi"));
  CHECK_FALSE(e.has("LoaderEntryOneShot"));
  auto v = read_view(*e.backend());
  CHECK(view_text(v) == "next=B default=B");
  CHECK(v.slots['B'].good);
  CHECK(v.slots['B'].tries == 0);

  // As on a real boot: systemd-boot deleted the one-shot when it booted B; commit writes only
  // the default, and a second commit writes nothing.
  Efi f;
  ok(f.backend()->arm('B'));
  std::filesystem::remove(f.file("LoaderEntryOneShot"));
  CHECK(view_text(read_view(*f.backend())) == "next=A default=A");  // uncommitted: falls back
  RecordingVars rec(f.dir, kLoaderInterfaceGuid);
  ok(f.backend(&rec)->commit('B'));
  REQUIRE(rec.ops.size() == 1);
  CHECK(rec.ops[0].name == "LoaderEntryDefault");
  RecordingVars again(f.dir, kLoaderInterfaceGuid);
  ok(f.backend(&again)->commit('B'));
  CHECK(again.ops.empty());

  // A one-shot of the other slot (armed by someone else) is not ours to clear.
  Efi g;
  g.set("LoaderEntryOneShot", "acl-usr-a.efi");
  ok(g.backend()->commit('B'));
  CHECK(g.get("LoaderEntryOneShot") == var_file(7, "acl-usr-a.efi"));
}

TEST_CASE("systemd-boot mark_bad cancels the one try and moves the default off the slot") {
  Efi e;
  ok(e.backend()->arm('B'));
  ok(e.backend()->mark_bad('B'));
  CHECK_FALSE(e.has("LoaderEntryOneShot"));
  CHECK(view_text(read_view(*e.backend())) == "next=A default=A");

  Efi f;
  f.set("LoaderEntryDefault", "acl-usr-b.efi");
  ok(f.backend()->mark_bad('B'));
  CHECK(f.get("LoaderEntryDefault") == var_file(7, "acl-usr-a.efi"));
  CHECK(view_text(read_view(*f.backend())) == "next=A default=A");
  RecordingVars rec(f.dir, kLoaderInterfaceGuid);
  ok(f.backend(&rec)->mark_bad('B'));  // nothing left to do
  CHECK(rec.ops.empty());
}

TEST_CASE("systemd-boot read reports what booted and what systemd-boot found") {
  Efi e;
  e.set("LoaderEntryDefault", "acl-usr-a.efi");
  e.set("LoaderEntrySelected", "acl-usr-b.efi", 6);  // volatile, set by systemd-boot
  // LoaderEntries: one NUL-terminated string after the other.
  std::string entries = var_file(6, "acl-usr-a.efi");
  entries += var_file(0, "auto-reboot-to-firmware-setup").substr(4);
  write_file(e.file("LoaderEntries"), entries);
  auto v = read_view(*e.backend());
  CHECK(view_text(v) == "next=A default=A");
  CHECK(v.detail.find("LoaderEntrySelected)=acl-usr-b.efi") != std::string::npos);
  // B's UKI was not on the ESP when systemd-boot looked: status says so.
  CHECK(v.detail.find("acl-usr-b.efi was not among the entries") != std::string::npos);
  CHECK(v.detail.find("acl-usr-a.efi was not") == std::string::npos);

  // A one-shot of another entry (bootctl set-oneshot auto-efi-shell): not a slot, said so.
  e.set("LoaderEntryOneShot", "auto-efi-shell");
  v = read_view(*e.backend());
  CHECK_FALSE(v.next.has_value());
  CHECK(v.detail.find("not a slot entry") != std::string::npos);
}

TEST_CASE("systemd-boot entry ids come from the context, a path is refused") {
  Efi e;
  e.context.loader_entry = {{'A', "ukify-a.efi"}, {'B', "ukify-b.efi"}};
  ok(e.backend()->arm('A'));
  CHECK(e.get("LoaderEntryOneShot") == var_file(7, "ukify-a.efi"));
  CHECK(e.get("LoaderEntryDefault") == var_file(7, "ukify-b.efi"));
  CHECK(default_loader_entry('A') == "acl-usr-a.efi");
  CHECK(default_loader_entry('B') == "acl-usr-b.efi");
  BackendContext ctx;
  ctx.efivars = e.dir;
  ctx.loader_entry['B'] = "EFI/Linux/acl-usr-b.efi";
  auto b = make_backend(BootBackend::systemd_boot, ctx);
  REQUIRE_FALSE(b.has_value());
  CHECK(b.error().message.find("EFI/Linux/acl-usr-b.efi") != std::string::npos);
}

TEST_CASE("systemd-boot refuses garbage in its variables, naming it, without writing") {
  for (const std::string& bad : {std::string("\x07\0\0\0a", 5),          // odd length
                                 std::string("\x07\0\0\0a\0b\0", 8)}) {  // no NUL
    Efi e;
    write_file(e.file("LoaderEntryDefault"), bad);
    auto before = e.snapshot();
    auto v = e.backend()->read();
    REQUIRE_FALSE(v.has_value());
    CHECK(v.error().message.find("LoaderEntryDefault") != std::string::npos);
    auto st = e.backend()->arm('B');
    REQUIRE_FALSE(st.has_value());
    CHECK(st.error().message.find("systemd-boot arm B") != std::string::npos);
    CHECK(e.snapshot() == before);
  }
  Efi e;
  write_file(e.file("LoaderEntryOneShot"), var_file(7, "a") + var_file(0, "b").substr(4));
  auto v = e.backend()->read();
  REQUIRE_FALSE(v.has_value());
  CHECK(v.error().message.find("2 NUL-terminated strings") != std::string::npos);
}

TEST_CASE("efivarfs stores see only their vendor GUID's variables") {
  Efi e;
  e.set("LoaderEntryDefault", "acl-usr-a.efi");
  write_file(e.dir / ("BootOrder" + kGlobal), std::string("\x07\0\0\0\0\0", 6));
  auto loader = make_efivarfs_store(e.dir, kLoaderInterfaceGuid)->list();
  auto global = make_efivarfs_store(e.dir)->list();
  REQUIRE(loader.has_value());
  REQUIRE(global.has_value());
  CHECK(*loader == std::vector<std::string>{"LoaderEntryDefault"});
  CHECK(*global == std::vector<std::string>{"BootOrder"});
}

TEST_CASE("loader strings round-trip UTF-16LE, surrogate pairs included") {
  for (const std::string& s : {std::string("acl-usr-a.efi"), std::string("\xc3\xa9t\xc3\xa9"),
                               std::string("\xf0\x9f\x90\xa7.efi"), std::string()}) {
    auto b = loader_string(s);
    CHECK(b.size() % 2 == 0);
    auto back = parse_loader_string(b);
    REQUIRE(back.has_value());
    CHECK(*back == s);
  }
  CHECK(loader_string("\xf0\x9f\x90\xa7").size() == 6);  // a surrogate pair + NUL
}

TEST_CASE("systemd-boot arm, commit, rollback and mark_bad are crash-safe at every write") {
  Efi e;
  // The third argument is the slot booted while the step runs: a state in between may boot it,
  // or what the step leaves behind, and never makes a slot the default that neither state has.
  CHECK(crash_step(e, "arm", 'A', [](Backend& b) { return b.arm('B'); }) == 2);
  CHECK(crash_step(e, "commit", 'B', [](Backend& b) { return b.commit('B'); }) == 2);
  CHECK(crash_step(e, "rollback-arm", 'B', [](Backend& b) { return b.arm('A'); }) == 1);
  CHECK(crash_step(e, "commit-a", 'A', [](Backend& b) { return b.commit('A'); }) == 2);
  ok(e.backend()->arm('B'));
  ok(e.backend()->commit('B'));
  CHECK(crash_step(e, "mark-bad", 'A', [](Backend& b) { return b.mark_bad('B'); }) == 1);
  ok(e.backend()->arm('B'));
  CHECK(crash_step(e, "mark-bad-armed", 'A', [](Backend& b) { return b.mark_bad('B'); }) == 1);
}
