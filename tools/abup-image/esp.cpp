#include "tools/abup-image/esp.hpp"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>

#include "abup/fs.hpp"
#include "update-protocol/source.hpp"
#include "update-protocol/zstd_dctx.hpp"

namespace abup::image {
namespace {

namespace fs = std::filesystem;
constexpr std::string_view kEspType = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
constexpr std::string_view kAddonSuffix = ".addon.efi";

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Runs an mtools command line; its exit status (127: not installed).
int mtools(const std::string& cmd) {
  int rc = std::system(("MTOOLS_SKIP_CHECK=1 " + cmd + " >/dev/null 2>&1").c_str());
  return rc == -1 ? 127 : WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

Status decompress(const std::string& cosi_path, const protocol::TarEntry& entry,
                  const fs::path& out) {
  ABUP_TRY(auto src, protocol::open_file_source(cosi_path));
  ABUP_TRY(Fd fd, open_file(out, O_WRONLY | O_CREAT | O_TRUNC, 0600));
  ABUP_TRY(const auto dctx, protocol::make_capped_dctx(protocol::kAnyWindowLog));
  ZSTD_DCtx* d = dctx.get();
  std::vector<std::uint8_t> buf(1 << 20);
  auto sink = [&](std::span<const std::uint8_t> piece) -> Status {
    ZSTD_inBuffer in{piece.data(), piece.size(), 0};
    while (in.pos < in.size) {
      ZSTD_outBuffer o{buf.data(), buf.size(), 0};
      std::size_t r = ZSTD_decompressStream(d, &o, &in);
      if (ZSTD_isError(r))
        return make_error(Errc::invalid_input,
                          "ESP image: zstd: " + std::string(ZSTD_getErrorName(r)));
      if (o.pos && ::write(fd.get(), buf.data(), o.pos) != static_cast<ssize_t>(o.pos))
        return make_error(Errc::io, "write " + out.string() + ": " + errno_text(errno));
    }
    return {};
  };
  return src->read_range(entry.data_offset, entry.size, sink);
}

bool first_boot_bytes(const fs::path& file) {
  auto bytes = read_file(file);
  return bytes && bytes->find("ignition.firstboot") != std::string::npos;
}

}  // namespace

const protocol::FilesystemImage* find_esp_image(const protocol::CosiArchive& archive) {
  for (const auto& fi : archive.metadata.images) {
    const std::string type = lower(fi.part_type);
    if (fi.mount_point == "/boot/efi" || fi.mount_point == "/boot" || type == "esp" ||
        type == kEspType)
      return &fi;
  }
  return nullptr;
}

std::optional<std::string> addon_boot_name(const std::string& file_name) {
  if (file_name.size() <= kAddonSuffix.size() || !lower(file_name).ends_with(kAddonSuffix))
    return std::nullopt;
  if (lower(file_name).find("firstboot") != std::string::npos) return std::nullopt;
  const std::string stem = file_name.substr(0, file_name.size() - kAddonSuffix.size());
  if (stem == "slot-a") return "addon-a";
  if (stem == "slot-b") return "addon-b";
  return "addon." + stem;
}

Result<std::optional<EspBootFiles>> esp_boot_files(const std::string& cosi_path,
                                                   const protocol::CosiArchive& archive,
                                                   const fs::path& work) {
  const auto* esp = find_esp_image(archive);
  if (!esp) return std::optional<EspBootFiles>{};
  const auto* entry = archive.entry(esp->image);
  if (!entry)
    return make_error(Errc::invalid_input, cosi_path + ": no tar entry " + esp->image.path);
  const auto img = work / "esp.img";
  ABUP_CHECK_CTX(decompress(cosi_path, *entry, img), cosi_path + ": " + esp->image.path);
  return extract_esp(img, esp->image.path, work);
}

Result<std::optional<EspBootFiles>> extract_esp(const fs::path& img, const std::string& label,
                                                const fs::path& work) {
  const std::string i = "-i " + quote(img.string());
  if (int rc = mtools("mdir " + i + " ::/EFI/Linux"); rc != 0) {
    if (rc == 127)
      return make_error(Errc::failed,
                        "mdir (mtools) not found: install mtools to read the "
                        "kernel from the COSI's ESP image " +
                            label);
    return std::optional<EspBootFiles>{};  // no EFI/Linux/: the ESP carries no UKI
  }
  const auto dir = work / "Linux";
  if (mtools("mcopy -s -n " + i + " ::/EFI/Linux " + quote(work.string())) != 0)
    return make_error(Errc::failed,
                      "mcopy could not copy EFI/Linux/ out of " + label + " (is it a vfat image?)");
  EspBootFiles out;
  out.esp_image = label;
  std::vector<std::string> ukis;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const auto name = e.path().filename().string();
    if (e.is_regular_file() && lower(name).ends_with(".efi") &&
        !lower(name).ends_with(kAddonSuffix))
      ukis.push_back(name);
  }
  std::sort(ukis.begin(), ukis.end());
  if (ukis.empty()) return std::optional<EspBootFiles>{};
  if (ukis.size() > 1) {
    std::string list;
    for (const auto& u : ukis) list += (list.empty() ? "" : ", ") + u;
    return make_error(Errc::invalid_input,
                      label + ": " + std::to_string(ukis.size()) + " UKIs in EFI/Linux/ (" + list +
                          "); abup places one per slot: build the ESP with one, or pass the "
                          "kernel with abup-image build --boot-file uki=FILE");
  }
  out.files.push_back({"uki", (dir / ukis[0]).string()});
  const auto extra = dir / (ukis[0] + ".extra.d");
  std::vector<fs::path> addons;
  for (const auto& e : fs::directory_iterator(extra, ec))
    if (e.is_regular_file()) addons.push_back(e.path());
  std::sort(addons.begin(), addons.end());
  for (const auto& a : addons) {
    const auto name = a.filename().string();
    const std::string esp_path = "EFI/Linux/" + ukis[0] + ".extra.d/" + name;
    if (!lower(name).ends_with(kAddonSuffix)) continue;
    auto logical = addon_boot_name(name);
    if (!logical || first_boot_bytes(a)) {
      out.skipped.push_back(esp_path);
      continue;
    }
    out.files.push_back({*logical, a.string()});
  }
  return std::optional<EspBootFiles>(std::move(out));
}

TempWork::TempWork() {
  std::error_code ec;
  std::string tmpl = (fs::temp_directory_path(ec) / "abup-image-esp-XXXXXX").string();
  if (::mkdtemp(tmpl.data())) path_ = tmpl;
}

TempWork::~TempWork() {
  std::error_code ec;
  if (!path_.empty()) fs::remove_all(path_, ec);
}

}  // namespace abup::image
