#include "partitions/boot/placement.hpp"

#include <doctest/doctest.h>

using namespace abup;
using namespace abup::partitions::boot;

namespace {

std::vector<std::string> paths(std::string_view backend, char slot,
                               const std::vector<std::string>& names,
                               const BackendContext& ctx = {}, const PlacementOptions& opt = {}) {
  auto r = place_boot_files(backend, slot, ctx, names, opt);
  REQUIRE_MESSAGE(r.has_value(), (r ? "" : r.error().message));
  std::vector<std::string> out;
  for (const auto& p : *r) out.push_back(p.esp_path);
  return out;
}

using V = std::vector<std::string>;

}  // namespace

TEST_CASE("gptprio places the kernel where Flatcar's GRUB loads it") {
  CHECK(paths("gptprio", 'a', {"vmlinuz"}) == V{"flatcar/vmlinuz-a"});
  CHECK(paths("gptprio", 'b', {"vmlinuz", "initrd"}) == V{"flatcar/vmlinuz-b", "flatcar/initrd-b"});
}

TEST_CASE("uefi places the UKI or kernel at the slot's configured loader") {
  CHECK(paths("uefi", 'b', {"uki"}) == V{"EFI/acl/usr-b.efi"});
  BackendContext ctx;
  ctx.uefi_loader['a'] = "\\EFI\\custom\\A.EFI";
  CHECK(paths("uefi", 'a', {"vmlinuz"}, ctx) == V{"EFI/custom/A.EFI"});
}

TEST_CASE("systemd-boot: the UKI in EFI/Linux with the slot's own addon only") {
  CHECK(paths("systemd-boot", 'a', {"uki", "addon-a", "addon-b"}) ==
        V{"EFI/Linux/acl-usr-a.efi", "EFI/Linux/acl-usr-a.efi.extra.d/slot-a.addon.efi"});
  CHECK(paths("systemd-boot", 'b', {"uki", "addon-a", "addon-b"}) ==
        V{"EFI/Linux/acl-usr-b.efi", "EFI/Linux/acl-usr-b.efi.extra.d/slot-b.addon.efi"});
}

TEST_CASE("grubenv places nothing on the ESP unless configured") {
  CHECK(paths("grubenv", 'b', {"vmlinuz", "initrd"}).empty());
  PlacementOptions opt;
  opt.paths["vmlinuz"] = "grub/vmlinuz-%s";
  CHECK(paths("grubenv", 'b', {"vmlinuz", "initrd"}, {}, opt) == V{"grub/vmlinuz-b"});
  CHECK_FALSE(requires_boot_files("grubenv"));
  CHECK(requires_boot_files("gptprio"));
  CHECK(requires_boot_files("uefi"));
  CHECK(requires_boot_files("systemd-boot"));
}

TEST_CASE("placement refuses unknown names, unknown backends and overrides leaving the ESP") {
  auto r = place_boot_files("gptprio", 'a', {}, {"uki"});
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().message.find("'uki'") != std::string::npos);
  CHECK(r.error().message.find("BootFilePath.uki") != std::string::npos);
  CHECK_FALSE(place_boot_files("lilo", 'a', {}, {"vmlinuz"}).has_value());
  for (const char* bad : {"/boot/vmlinuz-%s", "../x-%s", "a/../../x", "a//b", ""}) {
    CAPTURE(bad);
    PlacementOptions opt;
    opt.paths["vmlinuz"] = bad;
    auto e = place_boot_files("gptprio", 'a', {}, {"vmlinuz"}, opt);
    REQUIRE_FALSE(e.has_value());
    CHECK(e.error().message.find("BootFilePath.vmlinuz") != std::string::npos);
  }
}

TEST_CASE("slot_paths lists every path of one slot and none of the other") {
  auto a = slot_paths("systemd-boot", 'a', {});
  CHECK(a == V{"EFI/Linux/acl-usr-a.efi", "EFI/Linux/acl-usr-a.efi.extra.d/slot-a.addon.efi"});
  auto g = slot_paths("gptprio", 'b', {});
  CHECK(g == V{"flatcar/vmlinuz-b", "flatcar/initrd-b"});
}
