// Without --disk, abup finds the running system's boot disk from the PARTUUID its kernel command
// line names: here a loop device over a Flatcar-layout image (with fresh random PARTUUIDs, so a
// test disk attached elsewhere at the same time cannot answer for it).
#include <doctest/doctest.h>
#include <unistd.h>

#include "support/node.hpp"

using namespace abup::test;

namespace {

constexpr const char* kNew = "202607.02.0";

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

std::string partuuid(const std::filesystem::path& disk, int part) {
  auto info = run_ok("sgdisk -i " + std::to_string(part) + " " + shell_quote(disk.string()));
  auto pos = info.find("Partition unique GUID: ");
  REQUIRE(pos != std::string::npos);
  std::string g = trim(info.substr(pos + 23, 36));
  for (char& c : g) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return g;
}

// A loop device with partitions over `image`, detached when the object dies.
class LoopDevice {
 public:
  explicit LoopDevice(const std::filesystem::path& image) {
    dev_ = trim(run_ok("losetup -P --find --show " + shell_quote(image.string())));
    // Kernels without a GPT partition parser in the loop driver's scan: tell them the table.
    if (!std::filesystem::exists(dev_ + "p" + std::to_string(kPartUsrB)))
      run_ok("partx -a " + dev_ + " 2>/dev/null || partx -u " + dev_);
    REQUIRE_MESSAGE(std::filesystem::exists(dev_ + "p" + std::to_string(kPartUsrB)),
                    "no partition nodes for ", dev_);
  }
  ~LoopDevice() {
    if (!dev_.empty()) run("losetup -d " + dev_);
  }
  LoopDevice(const LoopDevice&) = delete;
  LoopDevice& operator=(const LoopDevice&) = delete;
  [[nodiscard]] const std::string& path() const { return dev_; }

 private:
  std::string dev_;
};

bool can_use_loop_devices() {
  if (::geteuid() != 0) {
    MESSAGE("SKIPPED: needs root for loop devices");
    return false;
  }
  if (!have_program("losetup") || !have_program("partx")) {
    MESSAGE("SKIPPED: needs losetup and partx (util-linux)");
    return false;
  }
  if (run("losetup -f").exit_code != 0) {
    MESSAGE("SKIPPED: no free loop device");
    return false;
  }
  return true;
}

}  // namespace

TEST_CASE("without --disk: the boot disk is the loop device holding the booted PARTUUID") {
  if (!can_use_loop_devices()) return;
  Node n("gptprio");
  run_ok("sgdisk -u " + std::to_string(kPartUsrA) + ":R -u " + std::to_string(kPartUsrB) + ":R " +
         shell_quote(n.disk().string()));
  const std::string a = partuuid(n.disk(), kPartUsrA);
  LoopDevice loop(n.disk());
  write_file(n.root() / "proc/cmdline",
             "BOOT_IMAGE=/flatcar/vmlinuz-a mount.usr=/dev/mapper/usr verity.usr=PARTUUID=" + a +
                 " rootflags=rw console=ttyS0\n");
  n.omit_disk_option();
  auto st = n.status();
  CHECK(st["disk"] == loop.path());
  CHECK(st["booted"] == "A");
  CHECK(st["slots"][0]["partuuid"] == a);

  n.stage(kNew);
  auto f = n.abup("finalize");
  INFO(f.out);
  REQUIRE(f.exit_code == 0);
  CHECK(run_ok("cgpt show -i " + std::to_string(kPartUsrB) + " -T " + loop.path()) == "1\n");
  CHECK(n.status()["next"] == "B");
}

TEST_CASE("without --disk: a PARTUUID no block device has is named in the error") {
  Node n("gptprio");
  const std::string missing =
      "0badc0de-0000-4000-8000-" + std::to_string(::getpid() % 100000 + 100000) + "000000";
  write_file(n.root() / "proc/cmdline", "mount.usr=PARTUUID=" + missing + " ro\n");
  n.omit_disk_option();
  for (const char* cmd : {"status", "finalize", "commit", "rollback"}) {
    auto r = n.abup(cmd);
    INFO(cmd, ": ", r.out);
    CHECK(r.exit_code != 0);
    CHECK(r.out.find("no block device has PARTUUID " + missing) != std::string::npos);
    CHECK(r.out.find("--disk") != std::string::npos);
  }
  write_file(n.root() / "proc/cmdline", "console=ttyS0 ro\n");
  auto r = n.abup("status");
  CHECK(r.exit_code != 0);
  CHECK(r.out.find("names no /usr partition by PARTUUID") != std::string::npos);
}
