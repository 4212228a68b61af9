#include "partitions/boot/backend.hpp"

#include <string>

#include "partitions/boot/systemd_boot.hpp"

namespace abup::partitions::boot {

Status check_slot_name(char slot, std::string_view backend) {
  if (slot == 'A' || slot == 'B') return {};
  return make_error(Errc::invalid_input, std::string(backend) + ": unknown slot '" +
                                             std::string(1, slot) + "' (expected A or B)");
}

Result<std::unique_ptr<Backend>> make_backend(std::string_view name, const BackendContext& context,
                                              BackendIo io) {
  if (name == "gptprio") return make_gptprio_backend(context, io);
  if (name == "grubenv") return make_grubenv_backend(context, io);
  if (name == "uefi") return make_uefi_backend(context, io);
  if (name == "systemd-boot") return make_systemd_boot_backend(context, io);
  return make_error(Errc::invalid_input, "unknown boot backend \"" + std::string(name) +
                                             "\" (expected one of: " + std::string(kBackendNames) +
                                             ")");
}

}  // namespace abup::partitions::boot
