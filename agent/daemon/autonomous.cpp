#include "agent/daemon/autonomous.hpp"

#include <cstdio>

#include "abup/args.hpp"
#include "abup/fs.hpp"
#include "abup/version.hpp"
#include "agent/daemon/fleetlock.hpp"
#include "agent/daemon/log.hpp"
#include "agent/daemon/notify.hpp"
#include "agent/daemon/phase.hpp"
#include "agent/daemon/process.hpp"
#include "agent/daemon/window.hpp"
#include "agent/lifecycle_guard.hpp"
#include "agent/stage.hpp"
#include "partitions/gpt.hpp"
#include "partitions/slots.hpp"

namespace abup::agent::daemon {

namespace omaha = protocol::omaha;

namespace {

constexpr std::chrono::milliseconds kLockRetry{1000}, kLockRetryMax{5 * 60 * 1000};
constexpr std::chrono::seconds kArmedPoll{5};  // a reboot window's look at state.json

std::string describe_events(const std::vector<omaha::Event>& events) {
  std::string s;
  for (const auto& e : events) s += (s.empty() ? "" : ", ") + e.name();
  return s;
}

// Progress for the Progress property (the server rate-limits its signals) and a human line for
// STATUS=, at most once per percent and phase.
std::function<void(const StageProgress&)> progress_reporter(const std::string& version,
                                                            Reporter& report) {
  struct Last {
    std::string phase;
    int percent = -1;
  };
  auto last = std::make_shared<Last>();
  return [version, last, &report](const StageProgress& p) {
    report.progress(p);
    const int percent = p.total ? static_cast<int>(p.done * 100 / p.total) : 0;
    if (last->phase == p.phase && last->percent == percent) return;
    last->phase = p.phase;
    last->percent = percent;
    notify_status("updating to " + version + ": " + p.phase + " " + std::to_string(percent) +
                  "% (" + human_bytes(p.done) + " of " + human_bytes(p.total) + ", downloaded " +
                  human_bytes(p.downloaded) + ")");
  };
}

// Versions are compared numerically: the server may spell the manifest's version without its
// leading zeros.
const FailedVersion* failed_before(const State& state, const Version& offered) {
  for (const auto& f : state.failed_versions)
    if (auto v = Version::parse(f.version); v && *v == offered) return &f;
  return nullptr;
}

}  // namespace

Autonomous::Autonomous(const DaemonOptions& options, Canceller& cancel, Reporter& report)
    : o_(options), cancel_(cancel), report_(report), store_(options.where.state_dir) {}

protocol::TransportOptions daemon_transport(const Config& config, const Canceller& cancel) {
  protocol::TransportOptions t = network_transport(config);
  t.cancel = cancel.flag();
  return t;
}

protocol::TransportOptions Autonomous::transport() const {
  return daemon_transport(o_.config, cancel_);
}

std::string Autonomous::machine_id(const HostFacts& host) const {
  return omaha::machine_id_for(host.machine_id, o_.config.machine_id_hashed);
}

Result<Autonomous::Ctx> Autonomous::context() const {
  Ctx c;
  ABUP_TRY(c.host, read_host_facts(o_.where.root));
  ABUP_TRY(c.state, StateStore(o_.where.state_dir).load());
  ABUP_TRY(c.ds, store_.load());
  c.who.server = o_.config.server;
  c.who.app_id = o_.config.app_id;
  c.who.track = o_.config.track;
  c.who.version = c.host.version ? c.host.version->text : "0.0.0";
  c.who.arch = c.host.arch;
  c.who.machine_id = machine_id(c.host);
  c.who.boot_id = c.host.boot_id;
  return c;
}

Status Autonomous::queue(Ctx& c, std::vector<omaha::Event> events, bool send_now) {
  for (auto& e : events) {
    if (!e.terminal()) c.ds.in_progress = true;
    c.ds.queued.push_back(std::move(e));
  }
  ABUP_CHECK(store_.save(c.ds));
  if (send_now) flush(c);
  return {};
}

void Autonomous::delivered(Ctx& c, std::size_t acknowledged) {
  const std::size_t n = std::min(acknowledged, c.ds.queued.size());
  if (n == 0) return;
  const std::vector<omaha::Event> sent(c.ds.queued.begin(),
                                       c.ds.queued.begin() + static_cast<std::ptrdiff_t>(n));
  for (const auto& e : sent)
    if (e.terminal()) c.ds.in_progress = false;
  c.ds.queued.erase(c.ds.queued.begin(), c.ds.queued.begin() + static_cast<std::ptrdiff_t>(n));
  c.ds.events_acknowledged += n;
  log(Event::events, Priority::info, "Omaha events " + describe_events(sent) + " acknowledged",
      {{"OPERATION_ID", c.ds.operation_id}, {"EVENTS", describe_events(sent)}});
  if (auto st = store_.save(c.ds); !st)
    log(Event::error, Priority::err,
        "cannot save " + store_.path().string() + ": " + st.error().message);
}

void Autonomous::flush(Ctx& c) {
  if (c.ds.queued.empty() || o_.config.server.empty()) return;
  if (auto st = omaha::send_events(c.who, c.ds.queued, transport()); !st) {
    log(Event::events, Priority::warning,
        "Omaha events " + describe_events(c.ds.queued) +
            " not acknowledged (kept, sent again later): " + st.error().message,
        {{"OPERATION_ID", c.ds.operation_id}});
    return;
  }
  delivered(c, c.ds.queued.size());
}

Status Autonomous::startup() {
  ABUP_TRY(auto c, context());
  std::optional<char> booted;
  if (c.state.pending) {
    ABUP_TRY(auto pair, partitions::discover_slots(o_.where.disk));
    ABUP_TRY(booted, partitions::booted_slot(pair, o_.where.root));
  }
  const Start from = derive_start(Mode::autonomous, c.state, c.ds, {}, c.host.boot_id, booted);
  const bool commit_owed = from.owed == Owed::commit || from.owed == Owed::health_then_commit;
  if (from.owed == Owed::fall_back)
    return fall_back(c, *c.state.pending, "the health checks already failed in this boot");
  if (commit_owed) {
    const PendingCommit p = *c.state.pending;
    if (from.owed == Owed::health_then_commit) {
      report_.state(dbus::kStateCommitting,
                    "checking the health of " + p.target_version + " before the commit");
      HealthChecks checks{o_.config.health_units, o_.config.health_commands,
                          o_.config.health_timeout, o_.unit_state};
      if (auto st = run_health_checks(checks, cancel_); !st) {
        if (st.error().code == Errc::cancelled) return std::move(st).error();
        return fall_back(c, p, st.error().message);
      }
    }
    report_.operation(p.operation_id);
    report_.state(dbus::kStateCommitting, "committing " + p.target_version);
    ABUP_TRY(auto out, commit(o_.where));
    const std::map<std::string, std::string> fields = {{"OPERATION_ID", out.operation_id},
                                                       {"VERSION", out.to_version},
                                                       {"PREVIOUS_VERSION", out.from_version}};
    if (out.code == OutcomeCode::committed) {
      log(Event::committed, Priority::notice, out.message, fields);
      if (p.kind == PendingKind::finalize && c.ds.in_progress) {
        ABUP_CHECK(queue(c, {omaha::Event::updated_from(p.previous_version)},
                         false));  // goes with the next update check
      }
    } else if (out.code == OutcomeCode::target_boot_failed) {
      log(Event::boot_failed, Priority::err, out.message, fields);
      if (p.kind == PendingKind::finalize) report_.rolled_back();
      if (c.ds.in_progress) {
        ABUP_CHECK(queue(c, {omaha::Event::failed(omaha::ErrorCode::fell_back)}, false));
      }
    }
  }
  if (from.release_lock || from.owed == Owed::release_lock) ABUP_CHECK(release_fleetlock(c));
  return {};
}

Status Autonomous::fall_back(Ctx& c, const PendingCommit& p, const std::string& why) {
  log(Event::boot_failed, Priority::err,
      p.target_version + " is not healthy: " + why + "; marking slot " +
          std::string(1, p.target_slot) + " bad and rebooting into " + p.previous_version,
      {{"OPERATION_ID", p.operation_id},
       {"VERSION", p.target_version},
       {"PREVIOUS_VERSION", p.previous_version}});
  c.ds.health_failed_boot_id = c.host.boot_id;
  ABUP_CHECK(store_.save(c.ds));
  // The bootloader then falls back to the old slot; the commit after that reboot records
  // TargetBootFailed and the failed version, and the next check reports 3/0 error 44.
  ABUP_TRY(auto pair, partitions::discover_slots(o_.where.disk));
  ABUP_TRY(auto locks, lock_for_writing(o_.where.state_dir, o_.where.disk));
  ABUP_TRY(auto backend, open_backend(o_.where, pair, p.backend));
  ABUP_CHECK_CTX(backend->mark_bad(p.target_slot),
                 "mark slot " + std::string(1, p.target_slot) + " bad");
  return reboot_now("falling back to " + p.previous_version + " after failed health checks");
}

Status Autonomous::release_fleetlock(Ctx& c) {
  FleetLock lock{o_.config.fleetlock_url, machine_id(c.host), o_.config.fleetlock_group};
  report_.state(dbus::kStateIdle, "releasing the FleetLock reboot slot");
  ABUP_CHECK(fleetlock_until_granted(
      lock, LockOp::steady_state, transport(), cancel_, kLockRetry, kLockRetryMax,
      [](const std::string& why) { log(Event::reboot, Priority::warning, why); }));
  log(Event::reboot, Priority::info, "FleetLock steady-state reported to " + lock.base);
  c.ds.fleetlock_held = false;
  return store_.save(c.ds);
}

Status Autonomous::round(const std::string& operation_id) {
  if (o_.config.server.empty()) {
    if (!said_idle_)
      log(Event::check, Priority::notice, "no [Update] Server= configured: no update checks");
    said_idle_ = true;
    report_.state(dbus::kStateIdle, "idle: no update server configured");
    return {};
  }
  if (rebooting_) {
    report_.state(dbus::kStateRebooting, "rebooting");
    return {};
  }
  auto ctx = context();
  if (!ctx) {
    // A state file it cannot use (corrupt, newer schema): no update work until it is fixed;
    // published, and read again on the next round.
    report_.failed(ctx.error(), "no update work: " + ctx.error().message);
    return std::move(ctx).error();
  }
  auto& c = *ctx;
  switch (derive_start(Mode::autonomous, c.state, c.ds, {}, c.host.boot_id, std::nullopt).owed) {
    case Owed::commit:  // armed before the last reboot, not committed (the start-up failed): again
      return startup();
    case Owed::reboot:  // armed in this boot: the reboot is what is left to do
      flush(c);
      return reboot_per_strategy(c, *c.state.pending);
    default:
      break;
  }
  const auto sent = c.ds.queued;
  report_.state(dbus::kStateChecking, "checking for updates at " + o_.config.server);
  auto r = omaha::check(c.who, sent, transport());
  if (!r) {
    log(Event::check_failed, Priority::warning, "update check failed: " + r.error().message,
        {{"SERVER", o_.config.server}});
    report_.checked("error", "");
    if (r.error().code != Errc::cancelled)
      report_.failed(r.error(), "update check failed: " + r.error().message);
    return std::move(r).error();
  }
  if (!sent.empty()) {
    if (r->events_acknowledged >= sent.size())
      delivered(c, sent.size());
    else
      log(Event::events, Priority::warning,
          "Omaha events " + describe_events(sent) + ": " + std::to_string(r->events_acknowledged) +
              " acknowledged; sending them again later");
  }
  const std::string running = c.who.version;
  switch (r->kind) {
    case omaha::CheckResult::Kind::no_update:
      log(Event::check, Priority::info, "no update (running " + running + ")",
          {{"VERSION", running}});
      report_.checked("no_update", "");
      report_.state(dbus::kStateIdle, "up to date: " + running);
      return {};
    case omaha::CheckResult::Kind::not_now:
      log(Event::check, Priority::info, "the update server says not now (" + r->app_status + ")",
          {{"VERSION", running}});
      report_.checked("not_now", "");
      report_.state(dbus::kStateIdle,
                    "up to date: " + running + " (server: " + r->app_status + ")");
      return {};
    case omaha::CheckResult::Kind::update:
      break;
  }
  report_.checked("update_available", r->offer->version);
  return install(c, *r->offer, operation_id);
}

StageOptions Autonomous::stage_options(const std::string& source, const std::string& version) {
  StageOptions so = agent::stage_options(o_.where, o_.config);
  so.source = source;
  so.transport = transport();
  so.on_progress = progress_reporter(version, report_);
  return so;
}

Status Autonomous::install(Ctx& c, const omaha::Offer& offer, const std::string& operation_id) {
  const std::map<std::string, std::string> vf = {{"VERSION", c.who.version},
                                                 {"TARGET_VERSION", offer.version}};
  auto skip = [&](const std::string& why) -> Status {
    log(Event::offer_skipped, Priority::notice, "not installing " + offer.version + ": " + why, vf);
    report_.state(dbus::kStateIdle,
                  "running " + c.who.version + "; offered " + offer.version + " skipped: " + why);
    return {};
  };
  auto offered = Version::parse(offer.version);
  if (!offered) return skip("not a version (" + offered.error().message + ")");
  if (c.host.version && *offered <= *c.host.version) return skip("not newer than the running one");
  if (const auto* f = failed_before(c.state, *offered))
    return skip("it failed here before (" + std::string(to_string(f->code)) + ", operation " +
                f->operation_id + ", " + f->at + "); waiting for a newer version");

  if (!(c.ds.in_progress && c.ds.target_version == offer.version) || c.ds.operation_id.empty())
    c.ds.operation_id = operation_id.empty() ? partitions::Guid::random().str() : operation_id;
  c.ds.target_version = offer.version;
  auto fields = vf;
  fields["OPERATION_ID"] = c.ds.operation_id;
  log(Event::stage_started, Priority::notice,
      "updating " + c.who.version + " -> " + offer.version + " from " + offer.url, fields);
  report_.operation(operation_id.empty() ? c.ds.operation_id : operation_id);
  report_.clear_error();
  report_.state(dbus::kStateStaging, "updating to " + offer.version);
  ABUP_CHECK(queue(c, {omaha::Event::download_started()}, true));

  auto so = stage_options(offer.url, offer.version);
  so.expected_version = offer.version;
  auto staged = stage(so);
  auto failed = [&](Error e, const char* step) -> Status {
    if (e.code == Errc::cancelled || cancel_.cancelled()) {
      // Abandoned safely: the slot record says staging/failed, the chunks are re-verified on
      // the next try, and the terminal event stays owed.
      log(Event::stage_failed, Priority::notice,
          std::string(step) + " of " + offer.version + " stopped; it resumes on the next start",
          fields);
      report_.state(dbus::kStateIdle, std::string(step) + " of " + offer.version + " stopped");
      return make_error(Errc::cancelled, e.message);
    }
    log(Event::stage_failed, Priority::err,
        std::string(step) + " of " + offer.version + " failed: " + e.message, fields);
    report_.failed(e, std::string(step) + " of " + offer.version + " failed: " + e.message);
    const auto code =
        e.code == Errc::network ? omaha::ErrorCode::download : omaha::ErrorCode::generic;
    ABUP_CHECK(queue(c, {omaha::Event::failed(code)}, true));
    return std::move(e).with_context(step);
  };
  if (!staged) return failed(std::move(staged).error(), "stage");
  log(Event::staged, Priority::notice,
      "staged " + staged->version + " on " + staged->slot_label + " (" +
          human_bytes(staged->downloaded) + " downloaded)",
      fields);
  report_.staged(*staged);
  report_.state(dbus::kStateStaged, "staged " + staged->version);
  ABUP_CHECK(queue(c, {omaha::Event::download_finished()}, true));

  FinalizeOptions fo;
  fo.where = o_.where;
  fo.version = staged->version;
  fo.operation_id = c.ds.operation_id;
  auto armed = finalize(fo);
  if (!armed) return failed(std::move(armed).error(), "finalize");
  log(Event::armed, Priority::notice, armed->message, fields);
  report_.state(dbus::kStateArmed, armed->message);
  ABUP_CHECK(queue(c, {omaha::Event::installed()}, true));
  ABUP_TRY(c.state, StateStore(o_.where.state_dir).load());
  if (!c.state.pending) return make_error(Errc::failed, "finalize left no pending commit");
  return reboot_per_strategy(c, *c.state.pending);
}

Status Autonomous::stage_only(const std::string& what, const std::string& operation_id) {
  report_.operation(operation_id);
  report_.clear_error();
  auto fail = [&](Error e) -> Status {
    if (e.code == Errc::cancelled) {
      report_.state(dbus::kStateIdle, "stage of " + what + " stopped");
    } else {
      log(Event::stage_failed, Priority::err, "stage of " + what + " failed: " + e.message,
          {{"OPERATION_ID", operation_id}});
      report_.failed(e, "stage of " + what + " failed: " + e.message);
    }
    return e;
  };
  std::string source = what, version = what;
  if (what.find('/') == std::string::npos) {  // a version: ask the update server for its URL
    auto wanted = Version::parse(what);
    if (!wanted) return fail(std::move(wanted).error());
    auto c = context();
    if (!c) return fail(std::move(c).error());
    report_.state(dbus::kStateChecking, "asking " + o_.config.server + " for " + what);
    auto r = omaha::check(c->who, {}, transport());
    if (!r) {
      report_.checked("error", "");
      return fail(std::move(r).error().with_context("update check"));
    }
    const bool has = r->kind == omaha::CheckResult::Kind::update;
    report_.checked(has ? "update_available" : "no_update", has ? r->offer->version : "");
    std::optional<Version> offered;
    if (has)
      if (auto v = Version::parse(r->offer->version); v) offered = *v;
    if (!offered || !(*offered == *wanted))
      return fail(make_error(Errc::not_found,
                             "the update server offers " +
                                 (has ? r->offer->version : std::string("no update")) + ", not " +
                                 what + " (pass the image's URL to stage it anyway)"));
    source = r->offer->url;
    version = r->offer->version;
  }
  log(Event::stage_started, Priority::notice, "staging " + version + " from " + source,
      {{"OPERATION_ID", operation_id}});
  report_.state(dbus::kStateStaging, "staging " + version);
  auto so = stage_options(source, version);
  if (source != version) so.expected_version = version;  // asked for a version, not a URL
  auto staged = stage(so);
  if (!staged) return fail(std::move(staged).error());
  log(Event::staged, Priority::notice,
      "staged " + staged->version + " on " + staged->slot_label + " (" +
          human_bytes(staged->downloaded) + " downloaded)",
      {{"OPERATION_ID", operation_id}, {"TARGET_VERSION", staged->version}});
  report_.staged(*staged);
  report_.state(dbus::kStateStaged, "staged " + staged->version);
  return {};
}

Status Autonomous::reboot_per_strategy(Ctx& c, const PendingCommit& p) {
  const RebootStrategy strategy = o_.config.reboot_strategy;
  const std::map<std::string, std::string> fields = {
      {"OPERATION_ID", p.operation_id},
      {"TARGET_VERSION", p.target_version},
      {"STRATEGY", std::string(to_string(strategy))}};
  if (strategy == RebootStrategy::off) {
    // kured and similar tools reboot nodes that have this file.
    const auto marker = o_.where.root / "run/reboot-required";
    std::error_code ec;
    std::filesystem::create_directories(marker.parent_path(), ec);
    ABUP_CHECK(atomic_write_file(marker, "", 0644));
    if (!said_reboot_needed_)
      log(Event::reboot, Priority::notice,
          "reboot needed: " + p.target_version + " is armed (Strategy=off); touched " +
              marker.string(),
          fields);
    said_reboot_needed_ = true;
    report_.state(dbus::kStateArmed, "reboot needed: " + p.target_version + " is armed in slot " +
                                         std::string(1, p.target_slot));
    return {};
  }
  if (rebooting_) return {};
  RebootWait wait{p.target_version, p.target_slot, p.operation_id, std::nullopt};
  if (strategy == RebootStrategy::window) {
    ABUP_TRY(auto w, parse_reboot_window(o_.config.reboot_window));
    const auto now = std::chrono::system_clock::now();
    const auto at = next_reboot_time(w, now);
    if (at > now) {
      const std::time_t tt = std::chrono::system_clock::to_time_t(at);
      char when[40];
      std::tm tm{};
      gmtime_r(&tt, &tm);
      std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm);
      log(Event::reboot, Priority::notice,
          p.target_version + " is armed; waiting for the reboot window (" +
              o_.config.reboot_window + ") at " + when,
          fields);
      report_.state(dbus::kStateArmed,
                    "reboot needed: waiting for the window at " + std::string(when));
      wait.window = at;
      wait_ = wait;
      return {};
    }
  } else if (strategy == RebootStrategy::fleetlock) {
    c.ds.fleetlock_held = true;  // before asking: a crash after the grant must still release it
    ABUP_CHECK(store_.save(c.ds));
    report_.state(dbus::kStateArmed, "reboot needed: asking FleetLock " + o_.config.fleetlock_url +
                                         " for a reboot slot");
    wait_ = wait;
    return {};
  }
  return reboot_after_wait(wait);
}

Status Autonomous::wait_for_reboot(const RebootWait& w, Canceller& cancel) const {
  // A wait can last days: it looks at state.json now and then, so that an arming undone
  // meanwhile (`abup disarm`) ends it, and the State stops saying armed, within seconds.
  // reboot_after_wait then finds nothing to reboot into. A state file that cannot be read keeps
  // the wait.
  auto armed = [&] {
    auto st = StateStore(o_.where.state_dir).load();
    return !st || (st->pending && st->pending->operation_id == w.operation_id);
  };
  if (w.window) {
    for (auto now = std::chrono::system_clock::now(); now < *w.window && armed();
         now = std::chrono::system_clock::now())
      if (!cancel.wait_until(std::min(*w.window, now + kArmedPoll)))
        return make_error(Errc::cancelled, "waiting for the reboot window: stopped");
    return {};
  }
  auto host = read_host_facts(o_.where.root);
  if (!host) return std::move(host).error();
  const std::map<std::string, std::string> fields = {
      {"OPERATION_ID", w.operation_id},
      {"TARGET_VERSION", w.target_version},
      {"STRATEGY", std::string(to_string(RebootStrategy::fleetlock))}};
  FleetLock lock{o_.config.fleetlock_url, machine_id(*host), o_.config.fleetlock_group};
  ABUP_CHECK(fleetlock_until_granted(
      lock, LockOp::pre_reboot, daemon_transport(o_.config, cancel), cancel, kLockRetry,
      kLockRetryMax,
      [&](const std::string& why) {
        log(Event::reboot, Priority::info, why, fields);
        notify_status("reboot needed: " + why);
      },
      armed));
  if (armed()) log(Event::reboot, Priority::notice, "FleetLock granted a reboot slot", fields);
  return {};
}

Status Autonomous::reboot_after_wait(const RebootWait& w) {
  // The arming may have been undone while the node waited (`abup disarm`, `rollback --force`):
  // then the reboot would only boot the same slot again. A state file that cannot be read keeps
  // the reboot that was armed.
  if (auto c = context();
      c && (!c->state.pending || c->state.pending->operation_id != w.operation_id)) {
    log(Event::reboot, Priority::notice,
        "operation " + w.operation_id + " (" + w.target_version + " on slot " +
            std::string(1, w.target_slot) + ") is no longer armed: no reboot",
        {{"OPERATION_ID", w.operation_id}, {"TARGET_VERSION", w.target_version}});
    report_.state(dbus::kStateIdle, "the arming of " + w.target_version + " was undone");
    if (c->ds.fleetlock_held) ABUP_CHECK(release_fleetlock(*c));
    return {};
  }
  return reboot_now("rebooting into " + w.target_version + " (slot " +
                    std::string(1, w.target_slot) + ")");
}

Status reboot_node(const DaemonOptions& o, Canceller& cancel) {
  return reboot_machine(o.config.reboot_command, o.logind_reboot, &cancel);
}

Status Autonomous::reboot_now(const std::string& why) {
  log(Event::reboot, Priority::notice, why);
  report_.state(dbus::kStateRebooting, why);
  if (auto st = reboot_node(o_, cancel_); !st) {
    if (st.error().code != Errc::cancelled) report_.failed(st.error(), st.error().message);
    return st;
  }
  rebooting_ = true;
  return {};
}

}  // namespace abup::agent::daemon
