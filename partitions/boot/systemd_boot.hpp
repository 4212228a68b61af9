// systemd-boot (Azure Container Linux's A/B path: shim -> systemd-boot -> a Type #2 UKI in
// ESP/EFI/Linux/). Each slot is one boot loader entry; abup steers systemd-boot through the Boot
// Loader Interface variables (vendor GUID 4a67b082-0a4c-41cf-b6c7-440b29bb8c4f, values
// NUL-terminated UTF-16LE strings): LoaderEntryOneShot arms one try (systemd-boot deletes it as
// it boots it), LoaderEntryDefault is the committed slot.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "partitions/boot/backend.hpp"

namespace abup::partitions::boot {

// The entry id of a slot when [Boot] sets none: the UKI's file name in ESP/EFI/Linux/
// ("acl-usr-a.efi"); its per-slot addons live in EFI/Linux/acl-usr-a.efi.extra.d/.
[[nodiscard]] std::string default_loader_entry(char slot);

// A Boot Loader Interface string value: UTF-8 -> UTF-16LE with a NUL terminator, and back
// (nullopt when the data is not whole UTF-16 units ending in NUL).
[[nodiscard]] std::vector<std::uint8_t> loader_string(std::string_view s);
[[nodiscard]] std::optional<std::string> parse_loader_string(const std::vector<std::uint8_t>& d);

}  // namespace abup::partitions::boot
