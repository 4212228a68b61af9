#include <unistd.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "agent/cli/common.hpp"

namespace abup::agent::cli {
namespace {

// One progress line per phase and tenth on a pipe; a redrawn bar on a terminal.
class ProgressPrinter {
 public:
  explicit ProgressPrinter(bool enabled) : enabled_(enabled), tty_(::isatty(1) == 1) {}

  void show(const dbus::Progress& p) {
    if (!enabled_ || p.phase.empty() || p.total == 0) return;
    const unsigned pct = unsigned(p.done * 100 / p.total);
    if (tty_) {
      std::string bar(pct / 4, '#');
      bar.resize(25, '.');
      std::printf("\r[%s] %3u%% %-9s %s of %s   ", bar.c_str(), pct, p.phase.c_str(),
                  human_bytes(p.done).c_str(), human_bytes(p.total).c_str());
      drawn_ = true;
    } else if (p.phase != phase_ || pct / 10 != tenth_) {
      std::printf("%s %u%% (%s of %s)\n", p.phase.c_str(), pct, human_bytes(p.done).c_str(),
                  human_bytes(p.total).c_str());
    }
    phase_ = p.phase;
    tenth_ = pct / 10;
    std::fflush(stdout);
  }
  void end() {
    if (drawn_) std::printf("\n");
    drawn_ = false;
  }

 private:
  bool enabled_, tty_, drawn_ = false;
  std::string phase_;
  unsigned tenth_ = 0;
};

int follow(dbus::Client& daemon, const std::string& op, bool show_progress) {
  ProgressPrinter printer(show_progress);
  dbus::AgentStatus st;
  if (auto s = daemon.status(); s) st = std::move(*s);
  for (;;) {
    auto ev = daemon.next_event(st);
    if (!ev) {
      printer.end();
      return report(ev.error());
    }
    if (ev->kind == dbus::Event::daemon_gone) {
      printer.end();
      std::fprintf(stderr, "abup: update: the daemon stopped during operation %s\n", op.c_str());
      return 1;
    }
    if (ev->kind == dbus::Event::properties) {
      if (st.operation_id == op) printer.show(st.progress);
      continue;
    }
    if (ev->operation_id != op) continue;
    const std::string& now = ev->state;
    if (now == dbus::kStateStaged || now == dbus::kStateArmed || now == dbus::kStateRebooting) {
      printer.end();
      std::printf("%s %s (operation %s)\n", now.c_str(), st.staged_version.c_str(), op.c_str());
      return 0;
    }
    if (now == dbus::kStateError) {
      printer.end();
      std::fprintf(stderr, "abup: update failed: %s%s%s\n", st.last_error_code.c_str(),
                   st.last_error_code.empty() ? "" : ": ", st.last_error.c_str());
      return 1;
    }
    if (now == dbus::kStateIdle) {
      printer.end();
      if (!st.last_error.empty()) {
        std::fprintf(stderr, "abup: update ended: %s\n", st.last_error.c_str());
        return 1;
      }
      std::printf("no update available (running %s)\n", st.booted_version.c_str());
      return 0;
    }
  }
}

std::vector<OptionSpec> update_options() {
  std::vector<OptionSpec> specs = {
      {"wait", false, false, "follow the operation until the image is staged or failed"},
      {"version", true, false, "V  stage this version (asked of the update server)"},
      {"source", true, false, "URL  stage this image instead of asking the update server"},
      {"no-progress", false, false, "with --wait: no progress bar"},
  };
  return specs;
}

int run_update(const Args& args) {
  if (args.has("version") && args.has("source"))
    return report(make_error(Errc::usage, "--version and --source exclude each other"));
  auto daemon = connect_daemon();
  if (!daemon) {
    std::fprintf(stderr,
                 "abup: update: the abup daemon is not running (nobody owns org.abup.Agent1 on "
                 "the system bus); start it (systemctl start abup) or stage an image directly "
                 "with `abup stage --source URL`\n");
    return 1;
  }
  const bool wait = args.has("wait");
  if (wait) {
    if (auto w = daemon->watch(); !w) return report(w.error());
  }
  const std::string what = args.get_or("version", args.get_or("source", ""));
  auto op = what.empty() ? daemon->check_now() : daemon->stage(what);
  if (!op) return report(op.error());
  std::printf("operation %s: %s\n", op->c_str(),
              what.empty() ? "checking for an update" : ("staging " + what).c_str());
  std::fflush(stdout);
  if (!wait) return 0;
  return follow(*daemon, *op, !args.has("no-progress"));
}

}  // namespace

abup::cli::Command update_command() {
  return {
      .name = "update",
      .summary = "ask the running daemon to check for an update and stage it (--wait: follow it)",
      .synopsis = "[--wait] [--version V | --source URL]",
      .description =
          "Asks the running abup daemon (D-Bus org.abup.Agent1) to check for an update now and\n"
          "stage what it finds. With --wait, shows the progress until the image is staged\n"
          "(exit 0) or the operation failed (exit 1). Without a daemon, use `abup stage`.",
      .options = update_options(),
      .run = run_update};
}

}  // namespace abup::agent::cli
