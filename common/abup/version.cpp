#include "abup/version.hpp"

#include <algorithm>
#include <charconv>

namespace abup {

static bool parse_number(std::string_view s, std::uint64_t& out) {
  if (s.empty() || s.size() > 19) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

static std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  for (;;) {
    size_t pos = s.find(sep, start);
    parts.push_back(s.substr(start, pos == s.npos ? s.npos : pos - start));
    if (pos == s.npos) return parts;
    start = pos + 1;
  }
}

Result<Version> Version::parse(std::string_view text) {
  auto bad = [&](const char* why) {
    return make_error(Errc::invalid_input,
                      "version '" + std::string(text) + "': " + why +
                          " (expected numbers separated by dots, e.g. 202607.02.0)");
  };
  Version v;
  v.text = std::string(text);
  std::string_view core = text.substr(0, text.find('+'));
  std::string_view pre;
  if (auto dash = core.find('-'); dash != core.npos) {
    pre = core.substr(dash + 1);
    core = core.substr(0, dash);
    if (pre.empty()) return bad("empty pre-release");
  }
  if (core.empty()) return bad("empty");
  for (auto part : split(core, '.')) {
    std::uint64_t n;
    if (!parse_number(part, n)) return bad("non-numeric component");
    v.numbers.push_back(n);
  }
  if (!pre.empty()) {
    for (auto id : split(pre, '.')) {
      if (id.empty()) return bad("empty pre-release identifier");
      if (!std::all_of(id.begin(), id.end(), [](char c) {
            return std::isalnum(static_cast<unsigned char>(c)) || c == '-';
          }))
        return bad("invalid pre-release character");
      v.prerelease.emplace_back(id);
    }
  }
  return v;
}

std::string Version::semver() const {
  std::string out;
  for (size_t i = 0; i < std::max<size_t>(3, numbers.size()); ++i) {
    if (i) out += '.';
    out += std::to_string(i < numbers.size() ? numbers[i] : 0);
  }
  for (size_t i = 0; i < prerelease.size(); ++i) out += (i ? "." : "-") + prerelease[i];
  return out;
}

static std::strong_ordering compare_identifier(const std::string& a, const std::string& b) {
  std::uint64_t na, nb;
  bool a_num = parse_number(a, na), b_num = parse_number(b, nb);
  if (a_num && b_num) return na <=> nb;
  if (a_num != b_num) return a_num ? std::strong_ordering::less : std::strong_ordering::greater;
  return a.compare(b) <=> 0;
}

std::strong_ordering operator<=>(const Version& a, const Version& b) {
  size_t n = std::max(a.numbers.size(), b.numbers.size());
  for (size_t i = 0; i < n; ++i) {
    std::uint64_t x = i < a.numbers.size() ? a.numbers[i] : 0;
    std::uint64_t y = i < b.numbers.size() ? b.numbers[i] : 0;
    if (auto c = x <=> y; c != 0) return c;
  }
  if (a.prerelease.empty() != b.prerelease.empty())
    return a.prerelease.empty() ? std::strong_ordering::greater : std::strong_ordering::less;
  for (size_t i = 0; i < std::min(a.prerelease.size(), b.prerelease.size()); ++i)
    if (auto c = compare_identifier(a.prerelease[i], b.prerelease[i]); c != 0) return c;
  return a.prerelease.size() <=> b.prerelease.size();
}

}  // namespace abup
