// The command line of the real abup and abup-image: the exit-status table (README "Exit status"),
// -h/--help/--version, refused options and arguments, and abup-image's expiry checks.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "integration/expect_run.hpp"
#include "support/disk.hpp"
#include "support/util.hpp"

namespace abup::test {
namespace {

bool contains(const std::string& s, const std::string& what) {
  return s.find(what) != std::string::npos;
}

std::string q(const std::filesystem::path& p) {
  return shell_quote(p.string());
}

RunResult abup(const std::string& args) {
  return run(abup_bin() + " " + args + " 2>&1");
}
RunResult image_tool(const std::string& args) {
  return run(abup_image_bin() + " " + args + " 2>&1");
}

const std::vector<std::string> kAbupCommands = {
    "stage", "finalize", "commit", "rollback", "status", "history", "daemon", "check", "update"};
const std::vector<std::string> kImageCommands = {"build",   "sign",  "digest", "attach-signature",
                                                 "inspect", "verify"};

// A node booted from USR-A on a disk image, nothing staged.
// The version CMakeLists.txt's project() declares, which --version must print.
std::string project_version() {
  const std::string text = read_file(source_dir() / "CMakeLists.txt");
  const std::string key = "project(abup VERSION ";
  const auto at = text.find(key);
  REQUIRE(at != std::string::npos);
  return text.substr(at + key.size(), text.find(' ', at + key.size()) - at - key.size());
}

struct Node {
  TempDir tmp;
  Node() {
    make_flatcar_disk(tmp / "disk.img");
    make_root(tmp / "root", 'A', "202601.01.0");
  }
  std::string where() const {
    return "--disk " + q(tmp / "disk.img") + " --root " + q(tmp / "root");
  }
  void corrupt_state() const {
    std::filesystem::create_directories(tmp / "root/var/lib/abup");
    write_file(tmp / "root/var/lib/abup/state.json", "{not json");
  }
};

TEST_CASE("--version and -h/--help of both programs and of every command exit 0 on stdout") {
  for (const auto& [bin, name] : {std::pair{abup_bin(), std::string("abup")},
                                  std::pair{abup_image_bin(), std::string("abup-image")}}) {
    CAPTURE(name);
    auto v = run(bin + " --version 2>/dev/null");
    CHECK(v.exit_code == 0);
    CHECK(v.out == name + " " + project_version() + "\n");
    for (const char* h : {"-h", "--help", "help"}) {
      auto r = run(bin + " " + h + " 2>/dev/null");
      CHECK(r.exit_code == 0);
      CHECK(contains(r.out, "usage: " + name + " COMMAND"));
    }
    // No command at all: the usage on stderr, exit 2.
    auto none = run(bin + " 2>&1 >/dev/null");
    CHECK(none.exit_code == 2);
    CHECK(contains(none.out, "usage: " + name + " COMMAND"));
    auto unknown = run(bin + " frobnicate 2>&1");
    CHECK(unknown.exit_code == 2);
    CHECK(contains(unknown.out, name + ": unknown command 'frobnicate'"));
  }
  auto check_commands = [](const std::string& bin, const std::string& name,
                           const std::vector<std::string>& commands) {
    for (const auto& cmd : commands) {
      CAPTURE(cmd);
      for (const std::string h : {"-h", "--help"}) {
        // Help wins over whatever else is on the line.
        auto r = run(bin + " " + cmd + " --no-such-option " + h + " 2>/dev/null");
        CHECK(r.exit_code == 0);
        CHECK(contains(r.out, "usage: " + name + " " + cmd + " "));
        CHECK(contains(r.out, "--help"));
      }
      auto r = run(bin + " help " + cmd + " 2>/dev/null");
      CHECK(r.exit_code == 0);
      CHECK(contains(r.out, "usage: " + name + " " + cmd + " "));
    }
  };
  check_commands(abup_bin(), "abup", kAbupCommands);
  check_commands(abup_image_bin(), "abup-image", kImageCommands);
}

TEST_CASE("unknown options and extra arguments are usage errors (exit 2) that name them") {
  for (const auto& cmd : kAbupCommands) {
    CAPTURE(cmd);
    expect_run(abup(cmd + " --no-such-option"), 2,
               {"abup: " + cmd + ": unknown option '--no-such-option'"});
    expect_run(abup(cmd + " stray"), 2, {"unexpected argument 'stray'"});
  }
  for (const auto& cmd : kImageCommands) {
    CAPTURE(cmd);
    expect_run(image_tool(cmd + " --no-such-option x.cosi"), 2,
               {"unknown option '--no-such-option'"});
  }
  expect_run(image_tool("build stray"), 2, {"unexpected argument 'stray'"});
  expect_run(image_tool("inspect a.cosi b.cosi"), 2,
             {"expected exactly one IMAGE argument, got 2: 'a.cosi' 'b.cosi'"});
}

TEST_CASE("exit status table: 0 success, 1 failure, 2 usage or configuration") {
  Node n;
  expect_run(abup("status --no-daemon " + n.where()), 0);

  // 1: the request is well formed, the system refuses or fails it.
  expect_run(abup("finalize " + n.where()), 1, {"nothing staged"});
  expect_run(abup("stage --no-progress --source " + q(n.tmp / "absent.cosi") + " " + n.where()), 1);
  // Malformed data is not a usage error: a file that is no image.
  write_file(n.tmp / "junk.cosi", std::string(4096, 'x'));
  expect_run(abup("stage --no-progress --source " + q(n.tmp / "junk.cosi") + " " + n.where()), 1);
  // Malformed data again: corrupt state.json.
  n.corrupt_state();
  expect_run(abup("status --no-daemon " + n.where()), 1);
  std::filesystem::remove(n.tmp / "root/var/lib/abup/state.json");

  // 2: change how abup is invoked.
  expect_run(abup("commit --boot-backend floppy " + n.where()), 2, {"floppy"});
  expect_run(abup("stage " + n.where()), 2, {"--source"});
  std::filesystem::create_directories(n.tmp / "root/etc/abup");
  write_file(n.tmp / "root/etc/abup/abup.conf", "[Reboot]\nStrategy=sometimes\n");
  expect_run(abup("commit " + n.where()), 2, {"Strategy=sometimes"});
}

TEST_CASE("commit's own statuses: 0 nothing pending, 1 errors (never 2 unless usage)") {
  Node n;
  expect_run(abup("commit " + n.where()), 0);
  // An unknown option of commit is a usage error like every other command's (it was 1).
  expect_run(abup("commit --bogus " + n.where()), 2);
  n.corrupt_state();
  expect_run(abup("commit " + n.where()), 1, {"state.json"});
}

struct Keys {
  TempDir tmp;
  Keys() {
    run_ok("openssl genpkey -algorithm ed25519 -out " + q(tmp / "k.pem") + " 2>&1");
    std::filesystem::create_directories(tmp / "keys");
    run_ok("openssl pkey -in " + q(tmp / "k.pem") + " -pubout -out " + q(tmp / "keys/k.pem"));
    run_ok("head -c 1048576 /dev/urandom > " + q(tmp / "usr.img"));
  }
  // abup-image build of usr.img as version 202607.02.0 with `times`, to NAME.cosi.
  RunResult build(const std::string& times, const std::string& name = "x") const {
    return image_tool("build --usr " + q(tmp / "usr.img") + " --version 202607.02.0 " + times +
                      " --out " + q(tmp / (name + ".cosi")));
  }
  // Signs NAME.cosi; returns the abup-image arguments that verify it against the keyring.
  std::string sign(const std::string& name) const {
    const auto image = q(tmp / (name + ".cosi"));
    run_ok(abup_image_bin() + " sign --key " + q(tmp / "k.pem") + " " + image);
    return "verify --keyring " + q(tmp / "keys") + " " + image;
  }
};

TEST_CASE("abup-image build refuses an expiry not after the issue time, naming both") {
  Keys k;
  expect_run(k.build("--expires-at 2020-01-01T00:00:00Z"), 2,
             {"--expires-at 2020-01-01T00:00:00Z is not after the issue time", "(now)"});
  CHECK_FALSE(std::filesystem::exists(k.tmp / "x.cosi"));

  expect_run(k.build("--issued-at 2030-01-02T00:00:00Z --expires-at 2030-01-01T00:00:00Z"), 2,
             {"2030-01-01T00:00:00Z", "2030-01-02T00:00:00Z (--issued-at)"});
  expect_run(k.build("--issued-at 2030-01-01T00:00:00Z --expires-at 2030-01-01T00:00:00Z"), 2);
  expect_run(k.build("--expires-at tomorrow"), 2, {"--expires-at"});
}

TEST_CASE("abup-image verify reports an expired image as expired, and --at judges another time") {
  Keys k;
  auto built = k.build("--issued-at 2020-01-01T00:00:00Z --expires-at 2021-01-01T00:00:00Z", "old");
  REQUIRE_MESSAGE(built.exit_code == 0, built.out);
  const std::string verify = k.sign("old");
  auto expired = image_tool(verify);
  expect_run(expired, 1, {"EXPIRED", "expired at 2021-01-01T00:00:00Z"});
  CHECK_FALSE(contains(expired.out, ": OK:"));  // not "OK": the temp dir's random name may hold it
  expect_run(image_tool(verify + " --at 2020-06-01T00:00:00Z"), 0, {": OK: version 202607.02.0"});
  expect_run(image_tool(verify + " --at 2021-01-01T00:00:00Z"), 1);
  expect_run(image_tool(verify + " --at someday"), 2, {"--at"});

  // An image without expiry, or one that expires later, is OK now.
  REQUIRE(k.build("--expires-in-days 30", "new").exit_code == 0);
  expect_run(image_tool(k.sign("new")), 0, {": OK:"});
}

}  // namespace
}  // namespace abup::test
