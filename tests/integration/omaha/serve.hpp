// abup-serve run as a real process for the Omaha tests, and a node tree that `abup check` reads.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "support/nginx.hpp"
#include "support/omaha_client.hpp"
#include "support/util.hpp"
#include "update-protocol/http/client.hpp"
#include "update-protocol/omaha/omaha.hpp"

namespace abup::test {

inline constexpr const char* kAppId = "{b0ec8f0d-1c13-4bf4-9efd-ea54464a7098}";

// abup-serve --dir DIR on a free loopback port, with its event and request logs.
class Serve {
 public:
  explicit Serve(const std::filesystem::path& dir);
  Serve(const Serve&) = delete;
  Serve& operator=(const Serve&) = delete;

  [[nodiscard]] std::string endpoint() const { return url("v1/update"); }
  [[nodiscard]] std::string url(const std::string& path) const;
  // Every line of the --events / --requests logs, parsed.
  [[nodiscard]] std::vector<nlohmann::json> events() const;
  [[nodiscard]] std::vector<nlohmann::json> requests() const;
  [[nodiscard]] std::uint16_t port() const { return process_.ports().at(0); }

 private:
  TempDir temp_;
  ServerProcess process_;  // last: stopped before the temp dir goes
};

// Writes DIR/tracks.json.
void write_tracks(const std::filesystem::path& dir, const nlohmann::json& tracks);
// Writes ROOT/etc/abup/abup.conf for an Omaha server (plain http allowed).
void write_omaha_config(const std::filesystem::path& root, const std::string& server,
                        const std::string& extra = "");
// support/omaha_client.hpp's identity for `server`, with app kAppId. plain_http() (no retries:
// the tests count requests) comes from there too.
inline protocol::omaha::Identity test_identity(const std::string& server) {
  return test_identity(server, kAppId);
}
// `abup check --root ROOT EXTRA`.
RunResult abup_check(const std::filesystem::path& root, const std::string& extra = "");

}  // namespace abup::test
