#include "test_agent.hpp"

#include <boost/asio/post.hpp>
#include <chrono>

#include "abup/version.hpp"
#include "agent/config.hpp"
#include "agent/stage.hpp"
#include "agent/state.hpp"

namespace abup::test {

using namespace abup::agent::dbus;

TestAgent::TestAgent(std::string address, TestAgentSetup setup)
    : setup_(std::move(setup)), work_(io_.get_executor()) {
  std::promise<std::string> ready;
  auto started = ready.get_future();
  loop_ = std::thread([this, address, &ready] { serve(address, ready); });
  start_error_ = started.get();
}

TestAgent::~TestAgent() {
  hold_ = false;
  if (worker_.joinable()) worker_.join();
  boost::asio::post(io_, [this] {
    server_.reset();
    driver_.reset();
    bus_.reset();
    work_.reset();
  });
  loop_.join();
}

void TestAgent::serve(std::string address, std::promise<std::string>& ready) {
  auto bus = open_bus(address);
  if (!bus) {
    ready.set_value(bus.error().message);
    return;
  }
  bus_ = std::move(*bus);
  st_.mode = "operator";
  if (auto s = read_slot_facts(setup_.where, st_); !s) {
    ready.set_value(s.error().message);
    return;
  }
  auto server = Server::start(bus_.get(), *this, st_, setup_.caller_group);
  if (!server) {
    ready.set_value(server.error().message);
    return;
  }
  server_ = std::move(*server);
  driver_ = std::make_unique<AsioBus>(io_, bus_.get(), [this](const Error&) { work_.reset(); });
  server_->set_wake([this] { driver_->kick(); });
  if (auto s = driver_->start(); !s) {
    ready.set_value(s.error().message);
    return;
  }
  ready.set_value("");
  io_.run();
}

ApiError TestAgent::busy() const {
  return {ApiErrc::busy, "operation " + st_.operation_id + " is " + st_.state};
}

std::string TestAgent::next_operation() {
  return "test-op-" + std::to_string(++ops_);
}

void TestAgent::refresh() {
  if (auto s = read_slot_facts(setup_.where, st_); !s) {
    st_.last_error_code = "Failed";
    st_.last_error = s.error().message;
  }
  server_->update(st_);
}

Reply<std::string> TestAgent::check_now() {
  if (busy_) return busy();
  auto op = next_operation();
  st_.operation_id = op;
  st_.state = kStateChecking;
  st_.last_error_code.clear();
  st_.last_error.clear();
  server_->update(st_);
  st_.last_check = std::uint64_t(std::chrono::duration_cast<std::chrono::microseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count());
  st_.available_version = setup_.offered;
  if (setup_.offered.empty()) {
    st_.state = kStateIdle;
    server_->update(st_);
    return op;
  }
  start_stage(op, setup_.images.at(setup_.offered));
  return op;
}

Reply<std::string> TestAgent::stage(const std::string& what) {
  if (busy_) return busy();
  if (what.empty()) return check_now();
  std::filesystem::path image;
  if (what.find('/') != std::string::npos) {
    image = what;
  } else {
    if (auto v = Version::parse(what); !v)
      return ApiError{
          ApiErrc::invalid_args,
          "'" + what + "' is neither a version nor an image URL or path: " + v.error().message};
    auto it = setup_.images.find(what);
    if (it == setup_.images.end())
      return ApiError{ApiErrc::failed, "the update server offers no version " + what};
    image = it->second;
  }
  auto op = next_operation();
  st_.operation_id = op;
  st_.last_error_code.clear();
  st_.last_error.clear();
  start_stage(op, image);
  return op;
}

void TestAgent::start_stage(const std::string& op, const std::filesystem::path& image) {
  if (worker_.joinable()) worker_.join();  // the previous stage has reported already
  busy_ = true;
  st_.state = kStateStaging;
  st_.progress = {"verify", 0, 0};
  server_->update(st_);
  agent::StageOptions so = agent::stage_options(setup_.where, agent::Config{});
  so.source = image.string();
  so.keyrings = {setup_.keyring};
  so.workers = 1;
  so.on_progress = [this](const agent::StageProgress& p) {
    boost::asio::post(io_, [this, phase = std::string(p.phase), done = p.done, total = p.total] {
      st_.progress = {phase, done, total};
      server_->update(st_);
    });
    // Published first, so the held progress is what clients see.
    if (hold_ && std::string_view(p.phase) == "write" && p.done > 0) {
      held_ = true;
      while (hold_) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      held_ = false;
    }
  };
  worker_ = std::thread([this, op, so = std::move(so)] {
    auto result = agent::stage(so);
    boost::asio::post(io_, [this, op, result = std::move(result)] {
      busy_ = false;
      st_.progress = {};
      if (result) {
        st_.state = kStateStaged;
      } else {
        auto e = to_api_error(result.error());
        st_.state = kStateError;
        st_.last_error_code = error_name(e.code).substr(error_name(e.code).rfind('.') + 1);
        st_.last_error = e.message;
      }
      refresh();
    });
  });
}

Reply<OutcomeMap> TestAgent::finalize_now(bool reboot) {
  if (busy_) return busy();
  auto state = agent::StateStore(setup_.where.state_dir).load();
  if (!state) return to_api_error(state.error());
  bool staged = false;
  for (const auto& [uuid, rec] : state->slots)
    staged = staged || rec.state == agent::SlotState::staged;
  if (!staged) return ApiError{ApiErrc::not_staged, "nothing is staged; stage an image first"};
  return armed(agent::finalize(agent::FinalizeOptions{setup_.where, "", "", false}), reboot);
}

Reply<OutcomeMap> TestAgent::rollback_now(bool reboot, bool force) {
  if (busy_) return busy();
  return armed(agent::rollback(agent::RollbackOptions{setup_.where, "", force}), reboot);
}

Reply<OutcomeMap> TestAgent::armed(const Result<agent::Outcome>& out, bool reboot) {
  if (!out) return to_api_error(out.error());
  if (reboot) ++reboots_;
  st_.operation_id = out->operation_id;
  st_.state = reboot ? kStateRebooting : kStateArmed;
  refresh();
  return outcome_map(*out);
}

Reply<std::string> TestAgent::cancel() {
  if (!busy_) return ApiError{ApiErrc::nothing_to_do, "no operation runs"};
  // agent::stage() has no cancellation point yet: say so rather than pretend.
  return ApiError{ApiErrc::failed, "operation " + st_.operation_id +
                                       " cannot be interrupted: the stage pipeline has no "
                                       "cancellation point yet"};
}

}  // namespace abup::test
