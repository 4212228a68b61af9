// Options shared by abup's commands, and how their errors reach the user.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "abup/args.hpp"
#include "abup/result.hpp"
#include "agent/config.hpp"
#include "update-protocol/http/client.hpp"

namespace abup::agent::cli {

// --disk, --root, --state-dir, --config, --help.
[[nodiscard]] std::vector<OptionSpec> common_options();
// Transport options of commands that download.
[[nodiscard]] std::vector<OptionSpec> transport_options();

struct Common {
  std::string disk;
  std::filesystem::path root = "/";
  std::filesystem::path state_dir;
  Config config;
};

// Reads the common options and the configuration (command-line options override it).
[[nodiscard]] Result<Common> load_common(const Args& args);
[[nodiscard]] protocol::TransportOptions transport(const Args& args, const Config& config);

// Prints "abup: message" and returns the exit status for the error.
int report(const Error& error);

int cmd_stage(const std::vector<std::string>& argv);
int cmd_status(const std::vector<std::string>& argv);

}  // namespace abup::agent::cli
