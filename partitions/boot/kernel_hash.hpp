// The /usr dm-verity root hash a kernel will use, read from the boot file itself so abup can
// refuse a kernel and /usr that do not belong together (docs/design.md "Kernel and /usr bound
// together"). Pure parsers over untrusted bytes (tests/fuzz/fuzz_pe_sections.cpp).
//
// Conventions supported:
// - UKI (systemd-stub PE image): the `.cmdline` section's `usrhash=HEX` or `verity.usrhash=HEX`.
//   Addons (PE images with a `.cmdline` section) are read the same way.
// - Flatcar kernel: 64 lowercase hex digits at offset 0x40 of the image (x86_64; 512 on arm64),
//   which Flatcar's GRUB appends to the command line as ` verity.usrhash=`; present only when
//   all 64 bytes are hex digits.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "abup/result.hpp"

namespace abup::partitions::boot {

struct PeSection {
  std::string name;          // up to 8 bytes, NULs stripped
  std::uint64_t offset = 0;  // in the file
  std::uint64_t size = 0;    // bytes present in the file: min(VirtualSize, SizeOfRawData)
};

// The section table of a PE/COFF image. Errc::invalid_input naming what is wrong (no MZ, no PE
// signature, a section outside the file, more than 96 sections).
[[nodiscard]] Result<std::vector<PeSection>> pe_sections(std::span<const std::uint8_t> image);

// The value of the last `usrhash=`/`verity.usrhash=` of a kernel command line, lowercased;
// nullopt when there is none. Errc::invalid_input when two differ or one is not hex.
[[nodiscard]] Result<std::optional<std::string>> usrhash_from_cmdline(std::string_view cmdline);

// The root hash embedded in a boot file by either convention above; nullopt when it carries
// none. arch: "x86_64" or "arm64".
[[nodiscard]] Result<std::optional<std::string>> embedded_usrhash(
    std::span<const std::uint8_t> image, std::string_view arch);

// That a boot file named `name` belongs with a /usr whose verity root hash is `usr_roothash`
// (hex, any case; empty: the image has no /usr hash): true when it embeds no hash or that one.
// Errc::refused naming both hashes otherwise; the agent before it stages a kernel, abup-image
// before it packs one.
[[nodiscard]] Status check_usrhash_binding(std::span<const std::uint8_t> image,
                                           std::string_view arch, std::string_view usr_roothash,
                                           const std::string& name);

}  // namespace abup::partitions::boot
