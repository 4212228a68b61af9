// The checks that keep slot writers and the bootloader apart: the
// disk lock, which slot a stage may write, and the re-verification before arming.
#include "agent/lifecycle_guard.hpp"

#include <cstdio>

#include "agent/frame_pipeline.hpp"
#include "agent/state.hpp"
#include "partitions/block_target.hpp"
#include "update-protocol/manifest/manifest.hpp"

namespace abup::agent {
namespace {

std::string slot_name(std::optional<char> s) {
  return s ? std::string(1, *s) : std::string("no slot");
}

char other(char s) {
  return s == 'A' ? 'B' : 'A';
}

}  // namespace

Result<WriteLocks> lock_for_writing(const std::filesystem::path& state_dir,
                                    const std::string& disk) {
  WriteLocks l;
  ABUP_TRY(l.state, StateStore(state_dir).lock());
  ABUP_TRY(l.disk, partitions::lock_disk(disk));
  return l;
}

Result<char> choose_stage_target(const LifecycleOptions& where, const partitions::SlotPair& pair,
                                 std::optional<char> booted, std::optional<char> requested,
                                 bool force, const State& state) {
  auto backend = open_backend(where, pair);
  Result<partitions::boot::BootView> view =
      backend ? (*backend)->read() : Result<partitions::boot::BootView>(backend.error());
  if (!view)
    return make_error(Errc::refused,
                      "cannot read what the bootloader boots (" + view.error().message +
                          "), so abup cannot tell whether the target slot is armed; fix the boot "
                          "backend configuration ([Update] BootBackend=, --boot-backend)");
  const auto& v = *view;
  const std::string says = "the bootloader (" + std::string(to_string(where.backend)) + ") boots " +
                           slot_name(v.next) + " next and " + slot_name(v.default_slot) +
                           " by default (" + v.detail + ")";
  char target = 'B';
  if (requested) {
    target = *requested;
  } else if (booted) {
    target = other(*booted);
  } else {
    std::string hint = v.default_slot ? " (most likely " + std::string(1, other(*v.default_slot)) +
                                            ": " + std::string(1, *v.default_slot) +
                                            " is probably the running system)"
                                      : "";
    return make_error(Errc::refused, "cannot tell which slot is booted: " +
                                         (where.root / "proc/cmdline").string() +
                                         " names neither usr partition; " + says +
                                         "; pass --slot with the slot that is not running" + hint);
  }
  const partitions::Slot& slot = pair.get(target);
  const std::string desc = "slot " + std::string(1, target) + " (" + slot.label() + ")";
  if (state.pending && state.pending->target_partuuid == slot.partuuid()) {
    const auto& p = *state.pending;
    return make_error(Errc::refused,
                      desc + " is armed by operation " + p.operation_id + " (" + to_string(p.kind) +
                          " of " + p.target_version + ", " + p.armed_at +
                          ") and waits for its commit; writing it now could make a boot run a "
                          "half-written /usr. Run `abup disarm` to undo the arming (the booted "
                          "slot stays the default), or reboot and run `abup commit` first");
  }
  if (v.next == target && v.default_slot != target)
    return make_error(Errc::refused,
                      desc + " is armed: " + says +
                          "; writing it now could make the next boot run a half-written /usr. "
                          "Run `abup disarm` to undo the arming (the booted slot stays the "
                          "default), or reboot into it first");
  if (v.default_slot == target && !force)
    return make_error(
        Errc::refused,
        desc + " is what the bootloader boots by default: " + says +
            (booted ? "; the booted slot " + std::string(1, *booted) +
                          " is not marked good, so this is its fallback: run `abup commit` first"
                    : "; it is most likely the running system") +
            ". --force-slot writes it anyway");
  if (v.default_slot == target)  // forced: the operator should see what they overrode
    std::fprintf(stderr,
                 "abup: WARNING: --force-slot: writing %s although %s; if it is the running "
                 "system, the next boot may fail\n",
                 desc.c_str(), says.c_str());
  return target;
}

Status stage_preflight(const LifecycleOptions& where) {
  ABUP_TRY(auto pair, partitions::discover_slots(where.disk));
  ABUP_TRY(auto booted, partitions::booted_slot(pair, where.root));
  ABUP_TRY(auto state, StateStore(where.state_dir).load());
  ABUP_TRY(auto target, choose_stage_target(where, pair, booted, std::nullopt, false, state));
  (void)target;
  return {};
}

Status reverify_staged(const partitions::SlotPair& pair, char target, std::optional<char> booted,
                       const std::string& manifest_json, const std::filesystem::path& root) {
  ABUP_TRY(auto m, protocol::parse_manifest(manifest_json));
  const auto* usr = m.find_mount("/usr");
  if (!usr) return make_error(Errc::invalid_input, "the recorded manifest has no /usr image");
  ABUP_TRY(auto t,
           partitions::BlockTarget::open(pair, target, booted, usr->uncompressed_size, root));
  ABUP_CHECK(read_back_verify(t, *usr, {}));
  if (const auto* verity = m.find_mount("/usr" + std::string(protocol::kVeritySuffix))) {
    ABUP_TRY(auto h, partitions::BlockTarget::open_hash(pair, target, booted,
                                                        verity->uncompressed_size, root));
    ABUP_CHECK(read_back_verify(h, *verity, {}));
  }
  return {};
}

}  // namespace abup::agent
