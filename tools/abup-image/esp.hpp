// Boot files from a COSI's ESP image (Microsoft's COSI carries the UKI and its addons inside the
// vfat ESP partition image, not as entries of their own). `abup-image sign` extracts them with
// mtools, so the agent stays free of FAT code, and lists them in the manifest like --boot-file:
//
//   EFI/Linux/X.efi (the one UKI)                  → uki
//   EFI/Linux/X.efi.extra.d/slot-a.addon.efi       → addon-a   (slot-b → addon-b)
//   EFI/Linux/X.efi.extra.d/NAME.addon.efi         → addon.NAME (both slots carry it)
//
// A first-boot addon is left out, so that Ignition does not run again on the updated slot: one
// whose file name contains "firstboot" (any case) or whose bytes (its .cmdline) contain
// "ignition.firstboot". More than one UKI in EFI/Linux/ is an error naming them.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "abup/result.hpp"
#include "tools/abup-image/builder.hpp"
#include "update-protocol/cosi/cosi.hpp"

namespace abup::image {

struct EspBootFiles {
  std::string esp_image;             // the COSI entry read, e.g. images/esp.img.zst
  std::vector<BootFileInput> files;  // extracted under the work directory
  std::vector<std::string> skipped;  // ESP paths of first-boot addons left out
};

// The ESP image of `archive`: mount point /boot/efi or /boot, or partition type "esp" /
// c12a7328-f81f-11d2-ba4b-00a0c93ec93b; nullptr when there is none.
[[nodiscard]] const protocol::FilesystemImage* find_esp_image(const protocol::CosiArchive& archive);

// Decompresses the ESP image of the COSI at `cosi_path` into `work` and extracts its UKI and
// addons there. nullopt when the COSI has no ESP image or its ESP has no EFI/Linux/ UKI.
[[nodiscard]] Result<std::optional<EspBootFiles>> esp_boot_files(
    const std::string& cosi_path, const protocol::CosiArchive& archive,
    const std::filesystem::path& work);

// The same from a raw (uncompressed) vfat ESP image (`abup-image build --esp-image`); `label`
// names it in messages. nullopt when it has no EFI/Linux/ UKI.
[[nodiscard]] Result<std::optional<EspBootFiles>> extract_esp(const std::filesystem::path& image,
                                                              const std::string& label,
                                                              const std::filesystem::path& work);

// A private temporary directory (mkdtemp under TMPDIR), removed with everything in it; empty()
// when it could not be made.
class TempWork {
 public:
  TempWork();
  ~TempWork();
  TempWork(const TempWork&) = delete;
  TempWork& operator=(const TempWork&) = delete;
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }
  [[nodiscard]] bool empty() const { return path_.empty(); }

 private:
  std::filesystem::path path_;
};

// The logical boot file name of an addon file name in a UKI's .extra.d/ (see above); nullopt
// for a first-boot addon (by name; esp_boot_files also checks the bytes).
[[nodiscard]] std::optional<std::string> addon_boot_name(const std::string& file_name);

}  // namespace abup::image
