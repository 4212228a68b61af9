#include "agent/vocabulary.hpp"

#include <doctest/doctest.h>

#include <string>
#include <type_traits>
#include <vector>

using namespace abup;
using namespace abup::agent;

namespace {

// Every value of E parses back from its to_string, and the words are the documented ones.
template <class E>
void round_trips(const std::vector<std::pair<E, std::string>>& words,
                 Result<E> (*parse)(std::string_view)) {
  for (const auto& [value, word] : words) {
    CAPTURE(word);
    CHECK(to_string(value) == word);
    auto back = parse(word);
    REQUIRE(back);
    CHECK(*back == value);
  }
}

}  // namespace

TEST_CASE("vocabulary: each word has one spelling, and parse gives back the value") {
  round_trips<Mode>({{Mode::aks, "aks"}, {Mode::autonomous, "autonomous"}}, parse_mode);
  round_trips<RebootStrategy>({{RebootStrategy::off, "off"},
                               {RebootStrategy::immediate, "immediate"},
                               {RebootStrategy::window, "window"},
                               {RebootStrategy::fleetlock, "fleetlock"}},
                              parse_reboot_strategy);
  round_trips<BootBackend>({{BootBackend::gptprio, "gptprio"},
                            {BootBackend::grubenv, "grubenv"},
                            {BootBackend::uefi, "uefi"},
                            {BootBackend::systemd_boot, "systemd-boot"}},
                           parse_boot_backend);
  round_trips<OutcomeKind>({{OutcomeKind::finalize, "finalize"},
                            {OutcomeKind::commit, "commit"},
                            {OutcomeKind::rollback, "rollback"},
                            {OutcomeKind::disarm, "disarm"}},
                           parse_outcome_kind);
  round_trips<OutcomeCode>({{OutcomeCode::armed, "Armed"},
                            {OutcomeCode::committed, "Committed"},
                            {OutcomeCode::nothing_pending, "NothingPending"},
                            {OutcomeCode::not_rebooted, "NotRebooted"},
                            {OutcomeCode::target_boot_failed, "TargetBootFailed"},
                            {OutcomeCode::disarmed, "Disarmed"}},
                           parse_outcome_code);
}

// BootBackend is the boot backends' own word (partitions/boot/backend.hpp, tested there), named
// in the agent's vocabulary: one enum, one table, under both names.
static_assert(std::is_same_v<BootBackend, abup::partitions::boot::BootBackend>);

TEST_CASE("vocabulary: parse is strict and names the value and every word allowed") {
  auto m = parse_mode("AKS");  // case matters, as in systemd's settings
  REQUIRE_FALSE(m);
  CHECK(m.error().code == Errc::usage);
  CHECK(m.error().message == "expected aks or autonomous, got 'AKS'");
  auto s = parse_reboot_strategy("");
  REQUIRE_FALSE(s);
  CHECK(s.error().message == "expected off, immediate, window or fleetlock, got ''");
  // Words read back from abup's own files are invalid input, not a usage error.
  auto c = parse_outcome_code("committed");
  REQUIRE_FALSE(c);
  CHECK(c.error().code == Errc::invalid_input);
}
