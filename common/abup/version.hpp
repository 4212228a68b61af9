// Release versions: dot-separated numeric components ("202607.02.0", leading zeros allowed),
// optionally "-prerelease" (semver rules: a pre-release sorts before its release) and "+build"
// (ignored for ordering). Never compared as strings.
#pragma once

#include <compare>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "abup/result.hpp"

namespace abup {

struct Version {
  std::vector<std::uint64_t> numbers;
  std::vector<std::string> prerelease;  // dot-separated identifiers
  std::string text;                     // as given

  [[nodiscard]] static Result<Version> parse(std::string_view text);
  // Nebraska wants semver: at least three numeric components, leading zeros dropped.
  [[nodiscard]] std::string semver() const;
  friend std::strong_ordering operator<=>(const Version& a, const Version& b);
  friend bool operator==(const Version& a, const Version& b) { return (a <=> b) == 0; }
};

}  // namespace abup
