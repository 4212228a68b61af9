#include "agent/vocabulary.hpp"

#include <array>
#include <string>
#include <utility>

namespace abup::agent {
namespace {

template <class E, std::size_t N>
using Words = std::array<std::pair<E, std::string_view>, N>;

constexpr Words<Mode, 2> kModes = {{{Mode::aks, "aks"}, {Mode::autonomous, "autonomous"}}};
constexpr Words<RebootStrategy, 4> kStrategies = {{{RebootStrategy::off, "off"},
                                                   {RebootStrategy::immediate, "immediate"},
                                                   {RebootStrategy::window, "window"},
                                                   {RebootStrategy::fleetlock, "fleetlock"}}};
constexpr Words<BootBackend, 4> kBackends = {{{BootBackend::gptprio, "gptprio"},
                                              {BootBackend::grubenv, "grubenv"},
                                              {BootBackend::uefi, "uefi"},
                                              {BootBackend::systemd_boot, "systemd-boot"}}};

constexpr Words<OutcomeKind, 4> kKinds = {{{OutcomeKind::finalize, "finalize"},
                                           {OutcomeKind::commit, "commit"},
                                           {OutcomeKind::rollback, "rollback"},
                                           {OutcomeKind::disarm, "disarm"}}};
constexpr Words<OutcomeCode, 6> kCodes = {{{OutcomeCode::armed, "Armed"},
                                           {OutcomeCode::committed, "Committed"},
                                           {OutcomeCode::nothing_pending, "NothingPending"},
                                           {OutcomeCode::not_rebooted, "NotRebooted"},
                                           {OutcomeCode::target_boot_failed, "TargetBootFailed"},
                                           {OutcomeCode::disarmed, "Disarmed"}}};

template <class E, std::size_t N>
std::string_view word(const Words<E, N>& words, E value) {
  for (const auto& [v, w] : words)
    if (v == value) return w;
  return "?";  // unreachable for a value of the enum
}

// "expected a, b or c, got 'x'": the configuration prefixes where and which key.
template <class E, std::size_t N>
Result<E> parse(const Words<E, N>& words, std::string_view text, Errc code = Errc::usage) {
  for (const auto& [v, w] : words)
    if (w == text) return v;
  std::string msg = "expected ";
  for (std::size_t i = 0; i < N; ++i)
    msg += std::string(i == 0 ? "" : i + 1 == N ? " or " : ", ") + std::string(words[i].second);
  return make_error(code, msg + ", got '" + std::string(text) + "'");
}

}  // namespace

std::string_view to_string(Mode mode) {
  return word(kModes, mode);
}
std::string_view to_string(RebootStrategy strategy) {
  return word(kStrategies, strategy);
}
std::string_view to_string(BootBackend backend) {
  return word(kBackends, backend);
}
std::string_view to_string(OutcomeKind kind) {
  return word(kKinds, kind);
}
std::string_view to_string(OutcomeCode code) {
  return word(kCodes, code);
}

Result<Mode> parse_mode(std::string_view text) {
  return parse(kModes, text);
}
Result<RebootStrategy> parse_reboot_strategy(std::string_view text) {
  return parse(kStrategies, text);
}
Result<BootBackend> parse_boot_backend(std::string_view text) {
  return parse(kBackends, text);
}
Result<OutcomeKind> parse_outcome_kind(std::string_view text) {
  return parse(kKinds, text, Errc::invalid_input);
}
Result<OutcomeCode> parse_outcome_code(std::string_view text) {
  return parse(kCodes, text, Errc::invalid_input);
}

}  // namespace abup::agent
