// The slot lifecycle with the real binary and the real boot metadata: stage, finalize, a
// simulated reboot (new boot id, the command line naming the slot the bootloader picks), commit;
// the bootloader falling back; rollback; refusals that write nothing. Checked against cgpt and
// grub-editenv, not against abup's own reading.
#include <doctest/doctest.h>

#include "lifecycle_steps.hpp"
#include "support/private_bus.hpp"

using namespace abup::test;
using nlohmann::json;

namespace {

std::size_t lines(const std::string& text) {
  return static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n'));
}

// Runs `cmd`, which must succeed, and returns the outcome it printed (--json).
json succeeded(const Node& n, const std::string& cmd, const std::string& extra,
               const std::string& env = "") {
  auto r = n.abup(cmd, extra, env);
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  return outcome(r);
}

void check_committed(const Node& n, char slot) {
  const int part = slot == 'A' ? kPartUsrA : kPartUsrB;
  if (n.backend() == "gptprio") {
    CHECK(n.cgpt(part, "-S") == "1");
    CHECK(n.cgpt(part, "-T") == "0");
    CHECK(std::stoi(n.cgpt(part, "-P")) >
          std::stoi(n.cgpt(part == kPartUsrA ? kPartUsrB : kPartUsrA, "-P")));
  } else if (n.backend() == "uefi") {
    // First in BootOrder, no one-shot left.
    CHECK_FALSE(std::filesystem::exists(efi_global(n, "BootNext")));
    CHECK(n.uefi_firmware_next(false) == slot);
  } else {
    check_grubenv(n, {std::string(1, slot) + "_OK=1", std::string(1, slot) + "_TRY=0"});
  }
}

// stage → finalize → reboot into B → commit; returns with B booted and committed.
void update_to_b(Node& n) {
  n.stage(kNew);
  finalize_reboot_commit(n, "--json --operation-id op-1");
}

// Reboots into the armed `slot` and commits it there; returns the status after, `slot` booted
// and the default.
json reboot_and_commit(Node& n, char slot) {
  REQUIRE(n.reboot() == slot);
  CHECK(succeeded(n, "commit", "--json")["outcome"] == "Committed");
  check_committed(n, slot);
  auto st = n.status();
  CHECK(st["booted"] == std::string(1, slot));
  CHECK(st["default"] == std::string(1, slot));
  return st;
}

void whole_cycle(const std::string& backend) {
  Node n(backend);
  n.stage(kNew);
  auto fo = succeeded(n, "finalize", "--json --operation-id op-1");
  CHECK(fo["outcome"] == "Armed");
  CHECK(fo["toSlot"] == "B");
  CHECK(fo["toVersion"] == kNew);
  CHECK(fo["fromVersion"] == kRunning);
  check_armed_b(n);
  auto st = n.status();
  CHECK(st["slots"][1]["state"] == "armed");
  // uefi keeps the armed entry in BootOrder (behind the default), so the firmware may boot it.
  CHECK(st["slots"][1]["good"] == (backend == "uefi"));
  CHECK(st["next"] == "B");
  CHECK(st["default"] == "A");
  CHECK(st["booted"] == "A");
  CHECK(st["pending"]["operationId"] == "op-1");
  CHECK(st["pending"]["targetVersion"] == kNew);

  // Before the reboot: nothing changes.
  const auto before = n.state_text();
  auto early = n.abup("commit");
  INFO(early.out);
  CHECK(early.exit_code == 4);  // not rebooted yet (2 is a usage error)
  CHECK(n.state_text() == before);
  check_armed_b(n);

  st = reboot_and_commit(n, 'B');
  CHECK(st["next"] == "B");
  CHECK(st["pending"].is_null());
  CHECK(st["slots"][1]["state"] == "committed");
  CHECK(st["slots"][1]["version"] == kNew);
  CHECK(st["slots"][1]["good"] == true);
  CHECK(st["slots"][0]["state"] == "committed");
  CHECK(st["slots"][0]["version"] == kRunning);
  // The existing fields are kept.
  for (const char* k : {"label", "partuuid", "booted", "state", "version", "name", "sizeBytes"})
    CHECK(st["slots"][1].contains(k));

  auto again = n.abup("commit", "--json");
  CHECK(again.exit_code == 0);
  CHECK(outcome(again)["outcome"] == "NothingPending");

  auto h = run(abup_bin() + " history --json --root " + shell_quote(n.root().string()));
  REQUIRE(h.exit_code == 0);
  auto hist = json::parse(h.out);
  REQUIRE(hist.size() == 2);
  CHECK(hist[0]["kind"] == "finalize");
  CHECK(hist[0]["outcome"] == "Armed");
  CHECK(hist[1]["kind"] == "commit");
  CHECK(hist[1]["outcome"] == "Committed");
  CHECK(hist[1]["operationId"] == "op-1");
  CHECK(hist[1]["fromSlot"] == "A");
  CHECK(hist[1]["toSlot"] == "B");
  CHECK(hist[1]["toVersion"] == kNew);
}

void failed_boot(const std::string& backend) {
  Node n(backend);
  n.stage(kNew);
  REQUIRE(n.abup("finalize").exit_code == 0);
  // The new slot did not come up: the bootloader fell back to A.
  if (backend == "uefi") {
    // The firmware boots B once (BootNext consumed); it fails; the next boot takes BootOrder.
    REQUIRE(n.uefi_firmware_next(true) == 'B');
    REQUIRE(n.uefi_firmware_next(true) == 'A');
  }
  n.reboot_into('A', kRunning);
  auto c = n.abup("commit", "--json");
  INFO(c.out);
  REQUIRE(c.exit_code == 3);
  CHECK(outcome(c)["outcome"] == "TargetBootFailed");
  auto st = n.status();
  CHECK(st["slots"][1]["state"] == "failed");
  CHECK(st["slots"][1]["version"] == kNew);
  CHECK(st["slots"][1]["good"] == false);
  CHECK(st["slots"][1]["error"].get<std::string>().find("TargetBootFailed") != std::string::npos);
  CHECK(st["failedVersions"][0]["version"] == kNew);
  CHECK(st["next"] == "A");
  CHECK(st["pending"].is_null());
  check_b_never_booted(n);
  CHECK(lines(n.history_text()) == 2);

  // The failed version is not armed again blindly.
  n.stage(kNew);
  const auto state = n.state_text();
  auto again = n.abup("finalize");
  CHECK(again.exit_code == 1);
  CHECK(again.out.find("already failed") != std::string::npos);
  CHECK(n.state_text() == state);
  CHECK(n.abup("finalize", "--allow-failed-version").exit_code == 0);
}

void rollback_cycle(const std::string& backend) {
  Node n(backend);
  update_to_b(n);
  auto ro = succeeded(n, "rollback", "--json");
  CHECK(ro["kind"] == "rollback");
  CHECK(ro["toSlot"] == "A");
  CHECK(ro["toVersion"] == kRunning);
  auto st = n.status();
  CHECK(st["next"] == "A");
  CHECK(st["default"] == "B");
  CHECK(st["pending"]["kind"] == "rollback");
  st = reboot_and_commit(n, 'A');
  CHECK(st["slots"][0]["version"] == kRunning);
  CHECK(st["slots"][1]["state"] == "committed");
  CHECK(st["slots"][1]["version"] == kNew);
  CHECK(st["slots"][0]["state"] == "committed");
  CHECK(st["slots"][0]["good"] == true);
  CHECK(lines(n.history_text()) == 4);
}

std::string boot_metadata(const Node& n) {
  return run_ok("cgpt show " + shell_quote(n.disk().string())) + n.grub_list();
}

void refusals(const std::string& backend) {
  Node n(backend);
  const auto meta = boot_metadata(n);
  auto r = n.abup("rollback");
  INFO(r.out);
  CHECK(r.exit_code == 1);
  CHECK(r.out.find("nothing to roll back to") != std::string::npos);
  auto f = n.abup("finalize");
  INFO(f.out);
  CHECK(f.exit_code == 1);
  CHECK(f.out.find("nothing staged") != std::string::npos);
  CHECK(n.state_text().empty());
  CHECK(n.history_text().empty());
  CHECK(boot_metadata(n) == meta);

  n.stage(kNew);
  const auto state = n.state_text();
  auto v = n.abup("finalize", "--version 202612.01.0");
  CHECK(v.exit_code == 1);
  CHECK(v.out.find("not the requested") != std::string::npos);
  CHECK(n.state_text() == state);
  CHECK(boot_metadata(n) == meta);

  // --reboot without a reboot command and without logind on the bus: armed, said so, non-zero.
  {
    PrivateBus bus(PrivateBusOptions().only("systemd1"));
    auto nr = n.abup("finalize", "--reboot", bus.env());
    INFO(nr.out);
    CHECK(nr.exit_code == 1);
    CHECK(nr.out.find("asking logind to reboot failed") != std::string::npos);
    CHECK(nr.out.find("org.freedesktop.DBus.Error.ServiceUnknown") != std::string::npos);
    CHECK(nr.out.find("the slot stays armed") != std::string::npos);
    CHECK(n.status()["slots"][1]["state"] == "armed");
    CHECK(bus.records().empty());
  }
  // A failing reboot command: its exit status as the daemon reports one (the CLI ran it with
  // system() and printed the raw wait status, 256 for 1), and the slot stays armed.
  auto fr = n.abup("finalize", "--reboot --reboot-command false");
  INFO(fr.out);
  CHECK(fr.exit_code == 1);
  CHECK(fr.out.find("[Reboot] Command='false' failed (status 1)") != std::string::npos);
  CHECK(fr.out.find("the slot stays armed") != std::string::npos);
  CHECK(n.status()["slots"][1]["state"] == "armed");
  // A second finalize while armed is the same operation, and the reboot command runs.
  auto marker = n.root() / "rebooted";
  auto wr = n.abup("finalize", "--reboot --reboot-command " +
                                   shell_quote("touch " + shell_quote(marker.string())));
  INFO(wr.out);
  CHECK(wr.exit_code == 0);
  CHECK(std::filesystem::exists(marker));
  CHECK(lines(n.history_text()) == 1);
  // Status keeps working when the backend cannot be read.
  std::filesystem::remove(n.grubenv());
  auto s = run(abup_bin() + " status --json --boot-backend grubenv --disk " +
               shell_quote(n.disk().string()) + " --root " + shell_quote(n.root().string()));
  INFO(s.out);
  REQUIRE(s.exit_code == 0);
  auto sj = json::parse(s.out);
  CHECK(sj["backendError"].is_string());
  CHECK(sj["next"].is_null());
  CHECK(sj["slots"][1]["state"] == "armed");
}

// --reboot without a reboot command: logind is asked over D-Bus, once armed, non-interactively.
void reboot_through_logind(const std::string& backend, const std::string& cmd) {
  Node n(backend);
  if (cmd == "rollback")
    update_to_b(n);
  else
    n.stage(kNew);
  PrivateBus bus;
  CHECK(succeeded(n, cmd, "--reboot --json", bus.env())["outcome"] == "Armed");
  auto calls = bus.calls("org.freedesktop.login1.Manager.Reboot");
  REQUIRE(calls.size() == 1);
  CHECK(calls[0]["signature"] == "b");
  CHECK(calls[0]["args"] == json::array({false}));
  CHECK(bus.records().size() == 1);
  CHECK(n.status()["pending"]["kind"] == cmd);
  // A configured command wins over logind.
  auto marker = n.root() / "rebooted";
  auto c = n.abup(
      cmd, "--reboot --reboot-command " + shell_quote("touch " + shell_quote(marker.string())),
      bus.env());
  INFO(c.out);
  CHECK(c.exit_code == 0);
  CHECK(std::filesystem::exists(marker));
  CHECK(bus.calls("org.freedesktop.login1.Manager.Reboot").size() == 1);
}

// A command that cannot act (another abup holds the state lock, or the boot metadata is bad)
// says why and writes neither the state nor the boot metadata.
void refused_without_writes(const std::string& backend) {
  Node n(backend);
  n.stage(kNew);
  const auto state = n.state_text();
  const std::string meta_file =
      backend == "grubenv" ? n.grubenv().string() : efi_global(n, "BootOrder").string();
  if (backend == "grubenv")
    run_ok("truncate -s 2048 " + shell_quote(meta_file));
  else
    write_file(meta_file, std::string("\x07\x00\x00\x00\x01", 5));  // half a boot number
  const auto meta = read_file(meta_file);
  auto f = n.abup("finalize");
  INFO(f.out);
  CHECK(f.exit_code != 0);
  CHECK(f.out.find(backend == "grubenv" ? "2048" : "BootOrder") != std::string::npos);
  CHECK(n.state_text() == state);
  CHECK(read_file(meta_file) == meta);
  CHECK(n.history_text().empty());
}

void forced_rollback(const std::string& backend) {
  Node n(backend);
  auto r = n.abup("rollback", "--force --json");
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("WARNING: --force") != std::string::npos);
  // abup knows no version for a slot it never saw committed: the message says so.
  CHECK(r.out.find("with  (") == std::string::npos);
  CHECK(r.out.find("with an image of unknown version") != std::string::npos);
  CHECK(n.status()["pending"]["kind"] == "rollback");
}

}  // namespace

TEST_CASE("gptprio: stage, finalize, reboot, commit") {
  whole_cycle("gptprio");
}
TEST_CASE("grubenv: stage, finalize, reboot, commit") {
  whole_cycle("grubenv");
}
TEST_CASE("gptprio: the new slot fails to boot, the fall-back is recorded") {
  failed_boot("gptprio");
}
TEST_CASE("grubenv: the new slot fails to boot, the fall-back is recorded") {
  failed_boot("grubenv");
}
TEST_CASE("gptprio: rollback, reboot, commit on the old slot") {
  rollback_cycle("gptprio");
}
TEST_CASE("grubenv: rollback, reboot, commit on the old slot") {
  rollback_cycle("grubenv");
}
TEST_CASE("gptprio: refusals write nothing") {
  refusals("gptprio");
}
TEST_CASE("grubenv: refusals write nothing") {
  refusals("grubenv");
}
TEST_CASE("gptprio: finalize --reboot asks logind over D-Bus") {
  reboot_through_logind("gptprio", "finalize");
}
TEST_CASE("grubenv: rollback --reboot asks logind over D-Bus") {
  reboot_through_logind("grubenv", "rollback");
}
TEST_CASE("grubenv: a grubenv of the wrong size is refused before any write") {
  refused_without_writes("grubenv");
}
TEST_CASE("uefi: garbage in efivars is refused before any write") {
  refused_without_writes("uefi");
}
TEST_CASE("gptprio: a GPT with a damaged primary copy is read from the backup and repaired") {
  Node n("gptprio");
  n.stage(kNew);
  const auto verify = "sgdisk -v " + shell_quote(n.disk().string()) + " 2>&1";
  run_ok("dd if=/dev/zero of=" + shell_quote(n.disk().string()) +
         " bs=512 seek=1 count=1 conv=notrunc status=none");
  REQUIRE(run(verify).out.find("Main header: ERROR") != std::string::npos);
  auto f = n.abup("finalize");
  INFO(f.out);
  REQUIRE(f.exit_code == 0);
  auto v = run(verify);
  INFO(v.out);
  CHECK(v.out.find("No problems found") != std::string::npos);
  CHECK(v.out.find("Caution") == std::string::npos);
  check_armed_b(n);
}
TEST_CASE("gptprio: rollback while another abup holds the lock is refused, nothing written") {
  Node n("gptprio");
  update_to_b(n);
  const auto state = n.state_text();
  const auto meta = boot_metadata(n);
  auto r = n.abup("rollback", "", "flock " + shell_quote((n.state_dir() / "lock").string()));
  INFO(r.out);
  CHECK(r.exit_code == 1);
  CHECK(r.out.find("another abup process holds") != std::string::npos);
  CHECK(n.state_text() == state);
  CHECK(boot_metadata(n) == meta);
  CHECK(n.abup("rollback").exit_code == 0);  // and works once the lock is free
}
TEST_CASE("gptprio: rollback --force arms a slot never committed, loudly") {
  forced_rollback("gptprio");
}

TEST_CASE("uefi: stage, finalize, reboot, commit over an efivars directory") {
  whole_cycle("uefi");
}
TEST_CASE("uefi: the new slot fails to boot, the fall-back is recorded") {
  failed_boot("uefi");
}
TEST_CASE("uefi: rollback, reboot, commit on the old slot") {
  rollback_cycle("uefi");
}
