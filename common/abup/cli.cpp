#include "abup/cli.hpp"

#include <algorithm>
#include <cstdio>

#ifndef ABUP_VERSION
#define ABUP_VERSION "unknown"
#endif

namespace abup::cli {
namespace {

bool asks_help(const std::vector<std::string>& argv) {
  for (const auto& a : argv) {
    if (a == "--") return false;
    if (a == "-h" || a == "--help") return true;
  }
  return false;
}

std::string program_help(const Program& p) {
  std::size_t width = 0;
  for (const auto& c : p.commands) width = std::max(width, c.name.size());
  std::string out = "usage: " + p.name + " COMMAND [OPTIONS]\n       " + p.name + " --version\n\n" +
                    p.summary + "\n\nCommands:\n";
  for (const auto& c : p.commands) {
    std::string name = c.name;
    name.resize(width + 2, ' ');
    out += "  " + name + c.summary + "\n";
  }
  out += "\nRun `" + p.name + " COMMAND --help` for the options of one command.\n";
  return out;
}

std::vector<OptionSpec> with_help(std::vector<OptionSpec> specs) {
  specs.push_back({"help", false, false, "show this help (also -h)"});
  return specs;
}

std::string command_help(const Program& p, const Command& c) {
  std::string out = "usage: " + p.name + " " + c.name + " " + c.synopsis + "\n\n";
  if (!c.description.empty()) out += c.description + "\n\n";
  return out + format_options(with_help(c.options));
}

Status check_positionals(const Command& c, const std::vector<std::string>& got) {
  if (got.size() >= c.min_positionals && got.size() <= c.max_positionals) return {};
  if (c.max_positionals == 0)
    return make_error(Errc::usage, "unexpected argument '" + got.front() + "' (" + c.name +
                                       " takes options only)");
  std::string expected =
      c.min_positionals == c.max_positionals
          ? "exactly " +
                (c.max_positionals == 1 ? std::string("one") : std::to_string(c.max_positionals))
          : std::to_string(c.min_positionals) + " to " + std::to_string(c.max_positionals);
  std::string msg = "expected " + expected + " " + c.positional_name + " argument" +
                    (c.max_positionals == 1 ? "" : "s") + ", got " + std::to_string(got.size());
  if (got.size() > c.max_positionals) {
    msg += ":";
    for (const auto& g : got) msg += " '" + g + "'";
  }
  return make_error(Errc::usage, msg);
}

}  // namespace

int exit_status(Errc code) {
  return code == Errc::usage ? kExitUsage : kExitFailure;
}

int report(const std::string& program, const Error& e) {
  std::fprintf(stderr, "%s: %s\n", program.c_str(), e.message.c_str());
  return exit_status(e.code);
}

const char* version() {
  return ABUP_VERSION;
}

int run(const Program& p, const std::vector<std::string>& argv) {
  if (argv.empty()) {
    std::fputs(program_help(p).c_str(), stderr);
    return kExitUsage;
  }
  const std::string& first = argv[0];
  if (first == "--version") {
    std::printf("%s %s\n", p.name.c_str(), version());
    return kExitOk;
  }
  const bool help_word = first == "help";
  if (help_word || first == "-h" || first == "--help") {
    if (help_word && argv.size() > 1) {
      for (const auto& c : p.commands)
        if (c.name == argv[1]) {
          std::fputs(command_help(p, c).c_str(), stdout);
          return kExitOk;
        }
      std::fprintf(stderr, "%s: unknown command '%s'\n", p.name.c_str(), argv[1].c_str());
      return kExitUsage;
    }
    std::fputs(program_help(p).c_str(), stdout);
    return kExitOk;
  }
  const Command* cmd = nullptr;
  for (const auto& c : p.commands)
    if (c.name == first) cmd = &c;
  if (!cmd) {
    std::fprintf(stderr, "%s: unknown command '%s'\n%s", p.name.c_str(), first.c_str(),
                 program_help(p).c_str());
    return kExitUsage;
  }
  const std::vector<std::string> rest(argv.begin() + 1, argv.end());
  if (asks_help(rest)) {
    std::fputs(command_help(p, *cmd).c_str(), stdout);
    return kExitOk;
  }
  auto args = Args::parse(rest, cmd->options);
  if (!args) return report(p.name, std::move(args).error().with_context(cmd->name));
  if (auto st = check_positionals(*cmd, args->positionals()); !st)
    return report(p.name, std::move(st).error().with_context(cmd->name));
  std::fflush(stdout);
  return cmd->run(*args);
}

}  // namespace abup::cli
