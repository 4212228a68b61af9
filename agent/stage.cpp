#include "agent/stage.hpp"

#include <chrono>
#include <ctime>
#include <thread>

#include "abup/hex.hpp"
#include "abup/version.hpp"
#include "agent/config.hpp"
#include "agent/host.hpp"
#include "agent/image_stager.hpp"
#include "agent/lifecycle.hpp"
#include "agent/lifecycle_guard.hpp"
#include "agent/state.hpp"
#include "partitions/block_target.hpp"
#include "partitions/slots.hpp"
#include "update-protocol/image.hpp"

namespace abup::agent {
namespace {

struct Job {
  const protocol::ManifestImage* image;
  partitions::BlockTarget* target;
  bool reuse;  // chunks may come from the booted slot's usr partition
};

// Compared as versions, so "202607.2.0" (as Omaha may normalize it) names "202607.02.0".
Status check_expected_version(const std::string& signed_version, const std::string& expected) {
  if (expected.empty()) return {};
  auto want = Version::parse(expected);
  auto got = Version::parse(signed_version);
  if (want && got && *want == *got) return {};
  return make_error(Errc::untrusted, "the signed image is version " + signed_version + ", but " +
                                         expected +
                                         " was asked for: the update server pointed at another "
                                         "release; nothing was written");
}

// The /usr image of the manifest recorded when the booted slot was staged, moved out of it: its
// frame table is as large as the new image's.
std::optional<protocol::ManifestImage> recorded_usr(const StateStore& store,
                                                    const std::string& partuuid) {
  auto text = store.load_manifest(partuuid);
  if (!text) return std::nullopt;
  auto m = protocol::parse_manifest(*text);
  if (!m) return std::nullopt;
  for (auto& img : m->images)
    if (img.mount_point == "/usr") return std::move(img);
  return std::nullopt;
}

}  // namespace

StageOptions stage_options(const LifecycleOptions& where, const Config& config) {
  StageOptions so;
  // The armed check reads the bootloader this node boots with; boot files go where it looks.
  so.where = where;
  so.keyrings = config.keyrings;
  so.threshold = config.signature_threshold;
  so.workers = config.workers;
  so.memory_limit = config.memory_limit;
  so.reuse = config.reuse;
  so.require_expiry = config.require_expiry;
  return so;
}

Result<StageSummary> stage(const StageOptions& o) {
  const auto started = std::chrono::steady_clock::now();
  StageSummary sum;
  ProgressReporter progress(o.on_progress);
  const unsigned workers =
      o.workers ? o.workers : std::max(1u, std::thread::hardware_concurrency());

  ABUP_TRY(auto pair, partitions::discover_slots(o.where.disk));
  ABUP_TRY(auto booted, partitions::booted_slot(pair, o.where.root));
  ABUP_TRY(auto host, read_host_facts(o.where.root));

  // Under both locks, before anything is written: a slot the bootloader is about to boot is
  // never the target.
  StateStore store(o.where.state_dir);
  ABUP_TRY(auto locks, lock_for_writing(o.where.state_dir, o.where.disk));
  ABUP_TRY(auto state, store.load());
  ABUP_TRY(const char target_name,
           choose_stage_target(o.where, pair, booted, o.slot, o.force_slot, state));
  ABUP_TRY(auto keyring, protocol::Keyring::load(o.keyrings));
  if (keyring.size() == 0)
    return make_error(Errc::untrusted, "no trusted keys: " + keyring.describe() +
                                           " (add PEM public keys, or pass --keyring DIR)");
  ABUP_TRY(auto source, protocol::open_source(o.source, o.transport));

  // Invariant 2: signature, binding and policy before anything is opened for writing.
  progress.phase("verify", 0);
  protocol::VerifyOptions vo;
  vo.keyring = &keyring;
  vo.threshold = o.threshold;
  vo.policy.running = host.version;
  vo.policy.arch = host.arch;
  vo.policy.variant = host.variant;
  vo.policy.now = static_cast<std::int64_t>(std::time(nullptr));
  vo.policy.allow_downgrade = o.allow_downgrade;
  vo.policy.highest_committed = state.highest_committed;
  vo.policy.require_expiry = o.require_expiry;
  if (booted && host.version)
    vo.policy.running_issued_at =
        recorded_issued_at(store, pair.get(*booted).partuuid(), *host.version);
  vo.policy.allow_unknown_version = o.allow_unknown_version;
  vo.policy.allow_unknown_variant = o.allow_unknown_variant;
  vo.policy.unknown_version_reason = unknown_version_reason(host);
  vo.policy.unknown_variant_reason = unknown_variant_reason(host);
  ABUP_TRY(auto image, protocol::open_verified_image(*source, vo));
  ABUP_CHECK_CTX(check_expected_version(image.manifest.version, o.expected_version),
                 source->describe());
  const auto* usr = image.manifest.find_mount("/usr");
  if (!usr)
    return make_error(Errc::invalid_input,
                      source->describe() + ": the image has no /usr partition image");
  const auto* verity = image.manifest.find_mount("/usr" + std::string(protocol::kVeritySuffix));
  ABUP_CHECK(check_boot_files(o.where.boot, *source, image, target_name));

  ABUP_TRY(auto target, partitions::BlockTarget::open(pair, target_name, booted,
                                                      usr->uncompressed_size, o.where.root));
  std::optional<partitions::BlockTarget> hash_target;
  if (verity) {
    if (!target.slot().hash)
      return make_error(Errc::refused,
                        "the image carries a dm-verity hash image but " + target.slot().label() +
                            " has no hash partition (hash-a/hash-b) on " + o.where.disk);
    ABUP_TRY(hash_target, partitions::BlockTarget::open_hash(
                              pair, target_name, booted, verity->uncompressed_size, o.where.root));
  }
  std::vector<Job> jobs{{usr, &target, true}};
  if (verity) jobs.push_back({verity, &*hash_target, false});

  const std::string uuid = target.slot().partuuid();
  const std::string digest = to_hex(image.manifest_digest);
  sum.version = image.manifest.version;
  sum.slot_label = target.slot().label();
  sum.partuuid = uuid;
  for (const auto& j : jobs) {
    sum.image_bytes += j.image->uncompressed_size;
    sum.frames += j.image->frames.size();
  }

  // Record the attempt before the first write: a crash leaves "staging", never a stale "staged".
  const SlotRecord* prev = state.slot(uuid);
  const bool resume = prev && prev->manifest_sha256 == digest;
  sum.resumed = resume && prev->state != SlotState::unknown;
  state.slots[uuid] = SlotRecord{SlotState::staging,
                                 image.manifest.version,
                                 digest,
                                 o.source,
                                 now_utc(),
                                 "",
                                 {},
                                 protocol::format_utc_time(image.manifest.issued_at)};
  ABUP_CHECK(store.save(state));
  auto fail = [&](Error e) -> Error {
    auto& r = state.slots[uuid];
    r.state = SlotState::failed;
    r.error = e.message;
    r.updated_at = now_utc();
    (void)store.save(state);  // best effort: the error being returned matters more
    return std::move(e).with_context("stage " + sum.slot_label);
  };
  // The signed bytes go to the state dir now rather than once staged, and leave memory: they are
  // ~200 bytes a frame (5 MB at 4 GiB), held otherwise through the whole download. A slot's
  // manifest is only trusted once its record says staged; until then it is a hint for reuse, and
  // every reused chunk is checked against its signed digest.
  if (auto st = store.save_manifest(uuid, image.manifest_json); !st)
    return fail(std::move(st).error());
  std::string().swap(image.manifest_json);

  ReuseSource reuse;
  std::optional<partitions::SlotReader> booted_reader;
  if (o.reuse && booted) {
    if (auto r = partitions::SlotReader::open(pair, *booted)) {
      booted_reader = std::move(*r);
      reuse.reader = &*booted_reader;
      reuse.recorded = recorded_usr(store, booted_reader->slot().partuuid());
    }
  }

  std::vector<ImageStager> stagers;
  for (const auto& j : jobs)
    stagers.emplace_back(*j.image, image.data_offset(*j.image), *j.target, *source, progress, sum,
                         protocol::window_log_limit(image.archive.metadata));
  // Both sides lvalues: `c ? reuse : ReuseSource{}` would copy the recorded frame table.
  const ReuseSource no_reuse;
  progress.phase("plan", resume ? sum.image_bytes : 0);
  for (std::size_t i = 0; i < jobs.size(); ++i)
    if (auto st = stagers[i].plan(resume, jobs[i].reuse ? reuse : no_reuse, workers); !st)
      return fail(std::move(st).error());
  reuse.recorded.reset();  // only the plan reads it
  progress.phase("write", sum.image_bytes);
  for (std::size_t i = 0; i < jobs.size(); ++i)
    if (auto st = stagers[i].write_local(jobs[i].reuse ? reuse : no_reuse, workers); !st)
      return fail(std::move(st).error());
  for (auto& s : stagers)
    if (auto st = s.download(workers, o.memory_limit); !st) return fail(std::move(st).error());
  // Invariant 3: fsync, then prove every byte from the device itself.
  progress.phase("read-back", sum.image_bytes);
  for (auto& s : stagers)
    if (auto st = s.sync_and_verify(); !st) return fail(std::move(st).error());

  auto boot = stage_boot_files(o.where.root, o.where.disk, o.where.boot, *source, image,
                               target_name, booted);
  if (!boot) return fail(std::move(boot).error());
  auto& rec = state.slots[uuid];
  rec.state = SlotState::staged;
  rec.boot_files = std::move(*boot);
  rec.updated_at = now_utc();
  ABUP_CHECK(store.save(state));

  sum.downloaded = source->bytes_fetched();
  sum.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return sum;
}

}  // namespace abup::agent
