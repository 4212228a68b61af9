// Helpers shared by the tests: scratch directories, running real programs, free ports.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace abup::test {

// A fresh directory under $TMPDIR, removed when the object dies (unless ABUP_KEEP_TMP is set).
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }
  [[nodiscard]] std::filesystem::path operator/(const std::string& name) const {
    return path_ / name;
  }

 private:
  std::filesystem::path path_;
};

struct RunResult {
  int exit_code = -1;  // 128+N when killed by signal N
  std::string out;     // stdout and stderr, interleaved
};

// Runs `sh -c command`, capturing output.
RunResult run(const std::string& command);
// As run(), but fails the current test (with the output) unless the exit code is 0.
std::string run_ok(const std::string& command);
// Starts argv (argv[0] a path) as a child with stdout and stderr appended to `log`; the kernel
// kills it if the test process dies first (PR_SET_PDEATHSIG). The caller kills and reaps it.
pid_t spawn_child(const std::vector<std::string>& argv, const std::filesystem::path& log);
// Whether a program is on PATH; tests that need one skip loudly with doctest's MESSAGE when not.
bool have_program(const std::string& name);
// A TCP port on 127.0.0.1 that was free a moment ago.
std::uint16_t free_port();
std::string shell_quote(const std::string& s);
std::filesystem::path source_dir();
std::filesystem::path binary_dir();
void write_file(const std::filesystem::path& p, const std::string& content);
std::string read_file(const std::filesystem::path& p);
// The built programs.
std::string abup_bin();
std::string abup_image_bin();

}  // namespace abup::test
