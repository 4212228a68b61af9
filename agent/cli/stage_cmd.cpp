#include <unistd.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "agent/cli/common.hpp"
#include "agent/stage.hpp"

namespace abup::agent::cli {
namespace {

void draw(const StageProgress& p) {
  static std::string last_phase;
  const int width = 30;
  double frac = p.total ? static_cast<double>(p.done) / static_cast<double>(p.total) : 0;
  int fill = static_cast<int>(frac * width);
  std::string bar(static_cast<std::size_t>(fill), '#');
  bar.resize(width, '.');
  if (!last_phase.empty() && last_phase != p.phase) std::fputc('\n', stderr);
  last_phase = p.phase;
  std::fprintf(stderr, "\r%-9s [%s] %3d%%  %s / %s  downloaded %s   ", p.phase, bar.c_str(),
               static_cast<int>(frac * 100), human_bytes(p.done).c_str(),
               human_bytes(p.total).c_str(), human_bytes(p.downloaded).c_str());
  std::fflush(stderr);
}

std::vector<OptionSpec> stage_options() {
  auto specs = common_options();
  for (auto v : {transport_options(), backend_options()})
    specs.insert(specs.end(), v.begin(), v.end());
  specs.insert(
      specs.end(),
      {
          {"source", true, false, "URL|PATH  the signed COSI image (https://, http:// or a file)"},
          {"keyring", true, true,
           "DIR  trusted keys (repeatable; default: the configured keyrings)"},
          {"threshold", true, false, "N  valid signatures required (default: configuration, 1)"},
          {"slot", true, false, "A|B  target slot (default: the one not booted)"},
          {"force-slot", false, false,
           "write --slot even when the bootloader boots it by default (booted slot unknown)"},
          {"allow-downgrade", false, false, "stage an image older than the running one"},
          {"allow-unknown-version", false, false,
           "stage although os-release gives no running version (downgrade and minVersion "
           "unchecked)"},
          {"allow-unknown-variant", false, false,
           "stage although os-release gives no VARIANT_ID and the image names a variant"},
          {"workers", true, false, "N  decode threads (default: all cores)"},
          {"no-reuse", false, false, "do not copy identical chunks from the booted slot"},
          {"json", false, false, "print the summary as JSON"},
          {"no-progress", false, false, "no progress bar even on a terminal"},
      });
  return specs;
}

int run_stage(const Args& args) {
  auto common = load_common(args);
  if (!common) return report(common.error());
  auto where = lifecycle_options(args, *common);
  if (!where) return report(where.error());
  StageOptions o = stage_options(*where, common->config);
  o.source = args.get_or("source", "");
  if (o.source.empty()) return report(make_error(Errc::usage, "--source URL|PATH is required"));
  o.transport = transport(args, common->config);
  if (args.has("keyring")) {
    o.keyrings.clear();
    for (const auto& k : args.all("keyring")) o.keyrings.emplace_back(k);
  }
  auto threshold = args.get_int("threshold", common->config.signature_threshold, 1, 64);
  if (!threshold) return report(threshold.error());
  o.threshold = static_cast<int>(*threshold);
  if (auto s = args.get("slot")) {
    if (*s != "A" && *s != "B" && *s != "a" && *s != "b")
      return report(make_error(Errc::usage, "--slot: expected A or B, got '" + *s + "'"));
    o.slot = static_cast<char>(std::toupper(static_cast<unsigned char>((*s)[0])));
  }
  o.force_slot = args.has("force-slot");
  o.allow_downgrade = args.has("allow-downgrade");
  o.allow_unknown_version = args.has("allow-unknown-version");
  o.allow_unknown_variant = args.has("allow-unknown-variant");
  auto workers = args.get_int("workers", common->config.workers, 0, 256);
  if (!workers) return report(workers.error());
  o.workers = static_cast<unsigned>(*workers);
  o.reuse = o.reuse && !args.has("no-reuse");
  const bool tty = ::isatty(STDERR_FILENO) && !args.has("no-progress");
  if (tty) o.on_progress = draw;
  auto r = stage(o);
  if (tty) std::fputc('\n', stderr);
  if (!r) return report(r.error());
  const auto& s = *r;
  if (args.has("json")) {
    nlohmann::json j = {{"version", s.version},
                        {"slot", s.slot_label},
                        {"partuuid", s.partuuid},
                        {"imageBytes", s.image_bytes},
                        {"downloadedBytes", s.downloaded},
                        {"reusedBytes", s.reused},
                        {"skippedBytes", s.skipped},
                        {"zeroBytes", s.zeroed},
                        {"writtenBytes", s.written},
                        {"rangeRequests", s.requests},
                        {"frames", s.frames},
                        {"resumed", s.resumed},
                        {"seconds", s.seconds}};
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("staged %s on %s (%s) in %.1f s%s\n", s.version.c_str(), s.slot_label.c_str(),
                s.partuuid.c_str(), s.seconds, s.resumed ? " (resumed)" : "");
    std::printf("  image       %s in %zu chunks, every chunk read back and verified\n",
                human_bytes(s.image_bytes).c_str(), s.frames);
    std::printf("  downloaded  %s in %llu range request(s)\n", human_bytes(s.downloaded).c_str(),
                static_cast<unsigned long long>(s.requests));
    std::printf("  written     %s decoded, %s zero chunks\n", human_bytes(s.written).c_str(),
                human_bytes(s.zeroed).c_str());
    std::printf("  reused      %s from the booted slot, %s already on the target\n",
                human_bytes(s.reused).c_str(), human_bytes(s.skipped).c_str());
  }
  return 0;
}

}  // namespace

abup::cli::Command stage_command() {
  return {.name = "stage",
          .summary = "verify a signed image and write it to the inactive slot",
          .synopsis = "[--disk PATH] --source URL|PATH [OPTIONS]",
          .description = "Verify a signed image and write it to the inactive slot.",
          .options = stage_options(),
          .run = run_stage};
}

}  // namespace abup::agent::cli
