// abup's D-Bus API (docs/dbus.md): the names, the published state, the handler the daemon
// implements, and the error names. Neutral: nothing here knows sd-bus (agent/dbus/server.* and
// client.* do), so the daemon and the CLI share one description of the API.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "abup/result.hpp"
#include "agent/lifecycle.hpp"

namespace abup::agent::dbus {

inline constexpr const char* kBusName = "org.abup.Agent1";
inline constexpr const char* kObjectPath = "/org/abup/Agent1";
inline constexpr const char* kInterface = "org.abup.Agent1";

// Values of the State property. The daemon may publish others; clients treat an unknown state
// as "busy".
inline constexpr std::string_view kStateIdle = "idle";
inline constexpr std::string_view kStateChecking = "checking";
inline constexpr std::string_view kStateStaging = "staging";
inline constexpr std::string_view kStateStaged = "staged";
inline constexpr std::string_view kStateArmed = "armed";
inline constexpr std::string_view kStateRebooting = "rebooting";
inline constexpr std::string_view kStateCommitting = "committing";
inline constexpr std::string_view kStateError = "error";

struct Progress {
  std::string phase;  // "" when nothing runs; stage phases: verify, plan, write, read-back
  std::uint64_t done = 0, total = 0;
  bool operator==(const Progress&) const = default;
};

// Everything the object publishes as properties. Slots are "A"/"B", "" when unknown.
struct AgentStatus {
  // to_string(Mode), or "operator" (a test double); a string on the wire, as State is.
  std::string mode{to_string(Mode::autonomous)};
  std::string state{kStateIdle};
  Progress progress;
  std::string booted_slot, next_slot, default_slot;
  std::string booted_version, staged_version;
  std::string available_version;  // what the last check offered ("" none)
  std::string last_error_code, last_error;
  std::string operation_id;      // the running or last operation
  std::uint64_t last_check = 0;  // microseconds since the epoch, 0 never
  bool operator==(const AgentStatus&) const = default;
};

// Errors a method returns, as org.abup.Agent1.Error.<Name>.
enum class ApiErrc {
  failed,         // Failed: the operation failed (the message says why)
  busy,           // Busy: another operation runs; retry later or Cancel it
  invalid_args,   // InvalidArgs: malformed argument
  not_staged,     // NotStaged: Finalize with nothing staged
  nothing_to_do,  // NothingToDo: Cancel with nothing running, CheckNow with no server
  refused,        // Refused: a safety rule forbids it (pending operation, unsafe rollback)
  untrusted,      // Untrusted: signature or digest checks failed
  policy,         // Policy: version/arch/expiry/downgrade policy
  network,        // Network: the transport failed (may be transient)
  cancelled,      // Cancelled
};

struct ApiError {
  ApiErrc code = ApiErrc::failed;
  std::string message;
};

// "org.abup.Agent1.Error.Busy"
[[nodiscard]] std::string error_name(ApiErrc code);
// The inverse; nullopt for names not ours.
[[nodiscard]] std::optional<ApiErrc> parse_error_name(std::string_view name);
// The lifecycle's and pipeline's errors, by their class.
[[nodiscard]] ApiError to_api_error(const Error& error);

// What a method answers: its value or the error to send.
template <typename T>
using Reply = std::variant<T, ApiError>;

// Finalize and Rollback answer the lifecycle's outcome as a string dict (a{ss}): kind, code,
// operationId, fromSlot, toSlot, fromVersion, toVersion, time, message.
using OutcomeMap = std::map<std::string, std::string>;
[[nodiscard]] OutcomeMap outcome_map(const Outcome& outcome);

// Reads what the disk and the running system say (BootedSlot, NextSlot, DefaultSlot,
// BootedVersion, StagedVersion) into `status`; the daemon calls it after every operation.
[[nodiscard]] Status read_slot_facts(const LifecycleOptions& where, AgentStatus& status);

// Where Finalize and Rollback send their answer: at once (a refusal), or later from the bus's
// thread once the write ran elsewhere (the daemon's worker). Called exactly once.
using OutcomeReply = std::function<void(Reply<OutcomeMap>)>;

// Implemented by the daemon; called on the bus's thread, from inside a process step. Methods
// that start long work (CheckNow, Stage) return at once with the operation's id and report
// through Server::update(); Finalize and Rollback answer through `reply` when their write is done,
// so the bus's thread never waits for a disk.
class Handler {
 public:
  virtual ~Handler() = default;
  // Asks the update server now and stages what it offers. Answers the operation id.
  virtual Reply<std::string> check_now() = 0;
  // Stages a version (asked of the update server) or an image URL/path; "" = what a check offers.
  virtual Reply<std::string> stage(const std::string& version_or_url) = 0;
  virtual void finalize(bool reboot, OutcomeReply reply) = 0;
  virtual void rollback(bool reboot, bool force, OutcomeReply reply) = 0;
  // Stops the running operation; answers its id.
  virtual Reply<std::string> cancel() = 0;
};

}  // namespace abup::agent::dbus
