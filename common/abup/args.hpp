// A small command-line parser shared by abup and abup-image: GNU-style long options
// (--name VALUE, --name=VALUE, flags), positionals, and errors that name the option.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "abup/result.hpp"

namespace abup {

struct OptionSpec {
  std::string name;  // without the dashes
  bool takes_value = true;
  bool repeatable = false;
  std::string help;  // "PATH  disk image or block device"
};

class Args {
 public:
  [[nodiscard]] static Result<Args> parse(const std::vector<std::string>& argv,
                                          const std::vector<OptionSpec>& specs);
  [[nodiscard]] bool has(const std::string& name) const { return values_.count(name) > 0; }
  [[nodiscard]] std::optional<std::string> get(const std::string& name) const;
  [[nodiscard]] std::string get_or(const std::string& name, std::string fallback) const;
  [[nodiscard]] std::vector<std::string> all(const std::string& name) const;
  [[nodiscard]] const std::vector<std::string>& positionals() const { return positionals_; }
  [[nodiscard]] Result<long long> get_int(const std::string& name, long long fallback,
                                          long long min, long long max) const;
  // Sizes with optional K/M/G suffix (binary).
  [[nodiscard]] Result<unsigned long long> get_size(const std::string& name,
                                                    unsigned long long fallback) const;

 private:
  std::multimap<std::string, std::string> values_;
  std::vector<std::string> positionals_;
};

[[nodiscard]] std::string format_options(const std::vector<OptionSpec>& specs);
[[nodiscard]] std::string human_bytes(unsigned long long bytes);

}  // namespace abup
