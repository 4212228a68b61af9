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
  if (c.reboot_strategy == "window" && c.reboot_window.empty())
    return bad("[Reboot] Strategy=window needs Window= (e.g. Window=Mon..Fri 02:00 3h UTC)");
  if (c.reboot_strategy == "fleetlock" && c.fleetlock_url.empty())
    return bad("[Reboot] Strategy=fleetlock needs FleetLockURL=");
  if (!c.health_units.empty() && !o.unit_state)
    return bad("[Health] Units= needs systemd over D-Bus, which this build cannot ask");
  return {};
}

namespace {

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
    log(Event::started, Priority::info,
        "abup daemon started (mode " + o_.config.mode + ", reboot strategy " +
            o_.config.reboot_strategy + ")",
        {{"MODE", o_.config.mode}});
    report_.refresh_slots(o_.where);
    start_metrics();
    start_api();
    report_.set_on_change([this] { publish_soon(); });
    publish();
    if (o_.config.mode == "aks") {
      notify_ready("running (aks mode)");
      run_aks_mode();
    } else {
      run_autonomous_mode();
    }
    io_.run();
    if (worker_.joinable()) worker_.join();
    report_.set_on_change({});
    server_.reset();  // releases the name: clients see the daemon go
    bus_driver_.reset();
    bus_.reset();
    if (metrics_server_) metrics_server_->stop();
    metrics_server_.reset();
    log(Event::stopping, Priority::info, "abup daemon stopped");
    return 0;
  }

  // org.abup.Agent1 (docs/dbus.md), on the loop thread.
  Reply<std::string> check_now() override {
    if (auto refused = not_in_aks_mode("CheckNow")) return *refused;
    if (busy_ || stopping_) return busy();
    if (o_.config.server.empty())
      return ApiError{ApiErrc::nothing_to_do, "no [Update] Server= is configured: nothing to ask"};
    const auto op = partitions::Guid::random().str();
    announce(op, dbus::kStateChecking, "checking for updates (asked over D-Bus)");
    check_timer_.cancel();  // this is the round; the schedule goes on after it
    start_round(op);
    return op;
  }

  Reply<std::string> stage(const std::string& what) override {
    if (auto refused = not_in_aks_mode("Stage")) return *refused;
    if (busy_ || stopping_) return busy();
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
    start_op([this, what, op] { return auto_.stage_only(what, op); },
             [this](const Status& st) { after_scheduled(st); });
    return op;
  }

  Reply<dbus::OutcomeMap> finalize(bool reboot) override {
    if (auto refused = not_in_aks_mode("Finalize")) return *refused;
    if (busy_ || stopping_) return busy();
    auto state = StateStore(o_.where.state_dir).load();
    if (!state) return dbus::to_api_error(state.error());
    if (const auto& p = state->pending; p && p->kind == "finalize")
      return ApiError{ApiErrc::refused, "slot " + std::string(1, p->target_slot) +
                                            " is armed already with " + p->target_version +
                                            " (operation " + p->operation_id +
                                            "): reboot into it, or Rollback"};
    bool staged = false;
    for (const auto& [uuid, rec] : state->slots) staged = staged || rec.state == SlotState::staged;
    if (!staged) return ApiError{ApiErrc::not_staged, "nothing is staged; stage an image first"};
    auto out = agent::finalize(FinalizeOptions{o_.where, "", "", false});
    if (!out) return dbus::to_api_error(out.error());
    log(Event::armed, Priority::notice, out->message + " (asked over D-Bus)",
        {{"OPERATION_ID", out->operation_id}});
    return armed(*out, reboot);
  }

  Reply<dbus::OutcomeMap> rollback(bool reboot, bool force) override {
    if (auto refused = not_in_aks_mode("Rollback")) return *refused;
    if (busy_ || stopping_) return busy();
    auto out = agent::rollback(RollbackOptions{o_.where, "", force});
    if (!out) return dbus::to_api_error(out.error());
    log(Event::armed, Priority::notice, out->message + " (rollback asked over D-Bus)",
        {{"OPERATION_ID", out->operation_id}});
    report_.rolled_back();
    return armed(*out, reboot);
  }

  Reply<std::string> cancel() override {
    if (auto refused = not_in_aks_mode("Cancel")) return *refused;
    if (!busy_) return ApiError{ApiErrc::nothing_to_do, "no operation runs"};
    if (stopping_) return busy();
    log(Event::stopping, Priority::notice,
        "operation " + report_.status().operation_id +
            " cancelled over D-Bus: stopping it at its next safe point");
    cancelled_by_api_ = true;
    cancel_.cancel();
    return report_.status().operation_id;
  }

 private:
  // The control plane owns every step in aks mode: a local method would race it.
  std::optional<ApiError> not_in_aks_mode(const char* method) const {
    if (o_.config.mode != "aks") return std::nullopt;
    return ApiError{ApiErrc::refused,
                    std::string(method) +
                        ": [Agent] Mode=aks: the AKS control plane drives updates through the " +
                        o_.config.annotation_prefix + "/update-request annotation of this Node"};
  }

  ApiError busy() const {
    const auto s = report_.status();
    if (stopping_) return {ApiErrc::busy, "the daemon is stopping"};
    return {ApiErrc::busy, "operation " + (s.operation_id.empty() ? "(start-up)" : s.operation_id) +
                               " is " + s.state + "; retry later or Cancel it"};
  }

  // A method's new operation becomes visible before its work starts, so that the StateChanged
  // a client waits for cannot be folded into an unchanged state.
  void announce(const std::string& op, std::string_view state, const std::string& line) {
    report_.operation(op);
    report_.clear_error();
    report_.state(state, line);
    publish();
  }

  Reply<dbus::OutcomeMap> armed(const Outcome& out, bool reboot) {
    report_.operation(out.operation_id);
    report_.clear_error();
    report_.refresh_slots(o_.where);
    report_.state(reboot ? dbus::kStateRebooting : dbus::kStateArmed, out.message);
    publish();
    if (reboot) {
      check_timer_.cancel();
      start_op([this] { return reboot_node(o_, cancel_); },
               [this](const Status& st) {
                 if (!st) {
                   log(Event::error, Priority::err, "reboot: " + st.error().message);
                   report_.failed(st.error(), "reboot failed: " + st.error().message);
                 }
                 after_scheduled({});
               });
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
    start_op(
        [this] {
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
          a.on_failed = [this](const std::string& op, std::string_view code,
                               const std::string& message) {
            report_.operation(op);
            report_.failed(std::string(code), message, "");
            // The bootloader went back to the old slot on its own: a rollback all the same.
            if (code == "TargetBootFailed") report_.rolled_back();
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
            if (!ec && !stopping_) run_aks_mode();
          });
        });
  }

  void run_autonomous_mode() {
    report_.state(dbus::kStateCommitting, "starting: checking for a pending commit");
    start_op([this] { return auto_.startup(); },
             [this](const Status& st) {
               if (!st) {
                 log(Event::error, Priority::err, "start-up commit: " + st.error().message);
                 report_.failed(st.error(), "start-up commit failed: " + st.error().message);
               } else if (report_.status().state == dbus::kStateCommitting) {
                 report_.state(dbus::kStateIdle, "running");
               }
               notify_ready(st ? "running" : "running (start-up commit failed)");
               schedule(schedule_.first());
             });
  }

  void on_signal(const boost::system::error_code& ec, int sig) {
    if (ec) return;
    if (stopping_) {
      signals_.async_wait([this](auto e, int s) { on_signal(e, s); });
      return;
    }
    stopping_ = true;
    log(Event::stopping, Priority::info,
        std::string("stopping on ") + (sig == SIGINT ? "SIGINT" : "SIGTERM") +
            // In aks mode the worker always runs (the watch): only an operation is a step.
            (busy_ && (o_.config.mode != "aks" || report_.status().state == dbus::kStateStaging)
                 ? ": abandoning the current step at a safe point"
                 : ""));
    notify_stopping("stopping");
    cancel_.cancel();
    check_timer_.cancel();
    watchdog_timer_.cancel();
    signals_.async_wait([this](auto e, int s) { on_signal(e, s); });
    if (!busy_) io_.stop();
  }

  void arm_watchdog(std::chrono::microseconds every) {
    notify_watchdog();
    watchdog_timer_.expires_after(every);
    watchdog_timer_.async_wait([this, every](auto ec) {
      if (!ec && !stopping_) arm_watchdog(every);
    });
  }

  void schedule(std::chrono::seconds delay) {
    if (stopping_) return;
    check_timer_.expires_after(delay);
    check_timer_.async_wait([this](auto ec) {
      if (ec || stopping_ || busy_) return;
      start_round({});
    });
  }

  void start_round(const std::string& op) {
    start_op([this, op] { return auto_.round(op); },
             [this](const Status& st) { after_scheduled(st); });
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

  template <typename Op, typename Done>
  void start_op(Op op, Done done) {
    busy_ = true;
    worker_ = std::thread([this, op = std::move(op), done = std::move(done)]() mutable {
      Status st = op();
      asio::post(io_, [this, st = std::move(st), done = std::move(done)]() mutable {
        worker_.join();
        busy_ = false;
        if (stopping_) {
          io_.stop();
          return;
        }
        if (cancelled_by_api_) {
          cancelled_by_api_ = false;
          cancel_.reset();  // the step published where it stopped (idle, still armed, ...)
        }
        done(st);
      });
    });
  }

  const DaemonOptions& o_;
  Canceller cancel_;
  Reporter report_;
  Autonomous auto_;
  asio::io_context io_;
  asio::signal_set signals_;
  asio::steady_timer check_timer_, watchdog_timer_;
  CheckSchedule schedule_;
  std::thread worker_;
  bool busy_ = false, stopping_ = false, cancelled_by_api_ = false;
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
