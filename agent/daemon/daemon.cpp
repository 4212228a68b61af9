#include "agent/daemon/daemon.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <random>
#include <thread>

#include "agent/aks/aks.hpp"
#include "agent/daemon/log.hpp"
#include "agent/daemon/notify.hpp"
#include "agent/daemon/schedule.hpp"

namespace abup::agent::daemon {

namespace asio = boost::asio;

Status validate(const DaemonOptions& o) {
  const auto& c = o.config;
  auto bad = [](const std::string& why) { return make_error(Errc::invalid_input, why); };
  if (c.reboot_strategy == "window" && c.reboot_window.empty())
    return bad("[Reboot] Strategy=window needs Window= (e.g. Window=Mon..Fri 02:00 3h UTC)");
  if (c.reboot_strategy == "fleetlock" && c.fleetlock_url.empty())
    return bad("[Reboot] Strategy=fleetlock needs FleetLockURL=");
  if (!c.health_units.empty() && !o.unit_state)
    return bad("[Health] Units= needs systemd over D-Bus, which this build cannot ask");
  return {};
}

namespace {

class Daemon {
 public:
  explicit Daemon(const DaemonOptions& o)
      : o_(o),
        auto_(o, cancel_),
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
    if (o_.config.mode == "aks") {
      notify_ready("running (aks mode)");
      run_aks_mode();
    } else {
      run_autonomous_mode();
    }
    io_.run();
    if (worker_.joinable()) worker_.join();
    log(Event::stopping, Priority::info, "abup daemon stopped");
    return 0;
  }

 private:
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
          return aks::run_aks(a, *cancel_.flag(),
                              [](std::string_view line) { notify_status(std::string(line)); });
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
    notify_status("starting: checking for a pending commit");
    start_op([this] { return auto_.startup(); },
             [this](const Status& st) {
               if (!st) log(Event::error, Priority::err, "start-up commit: " + st.error().message);
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
            (busy_ ? ": abandoning the current step at a safe point" : ""));
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
      if (ec || stopping_) return;
      start_op([this] { return auto_.round(); },
               [this](const Status& st) {
                 if (st) return schedule(schedule_.after_success());
                 if (st.error().code == Errc::cancelled) return;
                 auto delay = schedule_.after_failure();
                 log(Event::error, Priority::warning,
                     st.error().message + "; next try in " + std::to_string(delay.count()) +
                         "s (failure " + std::to_string(schedule_.failures()) + ")");
                 schedule(delay);
               });
    });
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
        done(st);
      });
    });
  }

  const DaemonOptions& o_;
  Canceller cancel_;
  Autonomous auto_;
  asio::io_context io_;
  asio::signal_set signals_;
  asio::steady_timer check_timer_, watchdog_timer_;
  CheckSchedule schedule_;
  std::thread worker_;
  bool busy_ = false, stopping_ = false;
};

}  // namespace

int run_daemon(const DaemonOptions& o) {
  // A pipe closed under a transfer must be an error value, not the end of the process.
  ::signal(SIGPIPE, SIG_IGN);
  Daemon d(o);
  return d.run();
}

}  // namespace abup::agent::daemon
