// Version and variant policy fail closed: when os-release cannot say what runs, abup cannot prove
// an image is no downgrade, meets minVersion or fits the variant, so it refuses before writing a
// byte; only an explicit operator flag lets it proceed.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <optional>

#include "support/world.hpp"

using namespace abup::test;

namespace {

// A host whose etc/os-release holds `os_release` (that has none when nullopt), an image built
// for it with `extra` abup-image options, and the host as it was before any stage.
class PolicyHost : public World {
 public:
  PolicyHost(const std::optional<std::string>& os_release, const std::string& extra) {
    if (os_release)
      write_file(os_release_path(), *os_release);
    else
      std::filesystem::remove(os_release_path());
    before_ = snapshot();
    image_ = build_signed("x", "202607.02.0", extra);
  }

  std::filesystem::path os_release_path() const { return root() / "etc/os-release"; }
  std::string image() const { return image_.string(); }

  void expect_refused_untouched(const RunResult& r, const std::string& message) const {
    INFO(r.out);
    CHECK(r.exit_code != 0);
    CHECK_MESSAGE(r.out.find(message) != std::string::npos, "expected: ", message);
    CHECK(snapshot() == before_);
  }

  void expect_staged(const RunResult& r) const {
    INFO(r.out);
    REQUIRE(r.exit_code == 0);
    auto status = nlohmann::json::parse(slot_state_json());
    CHECK(status["slots"][1]["state"] == "staged");
  }

 private:
  std::filesystem::path image_;
  Snapshot before_;
};

}  // namespace

TEST_CASE("no os-release: the running version is unknown, staging is refused") {
  PolicyHost h(std::nullopt, "");
  h.expect_refused_untouched(h.stage(h.image()), "the running version is unknown (neither " +
                                                     h.os_release_path().string() + " nor " +
                                                     (h.root() / "usr/lib/os-release").string() +
                                                     " exists)");
  SUBCASE("an image older than anything: still refused, the downgrade cannot be excluded") {
    auto old = h.build_signed("old", "1.0.0");
    h.expect_refused_untouched(h.stage(old.string()), "--allow-unknown-version");
  }
  SUBCASE("--allow-unknown-version proceeds") {
    h.expect_staged(h.stage(h.image(), "--allow-unknown-version"));
  }
}

TEST_CASE("os-release without IMAGE_VERSION or VERSION_ID: refused, minVersion not skipped") {
  PolicyHost h("ID=flatcar\nVARIANT_ID=azurecontainerlinux\n", "--min-version 202602.0.0");
  auto r = h.stage(h.image());
  h.expect_refused_untouched(r,
                             h.os_release_path().string() + " has no IMAGE_VERSION or VERSION_ID");
  CHECK(r.out.find("202602.0.0 or newer (minVersion)") != std::string::npos);
  h.expect_staged(h.stage(h.image(), "--allow-unknown-version"));
}

TEST_CASE("no VARIANT_ID while the image names a variant: refused unless overridden") {
  PolicyHost h("ID=flatcar\nIMAGE_VERSION=202601.01.0\n", "--variant azurecontainerlinux");
  h.expect_refused_untouched(h.stage(h.image()),
                             "image is for variant 'azurecontainerlinux' and this host's variant "
                             "is unknown (" +
                                 h.os_release_path().string() + " has no VARIANT_ID)");
  SUBCASE("an image for any variant needs no VARIANT_ID") {
    h.expect_staged(h.stage(h.build_signed("any", "202607.02.0").string()));
  }
  SUBCASE("--allow-unknown-variant proceeds") {
    h.expect_staged(h.stage(h.image(), "--allow-unknown-variant"));
  }
}
