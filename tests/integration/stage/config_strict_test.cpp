// The real abup binary holds configuration to what it knows and plumbs [Network] limits to the
// transport: a typo or a missing --config stops it before anything is
// read from the network or written to a disk; a dead server fails naming the limit it hit.
#include <doctest/doctest.h>

#include "support/fault_server.hpp"
#include "support/world.hpp"

using namespace abup::test;

TEST_CASE("a misspelt setting stops stage before anything is written") {
  World w;
  auto img = w.build_signed("x", "202607.02.0");  // one signature: a threshold of 2 refuses it
  auto before = w.snapshot();
  struct Case {
    std::string text, expect;
  };
  for (const auto& c : std::vector<Case>{
           {"[Update]\nSignatureTreshold=2\n",
            ":2: unknown setting 'SignatureTreshold' in [Update] (did you mean "
            "SignatureThreshold?)"},
           {"[update]\nSignatureThreshold=2\n", ":1: unknown section [update]"},
           {"[Network]\nSignatureThreshold=2\n",
            ":2: unknown setting 'SignatureThreshold' in [Network] (it belongs in [Update])"},
       }) {
    CAPTURE(c.text);
    write_file(w.path("typo.conf"), c.text);
    auto r = w.stage(img.string(), "--config " + shell_quote(w.path("typo.conf").string()));
    INFO(r.out);
    CHECK(r.exit_code == 2);
    CHECK(r.out.find(w.path("typo.conf").string() + c.expect) != std::string::npos);
    CHECK(w.snapshot() == before);
  }
  SUBCASE("a drop-in under the default path is held to the same rules") {
    std::filesystem::create_directories(w.root() / "etc/abup/abup.conf.d");
    write_file(w.root() / "etc/abup/abup.conf.d/50-keys.conf", "[Updates]\nSignatureThreshold=2\n");
    auto r = w.stage(img.string());
    INFO(r.out);
    CHECK(r.exit_code == 2);
    CHECK(r.out.find("50-keys.conf:1: unknown section [Updates] (did you mean [Update]?)") !=
          std::string::npos);
    CHECK(w.snapshot() == before);
  }
  SUBCASE("a --config that does not exist is an error, the default path may be absent") {
    auto missing = w.path("nonexistent.conf");
    auto r = w.stage(img.string(), "--config " + shell_quote(missing.string()));
    INFO(r.out);
    CHECK(r.exit_code == 2);
    CHECK(r.out.find("configuration " + missing.string() + " does not exist") != std::string::npos);
    CHECK(w.snapshot() == before);
    REQUIRE_FALSE(std::filesystem::exists(w.root() / "etc/abup/abup.conf"));
    auto ok = w.stage(img.string());
    INFO(ok.out);
    CHECK(ok.exit_code == 0);
  }
}

TEST_CASE("a server that never answers fails on [Network] LowSpeedTimeSec=, named") {
  World w;
  auto img = w.build_signed("x", "202607.02.0");
  FaultServer fault(img.parent_path());
  write_file(w.path("net.conf"), "[Network]\nAllowHTTP=yes\nLowSpeedTimeSec=1\nRetries=0\n");
  auto before = w.snapshot();
  auto r =
      w.stage(fault.url("hang/x.cosi"), "--config " + shell_quote(w.path("net.conf").string()));
  INFO(r.out);
  CHECK(r.exit_code == 1);
  CHECK(r.out.find("no answer: under 1024 bytes/s for 1 s") != std::string::npos);
  CHECK(r.out.find("[Network] LowSpeedLimitBytes= and LowSpeedTimeSec=") != std::string::npos);
  CHECK(r.out.find("gave up after 1 attempts") != std::string::npos);  // Retries=0
  CHECK(w.snapshot() == before);
}
