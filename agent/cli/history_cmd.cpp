#include <cstdio>
#include <nlohmann/json.hpp>

#include "agent/cli/common.hpp"

namespace abup::agent::cli {
namespace {

std::vector<OptionSpec> history_options() {
  auto specs = common_options();
  specs.push_back({"json", false, false, "print a JSON array"});
  return specs;
}

int run_history(const Args& args) {
  auto common = load_common(args, false);
  if (!common) return report(common.error());
  std::vector<std::string> skipped;
  auto lines = read_history(common->state_dir, &skipped);
  if (!lines) return report(lines.error());
  for (const auto& why : skipped) std::fprintf(stderr, "abup: skipped: %s\n", why.c_str());
  if (args.has("json")) {
    auto all = nlohmann::json::array();
    for (const auto& h : *lines) all.push_back(h.line);
    std::printf("%s\n", all.dump(2).c_str());
    return 0;
  }
  for (const auto& h : *lines) {
    auto s = [](const std::string& v) { return v.empty() ? "-" : v.c_str(); };
    std::printf("%s  %-8s %-16s %s %s -> %s %s  %s\n", s(h.time), s(h.kind), s(h.outcome),
                s(h.from_slot), s(h.from_version), s(h.to_slot), s(h.to_version),
                s(h.operation_id));
  }
  return 0;
}

}  // namespace

abup::cli::Command history_command() {
  return {
      .name = "history",
      .summary = "the finished lifecycle operations",
      .synopsis = "[--root DIR] [--state-dir DIR] [--json]",
      .description = "The finished lifecycle operations, oldest first (STATE-DIR/history.jsonl).",
      .options = history_options(),
      .run = run_history};
}

}  // namespace abup::agent::cli
