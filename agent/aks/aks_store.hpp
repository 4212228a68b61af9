// <state-dir>/aks.json: what the AKS contract needs to survive restarts and the reboot, replaced
// atomically on every change. Terminal statuses are cached per operationId with one member per
// phase (operation, commit), so a repeated request is answered without redoing work.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "abup/result.hpp"
#include "agent/json_file_store.hpp"
#include "update-protocol/aks/contract.hpp"

namespace abup::agent::aks {

// What finalize/rollback armed: the commit after the reboot reports it, and sends the Omaha
// events to the server the request named.
struct Armed {
  protocol::aks::Request request;
  std::string started_utc, from_version, to_version;
  // The operation id of state.json's pending commit this arming left: a finalize repeated while
  // its version is armed re-arms the earlier pending commit. Empty: request.operation_id.
  std::string pending_operation_id = {};
  [[nodiscard]] const std::string& pending_id() const {
    return pending_operation_id.empty() ? request.operation_id : pending_operation_id;
  }
};

// An operation started and not finished (a restart finds it here).
struct InFlight {
  protocol::aks::Request request;
  std::string started_utc, from_version;
  // A finalize or rollback asked while armed: the arming it replaces, armed again when this one
  // fails and state.json still holds that arming's pending commit.
  std::optional<Armed> superseded = {};
};

struct Staged {
  std::string node_update_id, version, operation_id;
};

struct CachedOperation {
  std::string operation_id;
  std::optional<protocol::aks::OperationStatus> operation, commit;
};

struct AksState : PersistedFile {
  static constexpr std::string_view kFileName = "aks.json";
  static constexpr std::string_view kMembers[] = {"operations", "inFlight", "armed", "staged"};
  static constexpr std::string_view kAside = "and forget the AKS operations it caches";

  std::vector<CachedOperation> cache;  // oldest first, bounded
  std::optional<InFlight> in_flight;
  std::optional<Armed> armed;
  std::optional<Staged> staged;

  [[nodiscard]] CachedOperation* find(const std::string& operation_id);
  void remember(const protocol::aks::OperationStatus& status, bool commit_phase);

  [[nodiscard]] static Result<AksState> from_json(const JsonFields& top);
  [[nodiscard]] nlohmann::json to_json() const;
};

using AksStore = JsonFileStore<AksState>;

}  // namespace abup::agent::aks
