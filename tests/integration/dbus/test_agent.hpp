// A real implementation of the D-Bus API's handler for tests: it serves org.abup.Agent1 on a
// bus from its own thread (an Asio loop driving the bus through AsioBus), stages signed images
// onto a disk-image node with agent::stage() on a worker thread, and arms slots with the
// lifecycle's finalize() and rollback(). A "check" offers one configured image. The stage can be
// held at its first written chunk, so tests observe a running operation without timing.
#pragma once

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <filesystem>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "agent/dbus/api.hpp"
#include "agent/dbus/asio_bus.hpp"
#include "agent/dbus/bus.hpp"
#include "agent/dbus/server.hpp"

namespace abup::test {

struct TestAgentSetup {
  agent::LifecycleOptions where;
  std::filesystem::path keyring;
  std::map<std::string, std::filesystem::path> images;  // version -> signed image
  std::string offered;                                  // what a check finds ("" nothing)
  std::string caller_group = "abup";  // the group the server answers besides root and itself
};

class TestAgent : public agent::dbus::Handler {
 public:
  TestAgent(std::string bus_address, TestAgentSetup setup);
  ~TestAgent() override;

  // Whether the server owns the name; else why not.
  [[nodiscard]] const std::string& start_error() const { return start_error_; }
  // Holds the next stage at its first written chunk until release().
  void hold_stage() { hold_ = true; }
  void release() { hold_ = false; }
  [[nodiscard]] bool held() const { return held_; }
  [[nodiscard]] int reboots_requested() const { return reboots_; }

  agent::dbus::Reply<std::string> check_now() override;
  agent::dbus::Reply<std::string> stage(const std::string& version_or_url) override;
  void finalize(bool reboot, agent::dbus::OutcomeReply reply) override {
    reply(finalize_now(reboot));
  }
  void rollback(bool reboot, bool force, agent::dbus::OutcomeReply reply) override {
    reply(rollback_now(reboot, force));
  }
  agent::dbus::Reply<std::string> cancel() override;

 private:
  void serve(std::string address, std::promise<std::string>& ready);
  std::string next_operation();
  void start_stage(const std::string& op, const std::filesystem::path& image);
  void refresh();  // slot facts from the disk, then publish
  agent::dbus::ApiError busy() const;
  agent::dbus::Reply<agent::dbus::OutcomeMap> finalize_now(bool reboot);
  agent::dbus::Reply<agent::dbus::OutcomeMap> rollback_now(bool reboot, bool force);
  // What finalize and rollback share: publish the arming (or the error) they returned.
  agent::dbus::Reply<agent::dbus::OutcomeMap> armed(const Result<agent::Outcome>& out, bool reboot);

  TestAgentSetup setup_;
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  agent::dbus::BusPtr bus_;
  std::unique_ptr<agent::dbus::Server> server_;
  std::unique_ptr<agent::dbus::AsioBus> driver_;
  agent::dbus::AgentStatus st_;  // the loop thread's
  bool busy_ = false;
  int ops_ = 0;
  std::thread loop_, worker_;
  std::string start_error_;
  std::atomic<bool> hold_ = false, held_ = false;
  std::atomic<int> reboots_ = 0;
};

}  // namespace abup::test
