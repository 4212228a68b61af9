// Writers and the bootloader kept apart: a stage never writes a slot
// the bootloader is armed to boot or boots by default, `abup disarm` undoes an arming, a stage
// killed after a disarm leaves a torn slot nothing boots, and finalize re-reads the staged slot
// before arming it. Checked with cgpt, grub-editenv and the raw efivars files.
#include <doctest/doctest.h>

#include "lifecycle_steps.hpp"

using namespace abup::test;

namespace {

constexpr const char* kOld = "202501.01.0";

void stage_onto_armed(const std::string& backend) {
  Node n(backend);
  n.stage(kNew);
  REQUIRE(n.abup("finalize", "--operation-id op-1").exit_code == 0);
  const auto old = n.build(kOld, true);
  const auto bytes = n.slot_digest('B');
  const auto state = n.state_text();

  // Refused before its first write, whatever the moment of a kill would have been.
  auto r = n.stage_image(old, "--allow-downgrade", "ABUP_FAULT=chunk-written:2");
  INFO(r.out);
  CHECK(r.exit_code == 1);
  CHECK(r.out.find("is armed") != std::string::npos);
  CHECK(r.out.find("abup disarm") != std::string::npos);
  CHECK(n.slot_digest('B') == bytes);
  CHECK(n.state_text() == state);
  check_armed_b(n);

  // Another state directory has no pending record: the bootloader's own view refuses it.
  auto other = n.stage_image(
      old, "--allow-downgrade --state-dir " + shell_quote((n.root() / "other-state").string()));
  INFO(other.out);
  CHECK(other.exit_code == 1);
  CHECK(other.out.find("is armed") != std::string::npos);
  CHECK(n.slot_digest('B') == bytes);
  check_armed_b(n);

  // Disarmed: the booted slot boots again, the staged image stays staged.
  auto d = n.abup("disarm", "--json");
  INFO(d.out);
  REQUIRE(d.exit_code == 0);
  CHECK(d.out.find("\"Disarmed\"") != std::string::npos);
  check_b_never_booted(n);
  auto st = n.status();
  CHECK(st["pending"].is_null());
  CHECK(st["slots"][1]["state"] == "staged");
  CHECK(n.abup("disarm").out.find("nothing to disarm") != std::string::npos);

  // A stage killed mid-way leaves B torn, and nothing boots it.
  auto killed = n.stage_image(old, "--allow-downgrade", "ABUP_FAULT=chunk-written:2");
  INFO(killed.out);
  REQUIRE(killed.exit_code == 137);
  CHECK(n.slot_digest('B') != bytes);
  check_b_never_booted(n);
  CHECK(n.status()["slots"][1]["state"] == "staging");
  CHECK(n.abup("finalize").exit_code == 1);
  check_b_never_booted(n);

  // Finished, it is armed again as usual.
  auto done = n.stage_image(old, "--allow-downgrade");
  INFO(done.out);
  REQUIRE(done.exit_code == 0);
  auto f = n.abup("finalize", "--json");
  INFO(f.out);
  REQUIRE(f.exit_code == 0);
  check_armed_b(n);
  CHECK(n.status()["pending"]["targetVersion"] == kOld);
}

}  // namespace

TEST_CASE("stage refuses a slot finalize armed, disarm undoes the arming (gptprio)") {
  stage_onto_armed("gptprio");
}
TEST_CASE("stage refuses a slot finalize armed, disarm undoes the arming (grubenv)") {
  stage_onto_armed("grubenv");
}
TEST_CASE("stage refuses a slot finalize armed, disarm undoes the arming (uefi)") {
  stage_onto_armed("uefi");
}

TEST_CASE("without a booted slot, stage names what the bootloader boots and keeps off it") {
  Node n("gptprio");
  write_file(n.root() / "proc/cmdline", "console=ttyS0 root=LABEL=ROOT\n");
  const auto img = n.build(kNew);
  const auto a = n.slot_digest('A');

  auto r = n.stage_image(img);
  INFO(r.out);
  CHECK(r.exit_code == 1);
  CHECK(r.out.find("boots A next and A by default") != std::string::npos);
  CHECK(r.out.find("most likely B") != std::string::npos);

  auto onto_default = n.stage_image(img, "--slot A");
  INFO(onto_default.out);
  CHECK(onto_default.exit_code == 1);
  CHECK(onto_default.out.find("boots by default") != std::string::npos);
  CHECK(onto_default.out.find("--force-slot") != std::string::npos);
  CHECK(n.slot_digest('A') == a);
  CHECK(n.state_text().empty());

  auto b = n.stage_image(img, "--slot B");
  INFO(b.out);
  CHECK(b.exit_code == 0);
  CHECK(n.slot_digest('A') == a);

  auto forced = n.stage_image(img, "--slot A --force-slot");
  INFO(forced.out);
  CHECK(forced.exit_code == 0);
  CHECK(forced.out.find("WARNING: --force-slot: writing slot A") != std::string::npos);
  CHECK(n.slot_digest('A') != a);
}

TEST_CASE("booted into the armed slot before its commit, stage keeps off the fallback") {
  Node n("grubenv");
  n.stage(kNew);
  REQUIRE(n.abup("finalize").exit_code == 0);
  REQUIRE(n.reboot() == 'B');
  // GRUB's walk over ORDER spent B's one try.
  run_ok("grub-editenv " + shell_quote(n.grubenv().string()) + " set B_TRY=0");
  const auto a = n.slot_digest('A');
  auto r = n.stage_image(n.build("202608.01.0", true));
  INFO(r.out);
  CHECK(r.exit_code == 1);
  CHECK(r.out.find("run `abup commit` first") != std::string::npos);
  CHECK(n.slot_digest('A') == a);
  REQUIRE(n.abup("commit").exit_code == 0);
  CHECK(n.stage_image(n.build("202608.01.0", true)).exit_code == 0);
}

TEST_CASE("finalize re-reads the staged slot: a changed byte is refused and must be staged again") {
  Node n("gptprio");
  n.stage(kNew);
  // One byte of B, 1 MiB + 5 into the partition, changed behind abup's back.
  run_ok("set -e; d=" + shell_quote(n.disk().string()) +
         "; f=$(sgdisk -i 4 $d | awk '/First sector/{print $3}');"
         " printf '\\377' | dd of=$d bs=1 seek=$((f * 512 + 1048581)) conv=notrunc status=none");
  auto f = n.abup("finalize");
  INFO(f.out);
  CHECK(f.exit_code == 1);
  CHECK(f.out.find("changed since it was staged") != std::string::npos);
  CHECK(n.cgpt(kPartUsrB, "-T") == "0");
  CHECK(n.cgpt(kPartUsrB, "-P") == "0");
  auto st = n.status();
  CHECK(st["pending"].is_null());
  CHECK(st["slots"][1]["state"] == "failed");
  CHECK(st["slots"][1]["error"].get<std::string>().find("stage it again") != std::string::npos);
  CHECK(n.abup("finalize").exit_code == 1);  // failed: nothing staged

  n.stage(kNew);  // resumes: the changed chunk is found by its hash and written again
  auto again = n.abup("finalize");
  INFO(again.out);
  CHECK(again.exit_code == 0);
  check_armed_b(n);
}

TEST_CASE("rollback refuses the previous slot once a stage has written it") {
  Node n("gptprio");
  n.stage(kNew);
  finalize_reboot_commit(n);
  // A holds the previous release until a stage writes it; killed mid-way it is torn.
  auto killed = n.stage_image(n.build("202608.01.0", true), "", "ABUP_FAULT=chunk-written:2");
  REQUIRE(killed.exit_code == 137);
  auto r = n.abup("rollback");
  INFO(r.out);
  CHECK(r.exit_code == 1);
  CHECK(r.out.find("nothing to roll back to") != std::string::npos);
  CHECK(n.cgpt(kPartUsrA, "-T") == "0");
  CHECK(n.status()["next"] == "B");
}

TEST_CASE("disarm killed after the bootloader write: stage still refuses, disarm again finishes") {
  Node n("gptprio");
  n.stage(kNew);
  REQUIRE(n.abup("finalize").exit_code == 0);
  auto killed = n.abup("disarm", "", "ABUP_FAULT=disarm-backend:1");
  REQUIRE(killed.exit_code == 137);
  check_b_never_booted(n);
  CHECK_FALSE(n.status()["pending"].is_null());
  // The pending record alone keeps a stage off B.
  auto r = n.stage_image(n.build(kOld, true), "--allow-downgrade");
  INFO(r.out);
  CHECK(r.exit_code == 1);
  CHECK(r.out.find("abup disarm") != std::string::npos);
  auto again = n.abup("disarm", "--json");
  INFO(again.out);
  CHECK(again.exit_code == 0);
  CHECK(again.out.find("\"Disarmed\"") != std::string::npos);
  CHECK(n.status()["pending"].is_null());
  CHECK(n.status()["slots"][1]["state"] == "staged");
  check_b_never_booted(n);
}
