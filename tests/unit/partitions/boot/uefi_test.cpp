#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "partitions/boot/backend.hpp"
#include "partitions/slots.hpp"
#include "support/disk.hpp"
#include "support/util.hpp"
#include "unit/partitions/boot/boot_helpers.hpp"

using namespace abup;
using namespace abup::partitions;
using namespace abup::partitions::boot;
using namespace abup::test;

namespace {

using Bytes = std::vector<std::uint8_t>;
// EFI_GLOBAL_VARIABLE (UEFI spec 3.3): efivarfs names Boot####, BootOrder, BootNext with it.
const std::string kSuffix = "-8be4df61-93ca-11d2-aa0d-00e098032b8c";

void put16(Bytes& b, unsigned v) {
  b.push_back(std::uint8_t(v));
  b.push_back(std::uint8_t(v >> 8));
}
void put32(Bytes& b, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back(std::uint8_t(v >> (8 * i)));
}
Bytes utf16(const std::string& ascii) {
  Bytes b;
  for (char c : ascii) put16(b, std::uint8_t(c));
  put16(b, 0);
  return b;
}
std::string str(const Bytes& b) {
  return std::string(b.begin(), b.end());
}
unsigned le16(const std::string& s, std::size_t at) {
  return std::uint8_t(s[at]) | (unsigned(std::uint8_t(s[at + 1])) << 8);
}
std::uint64_t le(const std::string& s, std::size_t at, int n) {
  std::uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | std::uint8_t(s[at + i]);
  return v;
}

// A firmware-made entry: description + a bare End device path.
Bytes firmware_option(const std::string& description) {
  Bytes b;
  put32(b, 1);
  put16(b, 4);
  Bytes d = utf16(description);
  b.insert(b.end(), d.begin(), d.end());
  b.insert(b.end(), {0x7f, 0xff, 0x04, 0x00});
  return b;
}

struct Efi : EfivarsFixture {
  std::filesystem::path disk = tmp / "disk.img";
  SlotPair pair;
  Efi() : EfivarsFixture(BootBackend::uefi, kSuffix) {
    copy_small_flatcar_disk(disk);
    pair = discover_ok(disk);
    context.pair = &pair;
    context.uefi_cmdline['B'] = "console=ttyS0 mount.usr=PARTUUID=e03dd35c";
    // The firmware's own state: a shell entry first in BootOrder.
    set("Boot0000", 7, firmware_option("UEFI Shell"));
    set("BootOrder", 7, {0x00, 0x00});
  }
  void set(const std::string& name, std::uint32_t attrs, const Bytes& data) const {
    Bytes b;
    put32(b, attrs);
    b.insert(b.end(), data.begin(), data.end());
    write_file(file(name), str(b));
  }
  std::vector<unsigned> order() const {
    std::string s = get("BootOrder");
    std::vector<unsigned> o;
    for (std::size_t i = 4; i + 1 < s.size(); i += 2) o.push_back(le16(s, i));
    return o;
  }
};

}  // namespace

TEST_CASE("uefi arm creates Boot#### entries, keeps them in BootOrder and sets BootNext") {
  Efi e;
  auto b = e.backend();
  CHECK(b->name() == "uefi");
  CHECK(view_text(read_view(*b)) == "next=- default=-");
  ok(b->arm('B'));
  // The other slot (the running one) gets its entry too, first in BootOrder, so that the
  // firmware falls back to it (not to the shell) when B does not commit.
  CHECK(e.order() == std::vector<unsigned>{0x0001, 0x0000, 0x0002});
  std::string next = e.get("BootNext");
  CHECK(next.size() == 6);
  CHECK(le(next, 0, 4) == 7);
  CHECK(le16(next, 4) == 0x0002);
  auto v = read_view(*b);
  CHECK(view_text(v) == "next=B default=A");
  CHECK(v.slots['B'].tries == 1);
  CHECK(v.detail.find("Boot0002") != std::string::npos);

  // Boot0002's EFI_LOAD_OPTION, field by field, against sgdisk's view of the ESP.
  std::string o = e.get("Boot0002");
  CHECK(le(o, 0, 4) == 7);  // efivarfs attributes NV|BS|RT
  CHECK(le(o, 4, 4) == 1);  // LOAD_OPTION_ACTIVE
  std::size_t fpl = le16(o, 8);
  std::string desc = str(utf16("Azure Container Linux B"));
  REQUIRE(o.compare(10, desc.size(), desc) == 0);
  std::size_t dp = 10 + desc.size();
  REQUIRE(o.size() >= dp + fpl);
  CHECK(std::uint8_t(o[dp]) == 4);      // media
  CHECK(std::uint8_t(o[dp + 1]) == 1);  // hard drive
  CHECK(le16(o, dp + 2) == 42);
  std::string info = run_ok("sgdisk -i 1 " + shell_quote(e.disk.string()));
  auto field = [&](const std::string& key) {
    auto p = info.find(key);
    REQUIRE(p != std::string::npos);
    return info.substr(p + key.size(), info.find_first_of(" \n", p + key.size()) - p - key.size());
  };
  CHECK(le(o, dp + 4, 4) == 1);  // partition number
  std::uint64_t first = std::stoull(field("First sector: "));
  std::uint64_t last = std::stoull(field("Last sector: "));
  CHECK(le(o, dp + 8, 8) == first);
  CHECK(le(o, dp + 16, 8) == last - first + 1);
  std::string esp_uuid = field("Partition unique GUID: ");
  std::transform(esp_uuid.begin(), esp_uuid.end(), esp_uuid.begin(), ::tolower);
  CHECK(e.pair.gpt.find_by_number(1)->unique.str() == esp_uuid);
  const auto& sig = e.pair.gpt.find_by_number(1)->unique.bytes;
  CHECK(o.compare(dp + 24, 16, std::string(sig.begin(), sig.end())) == 0);
  CHECK(std::uint8_t(o[dp + 40]) == 2);  // GPT
  CHECK(std::uint8_t(o[dp + 41]) == 2);  // GUID signature
  std::size_t fp = dp + 42;
  CHECK(std::uint8_t(o[fp]) == 4);
  CHECK(std::uint8_t(o[fp + 1]) == 4);  // file path
  std::string loader = str(utf16("\\EFI\\acl\\usr-b.efi"));
  CHECK(le16(o, fp + 2) == 4 + loader.size());
  CHECK(o.compare(fp + 4, loader.size(), loader) == 0);
  std::size_t end = fp + 4 + loader.size();
  CHECK(o.compare(end, 4, std::string("\x7f\xff\x04\x00", 4)) == 0);
  CHECK(end + 4 == dp + fpl);
  CHECK(o.substr(dp + fpl) == str(utf16("console=ttyS0 mount.usr=PARTUUID=e03dd35c")));
  std::string a = e.get("Boot0001");
  CHECK(a.find(str(utf16("\\EFI\\acl\\usr-a.efi"))) != std::string::npos);
  CHECK(a.find(str(utf16("Azure Container Linux A"))) != std::string::npos);

  // Arming again reuses the entries and writes nothing.
  RecordingVars rec(e.dir);
  ok(e.backend(&rec)->arm('B'));
  CHECK(rec.ops.empty());
}

TEST_CASE("uefi commit moves the slot first in BootOrder and clears BootNext, mark_bad drops it") {
  Efi e;
  auto b = e.backend();
  ok(b->arm('B'));
  std::filesystem::remove(e.file("BootNext"));  // the firmware consumed it and booted B
  CHECK(view_text(read_view(*b)) == "next=A default=A");
  ok(b->arm('B'));
  ok(b->commit('B'));
  CHECK(e.order() == std::vector<unsigned>{0x0002, 0x0001, 0x0000});
  CHECK_FALSE(std::filesystem::exists(e.file("BootNext")));
  CHECK(view_text(read_view(*b)) == "next=B default=B");
  // The next update, to A: A stays behind B until A commits.
  ok(b->arm('A'));
  CHECK(e.order() == std::vector<unsigned>{0x0002, 0x0001, 0x0000});
  CHECK(view_text(read_view(*b)) == "next=A default=B");
  ok(b->mark_bad('A'));
  CHECK(e.order() == std::vector<unsigned>{0x0002, 0x0000});
  CHECK_FALSE(std::filesystem::exists(e.file("BootNext")));
  auto v = read_view(*b);
  CHECK(view_text(v) == "next=B default=B");
  CHECK_FALSE(v.slots['A'].good);
}

TEST_CASE("uefi arm puts the running slot's new entry before the firmware's own entries") {
  // OVMF's state on a machine that booted slot A through the removable-media path: its own
  // entries in BootOrder (a shell, the DVD, the disk's removable-media path, ...), none ours.
  // Found by the e2e suite: with A's entry appended after them, the firmware falls back from a
  // B that never commits to the first of them (OVMF: "UEFI Misc Device"), not to A's entry.
  Efi e;
  e.set("Boot0001", 7, firmware_option("UEFI QEMU DVD-ROM"));
  e.set("Boot0002", 7, firmware_option("UEFI Misc Device"));
  e.set("Boot0003", 7, firmware_option("EFI Internal Shell"));
  e.set("BootOrder", 7, {0x00, 0x00, 0x01, 0x00, 0x02, 0x00, 0x03, 0x00});
  ok(e.backend()->arm('B'));
  CHECK(e.order() == std::vector<unsigned>{0x0004, 0x0000, 0x0001, 0x0002, 0x0003, 0x0005});
  CHECK(e.get("Boot0004").find(str(utf16("Azure Container Linux A"))) != std::string::npos);
  CHECK(le16(e.get("BootNext"), 4) == 0x0005);
  // BootNext consumed, B not committed: the first entry the firmware tries is A's.
  std::filesystem::remove(e.file("BootNext"));
  CHECK(view_text(read_view(*e.backend())) == "next=A default=A");
}

TEST_CASE("uefi reuses its entries found by description and picks free numbers") {
  Efi e;
  e.set("Boot0001", 7, firmware_option("PXE"));
  e.set("Boot0005", 7, firmware_option("Azure Container Linux B"));  // ours, stale loader
  e.set("BootOrder", 7, {0x00, 0x00, 0x05, 0x00});
  auto b = e.backend();
  CHECK(view_text(read_view(*b)) == "next=B default=B");
  ok(b->arm('A'));
  // A gets the first free number (0002); B keeps 0005, rewritten with its loader; A, armed, is
  // moved behind B so that it does not become the default before commit.
  CHECK(e.order() == std::vector<unsigned>{0x0000, 0x0005, 0x0002});
  CHECK(e.get("Boot0005").find(str(utf16("\\EFI\\acl\\usr-b.efi"))) == std::string::npos);
  CHECK(e.get("Boot0002").find(str(utf16("\\EFI\\acl\\usr-a.efi"))) != std::string::npos);
  CHECK(view_text(read_view(*b)) == "next=A default=B");
  ok(b->arm('B'));
  CHECK(e.get("Boot0005").find(str(utf16("\\EFI\\acl\\usr-b.efi"))) != std::string::npos);
}

TEST_CASE("uefi clears the immutable flag efivarfs puts on variable files") {
  Efi e;
  auto b = e.backend();
  ok(b->arm('B'));
  auto r = run("chattr +i " + shell_quote(e.file("BootOrder").string()) + " " +
               shell_quote(e.file("Boot0002").string()) + " 2>&1");
  if (r.exit_code != 0) {
    MESSAGE("SKIPPED: chattr +i not possible here: ", r.out);
    return;
  }
  ok(b->commit('B'));
  CHECK(e.order().front() == 0x0002);
  ok(b->mark_bad('B'));
  CHECK(run("lsattr " + shell_quote(e.file("BootOrder").string())).out.find("-i-") ==
        std::string::npos);
}

TEST_CASE("uefi refuses garbage in efivars, naming the variable, without writing") {
  Efi e;
  struct Case {
    const char* name;
    std::uint32_t attrs;
    Bytes data;
    const char* needle;
  };
  Bytes bad_fpl = firmware_option("Azure Container Linux A");
  bad_fpl[4] = 0xff;  // FilePathListLength beyond the variable
  Bytes no_nul;
  put32(no_nul, 1);
  put16(no_nul, 4);
  put16(no_nul, 'X');
  Bytes bad_node = firmware_option("X");
  bad_node[bad_node.size() - 2] = 2;  // End node of length 2
  std::vector<Case> cases = {
      {"BootOrder", 7, {0x00, 0x00, 0x01}, "BootOrder"},
      {"BootOrder", 0x100, {0x00, 0x00}, "BootOrder: bad attributes"},
      {"BootNext", 7, {0x01}, "BootNext"},
      {"Boot0003", 7, bad_fpl, "Boot0003: malformed"},
      {"Boot0003", 7, no_nul, "Boot0003: malformed"},
      {"Boot0003", 7, bad_node, "Boot0003: malformed"},
      {"Boot0003", 1, firmware_option("X"), "Boot0003: bad attributes"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.needle);
    Efi fresh;
    fresh.set(c.name, c.attrs, c.data);
    auto before = fresh.snapshot();
    auto b = fresh.backend();
    for (int op = 0; op < 3; ++op) {
      Status st = op == 0 ? b->arm('B') : op == 1 ? b->commit('B') : b->mark_bad('A');
      REQUIRE_FALSE(st.has_value());
      CHECK_MESSAGE(st.error().message.find(c.needle) != std::string::npos, st.error().message);
    }
    auto v = b->read();
    REQUIRE_FALSE(v.has_value());
    CHECK_MESSAGE(v.error().message.find(c.needle) != std::string::npos, v.error().message);
    CHECK(fresh.snapshot() == before);
  }
  // A variable file shorter than its attributes.
  write_file(e.file("BootOrder"), "\x07\x00");
  auto before = e.snapshot();
  auto st = e.backend()->arm('B');
  REQUIRE_FALSE(st.has_value());
  CHECK_MESSAGE(st.error().message.find("BootOrder") != std::string::npos, st.error().message);
  CHECK_MESSAGE(st.error().message.find("shorter") != std::string::npos, st.error().message);
  CHECK(e.snapshot() == before);
  // No efivars at all: not an EFI boot.
  auto missing = e.backend(nullptr, e.tmp / "no-efivars")->read();
  REQUIRE_FALSE(missing.has_value());
  CHECK(missing.error().message.find("no-efivars") != std::string::npos);
}

TEST_CASE("uefi arm, commit and mark_bad are crash-safe at every variable write") {
  Efi e;
  // Boot0001, Boot0002, BootNext, BootOrder
  CHECK(crash_step(e, "arm", std::nullopt, [](Backend& b) { return b.arm('B'); }) == 4);
  CHECK(crash_step(e, "commit", std::nullopt, [](Backend& b) { return b.commit('B'); }) == 2);
  CHECK(crash_step(e, "arm-a", std::nullopt, [](Backend& b) { return b.arm('A'); }) == 1);
  CHECK(crash_step(e, "mark-bad-a", std::nullopt, [](Backend& b) { return b.mark_bad('A'); }) == 2);
}

TEST_CASE(
    "uefi re-arming a slot whose entry names another loader or command line rewrites it "
    "crash-safely and never touches the running slot's entry") {
  Efi e;
  ok(e.backend()->arm('B'));  // Boot0001 = A (running), Boot0002 = B, BootNext = 0002
  const std::string running_entry = e.get("Boot0001");
  const auto orig = e.tmp / "orig";
  copy_dir(e.dir, orig);

  // The loader abup placed for B moved ([Boot] BootFilePath.uki=) and its command line changed.
  e.context.uefi_loader['B'] = "\\EFI\\custom\\uki-b.efi";
  e.context.uefi_cmdline['B'] = "quiet";
  RecordingVars rec(e.dir);
  ok(e.backend(&rec)->arm('B'));
  // BootNext leaves first (it pointed at the old option), the entry is rewritten in place, then
  // BootNext points at it again; A's entry and BootOrder are not written.
  std::vector<std::string> names;
  for (const auto& op : rec.ops) names.push_back((op.remove ? "-" : "") + op.name);
  CHECK(names == std::vector<std::string>{"-BootNext", "Boot0002", "BootNext"});
  CHECK(e.get("Boot0001") == running_entry);
  const std::string b = e.get("Boot0002");
  CHECK(b.find(str(utf16("\\EFI\\custom\\uki-b.efi"))) != std::string::npos);
  CHECK(b.find(str(utf16("\\EFI\\acl\\usr-b.efi"))) == std::string::npos);
  CHECK(b.substr(b.size() - str(utf16("quiet")).size()) == str(utf16("quiet")));
  CHECK(view_text(read_view(*e.backend())) == "next=B default=A");

  // A power cut after any of these writes: the firmware boots A, or B through a whole load
  // option (the old or the new one), never an option in between; A's entry is A's.
  const auto work = e.tmp / "work";
  for (std::size_t n = 0; n <= rec.ops.size(); ++n) {
    CAPTURE(n);
    replay_var_ops(orig, work, rec.ops, n);
    auto v = read_view(*e.backend(nullptr, work));
    CHECK(v.default_slot == 'A');
    CHECK((v.next == 'A' || v.next == 'B'));
    CHECK(test::read_file(work / ("Boot0001" + kSuffix)) == running_entry);
    const std::string entry = test::read_file(work / ("Boot0002" + kSuffix));
    const bool old_option = entry == test::read_file(orig / ("Boot0002" + kSuffix));
    CHECK((old_option || entry == b));
    // BootNext never names the old option once the new one is wanted, unless nothing changed yet.
    if (v.next == 'B' && n > 0) CHECK(entry == b);
  }
}
