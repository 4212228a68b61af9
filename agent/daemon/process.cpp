#include "agent/daemon/process.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "abup/fs.hpp"

namespace abup::agent::daemon {

Result<int> run_command(const std::string& command, std::chrono::seconds timeout,
                        Canceller* cancel) {
  const pid_t pid = ::fork();
  if (pid < 0) return make_error(Errc::failed, "fork: " + errno_text(errno));
  if (pid == 0) {
    ::setpgid(0, 0);
    // The daemon's blocked or ignored signals must not leak into the command.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGTERM, SIG_DFL);
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGPIPE, SIG_DFL);
    ::dup2(STDERR_FILENO, STDOUT_FILENO);
    ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto stop = [&](Error e) -> Error {
    ::kill(-pid, SIGKILL);
    ::kill(pid, SIGKILL);
    int st = 0;
    ::waitpid(pid, &st, 0);
    return e;
  };
  while (true) {
    int st = 0;
    pid_t r = ::waitpid(pid, &st, WNOHANG);
    if (r == pid) {
      if (WIFEXITED(st)) return WEXITSTATUS(st);
      return 128 + WTERMSIG(st);
    }
    if (r < 0 && errno != EINTR) return make_error(Errc::failed, "waitpid: " + errno_text(errno));
    if (std::chrono::steady_clock::now() >= deadline)
      return stop(make_error(Errc::failed, "'" + command + "' did not finish within " +
                                               std::to_string(timeout.count()) + "s"));
    if (cancel ? !cancel->wait_for(std::chrono::milliseconds(20)) : (::usleep(20000), false))
      return stop(make_error(Errc::cancelled, "'" + command + "': stopped"));
  }
}

Status reboot_machine(const std::string& command, const std::function<Status()>& logind,
                      Canceller* cancel) {
  if (!command.empty()) {
    ABUP_TRY(int rc, run_command(command, std::chrono::seconds(300), cancel));
    if (rc != 0)
      return make_error(Errc::failed, "[Reboot] Command='" + command + "' failed (status " +
                                          std::to_string(rc) + ")");
    return {};
  }
  if (!logind)
    return make_error(Errc::failed,
                      "cannot reboot: no [Reboot] Command= and no logind in this build");
  if (auto st = logind(); !st)
    return make_error(st.error().code, "asking logind to reboot failed: " + st.error().message);
  return {};
}

}  // namespace abup::agent::daemon
