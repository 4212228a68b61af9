// Version and variant policy fail closed: when os-release cannot say what runs, abup cannot prove
// an image is no downgrade, meets minVersion or fits the variant, so it refuses before writing a
// byte; only an explicit operator flag lets it proceed.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "support/world.hpp"

using namespace abup::test;

namespace {

void expect_refused_untouched(const World& w, const Snapshot& before, const RunResult& r,
                              const std::string& message) {
  INFO(r.out);
  CHECK(r.exit_code != 0);
  CHECK_MESSAGE(r.out.find(message) != std::string::npos, "expected: ", message);
  CHECK(w.snapshot() == before);
}

void expect_staged(const World& w, const RunResult& r) {
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  auto status = nlohmann::json::parse(w.slot_state_json());
  CHECK(status["slots"][1]["state"] == "staged");
}

}  // namespace

TEST_CASE("no os-release: the running version is unknown, staging is refused") {
  World w;
  std::filesystem::remove(w.root() / "etc/os-release");
  auto img = w.build_signed("x", "202607.02.0");
  auto before = w.snapshot();
  expect_refused_untouched(w, before, w.stage(img.string()),
                           "the running version is unknown (neither " +
                               (w.root() / "etc/os-release").string() + " nor " +
                               (w.root() / "usr/lib/os-release").string() + " exists)");
  SUBCASE("an image older than anything: still refused, the downgrade cannot be excluded") {
    auto old = w.build_signed("old", "1.0.0");
    expect_refused_untouched(w, before, w.stage(old.string()), "--allow-unknown-version");
  }
  SUBCASE("--allow-unknown-version proceeds") {
    expect_staged(w, w.stage(img.string(), "--allow-unknown-version"));
  }
}

TEST_CASE("os-release without IMAGE_VERSION or VERSION_ID: refused, minVersion not skipped") {
  World w;
  write_file(w.root() / "etc/os-release", "ID=flatcar\nVARIANT_ID=azurecontainerlinux\n");
  auto before = w.snapshot();
  auto img = w.build_signed("x", "202607.02.0", "--min-version 202602.0.0");
  auto r = w.stage(img.string());
  expect_refused_untouched(
      w, before, r, (w.root() / "etc/os-release").string() + " has no IMAGE_VERSION or VERSION_ID");
  CHECK(r.out.find("202602.0.0 or newer (minVersion)") != std::string::npos);
  expect_staged(w, w.stage(img.string(), "--allow-unknown-version"));
}

TEST_CASE("no VARIANT_ID while the image names a variant: refused unless overridden") {
  World w;
  write_file(w.root() / "etc/os-release", "ID=flatcar\nIMAGE_VERSION=202601.01.0\n");
  auto before = w.snapshot();
  auto img = w.build_signed("x", "202607.02.0", "--variant azurecontainerlinux");
  expect_refused_untouched(w, before, w.stage(img.string()),
                           "image is for variant 'azurecontainerlinux' and this host's variant "
                           "is unknown (" +
                               (w.root() / "etc/os-release").string() + " has no VARIANT_ID)");
  SUBCASE("an image for any variant needs no VARIANT_ID") {
    expect_staged(w, w.stage(w.build_signed("any", "202607.02.0").string()));
  }
  SUBCASE("--allow-unknown-variant proceeds") {
    expect_staged(w, w.stage(img.string(), "--allow-unknown-variant"));
  }
}
