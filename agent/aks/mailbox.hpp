// What the aks agent's main loop waits for: the watcher's newest Node, the Node's deletion, and
// the end of the stage on the worker. Every post takes the mutex the loop sleeps under, so a post
// that lands between the loop's check and its sleep still wakes it (no lost wake-up).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <utility>

namespace abup::agent::aks {

template <typename Node, typename Work>
class Mailbox {
 public:
  using Clock = std::chrono::steady_clock;

  void post_node(Node node) {
    std::lock_guard lock(mu_);
    node_ = std::move(node);
    fresh_ = true;
    cv_.notify_all();
  }
  void post_gone() {
    std::lock_guard lock(mu_);
    gone_ = true;
    cv_.notify_all();
  }
  void post_work(Work work) {
    std::lock_guard lock(mu_);
    work_ = std::move(work);
    cv_.notify_all();
  }

  struct Woken {
    std::optional<Node> node;  // a Node not seen before
    bool gone = false;
  };
  // Sleeps until a post, `stop` or `deadline`; takes the fresh Node. Work stays for take_work().
  // `stop` is polled: its setter does not hold the mutex, so keep deadlines short.
  Woken wait(Clock::time_point deadline, const std::atomic<bool>& stop) {
    std::unique_lock lock(mu_);
    cv_.wait_until(lock, deadline, [&] {
      const bool ready = fresh_ || gone_ || work_.has_value() || stop;
      if (!ready && before_sleep_) before_sleep_();
      return ready;
    });
    Woken w;
    w.gone = gone_;
    if (fresh_) w.node = node_;
    fresh_ = false;
    return w;
  }
  std::optional<Work> take_work() {
    std::lock_guard lock(mu_);
    return std::exchange(work_, std::nullopt);
  }

  // Tests: runs under the mutex each time wait() found nothing and is about to sleep.
  void set_before_sleep(std::function<void()> hook) { before_sleep_ = std::move(hook); }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<Node> node_;
  bool fresh_ = false, gone_ = false;
  std::optional<Work> work_;
  std::function<void()> before_sleep_;
};

}  // namespace abup::agent::aks
