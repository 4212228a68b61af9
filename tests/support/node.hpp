// A node for lifecycle tests: a Flatcar-layout disk (sgdisk, cgpt), a running-system tree booted
// from USR-A, a GRUB environment block made by grub-editenv, signed images built by the real
// abup-image; abup runs as the real binary with the chosen boot backend.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "support/disk.hpp"
#include "support/util.hpp"

namespace abup::test {

inline constexpr const char* kRunning = "202601.01.0";

class Node {
 public:
  explicit Node(std::string backend);

  std::filesystem::path disk() const { return tmp_ / "disk.img"; }
  std::filesystem::path root() const { return tmp_ / "root"; }
  std::filesystem::path state_dir() const { return root() / "var/lib/abup"; }
  std::filesystem::path grubenv() const { return root() / "boot/grub/grubenv"; }
  const std::string& backend() const { return backend_; }

  // Let abup find the boot disk itself (no --disk) from here on, e.g. for a loop device.
  void omit_disk_option() { disk_option_ = false; }

  // The node's ESP (ROOT/boot/efi, named by [Boot] ESP= in ROOT/etc/abup/abup.conf).
  std::filesystem::path esp() const { return root() / "boot/efi"; }
  // The [Boot] section a configuration of this node needs (ESP=), for tests writing their own.
  static std::string boot_section() { return "[Boot]\nESP=/boot/efi\n"; }
  // abup-image build options for the boot files the backend boots the slot with (gptprio:
  // vmlinuz; uefi: uki; systemd-boot: uki, addon-a, addon-b; grubenv: none: GRUB reads the
  // kernel from inside the slot), so images stage under [Boot] RequireBootFiles=auto.
  std::string boot_file_args() const;

  // Builds, signs and stages an image of `version` (on the slot not booted).
  void stage(const std::string& version);
  // Builds and signs images/VERSION.cosi; `other_content`: from a second /usr image whose
  // bytes differ from the first one's; `extra`: more abup-image build options.
  std::filesystem::path build(const std::string& version, bool other_content = false,
                              const std::string& extra = "");
  // `abup stage --no-progress --keyring --source IMAGE EXTRA` through abup(), nothing checked.
  RunResult stage_image(const std::filesystem::path& image, const std::string& extra = "",
                        const std::string& env = "") const;
  // SHA-256 of a slot's whole partition ('A' or 'B'), read from the disk image.
  std::string slot_digest(char slot) const;
  // `abup CMD --disk --root --boot-backend EXTRA`, with an optional environment prefix.
  RunResult abup(const std::string& cmd, const std::string& extra = "",
                 const std::string& env = "") const;
  nlohmann::json status() const;  // `abup status --json`
  // A reboot: a new boot id, and the kernel command line naming `slot` (and os-release its
  // version).
  void reboot_into(char slot, const std::string& version);
  // The reboot the bootloader does: into what `abup status --json` says boots next, running
  // the version status gives that slot. With uefi the firmware's own choice is read from the
  // efivars files (BootNext, consumed, else BootOrder[0]) and must agree with status.
  char reboot();
  // uefi: the slot the firmware boots next, from the raw variables (BootNext, else BootOrder[0],
  // and the Boot#### description); `boot`: it boots it, consuming BootNext (a one-shot). 0 when
  // it boots no slot entry.
  char uefi_firmware_next(bool boot) const;
  std::filesystem::path efivars() const { return root() / "sys/firmware/efi/efivars"; }
  // systemd-boot: the slot it boots next, from the raw Boot Loader Interface variables
  // (LoaderEntryOneShot, else LoaderEntryDefault); `boot`: it boots it, deleting the one-shot as
  // systemd-boot does. 0 when the entry is no slot's.
  char systemd_boot_next(bool boot) const;

  std::string cgpt(int partition, const char* flag) const;  // cgpt show -i N -P|-T|-S
  std::string grub_list() const;                            // grub-editenv FILE list
  std::string state_text() const;                           // state.json ("" when absent)
  std::string history_text() const;                         // history.jsonl ("" when absent)

 private:
  std::string disk_option() const;  // " --disk PATH", or "" after omit_disk_option()

  TempDir tmp_;
  std::string backend_;
  bool disk_option_ = true;
};

}  // namespace abup::test
