// The disk lock: two abup processes with different state directories cannot
// write the same disk; the second is refused at once, names the holder, and writes nothing.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <thread>

#include "support/fault_server.hpp"
#include "support/world.hpp"

using namespace abup::test;

TEST_CASE("a second stage onto the same disk with another state directory is refused") {
  World w;
  auto img = w.build_signed("x", "202607.02.0");
  FaultServer slow(img.parent_path());
  const auto before = w.snapshot();
  const auto b_before = w.slot_bytes('B', 8 << 20);
  // The first stage takes its locks, then trickles through the image index (about 40 bytes/s).
  const pid_t first = spawn_child(
      {abup_bin(), "stage", "--no-progress", "--allow-http", "--disk", w.disk().string(), "--root",
       w.root().string(), "--keyring", w.keyring().string(), "--source", slow.url("slow/x.cosi")},
      w.path("first.log"));
  // Its flocks, as the kernel lists them (probing with flock(1) would race with it); the state
  // directory's lock comes first, the disk's second.
  const std::string held = "grep -c ' FLOCK .* " + std::to_string(first) + " ' /proc/locks";
  bool locked = false;
  for (int i = 0; i < 200 && !locked; ++i) {
    auto r = run(held);
    locked = r.exit_code == 0 && std::stoi(r.out) >= 2;
    if (!locked) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  REQUIRE_MESSAGE(locked, read_file(w.path("first.log")));

  const std::string other = " --state-dir " + shell_quote(w.path("other-state").string());
  auto second = w.stage(img.string(), other);
  INFO(second.out);
  CHECK(second.exit_code == 1);
  CHECK(second.out.find("is locked by pid " + std::to_string(first) + " (abup)") !=
        std::string::npos);
  auto fin = run(abup_bin() + " finalize --disk " + shell_quote(w.disk().string()) + " --root " +
                 shell_quote(w.root().string()) + other);
  INFO(fin.out);
  CHECK(fin.exit_code == 1);
  CHECK(fin.out.find("is locked by") != std::string::npos);

  ::kill(first, SIGKILL);
  ::waitpid(first, nullptr, 0);
  // Nothing was written by either: slots, GPT, both state files.
  CHECK(w.snapshot() == before);
  CHECK(w.slot_bytes('B', 8 << 20) == b_before);
  CHECK_FALSE(std::filesystem::exists(w.path("other-state") / "state.json"));

  // Released by the kill, the disk is free again.
  auto after = w.stage(img.string(), other);
  INFO(after.out);
  CHECK(after.exit_code == 0);
}
