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
    std::printf("%s\n", nlohmann::json(*lines).dump(2).c_str());
    return 0;
  }
  for (const auto& h : *lines) {
    auto s = [&](const char* k) {
      auto it = h.find(k);
      return it != h.end() && it->is_string() && !it->get<std::string>().empty()
                 ? it->get<std::string>()
                 : std::string("-");
    };
    std::printf("%s  %-8s %-16s %s %s -> %s %s  %s\n", s("time").c_str(), s("kind").c_str(),
                s("outcome").c_str(), s("fromSlot").c_str(), s("fromVersion").c_str(),
                s("toSlot").c_str(), s("toVersion").c_str(), s("operationId").c_str());
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
