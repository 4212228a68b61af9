#include "agent/vocabulary.hpp"

#include "abup/words.hpp"

namespace abup::agent {
namespace {

constexpr Words<Mode, 2> kModes = {{{Mode::aks, "aks"}, {Mode::autonomous, "autonomous"}}};
constexpr Words<RebootStrategy, 4> kStrategies = {{{RebootStrategy::off, "off"},
                                                   {RebootStrategy::immediate, "immediate"},
                                                   {RebootStrategy::window, "window"},
                                                   {RebootStrategy::fleetlock, "fleetlock"}}};
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

}  // namespace

std::string_view to_string(Mode mode) {
  return word(kModes, mode);
}
std::string_view to_string(RebootStrategy strategy) {
  return word(kStrategies, strategy);
}
std::string_view to_string(OutcomeKind kind) {
  return word(kKinds, kind);
}
std::string_view to_string(OutcomeCode code) {
  return word(kCodes, code);
}

Result<Mode> parse_mode(std::string_view text) {
  return parse_word(kModes, text);
}
Result<RebootStrategy> parse_reboot_strategy(std::string_view text) {
  return parse_word(kStrategies, text);
}
Result<OutcomeKind> parse_outcome_kind(std::string_view text) {
  return parse_word(kKinds, text, Errc::invalid_input);
}
Result<OutcomeCode> parse_outcome_code(std::string_view text) {
  return parse_word(kCodes, text, Errc::invalid_input);
}

}  // namespace abup::agent
