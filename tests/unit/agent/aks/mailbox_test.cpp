// The aks agent's mailbox (agent/aks/mailbox.hpp): a post that lands after the loop found the box
// empty but before it sleeps must still wake it. The hook runs in exactly that gap; the post
// is made from another thread and given half a second to complete there. A post that does not
// take the loop's mutex completes inside the gap and its notify is lost: the loop then sleeps to
// its deadline (the 1 s poll in aks.cpp hid this as a delay). A post that does take it waits
// for the sleep and wakes it.
#include "agent/aks/mailbox.hpp"

#include <doctest/doctest.h>

#include <string>
#include <thread>

using abup::agent::aks::Mailbox;
using namespace std::chrono_literals;

namespace {

template <typename Post>
std::chrono::milliseconds wake_latency(Mailbox<std::string, int>& box, Post post) {
  std::thread poster;
  std::atomic<bool> posted{false};
  box.set_before_sleep([&] {
    if (poster.joinable()) return;
    poster = std::thread([&] {
      post();
      posted = true;
    });
    for (int i = 0; i < 50 && !posted; ++i) std::this_thread::sleep_for(10ms);
  });
  std::atomic<bool> stop{false};
  const auto t0 = std::chrono::steady_clock::now();
  (void)box.wait(t0 + 10s, stop);
  const auto took =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  if (poster.joinable()) poster.join();
  box.set_before_sleep({});
  return took;
}

}  // namespace

TEST_CASE("aks mailbox: the stage worker's end posted in the check-to-sleep gap wakes the loop") {
  Mailbox<std::string, int> box;
  const auto took = wake_latency(box, [&] { box.post_work(7); });
  CHECK(took < 5s);
  CHECK(box.take_work() == std::optional<int>(7));
  CHECK_FALSE(box.take_work().has_value());
}

TEST_CASE("aks mailbox: a Node or its deletion posted in the gap wakes the loop too") {
  Mailbox<std::string, int> box;
  CHECK(wake_latency(box, [&] { box.post_node("node-1"); }) < 5s);
  Mailbox<std::string, int> gone;
  CHECK(wake_latency(gone, [&] { gone.post_gone(); }) < 5s);
  std::atomic<bool> stop{false};
  auto w = gone.wait(std::chrono::steady_clock::now(), stop);
  CHECK(w.gone);
}

TEST_CASE("aks mailbox: a fresh Node is taken once, stop ends the wait") {
  Mailbox<std::string, int> box;
  std::atomic<bool> stop{false};
  box.post_node("a");
  box.post_node("b");
  auto w = box.wait(std::chrono::steady_clock::now() + 10s, stop);
  CHECK(w.node == std::optional<std::string>("b"));
  stop = true;
  const auto t0 = std::chrono::steady_clock::now();
  w = box.wait(t0 + 10s, stop);
  CHECK_FALSE(w.node.has_value());
  CHECK(std::chrono::steady_clock::now() - t0 < 1s);
}
