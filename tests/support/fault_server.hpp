// A misbehaving HTTP server on loopback (tests/support/fault_server.py) for the faults nginx
// cannot produce. The URL prefix picks the fault; see the script's docstring:
//   /extra/, /wrongrange/, /norange/, /nohead/, /drop/N/, /flaky/K/, /redirect/N/, /slow/,
//   /status/C/, /echo/, /hang/
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "support/nginx.hpp"
#include "support/util.hpp"

namespace abup::test {

class FaultServer {
 public:
  // Serves the files under `root`.
  explicit FaultServer(std::filesystem::path root);
  FaultServer(const FaultServer&) = delete;
  FaultServer& operator=(const FaultServer&) = delete;

  // "http://127.0.0.1:PORT/" + path.
  [[nodiscard]] std::string url(const std::string& path) const;
  // Every request so far, in order: "METHOD PATH RANGE" (RANGE "-" when absent).
  [[nodiscard]] std::vector<std::string> requests() const;

 private:
  TempDir temp_;
  ServerProcess process_;  // last: stopped before the temp dir goes
};

}  // namespace abup::test
