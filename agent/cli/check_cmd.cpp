// abup check: ask the configured Omaha server now and print its answer. Sends no events.
#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "agent/cli/common.hpp"
#include "agent/host.hpp"
#include "update-protocol/omaha/omaha.hpp"

namespace abup::agent::cli {
namespace {

namespace omaha = protocol::omaha;

Result<omaha::Identity> identity(const Args& args, const Common& common) {
  ABUP_TRY(HostFacts host, read_host_facts(common.root));
  omaha::Identity who;
  who.server = args.get_or("server", common.config.server);
  who.app_id = args.get_or("app-id", common.config.app_id);
  who.track = args.get_or("track", common.config.track);
  if (who.server.empty())
    return make_error(Errc::usage,
                      "no update server: set [Update] Server= (the full Omaha endpoint, e.g. "
                      "https://host/v1/update) or pass --server URL");
  if (who.app_id.empty()) return make_error(Errc::usage, "empty app id ([Update] AppId=)");
  if (!host.version)
    return make_error(Errc::not_found,
                      (common.root / "etc/os-release").string() +
                          ": no IMAGE_VERSION or VERSION_ID: the running version is unknown");
  if (host.machine_id.empty())
    return make_error(Errc::not_found,
                      (common.root / "etc/machine-id").string() + ": missing or empty");
  who.version = host.version->text;
  who.arch = host.arch;
  who.machine_id = omaha::machine_id_for(host.machine_id, common.config.machine_id_hashed);
  who.boot_id = host.boot_id;
  who.install_source = "ondemandupdate";
  return who;
}

const char* kind_name(omaha::CheckResult::Kind k) {
  switch (k) {
    case omaha::CheckResult::Kind::update:
      return "update";
    case omaha::CheckResult::Kind::no_update:
      return "no-update";
    case omaha::CheckResult::Kind::not_now:
      return "not-now";
  }
  return "?";
}

std::vector<OptionSpec> check_options() {
  auto specs = common_options();
  auto t = transport_options();
  specs.insert(specs.end(), t.begin(), t.end());
  specs.push_back({"server", true, false, "URL  Omaha endpoint (default: [Update] Server=)"});
  specs.push_back({"app-id", true, false, "ID  Omaha app id (default: [Update] AppId=)"});
  specs.push_back({"track", true, false, "NAME  track (default: [Update] Track=)"});
  specs.push_back({"json", false, false, "machine-readable output"});
  return specs;
}

int run_check(const Args& args) {
  auto common = load_common(args, false);
  if (!common) return report(common.error());
  auto who = identity(args, *common);
  if (!who) return report(who.error());
  auto transport_opts = transport(args, common->config);
  // A person is waiting: a couple of quick retries, not the daemon's patience.
  transport_opts.max_retries = std::min(transport_opts.max_retries, 2);
  auto answer = omaha::check(*who, {}, transport_opts);
  if (!answer) return report(answer.error());
  const auto& a = *answer;
  const std::string running = omaha::normalize_version(who->version);
  if (args.has("json")) {
    nlohmann::json j = {{"server", who->server},       {"appId", who->app_id},
                        {"track", who->track},         {"version", running},
                        {"result", kind_name(a.kind)}, {"appStatus", a.app_status}};
    if (a.offer) {
      j["offer"] = {{"version", a.offer->version},
                    {"url", a.offer->url},
                    {"size", a.offer->size},
                    {"packageHash", a.offer->package_hash},
                    {"sha256", a.offer->sha256}};
    }
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  switch (a.kind) {
    case omaha::CheckResult::Kind::update:
      std::printf("update: %s -> %s (track %s)\n  url  %s\n  size %s\n", running.c_str(),
                  a.offer->version.c_str(), who->track.c_str(), a.offer->url.c_str(),
                  a.offer->size ? (std::to_string(a.offer->size) + " bytes (" +
                                   human_bytes(a.offer->size) + ")")
                                      .c_str()
                                : "unknown");
      break;
    case omaha::CheckResult::Kind::no_update:
      std::printf("no update: %s is current on track %s\n", running.c_str(), who->track.c_str());
      break;
    case omaha::CheckResult::Kind::not_now:
      std::printf("not now: the server answered app status '%s'\n", a.app_status.c_str());
      break;
  }
  return 0;
}

}  // namespace

abup::cli::Command check_command() {
  return {
      .name = "check",
      .summary = "ask the update server now which version it offers (sends no events)",
      .synopsis = "[--server URL] [--app-id ID] [--track NAME] [--root DIR] [--json]",
      .description =
          "Asks the update server now which version it offers this machine and prints the answer.\n"
          "Sends no events and changes nothing. Exit status 0 for any answer, 1 when the server\n"
          "could not be asked or answered nonsense, 2 for bad options or configuration.",
      .options = check_options(),
      .run = run_check};
}

}  // namespace abup::agent::cli
