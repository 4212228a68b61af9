#include <cstdio>
#include <nlohmann/json.hpp>

#include "agent/cli/common.hpp"
#include "agent/host.hpp"
#include "agent/state.hpp"
#include "partitions/slots.hpp"

namespace abup::agent::cli {

int cmd_status(const std::vector<std::string>& argv) {
  auto specs = common_options();
  specs.push_back({"json", false, false, "machine-readable output"});
  auto args = Args::parse(argv, specs);
  if (!args) return report(args.error());
  if (args->has("help")) {
    std::printf("usage: abup status --disk PATH [--root DIR] [--state-dir DIR] [--json]\n\n%s",
                format_options(specs).c_str());
    return 0;
  }
  auto common = load_common(*args);
  if (!common) return report(common.error());
  auto pair = partitions::discover_slots(common->disk);
  if (!pair) return report(pair.error());
  auto booted = partitions::booted_slot(*pair, common->root);
  if (!booted) return report(booted.error());
  auto host = read_host_facts(common->root);
  if (!host) return report(host.error());
  // Status reads without the lock: it must work while an operation runs, and state.json is
  // replaced atomically, so it is always whole.
  auto state = StateStore(common->state_dir).load();
  if (!state) return report(state.error());

  nlohmann::json slots = nlohmann::json::array();
  for (const auto* s : {&pair->a, &pair->b}) {
    bool is_booted = *booted && **booted == s->name;
    const SlotRecord* rec = state->slot(s->partuuid());
    std::string st = "unknown", version, error, updated;
    if (rec) {
      st = std::string(to_string(rec->state));
      version = rec->version;
      error = rec->error;
      updated = rec->updated_at;
    }
    if (is_booted) {
      // The running slot: its version is what is running, whatever was recorded.
      version = host->version ? host->version->text : version;
      if (!rec || rec->version != version) st = "committed";
    }
    nlohmann::json j = {{"name", std::string(1, s->name)},
                        {"label", s->label()},
                        {"partuuid", s->partuuid()},
                        {"booted", is_booted},
                        {"state", st},
                        {"version", version},
                        {"sizeBytes", s->size}};
    if (!updated.empty()) j["updatedAt"] = updated;
    if (!error.empty()) j["error"] = error;
    slots.push_back(std::move(j));
  }
  if (args->has("json")) {
    nlohmann::json out = {{"disk", common->disk}, {"slots", slots}};
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  std::printf("disk %s%s\n", common->disk.c_str(), *booted ? "" : " (booted slot unknown)");
  for (const auto& s : slots) {
    std::printf(
        "  %s %-6s %s  %-9s %s%s\n", s["booted"].get<bool>() ? "*" : " ",
        s["label"].get<std::string>().c_str(), s["partuuid"].get<std::string>().c_str(),
        s["state"].get<std::string>().c_str(),
        s["version"].get<std::string>().empty() ? "-" : s["version"].get<std::string>().c_str(),
        s.contains("error") ? ("  error: " + s["error"].get<std::string>()).c_str() : "");
  }
  return 0;
}

}  // namespace abup::agent::cli
