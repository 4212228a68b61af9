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

TEST_CASE("uefi: one loader path per slot, the one the Boot#### entry names and the UKI goes to") {
  BackendContext ctx;
  CHECK(uefi_loader_path(ctx, 'A') == "EFI/acl/usr-a.efi");
  CHECK(uefi_loader_path(ctx, 'b') == "EFI/acl/usr-b.efi");
  // [Boot] UefiLoaderB= is keyed 'B' by the configuration: placement honours it too.
  ctx.uefi_loader['B'] = "\\EFI\\custom\\B.EFI";
  CHECK(uefi_loader_path(ctx, 'b') == "EFI/custom/B.EFI");
  CHECK(paths("uefi", 'b', {"uki"}, ctx) == V{"EFI/custom/B.EFI"});
  // BootFilePath.uki= (else .vmlinuz=) wins: the entry must name where the file was written.
  PlacementOptions opt;
  opt.paths["vmlinuz"] = "EFI/k/vmlinuz-%s.efi";
  CHECK(uefi_loader_path(ctx, 'B', opt) == "EFI/k/vmlinuz-b.efi");
  opt.paths["uki"] = "EFI/u/uki-%s.efi";
  CHECK(uefi_loader_path(ctx, 'B', opt) == "EFI/u/uki-b.efi");
  CHECK(paths("uefi", 'b', {"uki"}, ctx, opt) == V{"EFI/u/uki-b.efi"});
  CHECK(uefi_device_path("EFI/u/uki-b.efi") == "\\EFI\\u\\uki-b.efi");
}

TEST_CASE("systemd-boot: the UKI and its addons follow the slot's configured entry id") {
  BackendContext ctx;
  ctx.loader_entry['A'] = "acl-a.efi";
  CHECK(paths("systemd-boot", 'a', {"uki", "addon-a", "addon.console"}, ctx) ==
        V{"EFI/Linux/acl-a.efi", "EFI/Linux/acl-a.efi.extra.d/slot-a.addon.efi",
          "EFI/Linux/acl-a.efi.extra.d/console.addon.efi"});
  CHECK(paths("systemd-boot", 'b', {"uki", "addon.console"}, ctx) ==
        V{"EFI/Linux/acl-usr-b.efi", "EFI/Linux/acl-usr-b.efi.extra.d/console.addon.efi"});
  for (const char* bad : {"addon.", "addon..x", "addon.a/b", "addon.x y"}) {
    CAPTURE(bad);
    CHECK_FALSE(place_boot_files("systemd-boot", 'a', ctx, {bad}).has_value());
  }
}
