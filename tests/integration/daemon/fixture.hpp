// A node run by the real `abup daemon`: the lifecycle tests' Node (disk image and running-system
// tree, reboots simulated by a new boot id and command line), a loopback server double
// (server.py: canned Omaha, Range-capable images, FleetLock; every request recorded), a real
// unix datagram socket as $NOTIFY_SOCKET recording what the daemon tells systemd, and the daemon
// as a child process stopped with real signals.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "support/agent_bus.hpp"
#include "support/node.hpp"

namespace abup::test {

// Polls `pred` every 50 ms; false when `limit` passed first.
// A one-minute [Reboot] Window= a week: the one that closed three minutes ago.
std::string closed_window();

bool wait_until(const std::function<bool()>& pred,
                std::chrono::seconds limit = std::chrono::seconds(120));

// busctl against a private bus; property() of the daemon's object ("s \"idle\"\n"), or why not;
// whether org.abup.Agent1 is owned.
RunResult busctl(const AgentBus& bus, const std::string& args);
std::string property(const AgentBus& bus, const std::string& name);
bool owned(const AgentBus& bus);

class NotifySocket {
 public:
  explicit NotifySocket(std::filesystem::path path);
  ~NotifySocket();
  const std::filesystem::path& path() const { return path_; }
  std::vector<std::string> messages() const;  // one datagram each
  bool has(const std::string& needle) const;  // some datagram contains it

 private:
  void drain_locked() const;

  std::filesystem::path path_;
  int fd_ = -1;
  std::atomic<bool> stop_{false};
  mutable std::mutex mu_;
  mutable std::vector<std::string> messages_;
  std::thread reader_;
};

class Server {
 public:
  explicit Server(std::filesystem::path dir);
  ~Server();
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  void control(const nlohmann::json& c) const;
  std::vector<nlohmann::json> requests() const;
  // The Omaha requests, in order.
  std::vector<nlohmann::json> omaha() const;
  std::vector<nlohmann::json> fleetlock(const std::string& path) const;

 private:
  std::filesystem::path dir_;
  pid_t pid_ = -1;
  int port_ = 0;
};

class Daemon {
 public:
  Daemon(const std::string& command, const std::filesystem::path& log);
  ~Daemon();
  bool running();
  int signal_and_wait(int sig);  // exit status (128+N when killed by signal N)
  int wait();                    // for a daemon that exits by itself
  std::string log() const;

 private:
  pid_t pid_ = -1;
  int status_ = -1;
  std::filesystem::path log_;
};

class Box {
 public:
  explicit Box(std::string backend = "gptprio");
  Node node;
  Server server;
  NotifySocket notify;

  std::filesystem::path dir() const { return node.disk().parent_path(); }
  std::filesystem::path reboot_marker() const { return dir() / "rebooted"; }
  std::filesystem::path config_path() const { return node.root() / "etc/abup/abup.conf"; }
  // Builds and signs images/VERSION.cosi (served by the server).
  void build_image(const std::string& version) const;
  // The daemon's configuration: short intervals, the server, the reboot command (which
  // touches reboot_marker()), plus `extra` lines.
  void configure(const std::string& extra = "") const;
  void offer(const std::string& version, double throttle = 0, int grant_on = 1) const;
  Daemon start(const std::string& env = "", int n = 0) const;
  // The simulated reboot the bootloader does; removes the reboot marker.
  char reboot();
  nlohmann::json daemon_state() const;
};

}  // namespace abup::test
