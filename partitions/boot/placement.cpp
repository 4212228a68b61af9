#include "partitions/boot/placement.hpp"

#include <algorithm>
#include <cctype>
#include <optional>

namespace abup::partitions::boot {
namespace {

std::string expand(std::string_view tmpl, char slot) {
  std::string out;
  for (std::size_t i = 0; i < tmpl.size(); ++i) {
    if (tmpl[i] == '%' && i + 1 < tmpl.size() && tmpl[i + 1] == 's') {
      out += slot;
      ++i;
    } else {
      out += tmpl[i];
    }
  }
  return out;
}

// Loader paths are written as UEFI device paths (backslashes, leading backslash); the ESP path
// is the same file seen from Linux.
// The configuration names slots 'A'/'B', placement 'a'/'b': either key counts.
std::string loader_on_esp(const BackendContext& ctx, char slot) {
  const char upper = slot == 'a' ? 'A' : slot == 'b' ? 'B' : slot;
  const char lower = slot == 'A' ? 'a' : slot == 'B' ? 'b' : slot;
  std::string p = std::string("\\EFI\\acl\\usr-") + lower + ".efi";
  for (char k : {upper, lower})
    if (auto it = ctx.uefi_loader.find(k); it != ctx.uefi_loader.end() && !it->second.empty()) {
      p = it->second;
      break;
    }
  std::replace(p.begin(), p.end(), '\\', '/');
  while (!p.empty() && p.front() == '/') p.erase(p.begin());
  return p;
}

std::string entry_id(const BackendContext& ctx, char slot) {
  const char upper = slot == 'a' ? 'A' : slot == 'b' ? 'B' : slot;
  if (auto it = ctx.loader_entry.find(upper); it != ctx.loader_entry.end() && !it->second.empty())
    return it->second;
  return std::string("acl-usr-") + (slot == 'A' ? 'a' : slot == 'B' ? 'b' : slot) + ".efi";
}

// addon.NAME: a per-UKI addon both slots carry (NAME.addon.efi in the UKI's .extra.d/).
std::optional<std::string> shared_addon_file(std::string_view name) {
  if (!name.starts_with(kSharedAddonPrefix)) return std::nullopt;
  auto rest = name.substr(kSharedAddonPrefix.size());
  if (rest.empty() || rest.front() == '.') return std::nullopt;
  for (char c : rest)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.')
      return std::nullopt;
  return std::string(rest) + ".addon.efi";
}

// The default table. Empty string: the name is known but not placed on the ESP for this slot.
std::optional<std::string> default_path(std::string_view backend, char slot,
                                        const BackendContext& ctx, std::string_view name) {
  const std::string s(1, slot);
  if (backend == "gptprio") {
    if (name == "vmlinuz") return "flatcar/vmlinuz-" + s;
    if (name == "initrd") return "flatcar/initrd-" + s;
  } else if (backend == "uefi") {
    if (name == "uki" || name == "vmlinuz") return loader_on_esp(ctx, slot);
    if (name == "initrd") return "EFI/acl/initrd-" + s;
  } else if (backend == "grubenv") {
    if (name == "vmlinuz" || name == "initrd" || name == "uki") return "";
  } else if (backend == "systemd-boot") {
    const std::string uki = "EFI/Linux/" + entry_id(ctx, slot);
    if (name == "uki") return uki;
    if (auto f = shared_addon_file(name)) return uki + ".extra.d/" + *f;
    if (name == "addon-a" || name == "addon-b") {
      if (name.back() != slot) return "";
      return uki + ".extra.d/slot-" + s + ".addon.efi";
    }
  }
  return std::nullopt;
}

constexpr std::string_view kKnownNames[] = {"vmlinuz", "initrd", "uki", "addon-a", "addon-b"};

}  // namespace

Status check_relative_path(std::string_view path, std::string_view what) {
  auto fail = [&](const char* why) {
    return make_error(Errc::invalid_input, std::string(what) + " '" + std::string(path) +
                                               "': " + why + " (a path relative to the ESP)");
  };
  if (path.empty()) return fail("empty");
  if (path.front() == '/') return fail("absolute");
  for (char c : path)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return fail("control character");
  std::size_t start = 0;
  while (start <= path.size()) {
    auto end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    auto part = path.substr(start, end - start);
    if (part == "..") return fail("contains '..'");
    if (part.empty() || part == ".") return fail("empty or '.' component");
    start = end + 1;
  }
  return {};
}

std::string uefi_loader_path(const BackendContext& ctx, char slot, const PlacementOptions& opt) {
  const char lower = slot == 'A' ? 'a' : slot == 'B' ? 'b' : slot;
  for (const char* name : {"uki", "vmlinuz"})
    if (auto o = opt.paths.find(name); o != opt.paths.end() && !o->second.empty())
      return expand(o->second, lower);
  return loader_on_esp(ctx, lower);
}

std::string uefi_device_path(std::string_view esp_path) {
  std::string p = "\\" + std::string(esp_path);
  std::replace(p.begin(), p.end(), '/', '\\');
  return p;
}

bool requires_boot_files(std::string_view backend) {
  return backend == "gptprio" || backend == "uefi" || backend == "systemd-boot";
}

Result<std::vector<BootFilePlacement>> place_boot_files(std::string_view backend, char slot,
                                                        const BackendContext& ctx,
                                                        const std::vector<std::string>& names,
                                                        const PlacementOptions& opt) {
  if (backend != "gptprio" && backend != "uefi" && backend != "grubenv" &&
      backend != "systemd-boot")
    return make_error(Errc::invalid_input,
                      "boot files: unknown boot backend '" + std::string(backend) +
                          "' (known: " + std::string(kPlacementBackends) + ")");
  if (slot != 'a' && slot != 'b')
    return make_error(Errc::invalid_input, std::string("boot files: slot '") + slot + "'");
  std::vector<BootFilePlacement> out;
  for (const auto& name : names) {
    std::string path;
    if (auto o = opt.paths.find(name); o != opt.paths.end()) {
      path = expand(o->second, slot);
      ABUP_CHECK(check_relative_path(path, "[Boot] BootFilePath." + name));
    } else {
      auto d = default_path(backend, slot, ctx, name);
      if (!d)
        return make_error(Errc::invalid_input,
                          "boot file '" + name + "': the " + std::string(backend) +
                              " backend has no place for it on the ESP (set [Boot] BootFilePath." +
                              name + "=PATH, %s = slot letter)");
      path = *d;
      if (!path.empty()) ABUP_CHECK(check_relative_path(path, "boot file path"));
    }
    if (path.empty()) continue;
    for (const auto& p : out)
      if (p.esp_path == path)
        return make_error(Errc::invalid_input, "boot files '" + p.name + "' and '" + name +
                                                   "' would both be written to " + path);
    out.push_back({name, path});
  }
  return out;
}

std::vector<std::string> slot_paths(std::string_view backend, char slot, const BackendContext& ctx,
                                    const PlacementOptions& opt) {
  std::vector<std::string> names(std::begin(kKnownNames), std::end(kKnownNames));
  for (const auto& [n, _] : opt.paths)
    if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
  std::vector<std::string> out;
  for (const auto& n : names) {
    auto one = place_boot_files(backend, slot, ctx, {n}, opt);
    if (one && !one->empty()) out.push_back(one->front().esp_path);
  }
  return out;
}

}  // namespace abup::partitions::boot
