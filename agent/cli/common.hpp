// Options shared by abup's commands, and how their errors reach the user.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "abup/args.hpp"
#include "abup/cli.hpp"
#include "abup/result.hpp"
#include "agent/config.hpp"
#include "agent/dbus/client.hpp"
#include "agent/lifecycle.hpp"
#include "update-protocol/http/client.hpp"

namespace abup::agent::cli {

// --disk, --root, --state-dir, --config.
[[nodiscard]] std::vector<OptionSpec> common_options();
// Transport options of commands that download.
[[nodiscard]] std::vector<OptionSpec> transport_options();

struct Common {
  std::string disk;
  std::filesystem::path root = "/";
  std::filesystem::path state_dir;
  Config config;
};

// Options of the commands that read or drive the boot backend: --boot-backend, --grubenv.
[[nodiscard]] std::vector<OptionSpec> backend_options();
// --reboot, --reboot-command (finalize, rollback).
[[nodiscard]] std::vector<OptionSpec> reboot_options();

// Reads the common options and the configuration (command-line options override it).
// need_disk: whether the command needs a disk (history reads only the state directory); without
// --disk it is the boot disk of the running system (partitions::find_boot_disk under --root).
[[nodiscard]] Result<Common> load_common(const Args& args, bool need_disk = true);
// Where the lifecycle acts, from the common and backend options.
[[nodiscard]] Result<LifecycleOptions> lifecycle_options(const Args& args, const Common& common);
// After a successful arming with --reboot: runs the configured reboot command, or without one
// asks logind over D-Bus (org.freedesktop.login1.Manager.Reboot). When that fails, says so and
// returns 1 (the slot stays armed).
int reboot_after_arming(const Args& args, const Config& config);
// Prints the outcome's warnings on stderr, then the outcome on stdout (as JSON or one line).
void print_outcome(const Outcome& outcome, bool json);
[[nodiscard]] protocol::TransportOptions transport(const Args& args, const Config& config);

// Prints "abup: message" and returns the exit status for the error (abup::cli::exit_status; or
// `status` when given).
int report(const Error& error);
int report(const Error& error, int status);

// abup's commands, in the order `abup --help` lists them (agent/main.cpp runs the table).
[[nodiscard]] abup::cli::Command stage_command();
[[nodiscard]] abup::cli::Command finalize_command();
[[nodiscard]] abup::cli::Command commit_command();
[[nodiscard]] abup::cli::Command rollback_command();
[[nodiscard]] abup::cli::Command disarm_command();
[[nodiscard]] abup::cli::Command status_command();
[[nodiscard]] abup::cli::Command history_command();
[[nodiscard]] abup::cli::Command daemon_command();
[[nodiscard]] abup::cli::Command check_command();
[[nodiscard]] abup::cli::Command update_command();

// The daemon's D-Bus API (org.abup.Agent1 on the system bus) when a process owns the name;
// nullptr when there is no system bus or no daemon (the commands then act directly).
[[nodiscard]] std::unique_ptr<dbus::Client> connect_daemon();
// "staging, write 45% (12 MiB of 26 MiB)" for the daemon's state and progress.
[[nodiscard]] std::string describe_daemon_state(const dbus::AgentStatus& status);

}  // namespace abup::agent::cli
