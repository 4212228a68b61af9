// systemd-units/: every unit passes `systemd-analyze verify` in a tree that holds the real abup
// binary; abup.service keeps its exposure score below 3.0; tmpfiles, sysusers and the preset do
// what they say when systemd's own tools apply them to a scratch root.
#include <doctest/doctest.h>

#include <regex>
#include <sstream>

#include "support/util.hpp"

namespace fs = std::filesystem;
using namespace abup::test;

namespace {

fs::path units_dir() {
  return source_dir() / "systemd-units";
}

bool have_systemd_tools() {
  if (have_program("systemd-analyze") && have_program("systemd-tmpfiles")) return true;
  MESSAGE("SKIPPED: systemd-analyze not installed (tools/setup installs the systemd package)");
  return false;
}

// A root holding the distribution's units (for the targets abup.service is ordered after), ours,
// and the built abup as /usr/bin/abup.
void make_root(const fs::path& root) {
  fs::create_directories(root / "usr/bin");
  fs::create_directories(root / "usr/lib/systemd/system");
  run_ok("cp -a /usr/lib/systemd/system/. " +
         shell_quote((root / "usr/lib/systemd/system").string()));
  for (const auto& e : fs::directory_iterator(units_dir()))
    if (e.path().extension() == ".service" && e.path().filename() != "org.abup.Agent1.service")
      fs::copy_file(e.path(), root / "usr/lib/systemd/system" / e.path().filename(),
                    fs::copy_options::overwrite_existing);
  fs::copy_file(abup_bin(), root / "usr/bin/abup");
}

}  // namespace

TEST_CASE("units: systemd-analyze verify passes every unit without a warning") {
  if (!have_systemd_tools()) return;
  TempDir dir;
  make_root(dir.path());
  int units = 0;
  for (const auto& e : fs::directory_iterator(units_dir())) {
    auto ext = e.path().extension();
    if (ext != ".service" && ext != ".timer" && ext != ".socket" && ext != ".path") continue;
    if (e.path().filename() == "org.abup.Agent1.service") continue;  // D-Bus activation file
    auto unit = dir.path() / "usr/lib/systemd/system" / e.path().filename();
    auto r = run("systemd-analyze verify --man=no --root=" + shell_quote(dir.path().string()) +
                 " " + shell_quote(unit.string()));
    INFO(unit.filename().string() << ": " << r.out);
    CHECK(r.exit_code == 0);
    CHECK(r.out.empty());  // unknown keys are only warnings: none allowed
    ++units;
  }
  CHECK(units >= 1);
}

TEST_CASE("units: verify catches a unit whose program is missing (the check can fail)") {
  if (!have_systemd_tools()) return;
  TempDir dir;
  make_root(dir.path());
  fs::remove(dir.path() / "usr/bin/abup");
  auto r = run("systemd-analyze verify --man=no --root=" + shell_quote(dir.path().string()) + " " +
               shell_quote((dir.path() / "usr/lib/systemd/system/abup.service").string()));
  CHECK(r.exit_code != 0);
  CHECK(r.out.find("/usr/bin/abup") != std::string::npos);
}

TEST_CASE("units: abup.service exposure score stays below 3.0") {
  if (!have_systemd_tools()) return;
  auto out = run_ok("systemd-analyze security --offline=true --no-pager " +
                    shell_quote((units_dir() / "abup.service").string()) + " 2>&1");
  std::smatch m;
  REQUIRE_MESSAGE(
      std::regex_search(out, m, std::regex(R"(exposure level for abup\.service: ([0-9.]+))")), out);
  double score = std::stod(m[1].str());
  MESSAGE("abup.service exposure " << score);
  CHECK(score < 3.0);
  // What the job allows and no more: each of these settings is rated safe.
  for (std::string ok :
       {"ProtectSystem=", "PrivateTmp=", "NoNewPrivileges=", "ProtectKernelTunables=",
        "ProtectKernelModules=", "SystemCallFilter=~@privileged",
        "RestrictAddressFamilies=~AF_PACKET", "CapabilityBoundingSet=~CAP_SYS_ADMIN"}) {
    std::istringstream lines(out);
    bool found = false;
    for (std::string line; std::getline(lines, line);) {
      auto at = line.find(" " + ok);
      if (at == std::string::npos) continue;
      found = true;
      INFO(line);
      CHECK(line.rfind("✓", 0) == 0);
    }
    CHECK_MESSAGE(found, ok);
  }
}

TEST_CASE("units: tmpfiles creates the state and keyring directories with their modes") {
  if (!have_systemd_tools()) return;
  TempDir dir;
  run_ok("systemd-tmpfiles --create --root=" + shell_quote(dir.path().string()) + " " +
         shell_quote((units_dir() / "abup-tmpfiles.conf").string()));
  auto mode = [&](const char* p) {
    return fs::status(dir.path() / p).permissions() & fs::perms::all;
  };
  CHECK(fs::is_directory(dir.path() / "var/lib/abup"));
  CHECK(mode("var/lib/abup") == fs::perms::owner_all);
  CHECK(fs::is_directory(dir.path() / "etc/abup/keys.d"));
  CHECK(fs::is_directory(dir.path() / "etc/abup/abup.conf.d"));
}

TEST_CASE("units: sysusers creates group abup, the preset enables the service and its bus alias") {
  if (!have_systemd_tools() || !have_program("systemd-sysusers") || !have_program("systemctl"))
    return;
  TempDir dir;
  fs::create_directories(dir.path() / "etc");
  run_ok("systemd-sysusers --root=" + shell_quote(dir.path().string()) + " " +
         shell_quote((units_dir() / "abup-sysusers.conf").string()));
  auto group = "\n" + read_file(dir.path() / "etc/group");
  CHECK(group.find("\nabup:x:") != std::string::npos);

  make_root(dir.path());
  fs::create_directories(dir.path() / "usr/lib/systemd/system-preset");
  fs::copy_file(units_dir() / "90-abup.preset",
                dir.path() / "usr/lib/systemd/system-preset/90-abup.preset");
  run_ok("systemctl --root=" + shell_quote(dir.path().string()) + " preset abup.service");
  auto wants = dir.path() / "etc/systemd/system/multi-user.target.wants/abup.service";
  auto alias = dir.path() / "etc/systemd/system/dbus-org.abup.Agent1.service";
  CHECK(fs::is_symlink(wants));
  CHECK(fs::is_symlink(alias));
  CHECK(fs::read_symlink(alias).filename() == "abup.service");
}
