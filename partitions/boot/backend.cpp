#include "partitions/boot/backend.hpp"

#include <string>

#include "abup/words.hpp"
#include "partitions/boot/systemd_boot.hpp"

namespace abup::partitions::boot {
namespace {

constexpr Words<BootBackend, 4> kBackends = {{{BootBackend::gptprio, "gptprio"},
                                              {BootBackend::grubenv, "grubenv"},
                                              {BootBackend::uefi, "uefi"},
                                              {BootBackend::systemd_boot, "systemd-boot"}}};

}  // namespace

Status check_slot_name(char slot, std::string_view backend) {
  if (slot == 'A' || slot == 'B') return {};
  return make_error(Errc::invalid_input, std::string(backend) + ": unknown slot '" +
                                             std::string(1, slot) + "' (expected A or B)");
}

std::string_view to_string(BootBackend backend) {
  return word(kBackends, backend);
}

Result<BootBackend> parse_boot_backend(std::string_view text) {
  return parse_word(kBackends, text);
}

Result<std::unique_ptr<Backend>> make_backend(BootBackend backend, const BackendContext& context,
                                              BackendIo io) {
  switch (backend) {
    case BootBackend::gptprio:
      return make_gptprio_backend(context, io);
    case BootBackend::grubenv:
      return make_grubenv_backend(context, io);
    case BootBackend::uefi:
      return make_uefi_backend(context, io);
    case BootBackend::systemd_boot:
      return make_systemd_boot_backend(context, io);
  }
  return make_error(Errc::failed,
                    "internal: no boot backend " + std::to_string(static_cast<int>(backend)));
}

}  // namespace abup::partitions::boot
