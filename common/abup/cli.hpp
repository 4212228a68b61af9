// One command table and one runner for abup and abup-image: parsing, -h/--help, --version,
// refused options and positionals, and one table from an error to the exit status.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "abup/args.hpp"
#include "abup/result.hpp"

namespace abup::cli {

// The exit statuses of both programs (README "Exit status", docs/abup.8). 3 and 4 are
// outcomes of `abup commit` that a boot-time caller must tell apart from an error.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitTargetBootFailed = 3;
inline constexpr int kExitNotRebooted = 4;

// Errc::usage (a bad command line or configuration) is 2; every other error is 1: malformed
// data (an image, a server's answer, the state) is not fixed by changing how abup is invoked.
[[nodiscard]] int exit_status(Errc code);
// Prints "PROGRAM: message" on stderr and returns exit_status(error.code).
int report(const std::string& program, const Error& error);

struct Command {
  std::string name{};
  std::string summary{};              // one line in the program's command list
  std::string synopsis{};             // what follows "usage: PROGRAM NAME "
  std::string description{};          // paragraphs after the synopsis in --help; may be empty
  std::vector<OptionSpec> options{};  // the runner adds --help (-h)
  std::function<int(const Args&)> run{};
  // Last, so that commands without positionals leave them out of their designated initializer.
  std::size_t min_positionals = 0;
  std::size_t max_positionals = 0;
  std::string positional_name{};  // "IMAGE", for the messages
};

struct Program {
  std::string name;
  std::string summary;  // first line of the program's help
  std::vector<Command> commands;
};

// The version CMake's project() declares.
[[nodiscard]] const char* version();
// Runs argv (without the program name): `PROGRAM COMMAND [OPTIONS]`, `PROGRAM -h|--help|help
// [COMMAND]`, `PROGRAM --version`, `PROGRAM COMMAND -h|--help`.
int run(const Program& program, const std::vector<std::string>& argv);

}  // namespace abup::cli
