// JSON documents more than one test binary builds: the AKS contract's request (docs/reference/
// aks-contract.md) as the node controller writes it, for the contract tests that parse it and
// for the agent's store tests that persist the Request it parses to.
// Header-only: the test support library does not link the update-protocol code.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace abup::test {

inline constexpr const char* kAksNodeUpdateId = "8a0f3c1e-5b6d-4e2f-9a7b-1c2d3e4f5a6b";
inline constexpr const char* kAksOperationId = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0";

// A valid request for `operation` (stage, finalize): every field present, to version
// 202606.29.0 on the stable track.
inline nlohmann::json aks_request_json(std::string_view operation = "stage") {
  return {{"schemaVersion", "1.0"},
          {"nodeUpdateId", kAksNodeUpdateId},
          {"operationId", kAksOperationId},
          {"operation", std::string(operation)},
          {"targetVersion", "202606.29.0"},
          {"server", "https://updates.example/v1/update"},
          {"appId", "{e96281a6-d1af-4bde-9a0a-97b76e56dc57}"},
          {"track", "stable"}};
}

}  // namespace abup::test
