// SIGKILL between the persisted steps of finalize, commit and rollback (ABUP_FAULT=<point>:1),
// then the same command again: the end state is the one an uninterrupted run gives, with one
// history line per operation step.
#include <doctest/doctest.h>

#include "support/node.hpp"

using namespace abup::test;
using nlohmann::json;

namespace {

constexpr const char* kNew = "202607.02.0";

std::size_t history_lines(const Node& n, const std::string& kind) {
  auto text = n.history_text();
  std::size_t count = 0, pos = 0;
  while ((pos = text.find("\"kind\":\"" + kind + "\"", pos)) != std::string::npos) {
    ++count;
    ++pos;
  }
  return count;
}

void killed_finalize(const std::string& backend, const std::string& point) {
  CAPTURE(point);
  Node n(backend);
  n.stage(kNew);
  auto k = n.abup("finalize", "", "ABUP_FAULT=" + point + ":1");
  INFO(k.out);
  REQUIRE(k.exit_code == 137);
  // Whole state either way; the bootloader already holds the one try.
  auto st = n.status();
  CHECK(st["next"] == "B");
  auto again = n.abup("finalize");
  INFO(again.out);
  REQUIRE(again.exit_code == 0);
  st = n.status();
  CHECK(st["slots"][1]["state"] == "armed");
  CHECK(st["pending"]["targetVersion"] == kNew);
  CHECK(history_lines(n, "finalize") == 1);
  REQUIRE(n.reboot() == 'B');
  auto c = n.abup("commit");
  INFO(c.out);
  CHECK(c.exit_code == 0);
  CHECK(n.status()["slots"][1]["good"] == true);
}

void killed_commit(const std::string& backend, const std::string& point, bool fall_back) {
  CAPTURE(point);
  CAPTURE(fall_back);
  Node n(backend);
  n.stage(kNew);
  REQUIRE(n.abup("finalize").exit_code == 0);
  if (fall_back) {
    // B did not come up; uefi: its one-shot BootNext was consumed by that boot.
    if (backend == "uefi") REQUIRE(n.uefi_firmware_next(true) == 'B');
    // systemd-boot deleted LoaderEntryOneShot as it booted B.
    if (backend == "systemd-boot") REQUIRE(n.systemd_boot_next(true) == 'B');
    n.reboot_into('A', kRunning);
  } else
    REQUIRE(n.reboot() == 'B');
  auto k = n.abup("commit", "", "ABUP_FAULT=" + point + ":1");
  INFO(k.out);
  REQUIRE(k.exit_code == 137);
  CHECK(n.status()["pending"].is_object());  // the state write comes last
  auto again = n.abup("commit");
  INFO(again.out);
  REQUIRE(again.exit_code == (fall_back ? 3 : 0));
  auto st = n.status();
  CHECK(st["pending"].is_null());
  CHECK(st["slots"][1]["state"] == (fall_back ? "failed" : "committed"));
  CHECK(st["slots"][1]["good"] == !fall_back);
  CHECK(st["default"] == (fall_back ? "A" : "B"));
  CHECK(history_lines(n, "commit") == 1);
  CHECK(n.abup("commit").exit_code == 0);  // nothing left to do
}

// Updated to B and committed, then a rollback to A killed at `point` and run again.
void killed_rollback(const std::string& backend, const std::string& point) {
  CAPTURE(point);
  Node n(backend);
  n.stage(kNew);
  REQUIRE(n.abup("finalize").exit_code == 0);
  REQUIRE(n.reboot() == 'B');
  REQUIRE(n.abup("commit").exit_code == 0);
  auto k = n.abup("rollback", "", "ABUP_FAULT=" + point + ":1");
  INFO(k.out);
  REQUIRE(k.exit_code == 137);
  auto st = n.status();
  CHECK(st["next"] == "A");  // the bootloader already holds the one try
  CHECK(st["default"] == "B");
  auto again = n.abup("rollback");
  INFO(again.out);
  REQUIRE(again.exit_code == 0);
  st = n.status();
  CHECK(st["slots"][0]["state"] == "armed");
  CHECK(st["pending"]["kind"] == "rollback");
  CHECK(st["pending"]["targetVersion"] == kRunning);
  CHECK(history_lines(n, "rollback") == 1);
  // A third run is the same operation, not a new one.
  const auto id = st["pending"]["operationId"];
  REQUIRE(n.abup("rollback").exit_code == 0);
  CHECK(n.status()["pending"]["operationId"] == id);
  CHECK(history_lines(n, "rollback") == 1);
  REQUIRE(n.reboot() == 'A');
  auto c = n.abup("commit");
  INFO(c.out);
  CHECK(c.exit_code == 0);
  st = n.status();
  CHECK(st["default"] == "A");
  CHECK(st["slots"][0]["good"] == true);
  CHECK(st["slots"][0]["state"] == "committed");
  CHECK(st["slots"][1]["state"] == "committed");
}

}  // namespace

TEST_CASE("gptprio: killed during finalize, finalize again") {
  for (const char* p : {"finalize-armed", "finalize-saved"}) killed_finalize("gptprio", p);
}
TEST_CASE("grubenv: killed during finalize, finalize again") {
  for (const char* p : {"finalize-armed", "finalize-saved"}) killed_finalize("grubenv", p);
}
TEST_CASE("gptprio: killed during commit, commit again") {
  for (bool fb : {false, true})
    for (const char* p : {"commit-backend", "commit-history"}) killed_commit("gptprio", p, fb);
}
TEST_CASE("grubenv: killed during commit, commit again") {
  for (bool fb : {false, true})
    for (const char* p : {"commit-backend", "commit-history"}) killed_commit("grubenv", p, fb);
}
TEST_CASE("uefi: killed during finalize, finalize again") {
  for (const char* p : {"finalize-armed", "finalize-saved"}) killed_finalize("uefi", p);
}
TEST_CASE("uefi: killed during commit, commit again") {
  for (bool fb : {false, true})
    for (const char* p : {"commit-backend", "commit-history"}) killed_commit("uefi", p, fb);
}
TEST_CASE("gptprio: killed during rollback, rollback again") {
  for (const char* p : {"rollback-armed", "rollback-saved"}) killed_rollback("gptprio", p);
}
TEST_CASE("grubenv: killed during rollback, rollback again") {
  for (const char* p : {"rollback-armed", "rollback-saved"}) killed_rollback("grubenv", p);
}
TEST_CASE("uefi: killed during rollback, rollback again") {
  for (const char* p : {"rollback-armed", "rollback-saved"}) killed_rollback("uefi", p);
}
TEST_CASE("systemd-boot: killed during finalize, finalize again") {
  for (const char* p : {"finalize-armed", "finalize-saved"}) killed_finalize("systemd-boot", p);
}
TEST_CASE("systemd-boot: killed during commit, commit again") {
  for (bool fb : {false, true})
    for (const char* p : {"commit-backend", "commit-history"}) killed_commit("systemd-boot", p, fb);
}
TEST_CASE("systemd-boot: killed during rollback, rollback again") {
  for (const char* p : {"rollback-armed", "rollback-saved"}) killed_rollback("systemd-boot", p);
}
// A power cut after each efivars write of finalize, commit and rollback (ABUP_FAULT=boot-write:N):
// what systemd-boot boots is the old slot or the new one, and the same command finishes the job.
TEST_CASE("systemd-boot: killed after each LoaderEntry* write, the command again finishes") {
  for (const char* cmd : {"finalize", "commit", "rollback"}) {
    for (int nth = 1; nth <= 2; ++nth) {
      CAPTURE(cmd);
      CAPTURE(nth);
      Node n("systemd-boot");
      n.stage(kNew);
      if (std::string(cmd) != "finalize") {
        REQUIRE(n.abup("finalize").exit_code == 0);
        REQUIRE(n.reboot() == 'B');
      }
      if (std::string(cmd) == "rollback") REQUIRE(n.abup("commit").exit_code == 0);
      auto k = n.abup(cmd, "", "ABUP_FAULT=boot-write:" + std::to_string(nth));
      INFO(k.out);
      if (k.exit_code != 137) continue;  // fewer writes than nth: nothing to cut
      const char next = n.systemd_boot_next(false);
      CHECK((next == 'A' || next == 'B'));
      auto again = n.abup(cmd);
      INFO(again.out);
      REQUIRE(again.exit_code == 0);
      const auto st = n.status();
      if (std::string(cmd) == "commit") {
        CHECK(st["default"] == "B");
        CHECK(st["slots"][1]["good"] == true);
      } else {
        CHECK(st["next"] == (std::string(cmd) == "finalize" ? "B" : "A"));
        CHECK(n.systemd_boot_next(false) == (std::string(cmd) == "finalize" ? 'B' : 'A'));
      }
    }
  }
}
