// What the lifecycle tests share: the version they stage, the steps of an update, and what the
// bootloader metadata says about slot B, read by the real tools (cgpt, grub-editenv, efivars).
#pragma once

#include <doctest/doctest.h>

#include <initializer_list>
#include <string>

#include "support/node.hpp"

namespace abup::test {

// The version the tests stage onto B.
inline constexpr const char* kNew = "202607.02.0";
// The GUID of the EFI global variables (BootNext-..., BootOrder-...).
inline constexpr const char* kGlobal = "8be4df61-93ca-11d2-aa0d-00e098032b8c";

inline std::filesystem::path efi_global(const Node& n, const std::string& name) {
  return n.efivars() / (name + "-" + kGlobal);
}

// The outcome object a --json command printed.
inline nlohmann::json outcome(const RunResult& r) {
  auto brace = r.out.find('{');
  REQUIRE_MESSAGE(brace != std::string::npos, r.out);
  return nlohmann::json::parse(r.out.substr(brace, r.out.rfind('}') - brace + 1));
}

// After a stage: finalize (with `finalize_extra`), reboot into B, commit there.
inline void finalize_reboot_commit(Node& n, const std::string& finalize_extra = "") {
  auto f = n.abup("finalize", finalize_extra);
  INFO(f.out);
  REQUIRE(f.exit_code == 0);
  REQUIRE(n.reboot() == 'B');
  auto c = n.abup("commit");
  INFO(c.out);
  REQUIRE(c.exit_code == 0);
}

// grub-editenv's listing of the grubenv holds each of `entries` (one assertion each).
inline void check_grubenv(const Node& n, std::initializer_list<std::string> entries) {
  auto env = n.grub_list();
  INFO(env);
  for (const auto& entry : entries) CHECK_MESSAGE(env.find(entry) != std::string::npos, entry);
}

// B armed for one try, A still good.
inline void check_armed_b(const Node& n) {
  if (n.backend() == "gptprio") {
    CHECK(n.cgpt(kPartUsrB, "-T") == "1");
    CHECK(n.cgpt(kPartUsrB, "-S") == "0");
    CHECK(std::stoi(n.cgpt(kPartUsrB, "-P")) > std::stoi(n.cgpt(kPartUsrA, "-P")));
    CHECK(n.cgpt(kPartUsrA, "-S") == "1");
  } else if (n.backend() == "uefi") {
    CHECK(std::filesystem::exists(efi_global(n, "BootNext")));
    CHECK(n.uefi_firmware_next(false) == 'B');
  } else {
    check_grubenv(n, {"ORDER=B A", "B_OK=0", "B_TRY=1", "A_OK=1"});
  }
}

// Nothing boots B: GRUB's gptprio.next, the grub.cfg walk over ORDER, or the firmware.
inline void check_b_never_booted(const Node& n) {
  if (n.backend() == "gptprio") {
    CHECK(n.cgpt(kPartUsrB, "-P") == "0");
    CHECK(n.cgpt(kPartUsrB, "-T") == "0");
    CHECK(n.cgpt(kPartUsrB, "-S") == "0");
    CHECK(n.cgpt(kPartUsrA, "-S") == "1");
    run_ok("sgdisk -v " + shell_quote(n.disk().string()));
  } else if (n.backend() == "uefi") {
    CHECK(n.uefi_firmware_next(false) == 'A');
    CHECK_FALSE(std::filesystem::exists(efi_global(n, "BootNext")));
  } else {
    check_grubenv(n, {"B_OK=0", "B_TRY=0", "A_OK=1"});
  }
  auto st = n.status();
  CHECK(st["next"] == "A");
  CHECK(st["default"] == "A");
}

}  // namespace abup::test
