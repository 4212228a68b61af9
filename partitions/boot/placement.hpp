// Where each boot file of a release goes, per boot backend (docs/architecture.md §4 "Boot files",
// §8): a table from (backend, slot, logical name) to a path relative to the ESP. Only the inactive
// slot's paths are ever written; the booted slot's are what `booted_paths` lists, so the writer
// can refuse them.
//
// Defaults (overridable per name with [Boot] BootFilePath.NAME=, "%s" standing for the slot
// letter a|b):
//   gptprio       vmlinuz → flatcar/vmlinuz-a|b (Flatcar's GRUB loads these); initrd →
//                 flatcar/initrd-a|b
//   uefi          uki or vmlinuz → the slot's loader (BackendContext::uefi_loader, default
//                 EFI/acl/usr-a.efi|usr-b.efi); initrd → EFI/acl/initrd-a|b
//   grubenv       nothing on the ESP: GRUB reads the kernel from inside the slot, unless paths
//                 are configured
//   systemd-boot  uki → EFI/Linux/ENTRY (ENTRY = the slot's entry id, [Boot] LoaderEntryA|B=,
//                 default acl-usr-a|b.efi); addon-a|b (the slot's own) →
//                 EFI/Linux/ENTRY.extra.d/slot-a|b.addon.efi, the other slot's addon is not
//                 placed; addon.NAME (an addon both slots carry) → ENTRY.extra.d/NAME.addon.efi
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "abup/result.hpp"
#include "partitions/boot/backend.hpp"

namespace abup::partitions::boot {

struct BootFilePlacement {
  std::string name;      // logical name (manifest)
  std::string esp_path;  // relative to the ESP mount point, '/'-separated
};

struct PlacementOptions {
  // Per logical name, a path template relative to the ESP, "%s" = slot letter.
  std::map<std::string, std::string> paths;
};

// Logical name prefix of an addon both slots carry ("addon.console" → console.addon.efi).
inline constexpr std::string_view kSharedAddonPrefix = "addon.";

inline constexpr std::string_view kPlacementBackends = "gptprio, grubenv, uefi, systemd-boot";

// The ESP path of each of `names` for `slot` on `backend`, in the order given; names the backend
// does not place on the ESP for this slot (grubenv's defaults, the other slot's addon) are left
// out. Errc::invalid_input for a name the backend has no place for, an unknown backend, or an
// override that is absolute or climbs out of the ESP.
[[nodiscard]] Result<std::vector<BootFilePlacement>> place_boot_files(
    std::string_view backend, char slot, const BackendContext& context,
    const std::vector<std::string>& names, const PlacementOptions& options = {});

// uefi: the ESP path ('/'-separated, relative) of slot `slot`'s loader, the one file its Boot####
// entry names and the uki/vmlinuz boot file is written to: [Boot] BootFilePath.uki= (else
// .vmlinuz=) when set, else the slot's UefiLoaderA|B=, else EFI/acl/usr-a|b.efi. `slot` is
// 'A'|'B' or 'a'|'b'.
[[nodiscard]] std::string uefi_loader_path(const BackendContext& context, char slot,
                                           const PlacementOptions& options = {});
// The same path as a UEFI file path node spells it: "\EFI\acl\usr-a.efi".
[[nodiscard]] std::string uefi_device_path(std::string_view esp_path);

// Whether `backend` boots a kernel from the ESP by default, so that an image without boot files
// would boot the new /usr on the old kernel ([Boot] RequireBootFiles= default): gptprio, uefi and
// systemd-boot yes, grubenv no.
[[nodiscard]] bool requires_boot_files(std::string_view backend);

// The paths every logical name could occupy for `slot` (all names the backend knows): what the
// writer must never open when `slot` is the booted one.
[[nodiscard]] std::vector<std::string> slot_paths(std::string_view backend, char slot,
                                                  const BackendContext& context,
                                                  const PlacementOptions& options = {});

// A '/'-separated relative path that stays inside its root: not empty, not absolute, no "..",
// no NUL or control characters.
[[nodiscard]] Status check_relative_path(std::string_view path, std::string_view what);

}  // namespace abup::partitions::boot
