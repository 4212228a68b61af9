#include "abup/fault.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <thread>

#ifdef ABUP_FAULT_INJECTION
// The stop mode is how a test changes the world at a fault point (read_back_test damages a chunk
// while the read-back thread stands just before its read): the thread that passes the point must
// be stopped before it runs one more instruction, not only the process "soon". A process-directed
// SIGSTOP went to the main thread, and the passing thread went on (and issued its reads) until the
// group stop reached it.
TEST_CASE("a fault point's stop stops the thread passing it before it goes on") {
  for (int round = 0; round < 20; ++round) {
    CAPTURE(round);
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      ::close(fds[0]);
      ::setenv("ABUP_FAULT", "probe:1:stop", 1);
      // Not the main thread: the main thread waits in join(), as abup's does for its workers.
      std::thread t([&] {
        abup::fault_point("probe");
        const char c = 'x';
        (void)!::write(fds[1], &c, 1);
      });
      t.join();
      ::_exit(0);
    }
    ::close(fds[1]);
    int status = 0;
    // Reported once every thread of the child is stopped.
    REQUIRE(::waitpid(child, &status, WUNTRACED) == child);
    REQUIRE(WIFSTOPPED(status));
    REQUIRE(::fcntl(fds[0], F_SETFL, O_NONBLOCK) == 0);
    char c = 0;
    const auto early = ::read(fds[0], &c, 1);
    CHECK_MESSAGE(early == -1, "the thread passing the fault point ran on after it");
    CHECK(errno == EAGAIN);
    REQUIRE(::kill(child, SIGCONT) == 0);
    REQUIRE(::fcntl(fds[0], F_SETFL, 0) == 0);
    if (early != 1) CHECK(::read(fds[0], &c, 1) == 1);  // it goes on once continued
    REQUIRE(::waitpid(child, &status, 0) == child);
    CHECK(WIFEXITED(status));
    ::close(fds[0]);
  }
}
#endif
