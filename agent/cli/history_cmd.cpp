#include <cstdio>
#include <nlohmann/json.hpp>

#include "agent/cli/common.hpp"

namespace abup::agent::cli {

int cmd_history(const std::vector<std::string>& argv) {
  auto specs = common_options();
  specs.push_back({"json", false, false, "print a JSON array"});
  auto args = Args::parse(argv, specs);
  if (!args) return report(args.error());
  if (args->has("help")) {
    std::printf(
        "usage: abup history [--root DIR] [--state-dir DIR] [--json]\n\n"
        "The finished lifecycle operations, oldest first (STATE-DIR/history.jsonl).\n\n%s",
        format_options(specs).c_str());
    return 0;
  }
  auto common = load_common(*args, false);
  if (!common) return report(common.error());
  std::vector<std::string> skipped;
  auto lines = read_history(common->state_dir, &skipped);
  if (!lines) return report(lines.error());
  for (const auto& why : skipped) std::fprintf(stderr, "abup: skipped: %s\n", why.c_str());
  if (args->has("json")) {
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

}  // namespace abup::agent::cli
