// Boot backends (docs/architecture.md §8): one interface, chosen by a configuration word. Each arms
// one try of a slot, commits a slot as the good default, and says what the bootloader will boot.
// Every persistent write goes through a SectorWriter (gptprio, grubenv) or a VarStore (uefi,
// systemd-boot) so tests can record and replay it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "abup/result.hpp"
#include "partitions/sector_writer.hpp"
#include "partitions/slots.hpp"

namespace abup::partitions::boot {

// Which backend arms and commits a slot: [Update] BootBackend=, --boot-backend, and the word
// state.json records with a pending commit.
enum class BootBackend { gptprio, grubenv, uefi, systemd_boot };

// "gptprio", "grubenv", "uefi", "systemd-boot": the one spelling of each.
[[nodiscard]] std::string_view to_string(BootBackend backend);
// Errc::usage naming the text and every word allowed
// ("expected gptprio, grubenv, uefi or systemd-boot, got 'x'").
[[nodiscard]] Result<BootBackend> parse_boot_backend(std::string_view text);

using SectorWriter = partitions::SectorWriter;
using FdSectorWriter = partitions::FdSectorWriter;

// The EFI variables of one vendor GUID (the EFI global one for uefi, systemd's Boot Loader
// Interface one for systemd-boot) as efivarfs shows them. set() replaces one variable atomically
// (efivarfs: one write() = one SetVariable).
struct EfiVariable {
  std::uint32_t attributes = 0;
  std::vector<std::uint8_t> data;
};

class VarStore {
 public:
  virtual ~VarStore() = default;
  // Names (without the GUID suffix) of the store's variables present, e.g. "BootOrder".
  [[nodiscard]] virtual Result<std::vector<std::string>> list() const = 0;
  // nullopt when absent; an error naming the variable when its file is too short.
  [[nodiscard]] virtual Result<std::optional<EfiVariable>> get(std::string_view name) const = 0;
  [[nodiscard]] virtual Status set(std::string_view name, const EfiVariable& value) = 0;
  [[nodiscard]] virtual Status remove(std::string_view name) = 0;
};

inline constexpr std::string_view kEfiGlobalGuid = "8be4df61-93ca-11d2-aa0d-00e098032b8c";
// systemd's Boot Loader Interface (LoaderEntryDefault, LoaderEntryOneShot, ...).
inline constexpr std::string_view kLoaderInterfaceGuid = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";
// NON_VOLATILE | BOOTSERVICE_ACCESS | RUNTIME_ACCESS
inline constexpr std::uint32_t kEfiVarNvBsRt = 0x7;

// The production VarStore: an efivarfs mount (or, in tests, a plain directory) holding files
// Name-<vendor guid> = 4-byte little-endian attributes + data; it sees only the variables of
// `vendor_guid`. Clears FS_IMMUTABLE_FL before writing or deleting (ioctl errors
// ENOTTY/EOPNOTSUPP are ignored).
[[nodiscard]] std::unique_ptr<VarStore> make_efivarfs_store(
    const std::filesystem::path& dir, std::string_view vendor_guid = kEfiGlobalGuid);

struct SlotBootState {
  bool good = false;  // committed / successful: the bootloader may boot it without counting
  int tries = 0;      // tries left (gptprio, grubenv); 0 for uefi
  int priority = 0;   // gptprio priority; position-derived for the others
};

struct BootView {
  std::optional<char> next;          // what the bootloader boots on the next boot
  std::optional<char> default_slot;  // what it boots after that, absent a new arming
  std::map<char, SlotBootState> slots;
  std::string detail;  // backend-specific human text for `abup status`
};

struct BackendContext {
  const SlotPair* pair = nullptr;
  std::filesystem::path root = "/";  // efivars under root/sys/firmware/efi/efivars
  // grubenv file (grubenv backend); empty = root/boot/grub/grubenv.
  std::filesystem::path grubenv;
  std::filesystem::path efivars;  // default root/sys/firmware/efi/efivars (uefi)
  // Per slot: loader path on the ESP; default \EFI\acl\usr-a.efi, \EFI\acl\usr-b.efi.
  std::map<char, std::string> uefi_loader;
  std::map<char, std::string> uefi_cmdline;  // per slot: optional data (kernel command line)
  // systemd-boot: per slot, its boot loader entry id (a Type #2 UKI's file name in EFI/Linux/);
  // default acl-usr-a.efi, acl-usr-b.efi.
  std::map<char, std::string> loader_entry;
};

// Test seams: where writes go instead of the real target. Not owned; must outlive the backend.
// Reads always come from the real target (the disk, the grubenv file, the efivars directory),
// so a recording writer should also pass its writes through.
struct BackendIo {
  SectorWriter* writer = nullptr;  // gptprio: the disk; grubenv: the grubenv file
  VarStore* vars = nullptr;        // uefi, systemd-boot (used for reads and writes)
};

class Backend {
 public:
  virtual ~Backend() = default;
  [[nodiscard]] virtual std::string_view name() const = 0;
  // One try of `slot`: it boots next, once; if it is not committed the bootloader falls back to
  // the other slot on the following boot without any agent running. The other slot's good
  // state is kept.
  [[nodiscard]] virtual Status arm(char slot) = 0;
  // `slot` becomes good and the default.
  [[nodiscard]] virtual Status commit(char slot) = 0;
  // `slot` is never booted again until armed (after a failed health check).
  [[nodiscard]] virtual Status mark_bad(char slot) = 0;
  [[nodiscard]] virtual Result<BootView> read() const = 0;
};

// io: test seams (default: the real target: the disk for gptprio, the grubenv file, the efivars
// directory). context.pair is required by gptprio and uefi and must outlive the backend.
[[nodiscard]] Result<std::unique_ptr<Backend>> make_backend(BootBackend backend,
                                                            const BackendContext& context,
                                                            BackendIo io = {});

// Per-backend factories (what make_backend dispatches to).
[[nodiscard]] Result<std::unique_ptr<Backend>> make_gptprio_backend(const BackendContext& context,
                                                                    BackendIo io);
[[nodiscard]] Result<std::unique_ptr<Backend>> make_grubenv_backend(const BackendContext& context,
                                                                    BackendIo io);
[[nodiscard]] Result<std::unique_ptr<Backend>> make_uefi_backend(const BackendContext& context,
                                                                 BackendIo io);
// Declared with its entry-id defaults in partitions/boot/systemd_boot.hpp.
[[nodiscard]] Result<std::unique_ptr<Backend>> make_systemd_boot_backend(
    const BackendContext& context, BackendIo io);

// Shared checks.
[[nodiscard]] Status check_slot_name(char slot, std::string_view backend);

}  // namespace abup::partitions::boot
