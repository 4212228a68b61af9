// The AKS ↔ node annotation contract, schema 1.0 (docs/reference/aks-contract.md,
// docs/architecture.md §6): the request the control plane writes on the Node, and the status the
// node answers with. Pure parsing and serialization, no I/O (fuzzable).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "abup/result.hpp"

namespace abup::protocol::aks {

inline constexpr std::string_view kSchemaVersion = "1.0";
// Annotation keys, after "<prefix>/".
inline constexpr std::string_view kRequestKey = "update-request";
inline constexpr std::string_view kStatusKey = "update-status";
inline constexpr std::string_view kCommitStatusKey = "update-commit-status";
// A status message holds at most this many bytes; a cut one ends with kTruncatedMark.
inline constexpr std::size_t kMessageCap = 2048;
inline constexpr std::string_view kTruncatedMark = "\u2026[truncated]";

enum class Operation { stage, finalize, rollback, commit };
enum class Code {
  in_progress,
  success,
  already_at_target,
  not_staged,
  operation_failed,
  target_boot_failed,
  agent_internal_error,
  invalid_request,
};

[[nodiscard]] std::string_view to_string(Operation op);
[[nodiscard]] std::string_view to_string(Code code);
[[nodiscard]] std::optional<Operation> parse_operation(std::string_view text);
[[nodiscard]] std::optional<Code> parse_code(std::string_view text);
[[nodiscard]] inline bool is_terminal(Code c) {
  return c != Code::in_progress;
}

// 8-4-4-4-12 hexadecimal digits (either case), as RFC 4122 spells a UUID.
[[nodiscard]] bool is_uuid(std::string_view text);

struct Request {
  std::string node_update_id;
  std::string operation_id;
  Operation operation = Operation::stage;  // never commit: that one is implicit
  std::string target_version;              // stage, finalize; empty for rollback
  std::string server;                      // full Omaha endpoint URL (stage, finalize)
  std::string app_id;
  std::string track;
};

// Parses and validates a request; every violation is an Errc::invalid_input error naming the
// field (unknown fields, schemaVersion, ids, operation, per-operation required fields, server).
[[nodiscard]] Result<Request> parse_request(std::string_view json);

// What can be salvaged from a request that failed validation, to answer it with InvalidRequest:
// a status is schema-valid only with valid ids and an operation. When `answerable` is false the
// request is too broken for a status (a Warning Event on the Node is all the node can do).
struct Salvage {
  bool answerable = false;
  std::string node_update_id;
  std::string operation_id;
  Operation operation = Operation::stage;
  std::string target_version;
};
[[nodiscard]] Salvage salvage_request(std::string_view json);

struct OperationStatus {
  std::string node_update_id;
  std::string operation_id;
  Operation operation = Operation::stage;
  Code code = Code::in_progress;
  std::string message;
  std::string from_version, to_version;  // omitted when empty
  std::string started_utc;               // RFC 3339 UTC, "2026-11-24T08:00:00Z"
  std::string last_updated_utc;
  std::string finished_utc;  // terminal codes only
};

// Cuts `message` to at most kMessageCap bytes, on a UTF-8 character boundary, ending with
// kTruncatedMark when cut.
[[nodiscard]] std::string cap_message(std::string_view message);

// The status document, compact JSON. InProgress carries startedUtc + lastUpdatedUtc, every other
// code startedUtc + lastUpdatedUtc + finishedUtc; the message is capped. Fails (naming the field)
// when a required time is missing, so no schema-invalid status leaves the node.
[[nodiscard]] Result<std::string> serialize_status(const OperationStatus& status);
// Reads a status back (state file, tests); as strict as the writer.
[[nodiscard]] Result<OperationStatus> parse_status(std::string_view json);

// RFC 3339 UTC with a 'Z' and whole seconds.
[[nodiscard]] bool is_rfc3339_utc(std::string_view text);

}  // namespace abup::protocol::aks
