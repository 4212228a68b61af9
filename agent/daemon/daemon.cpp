#include "agent/daemon/daemon.hpp"

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <random>
#include <thread>

#include "abup/version.hpp"
#include "agent/aks/aks.hpp"
#include "agent/daemon/log.hpp"
#include "agent/daemon/notify.hpp"
#include "agent/daemon/phase.hpp"
#include "agent/daemon/report.hpp"
#include "agent/daemon/schedule.hpp"
#include "agent/dbus/asio_bus.hpp"
#include "agent/dbus/bus.hpp"
#include "agent/dbus/server.hpp"
#include "agent/metrics.hpp"
#include "agent/state.hpp"
#include "partitions/gpt.hpp"

namespace abup::agent::daemon {

namespace asio = boost::asio;
using dbus::ApiErrc;
using dbus::ApiError;
using dbus::Reply;

Status validate(const DaemonOptions& o) {
  const auto& c = o.config;
  auto bad = [](const std::string& why) { return make_error(Errc::usage, why); };
  if (c.reboot_strategy == RebootStrategy::window && c.reboot_window.empty())
    return bad("[Reboot] Strategy=window needs Window= (e.g. Window=Mon..Fri 02:00 3h UTC)");
  if (c.reboot_strategy == RebootStrategy::fleetlock && c.fleetlock_url.empty())
    return bad("[Reboot] Strategy=fleetlock needs FleetLockURL=");
  if (!c.health_units.empty() && !o.unit_state)
    return bad("[Health] Units= needs systemd over D-Bus, which this build cannot ask");
  return {};
}

namespace {

// One piece of work for the worker (or the waiter) and what the loop does after it.
struct Work {
  Work() = default;
  Work(std::function<Status()> o, std::function<void(const Status&)> t,
       std::shared_ptr<Canceller> s = nullptr)
      : op(std::move(o)), then(std::move(t)), stop_wait(std::move(s)) {}
  std::function<Status()> op;
  std::function<void(const Status&)> then;
  std::shared_ptr<Canceller> stop_wait;  // the waiter's own stop flag
};

class Daemon : public dbus::Handler {
 public:
  explicit Daemon(const DaemonOptions& o)
      : o_(o),
        report_(o.config.mode),
        auto_(o, cancel_, report_),
        signals_(io_, SIGTERM, SIGINT),
        check_timer_(io_),
        watchdog_timer_(io_),
        schedule_({o.config.first_check, o.config.check_interval, o.config.check_jitter,
                   o.config.max_backoff},
                  std::random_device{}()) {}

  int run() {
    signals_.async_wait([this](auto ec, int sig) { on_signal(ec, sig); });
    if (auto wd = watchdog_interval()) arm_watchdog(*wd);
    const std::string mode(to_string(o_.config.mode));
    log(Event::started, Priority::info,
        "abup daemon started (mode " + mode + ", reboot strategy " +
            std::string(to_string(o_.config.reboot_strategy)) + ")",
        {{"MODE", mode}});
    report_.refresh_slots(o_.where);
    start_metrics();
    start_api();
    report_.set_on_change([this] { publish_soon(); });
    publish();
    if (o_.config.mode == Mode::aks) {
      notify_ready("running (aks mode)");
      run_aks_mode();
    } else {
      run_autonomous_mode();
    }
    io_.run();
    if (worker_.joinable()) worker_.join();
    stop_waiter();
    if (waiter_.joinable()) waiter_.join();
    report_.set_on_change({});
    server_.reset();  // releases the name: clients see the daemon go
    bus_driver_.reset();
    bus_.reset();
    if (metrics_server_) metrics_server_->stop();
    metrics_server_.reset();
    log(Event::stopping, Priority::info, "abup daemon stopped");
    return 0;
  }

  // org.abup.Agent1 (docs/dbus.md), on the loop thread. Whether a method may start is the
  // phase table's answer (agent/daemon/phase.hpp); its argument checks come after that.
  Reply<std::string> check_now() override {
    if (auto refused = not_in_aks_mode("CheckNow")) return *refused;
    if (!phase_.allows(Trigger::check_now)) return busy();
    if (o_.config.server.empty())
      return ApiError{ApiErrc::nothing_to_do, "no [Update] Server= is configured: nothing to ask"};
    const auto op = partitions::Guid::random().str();
    announce(op, dbus::kStateChecking, "checking for updates (asked over D-Bus)");
    check_timer_.cancel();  // this is the round; the schedule goes on after it
    drive(Trigger::check_now, "D-Bus CheckNow", round_work(op));
    return op;
  }

  Reply<std::string> stage(const std::string& what) override {
    if (auto refused = not_in_aks_mode("Stage")) return *refused;
    if (!phase_.allows(Trigger::stage)) return busy();
    if (what.empty()) return check_now();
    const bool is_version = what.find('/') == std::string::npos;
    if (is_version) {
      if (auto v = Version::parse(what); !v)
        return ApiError{ApiErrc::invalid_args, "'" + what +
                                                   "' is neither a version nor an image URL or "
                                                   "path: " +
                                                   v.error().message};
      if (o_.config.server.empty())
        return ApiError{ApiErrc::nothing_to_do, "no [Update] Server= is configured to ask for " +
                                                    what + "; pass the image's URL instead"};
    }
    const auto op = partitions::Guid::random().str();
    announce(op, is_version ? dbus::kStateChecking : dbus::kStateStaging,
             "staging " + what + " (asked over D-Bus)");
    check_timer_.cancel();
    drive(Trigger::stage, "D-Bus Stage",
          {[this, what, op] { return auto_.stage_only(what, op); },
           [this](const Status& st) { after_scheduled(st); }});
    return op;
  }

  // The checks read state.json here; the GPT/boot-config write runs on the worker, and the
  // reply goes out when it is done.
  void finalize(bool reboot, dbus::OutcomeReply reply) override {
    if (auto refused = not_in_aks_mode("Finalize")) return reply(*refused);
    if (!phase_.allows(Trigger::finalize)) return reply(busy());
    auto state = StateStore(o_.where.state_dir).load();
    if (!state) return reply(dbus::to_api_error(state.error()));
    if (const auto& p = state->pending; p && p->kind == PendingKind::finalize)
      return reply(ApiError{ApiErrc::refused, "slot " + std::string(1, p->target_slot) +
                                                  " is armed already with " + p->target_version +
                                                  " (operation " + p->operation_id +
                                                  "): reboot into it, or Rollback"});
    bool staged = false;
    for (const auto& [uuid, rec] : state->slots) staged = staged || rec.state == SlotState::staged;
    if (!staged)
      return reply(ApiError{ApiErrc::not_staged, "nothing is staged; stage an image first"});
    arm(Trigger::finalize, reboot, std::move(reply), [this] {
      return agent::finalize(FinalizeOptions{o_.where, "", "", false});
    });
  }

  void rollback(bool reboot, bool force, dbus::OutcomeReply reply) override {
    if (auto refused = not_in_aks_mode("Rollback")) return reply(*refused);
    if (!phase_.allows(Trigger::rollback)) return reply(busy());
    arm(Trigger::rollback, reboot, std::move(reply), [this, force] {
      return agent::rollback(RollbackOptions{o_.where, "", force});
    });
  }

  Reply<std::string> cancel() override {
    if (auto refused = not_in_aks_mode("Cancel")) return *refused;
    const Phase from = phase_.phase();
    if (!phase_.allows(Trigger::cancel)) {
      if (from == Phase::stopping || from == Phase::stopped) return busy();
      return ApiError{ApiErrc::nothing_to_do, "no operation runs"};
    }
    const auto id = report_.status().operation_id;
    log(Event::stopping, Priority::notice,
        from == Phase::waiting
            ? "the reboot wait of operation " + id +
                  " cancelled over D-Bus: the slot stays armed; the next check waits again"
            : "operation " + id + " cancelled over D-Bus: stopping it at its next safe point");
    drive(Trigger::cancel, "D-Bus Cancel");
    return id;
  }

 private:
  // The control plane owns every step in aks mode: a local method would race it.
  std::optional<ApiError> not_in_aks_mode(const char* method) const {
    if (o_.config.mode != Mode::aks) return std::nullopt;
    return ApiError{ApiErrc::refused,
                    std::string(method) +
                        ": [Agent] Mode=aks: the AKS control plane drives updates through the " +
                        o_.config.annotation_prefix + "/update-request annotation of this Node"};
  }

  ApiError busy() const {
    const auto s = report_.status();
    if (phase_.phase() == Phase::stopping || phase_.phase() == Phase::stopped)
      return {ApiErrc::busy, "the daemon is stopping"};
    return {ApiErrc::busy, "operation " + (s.operation_id.empty() ? "(start-up)" : s.operation_id) +
                               " is " + s.state + "; retry later or Cancel it"};
  }

  // Fires `trigger` and does what its row says; false when the table refuses it (logged).
  bool drive(Trigger trigger, std::string_view why, Work work = {}, const Status& ended = {}) {
    auto t = phase_.fire(trigger, why);
    if (!t) return false;
    if (t->from == Phase::waiting && t->to != Phase::waiting) stop_waiter();
    if (auto s = published_state(t->to); s && report_.status().state != *s) report_.state(*s, "");
    switch (t->action) {
      case Action::none:
        break;
      case Action::start_commit:
      case Action::start_watch:
      case Action::start_round:
      case Action::start_stage:
      case Action::start_finalize:
      case Action::start_rollback:
      case Action::start_reboot:
        run_on_worker(std::move(work));
        break;
      case Action::start_wait:
        run_waiter(std::move(work));
        break;
      case Action::cancel_worker:
        cancel_.cancel();
        break;
      case Action::finish: {
        if (t->from == Phase::cancelling) cancel_.reset();  // the step published where it stopped
        if (auto then = std::exchange(then_, {})) then(ended);
        break;
      }
      case Action::finish_stopped:
      case Action::end_loop:
        io_.stop();
        break;
    }
    return true;
  }

  void run_on_worker(Work work) {
    then_ = std::move(work.then);
    worker_ = std::thread([this, op = std::move(work.op)] {
      Status st = op();
      asio::post(io_, [this, st = std::move(st)] {
        worker_.join();
        drive(Trigger::done, "the worker's operation ended", {}, st);
      });
    });
  }

  // The reboot wait runs beside the worker, so that the loop (and the API) never waits for it.
  // A wait the loop left is stopped and its end ignored (its generation is old).
  void run_waiter(Work work) {
    if (waiter_.joinable()) waiter_.join();  // an earlier, stopped wait: ends within a second
    then_ = std::move(work.then);
    waiter_cancel_ = std::move(work.stop_wait);
    const auto gen = ++wait_gen_;
    waiter_ = std::thread([this, gen, op = std::move(work.op)] {
      Status st = op();
      asio::post(io_, [this, gen, st = std::move(st)] {
        if (gen != wait_gen_) return;
        waiter_.join();
        if (st && waiting_for_) {
          const RebootWait w = *waiting_for_;
          drive(Trigger::reboot, "the reboot wait ended",
                {[this, w] { return auto_.reboot_after_wait(w); },
                 [this](const Status& r) { after_scheduled(r); }});
        } else {
          drive(Trigger::done, "the reboot wait failed", {}, st);
        }
      });
    });
  }

  void stop_waiter() {
    if (waiter_cancel_) waiter_cancel_->cancel();
    ++wait_gen_;
  }

  void enter_wait(const RebootWait& w) {
    waiting_for_ = w;
    auto stop = std::make_shared<Canceller>();
    drive(Trigger::wait, "reboot " + std::string(to_string(o_.config.reboot_strategy)),
          {[this, w, stop] { return auto_.wait_for_reboot(w, *stop); },
           [this](const Status& st) { after_scheduled(st); }, stop});
  }

  // A method's new operation becomes visible before its work starts, so that the StateChanged
  // a client waits for cannot be folded into an unchanged state.
  void announce(const std::string& op, std::string_view state, const std::string& line) {
    report_.operation(op);
    report_.clear_error();
    report_.state(state, line);
    publish();
  }

  // Finalize and Rollback: the write on the worker, then the reply, then the reboot if asked.
  void arm(Trigger trigger, bool reboot, dbus::OutcomeReply reply,
           std::function<Result<Outcome>()> write) {
    auto out = std::make_shared<Result<Outcome>>(make_error(Errc::failed, "not run"));
    check_timer_.cancel();
    const bool is_rollback = trigger == Trigger::rollback;
    drive(trigger, is_rollback ? "D-Bus Rollback" : "D-Bus Finalize",
          {[out, write = std::move(write)]() -> Status {
             *out = write();
             return {};
           },
           [this, out, reboot, is_rollback, reply = std::move(reply)](const Status&) {
             if (!*out) {
               reply(dbus::to_api_error(out->error()));
               return after_scheduled({});
             }
             log(Event::armed, Priority::notice,
                 (*out)->message +
                     (is_rollback ? " (rollback asked over D-Bus)" : " (asked over D-Bus)"),
                 {{"OPERATION_ID", (*out)->operation_id}});
             if (is_rollback) report_.rolled_back();
             reply(armed(**out, reboot));
           }});
  }

  dbus::OutcomeMap armed(const Outcome& out, bool reboot) {
    report_.operation(out.operation_id);
    report_.clear_error();
    report_.refresh_slots(o_.where);
    report_.state(reboot ? dbus::kStateRebooting : dbus::kStateArmed, out.message);
    publish();
    if (!reboot) {
      after_scheduled({});
    } else {
      drive(Trigger::reboot, "Finalize/Rollback with reboot",
            {[this] { return reboot_node(o_, cancel_); },
             [this](const Status& st) {
               if (!st) {
                 log(Event::error, Priority::err, "reboot: " + st.error().message);
                 report_.failed(st.error(), "reboot failed: " + st.error().message);
               }
               after_scheduled({});
             }});
    }
    return dbus::outcome_map(out);
  }

  void start_metrics() {
    if (o_.config.metrics_listen.empty()) return;
    auto m = MetricsServer::start(io_, o_.config.metrics_listen);
    if (!m) {
      log(Event::error, Priority::err,
          "[Metrics] Listen=" + o_.config.metrics_listen + ": " + m.error().message);
      return;
    }
    metrics_server_ = std::move(*m);
    log(Event::started, Priority::info,
        "metrics at http://" + o_.config.metrics_listen + "/metrics (port " +
            std::to_string(metrics_server_->port()) + ")");
  }

  // The D-Bus API is how the CLI follows the daemon; without a system bus (a container, a
  // test) the daemon still works and `abup status` reads the disk.
  void start_api() {
    auto bus = dbus::open_system_bus();
    if (!bus) {
      log(Event::error, Priority::warning,
          "no D-Bus API (" + bus.error().message + "); abup status reads the disk instead");
      return;
    }
    bus_ = std::move(*bus);
    auto server = dbus::Server::start(bus_.get(), *this, report_.status());
    if (!server) {
      log(Event::error, Priority::err, "no D-Bus API: " + server.error().message);
      bus_.reset();
      return;
    }
    server_ = std::move(*server);
    bus_driver_ = std::make_unique<dbus::AsioBus>(io_, bus_.get(), [](const Error& e) {
      log(Event::error, Priority::err, "the D-Bus connection failed: " + e.message);
    });
    server_->set_wake([this] { bus_driver_->kick(); });
    if (auto st = bus_driver_->start(); !st) {
      log(Event::error, Priority::err, "no D-Bus API: " + st.error().message);
      server_.reset();
      bus_driver_.reset();
      bus_.reset();
    }
  }

  // From any thread: one publish on the loop for any number of changes before it runs.
  void publish_soon() {
    if (publish_queued_.exchange(true)) return;
    asio::post(io_, [this] {
      publish_queued_ = false;
      publish();
    });
  }

  void publish() {
    if (server_) server_->update(report_.status());
    auto text = render_metrics(report_.metrics());
    if (text == metrics_text_) return;
    metrics_text_ = text;
    if (metrics_server_) metrics_server_->update(text);
    if (o_.config.metrics_textfile.empty()) return;
    if (auto st = write_metrics_textfile(o_.config.metrics_textfile, text); !st) {
      if (!said_textfile_failed_)
        log(Event::error, Priority::warning, "[Metrics] Textfile=: " + st.error().message);
      said_textfile_failed_ = true;
    } else {
      said_textfile_failed_ = false;
    }
  }

  // aks mode: the control plane drives every step (and the commit after a reboot) through the
  // Node's annotations; run_aks() blocks on the worker until stopped. A failure other than the
  // Node being gone is retried with the check schedule's backoff.
  void run_aks_mode() {
    drive(Trigger::watch, "aks mode",
          {[this] {
             aks::AksOptions a;
             a.config = o_.config;
             a.where = o_.where;
             a.transport = daemon_transport(o_.config, cancel_);
             a.reboot = [this] { return reboot_node(o_, cancel_); };
             a.on_step = [this](std::string_view state, const std::string& op) {
               report_.operation(op);
               if (state == dbus::kStateStaging) report_.clear_error();
               report_.state(state, "");
             };
             a.on_progress = [this](const StageProgress& p) { report_.progress(p); };
             a.on_staged = [this](const StageSummary& s) { report_.staged(s); };
             a.on_failed = [this](const std::string& op, protocol::aks::Code code,
                                  const std::string& message) {
               report_.operation(op);
               report_.failed(std::string(protocol::aks::to_string(code)), message, "");
               // The bootloader went back to the old slot on its own: a rollback all the same.
               if (code == protocol::aks::Code::target_boot_failed) report_.rolled_back();
             };
             return aks::run_aks(a, *cancel_.flag(), [this](std::string_view line) {
               notify_status(std::string(line));
               asio::post(io_, [this] { report_.refresh_slots(o_.where); });
             });
           },
           [this](const Status& st) {
             if (st) return;  // stopped
             if (st.error().code == Errc::not_found) {
               log(Event::error, Priority::warning,
                   st.error().message + ": the update was abandoned; reporting stops");
               notify_status("idle: the Node is gone, not reporting");
               return;
             }
             auto delay = schedule_.after_failure();
             report_.failed(st.error(), "aks mode: " + st.error().message);
             log(Event::error, Priority::warning,
                 "aks mode: " + st.error().message + "; restarting in " +
                     std::to_string(delay.count()) + "s");
             check_timer_.expires_after(delay);
             check_timer_.async_wait([this](auto ec) {
               if (!ec) run_aks_mode();
             });
           }});
  }

  void run_autonomous_mode() {
    report_.state(dbus::kStateCommitting, "starting: checking for a pending commit");
    drive(Trigger::start, "start-up",
          {[this] { return auto_.startup(); },
           [this](const Status& st) {
             if (!st) {
               log(Event::error, Priority::err, "start-up commit: " + st.error().message);
               report_.failed(st.error(), "start-up commit failed: " + st.error().message);
             } else if (report_.status().state == dbus::kStateCommitting) {
               report_.state(dbus::kStateIdle, "running");
             }
             notify_ready(st ? "running" : "running (start-up commit failed)");
             schedule(schedule_.first());
           }});
  }

  void on_signal(const boost::system::error_code& ec, int sig) {
    if (ec) return;
    signals_.async_wait([this](auto e, int s) { on_signal(e, s); });
    const Phase p = phase_.phase();
    if (p == Phase::stopping || p == Phase::stopped) return;
    // In aks mode the worker always runs (the watch): only an operation is a step.
    const bool step = p == Phase::starting || p == Phase::busy || p == Phase::rebooting ||
                      p == Phase::cancelling ||
                      (p == Phase::watching && report_.status().state == dbus::kStateStaging);
    log(Event::stopping, Priority::info,
        std::string("stopping on ") + (sig == SIGINT ? "SIGINT" : "SIGTERM") +
            (step ? ": abandoning the current step at a safe point" : ""));
    notify_stopping("stopping");
    cancel_.cancel();
    check_timer_.cancel();
    watchdog_timer_.cancel();
    drive(Trigger::stop, sig == SIGINT ? "SIGINT" : "SIGTERM");
  }

  void arm_watchdog(std::chrono::microseconds every) {
    notify_watchdog();
    watchdog_timer_.expires_after(every);
    watchdog_timer_.async_wait([this, every](auto ec) {
      if (!ec && phase_.phase() != Phase::stopping && phase_.phase() != Phase::stopped)
        arm_watchdog(every);
    });
  }

  void schedule(std::chrono::seconds delay) {
    if (phase_.phase() == Phase::stopping || phase_.phase() == Phase::stopped) return;
    check_timer_.expires_after(delay);
    check_timer_.async_wait([this](auto ec) {
      if (!ec) drive(Trigger::check_due, "the check timer", round_work({}));
    });
  }

  Work round_work(const std::string& op) {
    return {[this, op] { return auto_.round(op); },
            [this](const Status& st) {
              auto wait = auto_.take_reboot_wait();
              if (st && wait) return enter_wait(*wait);
              after_scheduled(st);
            }};
  }

  // After a round or an operation asked over D-Bus: the next check, sooner after success.
  void after_scheduled(const Status& st) {
    report_.refresh_slots(o_.where);
    if (st) return schedule(schedule_.after_success());
    if (st.error().code == Errc::cancelled) return schedule(schedule_.after_success());
    auto delay = schedule_.after_failure();
    log(Event::error, Priority::warning,
        st.error().message + "; next try in " + std::to_string(delay.count()) + "s (failure " +
            std::to_string(schedule_.failures()) + ")");
    schedule(delay);
  }

  const DaemonOptions& o_;
  Canceller cancel_;
  Reporter report_;
  Autonomous auto_;
  asio::io_context io_;
  asio::signal_set signals_;
  asio::steady_timer check_timer_, watchdog_timer_;
  CheckSchedule schedule_;
  PhaseMachine phase_;
  std::thread worker_, waiter_;
  std::function<void(const Status&)> then_;  // what the loop does when the phase's work ends
  std::shared_ptr<Canceller> waiter_cancel_;
  std::uint64_t wait_gen_ = 0;
  std::optional<RebootWait> waiting_for_;
  // The API and the metrics; declared after io_, destroyed before it.
  dbus::BusPtr bus_;
  std::unique_ptr<dbus::AsioBus> bus_driver_;
  std::unique_ptr<dbus::Server> server_;
  std::unique_ptr<MetricsServer> metrics_server_;
  std::atomic<bool> publish_queued_{false};
  std::string metrics_text_;
  bool said_textfile_failed_ = false;
};

}  // namespace

int run_daemon(const DaemonOptions& o) {
  // A pipe closed under a transfer must be an error value, not the end of the process.
  ::signal(SIGPIPE, SIG_IGN);
  Daemon d(o);
  return d.run();
}

}  // namespace abup::agent::daemon
