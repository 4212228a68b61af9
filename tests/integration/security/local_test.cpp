// docs/security.md, a local user who is not root: a name planted in the state directory is not
// followed when abup writes its files, and idle connections to the metrics port cannot take the
// daemon's file descriptors.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>
#include <vector>

#include "abup/fs.hpp"
#include "agent/metrics.hpp"
#include "support/util.hpp"

using namespace abup::test;
namespace fs = std::filesystem;

namespace {

std::size_t open_fds() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

int connect_to(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

TEST_CASE("security: a symlink planted at the temporary name is replaced, never written through") {
  // state.json, daemon.json, aks.json and the ESP's boot files are all written by
  // atomic_write_file: the temporary name is predictable (PATH.tmp.PID).
  TempDir dir;
  write_file(dir / "victim", "root's file\n");
  const auto target = dir / "state.json";
  fs::create_symlink(dir / "victim", target.string() + ".tmp." + std::to_string(::getpid()));
  auto st = abup::atomic_write_file(target, "{\"schemaVersion\": 1}\n", 0600);
  REQUIRE_MESSAGE(st, (st ? "" : st.error().message));
  CHECK(read_file(dir / "victim") == "root's file\n");
  CHECK(read_file(target) == "{\"schemaVersion\": 1}\n");
  CHECK(fs::is_regular_file(fs::symlink_status(target)));
  CHECK_FALSE(
      fs::exists(fs::symlink_status(target.string() + ".tmp." + std::to_string(::getpid()))));
}

TEST_CASE("security: idle connections to the metrics port are capped, scrapes still work after") {
  auto server = abup::agent::MetricsServer::start_thread("127.0.0.1:0");
  REQUIRE_MESSAGE(server, (server ? "" : server.error().message));
  (*server)->update("abup_rollbacks_total 3\n");
  const auto port = (*server)->port();
  const auto base = open_fds();
  std::vector<int> clients;
  for (int i = 0; i < 200; ++i)
    if (int fd = connect_to(port); fd >= 0) clients.push_back(fd);
  REQUIRE(clients.size() == 200);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  // Ours are 200; whatever else is open now the server holds for the idle clients.
  const auto held = open_fds() - base - clients.size();
  CAPTURE(held);
  CHECK(held <= 16);
  for (int fd : clients) ::close(fd);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  if (have_program("curl"))
    CHECK(run_ok("curl -sS --max-time 5 http://127.0.0.1:" + std::to_string(port) + "/metrics") ==
          "abup_rollbacks_total 3\n");
  (*server)->stop();
}
