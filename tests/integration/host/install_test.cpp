// `cmake --install` with DESTDIR: the tree a package is made of (tools/package builds the DEB and
// RPM from the same rules and lists them), and the installed pieces work together.
#include <doctest/doctest.h>

#include "support/util.hpp"

namespace fs = std::filesystem;
using namespace abup::test;

TEST_CASE("install: a DESTDIR install puts every file where the system looks for it") {
  TempDir dir;
  auto dest = dir.path() / "dest";
  run_ok("DESTDIR=" + shell_quote(dest.string()) + " cmake --install " +
         shell_quote(binary_dir().string()) + " 2>&1");
  for (const char* p :
       {"usr/bin/abup", "usr/bin/abup-image", "usr/lib/systemd/system/abup.service",
        "usr/lib/systemd/system-preset/90-abup.preset", "usr/lib/tmpfiles.d/abup.conf",
        "usr/lib/sysusers.d/abup.conf", "usr/share/dbus-1/system.d/org.abup.Agent1.conf",
        "usr/share/dbus-1/system-services/org.abup.Agent1.service", "etc/abup/abup.conf",
        "usr/share/man/man8/abup.8", "usr/share/doc/abup/operations.md",
        "usr/share/doc/abup/README.md"}) {
    INFO(p);
    CHECK(fs::is_regular_file(dest / p));
  }
  for (const char* d : {"usr/share/abup/keys.d", "etc/abup/keys.d", "etc/abup/abup.conf.d"}) {
    INFO(d);
    CHECK(fs::is_directory(dest / d));
  }
  // Nothing outside /usr and /etc.
  for (const auto& e : fs::directory_iterator(dest)) {
    INFO(e.path());
    CHECK((e.path().filename() == "usr" || e.path().filename() == "etc"));
  }
  CHECK((fs::status(dest / "usr/bin/abup").permissions() & fs::perms::owner_exec) !=
        fs::perms::none);
  auto help = run_ok(shell_quote((dest / "usr/bin/abup").string()) + " --help");
  CHECK(help.find("usage: abup") != std::string::npos);

  // The installed abup reads the installed abup.conf (every setting commented out: defaults).
  fs::create_directories(dest / "var/lib/abup");
  auto hist = run(shell_quote((dest / "usr/bin/abup").string()) + " history --root " +
                  shell_quote(dest.string()));
  INFO(hist.out);
  CHECK(hist.exit_code == 0);

  if (have_program("man")) {
    auto page = run_ok("MANWIDTH=80 man --warnings -l " +
                       shell_quote((dest / "usr/share/man/man8/abup.8").string()) + " 2>&1");
    CHECK(page.find("abup - A/B image update agent") != std::string::npos);
    CHECK(page.find("warning") == std::string::npos);
  }
  if (have_program("systemd-analyze")) {
    run_ok("cp -a /usr/lib/systemd/system/. " +
           shell_quote((dest / "usr/lib/systemd/system").string()) + " 2>/dev/null || true");
    auto v = run("systemd-analyze verify --man=no --root=" + shell_quote(dest.string()) + " " +
                 shell_quote((dest / "usr/lib/systemd/system/abup.service").string()));
    INFO(v.out);
    CHECK(v.exit_code == 0);
  }
}
