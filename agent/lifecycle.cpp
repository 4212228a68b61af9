#include "agent/lifecycle.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>

#include "abup/bytes.hpp"
#include "abup/digest.hpp"
#include "abup/fault.hpp"
#include "abup/fs.hpp"
#include "abup/hex.hpp"
#include "agent/host.hpp"
#include "agent/lifecycle_guard.hpp"
#include "agent/persisted_json.hpp"
#include "agent/state.hpp"
#include "partitions/gpt.hpp"
#include "update-protocol/manifest/manifest.hpp"

namespace abup::agent {

using json = nlohmann::json;
namespace boot = partitions::boot;

namespace {

// An RFC 4122 version-4 UUID, as AKS operation ids are.
std::string new_operation_id() {
  return partitions::Guid::random().str();
}

// What every lifecycle command reads first: the slots, the booted one, the running system.
struct Context {
  partitions::SlotPair pair;
  std::optional<char> booted;
  HostFacts host;
};

Result<Context> read_context(const LifecycleOptions& o) {
  Context c;
  ABUP_TRY(c.pair, partitions::discover_slots(o.disk));
  ABUP_TRY(c.booted, partitions::booted_slot(c.pair, o.root));
  ABUP_TRY(c.host, read_host_facts(o.root));
  if (c.host.boot_id.empty())
    return make_error(Errc::not_found,
                      "no boot id in " + (o.root / "proc/sys/kernel/random/boot_id").string() +
                          ": without it abup cannot tell whether a reboot happened");
  return c;
}

Status require_booted(const Context& c, const LifecycleOptions& o) {
  if (c.booted) return {};
  return make_error(Errc::refused,
                    "cannot tell which slot is booted: " + (o.root / "proc/cmdline").string() +
                        " names neither " + c.pair.a.label() + " nor " + c.pair.b.label() +
                        " (mount.usr=, usr=, verity.usr=)");
}

// What finalize, rollback and disarm act on: the booted system, and the state read under both
// write locks, which are held while this lives.
struct Locked {
  Context c;
  StateStore store;
  WriteLocks locks;
  State state;
};

Result<Locked> lock_booted(const LifecycleOptions& o) {
  ABUP_TRY(auto c, read_context(o));
  ABUP_CHECK(require_booted(c, o));
  StateStore store(o.state_dir);
  ABUP_TRY(auto locks, lock_for_writing(o.state_dir, o.disk));
  ABUP_TRY(auto state, store.load());
  return Locked{std::move(c), std::move(store), std::move(locks), std::move(state)};
}

const partitions::Slot* slot_by_partuuid(const partitions::SlotPair& pair,
                                         const std::string& uuid) {
  if (pair.a.partuuid() == uuid) return &pair.a;
  if (pair.b.partuuid() == uuid) return &pair.b;
  return nullptr;
}

std::string describe(const partitions::Slot& s) {
  return s.label() + " (" + s.partuuid() + ")";
}

Error refuse_pending(const PendingCommit& p, const std::string& what) {
  return make_error(Errc::refused, what + ": operation " + p.operation_id + " (" +
                                       to_string(p.kind) + " of slot " +
                                       std::string(1, p.target_slot) + ", version " +
                                       p.target_version + ", armed " + p.armed_at +
                                       ") is waiting for its commit; reboot and run `abup commit`");
}

// The staged image's signed manifest must still be the one recorded: a cheap check that the
// slot's record is not stale (the bytes were verified from the device when it was staged).
Status check_staged_manifest(const StateStore& store, const partitions::Slot& target,
                             const SlotRecord& rec) {
  const std::string where = "staged image on " + describe(target);
  auto text = store.load_manifest(target.partuuid());
  if (!text)
    return make_error(Errc::refused, where + ": its signed manifest is missing (" +
                                         text.error().message + "); stage it again");
  if (!rec.manifest_sha256.empty() && to_hex(sha256(as_bytes(*text))) != rec.manifest_sha256)
    return make_error(Errc::refused,
                      where +
                          ": the manifest kept in the state directory is not the one recorded "
                          "as staged; stage it again");
  auto m = protocol::parse_manifest(*text);
  if (!m) return std::move(m).error().with_context(where);
  if (m->version != rec.version)
    return make_error(Errc::refused, where + ": manifest version " + m->version +
                                         " differs from the recorded " + rec.version +
                                         "; stage it again");
  return {};
}

// Invariant 3 at arming time: the slot's bytes are read back again, so that whatever wrote the
// slot after the stage (another process, a stage killed before it recorded anything) is caught.
// A changed slot is recorded as failed: status then says it must be staged again.
Status reverify_before_arming(const LifecycleOptions& o, const StateStore& store, State& state,
                              const Context& c, const partitions::Slot& target) {
  ABUP_TRY(auto text, store.load_manifest(target.partuuid()));
  auto st = reverify_staged(c.pair, target.name, c.booted, text, o.root);
  if (st) return {};
  auto e = std::move(st).error().with_context("finalize: the staged image on " + describe(target) +
                                              " changed since it was staged");
  e.code = Errc::refused;
  e.message += "; stage it again";
  auto& rec = state.slots[target.partuuid()];
  rec.state = SlotState::failed;
  rec.error = e.message;
  rec.updated_at = now_utc();
  ABUP_CHECK(store.save(state));
  return e;
}

Outcome make_outcome(OutcomeKind kind, OutcomeCode code, const PendingCommit& p) {
  Outcome out;
  out.kind = kind;
  out.code = code;
  out.operation_id = p.operation_id;
  out.to_slot = p.target_slot;
  out.to_partuuid = p.target_partuuid;
  out.to_version = p.target_version;
  out.from_slot = p.target_slot == 'A' ? 'B' : 'A';
  out.from_partuuid = p.previous_partuuid;
  out.from_version = p.previous_version;
  out.time = now_utc();
  return out;
}

// Arms `target` and records the pending commit. The backend is armed first: a kill before the
// state is saved leaves an armed slot no commit will promote, which the bootloader abandons
// after its one try, and re-running the command arms it again.
Result<Outcome> arm_and_record(const LifecycleOptions& o, const StateStore& store, State& state,
                               const Context& c, const partitions::Slot& target,
                               PendingCommit pending, const char* fault_prefix) {
  ABUP_TRY(auto backend, open_backend(o, c.pair, {}, &state));
  if (auto st = backend->arm(target.name); !st)
    return std::move(st).error().with_context("arm " + describe(target));
  fault_point((std::string(fault_prefix) + "-armed").c_str());
  auto& rec = state.slots[target.partuuid()];
  rec.state = SlotState::armed;
  rec.version = pending.target_version;
  rec.updated_at = now_utc();
  rec.error.clear();
  state.pending = pending;
  ABUP_CHECK(store.save(state));
  fault_point((std::string(fault_prefix) + "-saved").c_str());
  auto out = make_outcome(
      pending.kind == PendingKind::rollback ? OutcomeKind::rollback : OutcomeKind::finalize,
      OutcomeCode::armed, pending);
  out.message = "armed one try of " + describe(target) + " with " +
                (pending.target_version.empty()
                     ? std::string("an image of unknown version (abup has no record of it)")
                     : pending.target_version) +
                " (operation " + pending.operation_id + "); after the reboot run `abup commit`";
  ABUP_CHECK(append_history(o.state_dir, out));
  return out;
}

PendingCommit new_pending(PendingKind kind, const std::string& id, const Context& c,
                          const partitions::Slot& target, const std::string& version,
                          const LifecycleOptions& o) {
  PendingCommit p;
  p.operation_id = id.empty() ? new_operation_id() : id;
  p.kind = kind;
  p.target_slot = target.name;
  p.target_partuuid = target.partuuid();
  p.target_version = version;
  p.previous_partuuid = c.pair.other(target.name).partuuid();
  p.previous_version = c.host.version ? c.host.version->text : "";
  p.boot_id = c.host.boot_id;
  p.backend = o.backend;
  p.armed_at = now_utc();
  return p;
}

}  // namespace

Result<std::unique_ptr<boot::Backend>> open_backend(const LifecycleOptions& o,
                                                    const partitions::SlotPair& pair,
                                                    std::optional<BootBackend> recorded,
                                                    const State* state) {
  boot::BackendContext ctx;
  ctx.pair = &pair;
  ctx.root = o.root;
  ctx.grubenv = o.grubenv;
  ctx.efivars = o.efivars;
  ctx.uefi_loader = o.uefi_loader;
  ctx.uefi_cmdline = o.uefi_cmdline;
  ctx.loader_entry = o.boot.loader_entry;
  std::map<char, std::string> loaders;
  for (const auto& s : {pair.a, pair.b}) {
    std::string path = boot::uefi_loader_path(ctx, s.name, o.boot.placement);
    if (const SlotRecord* rec = state ? state->slot(s.partuuid()) : nullptr)
      for (const auto& f : rec->boot_files)
        if (f.name == "uki" || f.name == "vmlinuz") path = f.path;
    loaders[s.name] = boot::uefi_device_path(path);
  }
  ctx.uefi_loader = std::move(loaders);
  return boot::make_backend(recorded.value_or(o.backend), ctx);
}

Result<Outcome> finalize(const FinalizeOptions& fo) {
  const auto& o = fo.where;
  ABUP_TRY(auto locked, lock_booted(o));
  auto& [c, store, locks, state] = locked;
  const auto& target = c.pair.other(*c.booted);
  const SlotRecord* rec = state.slot(target.partuuid());

  if (state.pending) {
    const auto& p = *state.pending;
    // A re-run after a kill between the state write and the report: arm again, same operation.
    if (p.kind == PendingKind::finalize && p.target_partuuid == target.partuuid() &&
        p.boot_id == c.host.boot_id && rec && rec->state == SlotState::armed &&
        (fo.version.empty() || fo.version == p.target_version))
      return arm_and_record(o, store, state, c, target, p, "finalize");
    return refuse_pending(p, "finalize");
  }
  if (!rec || rec->state != SlotState::staged)
    return make_error(Errc::refused,
                      "finalize: nothing staged on " + describe(target) + " (state " +
                          std::string(to_string(rec ? rec->state : SlotState::unknown)) +
                          "); run `abup stage` first");
  if (!fo.version.empty() && fo.version != rec->version)
    return make_error(Errc::refused, "finalize: " + describe(target) + " holds " + rec->version +
                                         ", not the requested " + fo.version);
  ABUP_CHECK(check_staged_manifest(store, target, *rec));
  ABUP_CHECK(verify_boot_files(o.root, o.disk, o.boot, rec->boot_files));
  if (const auto* f = state.failed_version(rec->version); f && !fo.allow_failed_version)
    return make_error(Errc::refused, "finalize: version " + rec->version + " already failed (" +
                                         std::string(to_string(f->code)) + ", operation " +
                                         f->operation_id + ", " + f->at +
                                         "); --allow-failed-version arms it anyway");
  ABUP_CHECK(reverify_before_arming(o, store, state, c, target));
  auto p = new_pending(PendingKind::finalize, fo.operation_id, c, target, rec->version, o);
  return arm_and_record(o, store, state, c, target, std::move(p), "finalize");
}

Result<Outcome> commit(const LifecycleOptions& o) {
  StateStore store(o.state_dir);
  ABUP_TRY(auto locks, lock_for_writing(o.state_dir, o.disk));
  ABUP_TRY(auto state, store.load());
  if (!state.pending) {
    Outcome out;
    out.kind = OutcomeKind::commit;
    out.code = OutcomeCode::nothing_pending;
    out.time = now_utc();
    out.message = "nothing to commit: no slot is armed";
    return out;
  }
  const PendingCommit p = *state.pending;
  ABUP_TRY(auto c, read_context(o));
  if (c.host.boot_id == p.boot_id) {
    auto out = make_outcome(OutcomeKind::commit, OutcomeCode::not_rebooted, p);
    out.message = "operation " + p.operation_id + ": the reboot into slot " +
                  std::string(1, p.target_slot) + " has not happened yet (same boot id " +
                  p.boot_id + ")";
    return out;
  }
  ABUP_CHECK(require_booted(c, o));
  const auto* target = slot_by_partuuid(c.pair, p.target_partuuid);
  if (!target)
    return make_error(Errc::invalid_input, "commit: the pending target " + p.target_partuuid +
                                               " is not a slot of " + o.disk);
  // The backend that armed the slot is the one that knows how to promote it.
  ABUP_TRY(auto backend, open_backend(o, c.pair, p.backend));
  const bool ok = *c.booted == target->name;
  if (ok) {
    if (auto st = backend->commit(target->name); !st)
      return std::move(st).error().with_context("commit " + describe(*target));
  } else if (auto st = backend->mark_bad(target->name); !st) {
    return std::move(st).error().with_context("mark " + describe(*target) + " bad");
  }
  fault_point("commit-backend");
  auto out = make_outcome(OutcomeKind::commit,
                          ok ? OutcomeCode::committed : OutcomeCode::target_boot_failed, p);
  // The history line goes before the state write: a re-run after a kill in between finds the
  // pending commit again, redoes the idempotent backend step, and does not duplicate the line.
  ABUP_CHECK(append_history(o.state_dir, out));
  fault_point("commit-history");
  auto& rec = state.slots[target->partuuid()];
  rec.version = p.target_version;
  rec.updated_at = out.time;
  if (ok) {
    rec.state = SlotState::committed;
    rec.error.clear();
    // Raised in the state write below that records the commit: never ahead of it, never lost.
    if (auto v = Version::parse(p.target_version);
        v && (!state.highest_committed || *state.highest_committed < *v))
      state.highest_committed = std::move(*v);
    std::erase_if(state.failed_versions,
                  [&](const FailedVersion& f) { return f.version == p.target_version; });
    if (!p.previous_partuuid.empty() && !p.previous_version.empty()) {
      auto& prev = state.slots[p.previous_partuuid];
      if (prev.version != p.previous_version) prev.manifest_sha256.clear();
      prev.state = SlotState::committed;
      prev.version = p.previous_version;
      prev.updated_at = out.time;
    }
    out.message =
        "committed " + describe(*target) + " with " + p.target_version + ": it is now the default";
  } else {
    rec.state = SlotState::failed;
    rec.error = std::string(to_string(OutcomeCode::target_boot_failed)) + ": " + p.target_version +
                " did not boot (operation " + p.operation_id + "); the bootloader fell back to " +
                std::string(1, *c.booted);
    if (!state.failed_version(p.target_version))
      state.failed_versions.push_back(
          {p.target_version, OutcomeCode::target_boot_failed, p.operation_id, out.time});
    out.message = rec.error + "; " + describe(*target) + " is marked bad";
  }
  state.pending.reset();
  ABUP_CHECK(store.save(state));
  return out;
}

Result<Outcome> rollback(const RollbackOptions& ro) {
  const auto& o = ro.where;
  ABUP_TRY(auto locked, lock_booted(o));
  auto& [c, store, locks, state] = locked;
  const auto& target = c.pair.other(*c.booted);
  std::vector<std::string> warnings;
  if (state.pending) {
    const auto& p = *state.pending;
    const SlotRecord* armed = state.slot(target.partuuid());
    // A re-run after a kill between the state write and the report: arm again, same operation.
    if (!ro.force && p.kind == PendingKind::rollback && p.target_partuuid == target.partuuid() &&
        p.boot_id == c.host.boot_id && armed && armed->state == SlotState::armed)
      return arm_and_record(o, store, state, c, target, p, "rollback");
    if (!ro.force) return refuse_pending(p, "rollback");
    warnings.push_back("WARNING: --force: dropping pending operation " +
                       state.pending->operation_id);
  }
  // Committed before: recorded so, or named by a history line as committed or as the slot that
  // was running when another one was armed.
  const SlotRecord* rec = state.slot(target.partuuid());
  bool committed = rec && rec->state == SlotState::committed;
  std::string version = rec ? rec->version : "";
  // A stage wrote the slot since (staging, staged, failed): what history says it held is gone,
  // and arming it could boot a half-written /usr.
  const bool overwritten = rec && !committed && rec->state != SlotState::unknown;
  ABUP_TRY(auto history, read_history(o.state_dir));
  for (auto it = history.rbegin(); it != history.rend() && !committed && !overwritten; ++it) {
    const auto& h = *it;
    if (h.to_partuuid == target.partuuid() && h.outcome == to_string(OutcomeCode::committed)) {
      committed = true;
      if (version.empty()) version = h.to_version;
    } else if (h.from_partuuid == target.partuuid()) {
      committed = true;
      if (version.empty()) version = h.from_version;
    }
  }
  if (!committed) {
    const std::string why = "rollback: nothing to roll back to: " + describe(target) +
                            " holds no image abup saw committed (state " +
                            std::string(to_string(rec ? rec->state : SlotState::unknown)) + ")";
    if (!ro.force) return make_error(Errc::refused, why + "; --force arms it anyway");
    warnings.push_back("WARNING: --force: " + why.substr(10) + "; arming it anyway");
  }
  auto p = new_pending(PendingKind::rollback, ro.operation_id, c, target, version, o);
  ABUP_TRY(auto out, arm_and_record(o, store, state, c, target, std::move(p), "rollback"));
  out.warnings = std::move(warnings);
  return out;
}

Result<Outcome> disarm(const LifecycleOptions& o) {
  ABUP_TRY(auto locked, lock_booted(o));
  auto& [c, store, locks, state] = locked;
  const auto& target = c.pair.other(*c.booted);
  std::optional<PendingCommit> p = state.pending;
  if (p && p->boot_id != c.host.boot_id)
    return make_error(Errc::refused, "disarm: operation " + p->operation_id +
                                         " armed a slot before the last reboot; run `abup commit` "
                                         "(it records whether that slot booted)");
  if (p && p->target_partuuid != target.partuuid()) p.reset();
  // The bootloader's own view decides, not only the state file: an arming whose state write was
  // lost is disarmed too.
  ABUP_TRY(auto backend, open_backend(o, c.pair, p ? p->backend : std::nullopt));
  ABUP_TRY(auto view, backend->read());
  const bool armed = view.next == target.name && view.default_slot != target.name;
  if (!armed && !p) {
    Outcome out;
    out.kind = OutcomeKind::disarm;
    out.code = OutcomeCode::nothing_pending;
    out.time = now_utc();
    out.message = "nothing to disarm: " + describe(target) +
                  " is not armed (the bootloader boots " +
                  (view.next ? std::string(1, *view.next) : std::string("no slot")) + " next)";
    return out;
  }
  if (armed)
    if (auto st = backend->mark_bad(target.name); !st)
      return std::move(st).error().with_context("disarm " + describe(target));
  fault_point("disarm-backend");
  const SlotRecord* rec = state.slot(target.partuuid());
  auto pending =
      p ? *p
        : new_pending(PendingKind::finalize, "", c, target, rec ? rec->version : std::string(), o);
  auto out = make_outcome(OutcomeKind::disarm, OutcomeCode::disarmed, pending);
  out.message = "disarmed " + describe(target) + (p ? " (operation " + p->operation_id + ")" : "") +
                ": the bootloader boots " + std::string(1, *c.booted) + " again";
  ABUP_CHECK(append_history(o.state_dir, out));
  if (p) {
    auto& r = state.slots[target.partuuid()];
    // finalize armed a staged image (still there: finalize re-verifies it before arming it
    // again); rollback armed the previous, committed one.
    r.state = p->kind == PendingKind::rollback ? SlotState::committed : SlotState::staged;
    r.updated_at = out.time;
    state.pending.reset();
    ABUP_CHECK(store.save(state));
  }
  return out;
}

json outcome_json(const Outcome& o) {
  auto slot = [](char s) { return s ? json(std::string(1, s)) : json(nullptr); };
  return {{"time", o.time},
          {"operationId", o.operation_id},
          {"kind", to_string(o.kind)},
          {"outcome", to_string(o.code)},
          {"fromSlot", slot(o.from_slot)},
          {"toSlot", slot(o.to_slot)},
          {"fromPartuuid", o.from_partuuid},
          {"toPartuuid", o.to_partuuid},
          {"fromVersion", o.from_version},
          {"toVersion", o.to_version}};
}

Result<std::vector<HistoryRecord>> read_history(const std::filesystem::path& dir,
                                                std::vector<std::string>* skipped) {
  std::vector<HistoryRecord> out;
  const auto path = dir / "history.jsonl";
  auto text = read_file(path);
  if (!text) {
    if (text.error().code == Errc::not_found) return out;
    return std::move(text).error();
  }
  // A line where a field is not a string is skipped, as a torn one.
  auto parse = [&](json j, std::size_t line) -> Result<HistoryRecord> {
    if (!j.is_object())
      return make_error(Errc::invalid_input,
                        path.string() + ":" + std::to_string(line) + ": not a JSON object");
    const JsonFields f(path.string() + ":" + std::to_string(line), j);
    HistoryRecord h;
    for (auto [key, field] : {std::pair{"time", &h.time},
                              {"operationId", &h.operation_id},
                              {"kind", &h.kind},
                              {"outcome", &h.outcome},
                              {"fromPartuuid", &h.from_partuuid},
                              {"toPartuuid", &h.to_partuuid},
                              {"fromVersion", &h.from_version},
                              {"toVersion", &h.to_version}}) {
      ABUP_TRY(*field, f.string(key));
    }
    for (auto [key, field] : {std::pair{"fromSlot", &h.from_slot}, {"toSlot", &h.to_slot}}) {
      if (auto it = j.find(key); it == j.end() || it->is_null()) continue;
      ABUP_TRY(*field, f.string(key));
    }
    h.line = std::move(j);
    return h;
  };
  std::size_t pos = 0;
  for (std::size_t line = 1; pos < text->size(); ++line) {
    auto nl = text->find('\n', pos);
    if (nl == std::string::npos) nl = text->size();
    const auto piece = text->substr(pos, nl - pos);
    pos = nl + 1;
    if (piece.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto j = json::parse(piece, nullptr, false);
    if (j.is_discarded()) {
      if (skipped) skipped->push_back(path.string() + ":" + std::to_string(line) + ": not JSON");
      continue;
    }
    auto h = parse(std::move(j), line);
    if (!h) {
      if (skipped) skipped->push_back(h.error().message);
      continue;
    }
    out.push_back(std::move(*h));
  }
  return out;
}

Status append_history(const std::filesystem::path& dir, const Outcome& o) {
  const auto path = dir / "history.jsonl";
  ABUP_TRY(auto lines, read_history(dir));
  for (const auto& h : lines)
    if (h.operation_id == o.operation_id && h.kind == to_string(o.kind) &&
        h.outcome == to_string(o.code))
      return {};
  std::string line = outcome_json(o).dump() + "\n";
  // Capped so a node updating for years keeps a bounded state dir: past kHistoryMaxLines the
  // oldest half goes, in one crash-safe replace (old or new file, never a torn one). Readers look
  // back only at the latest steps, which stay.
  if (lines.size() + 1 > kHistoryMaxLines) {
    std::string kept;
    for (auto it = lines.end() - static_cast<std::ptrdiff_t>(kHistoryMaxLines / 2);
         it != lines.end(); ++it)
      kept += it->line.dump() + "\n";
    return atomic_write_file(path, kept + line, 0600);
  }
  // A line torn by a crash has no newline: start on a fresh line so this one stays readable.
  if (auto text = read_file(path); text && !text->empty() && text->back() != '\n')
    line = "\n" + line;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  ABUP_TRY(Fd fd, open_file(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
  ABUP_CHECK(write_all(fd.get(), as_bytes(line), path.string()));
  if (::fsync(fd.get()) != 0) return make_error(Errc::io, "fsync " + path.string());
  return {};
}

}  // namespace abup::agent
