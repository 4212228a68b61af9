// <state-dir>/aks.json: what the AKS contract needs to survive restarts and the reboot, replaced
// atomically on every change. Terminal statuses are cached per operationId with one member per
// phase (operation, commit), so a repeated request is answered without redoing work.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "abup/result.hpp"
#include "update-protocol/aks/contract.hpp"

namespace abup::agent::aks {

// An operation started and not finished (a restart finds it here).
struct InFlight {
  protocol::aks::Request request;
  std::string started_utc, from_version;
};

// What finalize/rollback armed: the commit after the reboot reports it, and sends the Omaha
// events to the server the request named.
struct Armed {
  protocol::aks::Request request;
  std::string started_utc, from_version, to_version;
};

struct Staged {
  std::string node_update_id, version, operation_id;
};

struct CachedOperation {
  std::string operation_id;
  std::optional<protocol::aks::OperationStatus> operation, commit;
};

struct AksState {
  std::vector<CachedOperation> cache;  // oldest first, bounded
  std::optional<InFlight> in_flight;
  std::optional<Armed> armed;
  std::optional<Staged> staged;
  // Top-level members this abup does not know (serialized), written back unchanged.
  std::map<std::string, std::string> unknown;

  [[nodiscard]] CachedOperation* find(const std::string& operation_id);
  void remember(const protocol::aks::OperationStatus& status, bool commit_phase);
};

// Missing: the empty state. Never throws: a field of the wrong type is an error naming the file
// and the field (Errc::invalid_input), a newer schemaVersion one saying so (Errc::refused).
[[nodiscard]] Result<AksState> load_aks_state(const std::filesystem::path& state_dir);
[[nodiscard]] Status save_aks_state(const std::filesystem::path& state_dir, const AksState& state);

}  // namespace abup::agent::aks
