#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>

#include "agent/cli/common.hpp"
#include "agent/host.hpp"
#include "agent/lifecycle.hpp"
#include "agent/persisted_json.hpp"
#include "agent/state.hpp"
#include "partitions/slots.hpp"
#include "update-protocol/manifest/manifest.hpp"

namespace abup::agent::cli {
namespace {

// Each recorded boot file read back from the ESP: ok, missing or mismatch.
nlohmann::json boot_files_status(const Common& c, const LifecycleOptions& o, const SlotRecord& r) {
  auto esp = find_esp(c.root, c.disk, o.boot);
  nlohmann::json out = nlohmann::json::array();
  for (const auto& b : r.boot_files)
    out.push_back({{"name", b.name},
                   {"path", b.path},
                   {"size", b.size},
                   {"sha256", b.sha256},
                   {"check", esp ? std::string(to_string(check_boot_file(*esp, b)))
                                 : "unknown (" + esp.error().message + ")"}});
  return out;
}

nlohmann::json daemon_json(const dbus::AgentStatus& s) {
  return {{"mode", s.mode},
          {"state", s.state},
          {"progress",
           {{"phase", s.progress.phase}, {"done", s.progress.done}, {"total", s.progress.total}}},
          {"operationId", s.operation_id},
          {"bootedSlot", s.booted_slot},
          {"nextSlot", s.next_slot},
          {"defaultSlot", s.default_slot},
          {"bootedVersion", s.booted_version},
          {"stagedVersion", s.staged_version},
          {"availableVersion", s.available_version},
          {"lastError", {{"code", s.last_error_code}, {"message", s.last_error}}},
          {"lastCheck", s.last_check}};
}

void print_daemon(const std::optional<dbus::AgentStatus>& live) {
  if (!live) {
    std::printf("daemon: not running\n");
    return;
  }
  const auto& s = *live;
  std::printf("daemon (%s): %s%s\n", s.mode.c_str(), describe_daemon_state(s).c_str(),
              s.operation_id.empty() ? "" : (", operation " + s.operation_id).c_str());
  if (!s.available_version.empty())
    std::printf("  available %s%s\n", s.available_version.c_str(),
                s.staged_version.empty() ? "" : (", staged " + s.staged_version).c_str());
  if (!s.last_error_code.empty() || !s.last_error.empty())
    std::printf("  last error %s: %s\n", s.last_error_code.c_str(), s.last_error.c_str());
}

std::vector<OptionSpec> status_options() {
  auto specs = common_options();
  auto b = backend_options();
  specs.insert(specs.end(), b.begin(), b.end());
  specs.push_back({"json", false, false, "machine-readable output"});
  specs.push_back({"no-daemon", false, false, "do not ask the running daemon for its live state"});
  return specs;
}

int run_status(const Args& args) {
  auto common = load_common(args);
  if (!common) return report(common.error());
  auto pair = partitions::discover_slots(common->disk);
  if (!pair) return report(pair.error());
  auto booted = partitions::booted_slot(*pair, common->root);
  if (!booted) return report(booted.error());
  auto host = read_host_facts(common->root);
  if (!host) return report(host.error());
  // Status reads without the lock: it must work while an operation runs, and state.json is
  // replaced atomically, so it is always whole. A state file it cannot use does not hide what
  // the disk and the bootloader say: it is shown beside them, and the exit status is 1.
  auto loaded = StateStore(common->state_dir).load_for_status();
  std::string state_error;
  State empty;
  const State* state = &empty;
  if (!loaded) {
    state_error = loaded.error().message;
  } else {
    state = &*loaded;
    if (state->schema_version > kStateSchemaVersion)
      state_error = (common->state_dir / "state.json").string() + ": schemaVersion " +
                    std::to_string(state->schema_version) +
                    ", written by a newer abup: shown as far as this abup knows it; the commands "
                    "that change the slots refuse";
  }
  auto where = lifecycle_options(args, *common);
  if (!where) return report(where.error());
  // The bootloader's view. Status must work without it (a missing grubenv, no efivars): the
  // backend's error is reported in a field instead.
  std::optional<partitions::boot::BootView> view;
  std::string backend_error;
  if (auto backend = open_backend(*where, *pair); !backend) {
    backend_error = backend.error().message;
  } else if (auto v = (*backend)->read(); !v) {
    backend_error = v.error().message;
  } else {
    view = std::move(*v);
  }
  auto slot_json = [](std::optional<char> s) {
    return s ? nlohmann::json(std::string(1, *s)) : nlohmann::json(nullptr);
  };

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
    if (view && view->slots.count(s->name)) {
      const auto& b = view->slots.at(s->name);
      j["good"] = b.good;
      j["tries"] = b.tries;
      j["priority"] = b.priority;
    }
    if (!updated.empty()) j["updatedAt"] = updated;
    if (!error.empty()) j["error"] = error;
    if (rec && !rec->boot_files.empty()) j["bootFiles"] = boot_files_status(*common, *where, *rec);
    slots.push_back(std::move(j));
  }
  // The daemon's live view, when one runs; status never depends on it.
  std::optional<dbus::AgentStatus> live;
  if (!args.has("no-daemon")) {
    if (auto client = connect_daemon()) {
      if (auto st = client->status(); st)
        live = std::move(*st);
      else
        std::fprintf(stderr, "abup: the daemon runs but did not answer: %s\n",
                     st.error().message.c_str());
    }
  }
  nlohmann::json pending = state->pending ? pending_json(*state->pending) : nlohmann::json(nullptr);
  // Freshness from signed data only (docs/security.md G4): a server withholding releases cannot
  // make this look newer, so its age tells monitoring how long no new release reached the node.
  const auto newest = newest_recorded_release(StateStore(common->state_dir),
                                              {pair->a.partuuid(), pair->b.partuuid()});
  const std::int64_t now = std::time(nullptr);
  const std::int64_t age_days = newest ? (now - newest->issued_at) / 86400 : 0;
  if (args.has("json")) {
    nlohmann::json out = {{"disk", common->disk},
                          {"slots", slots},
                          {"booted", slot_json(*booted)},
                          {"backend", to_string(where->backend)},
                          {"next", slot_json(view ? view->next : std::nullopt)},
                          {"default", slot_json(view ? view->default_slot : std::nullopt)},
                          {"pending", pending}};
    if (view) out["backendDetail"] = view->detail;
    if (!backend_error.empty()) out["backendError"] = backend_error;
    if (!state_error.empty()) out["stateError"] = state_error;
    out["newestSignedRelease"] =
        newest ? nlohmann::json{{"version", newest->version},
                                {"issuedAt", protocol::format_utc_time(newest->issued_at)},
                                {"ageDays", age_days}}
               : nlohmann::json(nullptr);
    out["highestCommittedVersion"] = state->highest_committed
                                         ? nlohmann::json(state->highest_committed->text)
                                         : nlohmann::json(nullptr);
    if (!state->failed_versions.empty()) {
      out["failedVersions"] = nlohmann::json::array();
      for (const auto& f : state->failed_versions)
        out["failedVersions"].push_back(
            {{"version", f.version}, {"code", to_string(f.code)}, {"operationId", f.operation_id}});
    }
    out["daemon"] = live ? daemon_json(*live) : nlohmann::json(nullptr);
    std::printf("%s\n", out.dump(2).c_str());
    if (!state_error.empty()) std::fprintf(stderr, "abup: %s\n", state_error.c_str());
    return state_error.empty() ? 0 : 1;
  }
  std::printf("disk %s%s\n", common->disk.c_str(), *booted ? "" : " (booted slot unknown)");
  for (const auto& s : slots) {
    std::string boot = "";
    if (s.contains("good"))
      boot = std::string(s["good"].get<bool>() ? "good" : "not good") + ", tries " +
             std::to_string(s["tries"].get<int>());
    std::printf(
        "  %s %-6s %s  %-9s %-14s %s%s\n", s["booted"].get<bool>() ? "*" : " ",
        s["label"].get<std::string>().c_str(), s["partuuid"].get<std::string>().c_str(),
        s["state"].get<std::string>().c_str(),
        s["version"].get<std::string>().empty() ? "-" : s["version"].get<std::string>().c_str(),
        boot.c_str(),
        s.contains("error") ? ("  error: " + s["error"].get<std::string>()).c_str() : "");
    for (const auto& b : s.value("bootFiles", nlohmann::json::array()))
      std::printf("      boot file %-8s %s  %llu bytes  sha256 %s  %s\n",
                  b["name"].get<std::string>().c_str(), b["path"].get<std::string>().c_str(),
                  static_cast<unsigned long long>(b["size"].get<std::uint64_t>()),
                  b["sha256"].get<std::string>().c_str(), b["check"].get<std::string>().c_str());
  }
  if (view) {
    auto name = [](std::optional<char> c) { return c ? std::string(1, *c) : std::string("none"); };
    std::printf("boot (%s): next %s, default %s; %s\n",
                std::string(to_string(where->backend)).c_str(), name(view->next).c_str(),
                name(view->default_slot).c_str(), view->detail.c_str());
  } else {
    std::printf("boot (%s): cannot read: %s\n", std::string(to_string(where->backend)).c_str(),
                backend_error.c_str());
  }
  if (state->pending) {
    const auto& p = *state->pending;
    std::printf("pending %s %s: slot %c, %s -> %s, armed %s; run `abup commit` after the reboot\n",
                to_string(p.kind).c_str(), p.operation_id.c_str(), p.target_slot,
                p.previous_version.c_str(), p.target_version.c_str(), p.armed_at.c_str());
  }
  if (newest)
    std::printf("newest signed release staged here: %s, issued %s (%lld days ago)\n",
                newest->version.c_str(), protocol::format_utc_time(newest->issued_at).c_str(),
                static_cast<long long>(age_days));
  if (state->highest_committed)
    std::printf("highest committed version %s (older releases are refused as downgrades)\n",
                state->highest_committed->text.c_str());
  if (!state_error.empty()) std::printf("state: %s\n", state_error.c_str());
  print_daemon(live);
  return state_error.empty() ? 0 : 1;
}

}  // namespace

abup::cli::Command status_command() {
  return {.name = "status",
          .summary = "show the slots, the bootloader's view, and what abup did to them",
          .synopsis = "[--disk PATH] [--root DIR] [--state-dir DIR] [--json]",
          .description =
              "Reads the slots, the bootloader and abup's state itself; when the daemon runs,\n"
              "adds its live state and progress (D-Bus org.abup.Agent1).",
          .options = status_options(),
          .run = run_status};
}

}  // namespace abup::agent::cli
