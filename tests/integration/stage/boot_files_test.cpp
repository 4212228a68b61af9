// Boot files move with /usr: stage places the inactive slot's kernel on the ESP (found through
// ROOT/proc/self/mountinfo by the ESP partition type, or [Boot] ESP=), verified as read back,
// recorded in state.json and shown by status; the booted slot's kernel is never touched; bad
// input is refused with the name of what is wrong.
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <nlohmann/json.hpp>
#include <set>

#include "support/world.hpp"

using namespace abup::test;
namespace fs = std::filesystem;

namespace {

std::string esp_partuuid(const World& w) {
  auto out = run_ok("sgdisk -i 1 " + shell_quote(w.disk().string()) +
                    " | sed -n 's/^Partition unique GUID: //p'");
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// ROOT/etc/abup/abup.conf and, unless `esp_key`, a mountinfo naming the ESP at /boot.
fs::path node(const World& w, const std::string& boot_section, bool read_only = false,
              bool mounted = true) {
  fs::create_directories(w.root() / "etc/abup");
  fs::remove(w.root() / "etc/abup/abup.conf.d/00-no-boot-files.conf");
  write_file(w.root() / "etc/abup/abup.conf",
             "[Update]\nBootBackend=gptprio\n[Boot]\n" + boot_section);
  fs::create_directories(w.root() / "proc/self");
  std::string info = "22 1 0:21 / /proc rw,nosuid - proc proc rw\n";
  if (mounted)
    info += "40 1 8:1 / /boot " + std::string(read_only ? "ro" : "rw") +
            ",relatime shared:5 - vfat /dev/disk/by-partuuid/" + esp_partuuid(w) + " rw\n";
  write_file(w.root() / "proc/self/mountinfo", info);
  fs::create_directories(w.root() / "boot/flatcar");
  return w.root() / "boot";
}

struct Booted {
  std::string bytes;
  ino_t inode = 0;
  std::int64_t mtime = 0;
};
Booted booted_kernel(const fs::path& esp) {
  struct stat st {};
  ::stat((esp / "flatcar/vmlinuz-a").c_str(), &st);
  return {read_file(esp / "flatcar/vmlinuz-a"), st.st_ino, st.st_mtim.tv_nsec + st.st_mtime};
}

void same_booted(const fs::path& esp, const Booted& before) {
  auto after = booted_kernel(esp);
  CHECK(after.bytes == before.bytes);
  CHECK(after.inode == before.inode);
  CHECK(after.mtime == before.mtime);
}

}  // namespace

TEST_CASE("stage writes the inactive slot's kernel to flatcar/vmlinuz-b, found via mountinfo") {
  World w;
  auto esp = node(w, "RequireBootFiles=yes\n");
  write_file(esp / "flatcar/vmlinuz-a", "factory kernel A");
  const auto before = booted_kernel(esp);
  write_file(w.path("vmlinuz"), std::string(200000, 'k') + "kernel 202607.03.0");
  auto cosi =
      w.build_signed("k", "202607.03.0", "--boot-file vmlinuz=" + w.path("vmlinuz").string());
  auto r = w.stage(cosi.string());
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  CHECK(read_file(esp / "flatcar/vmlinuz-b") == read_file(w.path("vmlinuz")));
  same_booted(esp, before);  // invariant 1: the booted slot's kernel was never opened to write

  auto st = nlohmann::json::parse(w.slot_state_json());
  INFO(st.dump(2));
  CHECK(st["slots"][1]["state"] == "staged");
  REQUIRE(st["slots"][1]["bootFiles"].size() == 1);
  CHECK(st["slots"][1]["bootFiles"][0]["path"] == "flatcar/vmlinuz-b");
  CHECK(st["slots"][1]["bootFiles"][0]["check"] == "ok");

  // A kernel changed behind abup's back: status says so and finalize refuses to arm it.
  write_file(esp / "flatcar/vmlinuz-b", "tampered");
  st = nlohmann::json::parse(w.slot_state_json());
  CHECK(st["slots"][1]["bootFiles"][0]["check"] == "mismatch");
  auto fin = run(abup_bin() + " finalize --disk " + shell_quote(w.disk().string()) + " --root " +
                 shell_quote(w.root().string()));
  INFO(fin.out);
  CHECK(fin.exit_code != 0);
  CHECK(fin.out.find("boot file 'vmlinuz'") != std::string::npos);
  CHECK(fin.out.find("mismatch") != std::string::npos);
  CHECK(nlohmann::json::parse(w.slot_state_json())["pending"].is_null());

  // A re-run of the same stage rewrites the kernel and the slot is staged again.
  r = w.stage(cosi.string());
  REQUIRE(r.exit_code == 0);
  CHECK(read_file(esp / "flatcar/vmlinuz-b") == read_file(w.path("vmlinuz")));
  same_booted(esp, before);
}

TEST_CASE("an image without boot files is refused where they are required, before any write") {
  World w;
  auto esp = node(w, "RequireBootFiles=auto\n");
  auto cosi = w.build_signed("plain", "202607.03.0");
  auto before = w.snapshot();
  auto r = w.stage(cosi.string());
  INFO(r.out);
  CHECK(r.exit_code != 0);
  CHECK(r.out.find("carries no boot files") != std::string::npos);
  CHECK(r.out.find("RequireBootFiles=no") != std::string::npos);
  CHECK(w.snapshot() == before);
  // RequireBootFiles=no lets it through (the old kernel keeps booting: the operator's call).
  node(w, "RequireBootFiles=no\n");
  CHECK(w.stage(cosi.string()).exit_code == 0);
}

TEST_CASE(
    "by default (no RequireBootFiles=) gptprio, uefi and systemd-boot refuse an image "
    "without boot files before any write, naming the backend and the fix, grubenv stages it") {
  World w;
  node(w, "");
  fs::create_directories(w.root() / "sys/firmware/efi/efivars");
  auto cosi = w.build_signed("plain", "202607.03.0");
  const auto before = w.snapshot();
  for (const char* backend : {"gptprio", "uefi", "systemd-boot"}) {
    CAPTURE(backend);
    auto r = w.stage(cosi.string(), std::string("--boot-backend ") + backend);
    INFO(r.out);
    CHECK(r.exit_code != 0);
    CHECK(r.out.find("the " + std::string(backend) +
                     " backend boots the slot's kernel from the "
                     "ESP ([Boot] RequireBootFiles=auto)") != std::string::npos);
    CHECK(r.out.find("--boot-file") != std::string::npos);
    CHECK(r.out.find("RequireBootFiles=no") != std::string::npos);
    CHECK(w.snapshot() == before);
    CHECK(fs::is_empty(w.root() / "sys/firmware/efi/efivars"));
  }
  fs::create_directories(w.root() / "boot/grub");
  run_ok("grub-editenv " + shell_quote((w.root() / "boot/grub/grubenv").string()) + " create");
  auto g = w.stage(cosi.string(), "--boot-backend grubenv");
  INFO(g.out);
  CHECK(g.exit_code == 0);
}

TEST_CASE("ESP not mounted, mounted read-only, or full: clear errors, booted kernel untouched") {
  World w;
  write_file(w.path("vmlinuz"), "kernel");
  auto cosi =
      w.build_signed("k", "202607.03.0", "--boot-file vmlinuz=" + w.path("vmlinuz").string());

  auto esp = node(w, "RequireBootFiles=yes\n", false, /*mounted=*/false);
  write_file(esp / "flatcar/vmlinuz-a", "factory kernel A");
  const auto before = booted_kernel(esp);
  auto r = w.stage(cosi.string());
  CHECK(r.exit_code != 0);
  CHECK_MESSAGE(r.out.find("is not mounted") != std::string::npos, r.out);

  node(w, "RequireBootFiles=yes\n", /*read_only=*/true);
  r = w.stage(cosi.string());
  CHECK(r.exit_code != 0);
  CHECK_MESSAGE(r.out.find("read-only") != std::string::npos, r.out);

  node(w, "RequireBootFiles=yes\n");
  r = run("ABUP_FAULT_ESP_FREE_BYTES=3 " + abup_bin() + " stage --no-progress --disk " +
          shell_quote(w.disk().string()) + " --root " + shell_quote(w.root().string()) +
          " --keyring " + shell_quote(w.keyring().string()) + " --source " +
          shell_quote(cosi.string()));
  CHECK(r.exit_code != 0);
  CHECK_MESSAGE(r.out.find("bytes free") != std::string::npos, r.out);
  CHECK_FALSE(fs::exists(esp / "flatcar/vmlinuz-b"));
  CHECK(nlohmann::json::parse(w.slot_state_json())["slots"][1]["state"] != "staged");
  same_booted(esp, before);
}

TEST_CASE("[Boot] ESP= names the ESP directly") {
  World w;
  fs::create_directories(w.root() / "efi");
  node(w, "ESP=/efi\nRequireBootFiles=yes\n", false, false);
  write_file(w.path("vmlinuz"), "kernel");
  auto cosi =
      w.build_signed("k", "202607.03.0", "--boot-file vmlinuz=" + w.path("vmlinuz").string());
  auto r = w.stage(cosi.string());
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  CHECK(read_file(w.root() / "efi/flatcar/vmlinuz-b") == "kernel");
}

TEST_CASE("a UKI whose usrhash= differs from the image's /usr root hash is refused") {
  constexpr const char* kStub = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";
  if (!fs::exists(kStub)) {
    MESSAGE("SKIPPED: " << kStub << " not installed (Debian systemd-boot-efi)");
    return;
  }
  World w(32, "202601.01.0", /*hash_partitions=*/true);
  auto esp = node(w, "RequireBootFiles=yes\nBootFilePath.uki=flatcar/vmlinuz-%s\n");
  write_file(esp / "flatcar/vmlinuz-a", "factory kernel A");
  const auto before = booted_kernel(esp);
  write_file(w.path("hash.img"), std::string(1 << 20, '\0'));
  const std::string roothash(64, 'a');
  write_file(w.path("cmdline"), "usrhash=" + std::string(64, 'b'));
  write_file(w.path("linux"), std::string(4096, 'L'));
  run_ok(std::string("objcopy --add-section .cmdline=") + w.path("cmdline").string() +
         " --change-section-vma .cmdline=0x30000 --add-section .linux=" + w.path("linux").string() +
         " --change-section-vma .linux=0x2000000 " + kStub + " " + w.path("uki.efi").string());
  const std::string inputs = "--usr-hash " + w.path("hash.img").string() + " --roothash " +
                             roothash + " --boot-file uki=" + w.path("uki.efi").string();
  // abup-image refuses to pack it; built anyway (as another tool could), the node refuses it.
  auto refused = run(abup_image_bin() + " build --usr " + w.usr_image().string() +
                     " --version 202607.03.0 --out " + w.path("refused.cosi").string() + " " +
                     inputs + " 2>&1");
  CHECK(refused.exit_code != 0);
  CHECK_MESSAGE(refused.out.find("do not belong together") != std::string::npos, refused.out);
  CHECK_FALSE(fs::exists(w.path("refused.cosi")));
  auto cosi = w.build_signed("uki", "202607.03.0", inputs + " --no-usrhash-check");
  auto snap = w.snapshot();
  auto r = w.stage(cosi.string());
  INFO(r.out);
  CHECK(r.exit_code != 0);
  CHECK(r.out.find("boot file 'uki' carries /usr root hash " + std::string(64, 'b')) !=
        std::string::npos);
  CHECK(r.out.find("do not belong together") != std::string::npos);
  CHECK(w.snapshot() == snap);
  CHECK_FALSE(fs::exists(esp / "flatcar/vmlinuz-b"));
  same_booted(esp, before);
}

TEST_CASE("kill -9 right after a boot file is written: not staged, not armable, a re-run repairs") {
  World w;
  auto esp = node(w, "RequireBootFiles=yes\n");
  write_file(esp / "flatcar/vmlinuz-a", "factory kernel A");
  const auto before = booted_kernel(esp);
  write_file(w.path("vmlinuz"), std::string(100000, 'k'));
  auto cosi =
      w.build_signed("k", "202607.03.0", "--boot-file vmlinuz=" + w.path("vmlinuz").string());
  auto r = run("ABUP_FAULT=boot-file-written:1 " + abup_bin() + " stage --no-progress --disk " +
               shell_quote(w.disk().string()) + " --root " + shell_quote(w.root().string()) +
               " --keyring " + shell_quote(w.keyring().string()) + " --source " +
               shell_quote(cosi.string()));
  INFO(r.out);
  CHECK(r.exit_code == 128 + 9);
  CHECK(nlohmann::json::parse(w.slot_state_json())["slots"][1]["state"] == "staging");
  auto fin = run(abup_bin() + " finalize --disk " + shell_quote(w.disk().string()) + " --root " +
                 shell_quote(w.root().string()));
  CHECK(fin.exit_code != 0);
  CHECK(nlohmann::json::parse(w.slot_state_json())["pending"].is_null());
  same_booted(esp, before);

  REQUIRE(w.stage(cosi.string()).exit_code == 0);
  auto st = nlohmann::json::parse(w.slot_state_json());
  CHECK(st["slots"][1]["state"] == "staged");
  CHECK(st["slots"][1]["bootFiles"][0]["check"] == "ok");
  same_booted(esp, before);
}

TEST_CASE("power cut between a boot file's synced temp and its rename: one leftover, reclaimed") {
  World w;
  auto esp = node(w, "RequireBootFiles=yes\n");
  write_file(esp / "flatcar/vmlinuz-a", "factory kernel A");
  write_file(esp / "flatcar/vmlinuz-b", "old kernel B");
  const auto before = booted_kernel(esp);
  write_file(w.path("vmlinuz"), std::string(100000, 'k'));
  auto cosi =
      w.build_signed("k", "202607.03.0", "--boot-file vmlinuz=" + w.path("vmlinuz").string());
  auto cut = [&] {
    return run("ABUP_FAULT=boot-file-synced:1 " + abup_bin() + " stage --no-progress --disk " +
               shell_quote(w.disk().string()) + " --root " + shell_quote(w.root().string()) +
               " --keyring " + shell_quote(w.keyring().string()) + " --source " +
               shell_quote(cosi.string()));
  };
  auto listing = [&] {
    std::set<std::string> names;
    for (const auto& e : fs::directory_iterator(esp / "flatcar"))
      names.insert(e.path().filename().string());
    return names;
  };
  // Two stages cut at the same instant: the old kernel B is whole (the rename never happened),
  // and the second attempt reused the first one's temporary copy instead of adding another.
  for (int i = 0; i < 2; ++i) {
    auto r = cut();
    INFO(r.out);
    CHECK(r.exit_code == 128 + 9);
  }
  CHECK(read_file(esp / "flatcar/vmlinuz-b") == "old kernel B");
  CHECK(listing() == std::set<std::string>{"vmlinuz-a", "vmlinuz-b", "vmlinuz-b.abup-new"});
  CHECK(nlohmann::json::parse(w.slot_state_json())["slots"][1]["state"] == "staging");
  same_booted(esp, before);

  // The ESP has room for the new kernel once: its temporary copy fits only in the space the
  // leftover takes, which the re-run reclaims by overwriting it.
  auto r = run("ABUP_FAULT_ESP_FREE_BYTES=100000 " + abup_bin() + " stage --no-progress --disk " +
               shell_quote(w.disk().string()) + " --root " + shell_quote(w.root().string()) +
               " --keyring " + shell_quote(w.keyring().string()) + " --source " +
               shell_quote(cosi.string()));
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  CHECK(read_file(esp / "flatcar/vmlinuz-b") == read_file(w.path("vmlinuz")));
  CHECK(listing() == std::set<std::string>{"vmlinuz-a", "vmlinuz-b"});
  CHECK(nlohmann::json::parse(w.slot_state_json())["slots"][1]["bootFiles"][0]["check"] == "ok");
  same_booted(esp, before);
}

// Issue 14: a real UKI or initrd is 50-100 MB. Boot files are streamed through a temporary file
// in the state dir, so the stage's peak memory does not grow with them; before, the whole
// compressed entry and the whole decompressed file were held at once (peak above 2x the file).
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

TEST_CASE("a boot file larger than the memory budget lands byte-exact, peak RSS stays bounded") {
  World w;
  auto esp = node(w, "RequireBootFiles=yes\n");
  write_file(esp / "flatcar/vmlinuz-a", "factory kernel A");
  constexpr std::uint64_t kSize = 64ull << 20;
  run_ok("head -c " + std::to_string(kSize) + " /dev/urandom > " +
         shell_quote(w.path("vmlinuz").string()));
  auto cosi =
      w.build_signed("big", "202607.04.0", "--boot-file vmlinuz=" + w.path("vmlinuz").string());
  auto r = run("/usr/bin/time -f ABUP_PEAK_RSS_KIB=%M " + abup_bin() +
               " stage --no-progress --disk " + shell_quote(w.disk().string()) + " --root " +
               shell_quote(w.root().string()) + " --keyring " + shell_quote(w.keyring().string()) +
               " --source " + shell_quote(cosi.string()));
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  CHECK(fs::file_size(esp / "flatcar/vmlinuz-b") == kSize);
  CHECK(run("cmp " + shell_quote((esp / "flatcar/vmlinuz-b").string()) + " " +
            shell_quote(w.path("vmlinuz").string()))
            .exit_code == 0);
  const auto at = r.out.rfind("ABUP_PEAK_RSS_KIB=");
  REQUIRE(at != std::string::npos);
  const auto peak_kib = std::stoull(r.out.substr(at + 18));
  MESSAGE("abup stage peak RSS with a 64 MiB boot file: " << peak_kib << " KiB");
  // The /usr stage has its own budget; the boot file must add only its 1 MiB pieces.
  if (kSanitized)
    MESSAGE(
        "SKIPPED: the peak RSS bound (AddressSanitizer's quarantine and shadow memory "
        "count in RSS); the release build checks it");
  else
    CHECK(peak_kib * 1024 < kSize / 2);
  // The temporary copies had no name: nothing is left in the state dir.
  for (const auto& e : fs::recursive_directory_iterator(w.root()))
    CHECK(e.path().filename().string().find("abup-tmp") == std::string::npos);
}
