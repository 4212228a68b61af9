// The agent's closed vocabularies: each word the configuration accepts is an enum, with one
// strict parse (the configuration's and the command line's) and one to_string (what status,
// JSON, metrics labels and the journal print). A word has exactly one spelling, written once in
// vocabulary.cpp's tables (the boot backends' in partitions/boot/backend.cpp).
#pragma once

#include <string_view>

#include "abup/result.hpp"
#include "partitions/boot/backend.hpp"

namespace abup::agent {

// [Update] Mode=: who drives updates (docs/design.md §1).
enum class Mode { autonomous, aks };

// [Reboot] Strategy=: when an armed slot is rebooted into (autonomous mode).
enum class RebootStrategy { off, immediate, window, fleetlock };

// [Update] BootBackend=, --boot-backend: how a slot is armed and committed. The boot backends'
// own word (partitions/boot/backend.hpp, with its to_string and parse_boot_backend), named here
// with the agent's other words.
using BootBackend = partitions::boot::BootBackend;
using partitions::boot::parse_boot_backend;
using partitions::boot::to_string;

// A lifecycle operation that ended (history.jsonl "kind", `--json`, D-Bus outcome "kind").
enum class OutcomeKind { finalize, commit, rollback, disarm };

// How it ended (history.jsonl "outcome", `--json` and D-Bus outcome "code"): Armed,
// Committed, NothingPending, NotRebooted, TargetBootFailed, Disarmed.
enum class OutcomeCode {
  armed,
  committed,
  nothing_pending,
  not_rebooted,
  target_boot_failed,
  disarmed
};

[[nodiscard]] std::string_view to_string(Mode mode);
[[nodiscard]] std::string_view to_string(RebootStrategy strategy);
[[nodiscard]] std::string_view to_string(OutcomeKind kind);
[[nodiscard]] std::string_view to_string(OutcomeCode code);

// Errc::usage naming the text and every word allowed ("expected aks or autonomous, got 'x'").
[[nodiscard]] Result<Mode> parse_mode(std::string_view text);
[[nodiscard]] Result<RebootStrategy> parse_reboot_strategy(std::string_view text);
// The same, Errc::invalid_input: these are read from files abup wrote.
[[nodiscard]] Result<OutcomeKind> parse_outcome_kind(std::string_view text);
[[nodiscard]] Result<OutcomeCode> parse_outcome_code(std::string_view text);

}  // namespace abup::agent
