#include <doctest/doctest.h>

#include "abup/version.hpp"

using abup::Version;

static Version v(const char* s) {
  auto r = Version::parse(s);
  REQUIRE_MESSAGE(r.has_value(), s);
  return *r;
}

TEST_CASE("versions compare numerically, component by component") {
  CHECK(v("202607.02.0") < v("202607.10.0"));
  CHECK(v("202607.2.0") == v("202607.02.0"));
  CHECK(v("9.0.0") < v("10.0.0"));
  CHECK(v("1.2") == v("1.2.0"));
  CHECK(v("1.2.0-rc.1") < v("1.2.0"));
  CHECK(v("1.2.0-rc.2") < v("1.2.0-rc.10"));
  CHECK(v("1.2.0-alpha") < v("1.2.0-beta"));
  CHECK(v("1.2.0+build5") == v("1.2.0"));
}

TEST_CASE("semver normalizes for Nebraska") {
  CHECK(v("202607.02.0").semver() == "202607.2.0");
  CHECK(v("3975").semver() == "3975.0.0");
  CHECK(v("1.2.3-rc.1").semver() == "1.2.3-rc.1");
}

TEST_CASE("malformed versions are errors naming the input") {
  for (const char* bad : {"", "1..2", "a.b", "1.2-", "1.2.x", "-1"}) {
    auto r = Version::parse(bad);
    CHECK_FALSE(r.has_value());
    if (!r) CHECK(r.error().message.find("version '") == 0);
  }
}
