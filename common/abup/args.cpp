#include "abup/args.hpp"

#include <charconv>
#include <cstdio>

namespace abup {

Result<Args> Args::parse(const std::vector<std::string>& argv,
                         const std::vector<OptionSpec>& specs) {
  Args a;
  bool only_positionals = false;
  for (std::size_t i = 0; i < argv.size(); ++i) {
    const std::string& arg = argv[i];
    if (only_positionals || arg.size() < 3 || arg.rfind("--", 0) != 0) {
      if (arg == "--") {
        only_positionals = true;
        continue;
      }
      if (!only_positionals && arg.size() > 1 && arg[0] == '-')
        return make_error(Errc::usage, "unknown option '" + arg + "' (options are --long)");
      a.positionals_.push_back(arg);
      continue;
    }
    std::string name = arg.substr(2), value;
    bool inline_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      inline_value = true;
    }
    const OptionSpec* spec = nullptr;
    for (const auto& s : specs)
      if (s.name == name) spec = &s;
    if (!spec) return make_error(Errc::usage, "unknown option '--" + name + "'");
    if (spec->takes_value && !inline_value) {
      if (i + 1 >= argv.size())
        return make_error(Errc::usage, "option '--" + name + "' needs a value");
      value = argv[++i];
    } else if (!spec->takes_value && inline_value) {
      return make_error(Errc::usage, "option '--" + name + "' takes no value");
    }
    if (!spec->repeatable && a.values_.count(name))
      return make_error(Errc::usage, "option '--" + name + "' given twice");
    a.values_.emplace(name, value);
  }
  return a;
}

std::optional<std::string> Args::get(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

std::string Args::get_or(const std::string& name, std::string fallback) const {
  auto v = get(name);
  return v ? *v : fallback;
}

std::vector<std::string> Args::all(const std::string& name) const {
  std::vector<std::string> out;
  auto [b, e] = values_.equal_range(name);
  for (auto it = b; it != e; ++it) out.push_back(it->second);
  return out;
}

Result<long long> Args::get_int(const std::string& name, long long fallback, long long min,
                                long long max) const {
  auto v = get(name);
  if (!v) return fallback;
  long long n = 0;
  auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), n);
  if (ec != std::errc() || p != v->data() + v->size() || n < min || n > max)
    return make_error(Errc::usage, "option '--" + name + "': '" + *v +
                                               "' is not a whole number from " +
                                               std::to_string(min) + " to " + std::to_string(max));
  return n;
}

Result<unsigned long long> Args::get_size(const std::string& name,
                                          unsigned long long fallback) const {
  auto v = get(name);
  if (!v) return fallback;
  std::string s = *v;
  unsigned long long mult = 1;
  if (!s.empty()) {
    char c = s.back();
    if (c == 'K' || c == 'k') mult = 1ull << 10;
    if (c == 'M' || c == 'm') mult = 1ull << 20;
    if (c == 'G' || c == 'g') mult = 1ull << 30;
    if (mult != 1) s.pop_back();
  }
  unsigned long long n = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size() || n == 0 || n > (~0ull) / mult)
    return make_error(Errc::usage,
                      "option '--" + name + "': '" + *v + "' is not a size (e.g. 4M, 65536)");
  return n * mult;
}

std::string format_options(const std::vector<OptionSpec>& specs) {
  std::string out;
  for (const auto& s : specs) {
    std::string left = "  --" + s.name;
    auto sp = s.help.find("  ");
    std::string arg = s.takes_value && sp != std::string::npos ? " " + s.help.substr(0, sp) : "";
    std::string text = sp != std::string::npos ? s.help.substr(sp + 2) : s.help;
    left += arg;
    if (left.size() < 30)
      left.resize(30, ' ');
    else
      left += "  ";
    out += left + text + "\n";
  }
  return out;
}

std::string human_bytes(unsigned long long b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u ? "%.1f %s" : "%.0f %s", v, units[u]);
  return buf;
}

}  // namespace abup
