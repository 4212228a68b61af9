#include "fixture.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

namespace abup::test {

std::string closed_window() {
  std::time_t t = std::time(nullptr) - 180;
  std::tm tm{};
  gmtime_r(&t, &tm);
  static const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  char window[64];
  std::snprintf(window, sizeof window, "%s %02d:%02d 1min UTC", kDays[tm.tm_wday], tm.tm_hour,
                tm.tm_min);
  return window;
}

bool wait_until(const std::function<bool()>& pred, std::chrono::seconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return pred();
}

NotifySocket::NotifySocket(std::filesystem::path path) : path_(std::move(path)) {
  fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd_ >= 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  REQUIRE(path_.string().size() < sizeof a.sun_path);
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path_.c_str());
  REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  reader_ = std::thread([this] {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      std::lock_guard lock(mu_);
      drain_locked();
    }
  });
}

// Every recv happens under mu_ and is appended at once, so the reader thread and messages()
// keep the datagrams in order; messages() drains too, so a caller that looks right after the
// daemon exited sees its last datagrams, not only those the reader's poll had picked up.
void NotifySocket::drain_locked() const {
  char buf[4096];
  for (;;) {
    auto n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
    if (n <= 0) return;
    messages_.emplace_back(buf, static_cast<std::size_t>(n));
  }
}

NotifySocket::~NotifySocket() {
  stop_ = true;
  reader_.join();
  ::close(fd_);
}

std::vector<std::string> NotifySocket::messages() const {
  std::lock_guard lock(mu_);
  drain_locked();
  return messages_;
}

bool NotifySocket::has(const std::string& needle) const {
  for (const auto& m : messages())
    if (m.find(needle) != std::string::npos) return true;
  return false;
}

Server::Server(std::filesystem::path dir) : dir_(std::move(dir)) {
  std::filesystem::remove(dir_ / "port");
  pid_ = ::fork();
  REQUIRE(pid_ >= 0);
  if (pid_ == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a crashed test
    int log = ::open((dir_ / "server.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    ::dup2(log, STDOUT_FILENO);
    ::dup2(log, STDERR_FILENO);
    auto script = (source_dir() / "tests/integration/daemon/server.py").string();
    ::execlp("python3", "python3", script.c_str(), dir_.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  REQUIRE(
      wait_until([&] { return std::filesystem::exists(dir_ / "port"); }, std::chrono::seconds(30)));
  port_ = std::stoi(read_file(dir_ / "port"));
}

Server::~Server() {
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
}

void Server::control(const nlohmann::json& c) const {
  write_file(dir_ / "control.json.tmp", c.dump());
  std::filesystem::rename(dir_ / "control.json.tmp", dir_ / "control.json");
}

std::vector<nlohmann::json> Server::requests() const {
  std::vector<nlohmann::json> out;
  auto text = std::filesystem::exists(dir_ / "requests.jsonl") ? read_file(dir_ / "requests.jsonl")
                                                               : std::string();
  std::size_t pos = 0;
  while (pos < text.size()) {
    auto nl = text.find('\n', pos);
    if (nl == std::string::npos) break;  // a line being written
    out.push_back(nlohmann::json::parse(text.substr(pos, nl - pos)));
    pos = nl + 1;
  }
  return out;
}

std::vector<nlohmann::json> Server::omaha() const {
  std::vector<nlohmann::json> out;
  for (auto& r : requests())
    if (r["path"] == "/v1/update") out.push_back(r);
  return out;
}

std::vector<nlohmann::json> Server::fleetlock(const std::string& path) const {
  std::vector<nlohmann::json> out;
  for (auto& r : requests())
    if (r["path"] == path) out.push_back(r);
  return out;
}

Daemon::Daemon(const std::string& command, const std::filesystem::path& log) : log_(log) {
  pid_ = ::fork();
  REQUIRE(pid_ >= 0);
  if (pid_ == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    std::string cmd = "exec " + command + " >>" + shell_quote(log.string()) + " 2>&1";
    ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
}

Daemon::~Daemon() {
  if (running()) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
}

bool Daemon::running() {
  if (status_ >= 0) return false;
  int st = 0;
  if (::waitpid(pid_, &st, WNOHANG) == pid_) {
    status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return false;
  }
  return true;
}

int Daemon::wait() {
  if (status_ >= 0) return status_;
  int st = 0;
  ::waitpid(pid_, &st, 0);
  status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return status_;
}

int Daemon::signal_and_wait(int sig) {
  if (running()) ::kill(pid_, sig);
  return wait();
}

std::string Daemon::log() const {
  return std::filesystem::exists(log_) ? read_file(log_) : "";
}

RunResult busctl(const AgentBus& bus, const std::string& args) {
  return run("busctl --address=" + shell_quote(bus.address()) + " " + args);
}

std::string property(const AgentBus& bus, const std::string& name) {
  auto r = busctl(bus, "get-property org.abup.Agent1 /org/abup/Agent1 org.abup.Agent1 " + name);
  return r.exit_code == 0 ? r.out : "busctl failed: " + r.out;
}

bool owned(const AgentBus& bus) {
  return busctl(bus, "status org.abup.Agent1").exit_code == 0;
}

Box::Box(std::string backend)
    : node(std::move(backend)),
      server(node.disk().parent_path()),
      notify(node.disk().parent_path() / "notify.sock") {
  configure();
}

void Box::build_image(const std::string& version) const {
  auto q = [](const std::filesystem::path& p) { return shell_quote(p.string()); };
  auto img = dir() / "images" / (version + ".cosi");
  run_ok(abup_image_bin() + " build --usr " + q(dir() / "usr.img") + " --version " + version +
         " --frame-size 1M --out " + q(img) + node.boot_file_args() + " && " + abup_image_bin() +
         " sign --key " + q(dir() / "signer.pem") + " " + q(img));
}

void Box::configure(const std::string& extra) const {
  std::filesystem::create_directories(config_path().parent_path());
  write_file(config_path(),
             "[Update]\nServer=" + server.url() +
                 "/v1/update\nFirstCheck=0\nCheckJitter=0\n"
                 "BootBackend=" +
                 node.backend() + "\nKeyring=" + (dir() / "keys").string() +
                 "\n[Network]\nAllowHTTP=yes\n[Reboot]\nStrategy=immediate\nCommand=touch " +
                 shell_quote(reboot_marker().string()) + "\n" + extra + Node::boot_section());
}

void Box::offer(const std::string& version, double throttle, int grant_on) const {
  nlohmann::json c = {{"throttle", throttle}, {"grantOn", grant_on}};
  c["omaha"] = nlohmann::json::object();
  if (!version.empty()) c["omaha"]["offer"] = {{"version", version}, {"file", version + ".cosi"}};
  server.control(c);
}

Daemon Box::start(const std::string& env, int n) const {
  return Daemon("env NOTIFY_SOCKET=" + shell_quote(notify.path().string()) + " " + env + " " +
                    abup_bin() + " daemon --disk " + shell_quote(node.disk().string()) +
                    " --root " + shell_quote(node.root().string()),
                dir() / ("daemon-" + std::to_string(n) + ".log"));
}

char Box::reboot() {
  std::filesystem::remove(reboot_marker());
  return node.reboot();
}

nlohmann::json Box::daemon_state() const {
  auto p = node.state_dir() / "daemon.json";
  return std::filesystem::exists(p) ? nlohmann::json::parse(read_file(p)) : nlohmann::json{};
}

}  // namespace abup::test
