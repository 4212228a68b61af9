// abup.conf: systemd-style INI (`[Section]`, `Key=value`, `#`/`;` comments), read from
// <root>/etc/abup/abup.conf (or --config) and then the drop-ins abup.conf.d/*.conf in lexical
// order, later values overriding earlier ones. Every key has a default; a malformed value is an
// error naming the file, line and setting.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "abup/result.hpp"

namespace abup::agent {

struct Config {
  // [Update]
  std::vector<std::filesystem::path> keyrings;  // default: usr/share/abup/keys.d, etc/abup/keys.d
  int signature_threshold = 1;
  std::string boot_backend = "gptprio";
  // [Network]
  std::string ca_file, client_cert, client_key;
  bool allow_http = false;
  // [Stage]
  unsigned workers = 0;
  std::uint64_t memory_limit = 16 << 20;
  bool reuse = true;
  // [Boot]
  std::filesystem::path grubenv;  // empty: ROOT/boot/grub/grubenv
  // [Reboot]
  std::string reboot_command;  // run by `finalize --reboot`/`rollback --reboot` (sh -c)
};

// Loads `path` (missing = defaults) and its drop-in directory. Paths in values are taken as
// they are; keyring defaults are resolved under `root`.
[[nodiscard]] Result<Config> load_config(const std::filesystem::path& path,
                                         const std::filesystem::path& root);
// "yes/no, true/false, on/off, 1/0" as systemd spells them.
[[nodiscard]] Result<bool> parse_bool(std::string_view text);

}  // namespace abup::agent
