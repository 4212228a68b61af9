#include "agent/config.hpp"

#include <algorithm>
#include <charconv>

#include "abup/fs.hpp"

namespace abup::agent {
namespace {

std::string trim(std::string_view s) {
  auto b = s.find_first_not_of(" \t\r");
  if (b == s.npos) return {};
  auto e = s.find_last_not_of(" \t\r");
  return std::string(s.substr(b, e - b + 1));
}

struct Loader {
  Config& cfg;
  bool keyrings_set = false;

  Status apply(const std::string& where, const std::string& section, const std::string& key,
               const std::string& value) {
    auto bad = [&](const std::string& why) {
      return make_error(Errc::invalid_input,
                        where + ": [" + section + "] " + key + "=" + value + ": " + why);
    };
    auto as_int = [&](long long min, long long max) -> Result<long long> {
      long long n = 0;
      auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc() || p != value.data() + value.size() || n < min || n > max)
        return bad("expected a whole number from " + std::to_string(min) + " to " +
                   std::to_string(max));
      return n;
    };
    std::string id = section + "." + key;
    if (id == "Update.Keyring") {
      if (!keyrings_set) cfg.keyrings.clear();
      keyrings_set = true;
      if (value.empty())
        cfg.keyrings.clear();  // systemd style: empty resets the list
      else
        cfg.keyrings.emplace_back(value);
    } else if (id == "Update.SignatureThreshold") {
      ABUP_TRY(auto n, as_int(1, 64));
      cfg.signature_threshold = static_cast<int>(n);
    } else if (id == "Update.BootBackend") {
      if (value != "gptprio" && value != "uefi" && value != "grubenv")
        return bad("expected gptprio, uefi or grubenv");
      cfg.boot_backend = value;
    } else if (id == "Boot.GrubEnv") {
      cfg.grubenv = value;
    } else if (id == "Reboot.Command") {
      cfg.reboot_command = value;
    } else if (id == "Network.CAFile") {
      cfg.ca_file = value;
    } else if (id == "Network.ClientCertificate") {
      cfg.client_cert = value;
    } else if (id == "Network.ClientKey") {
      cfg.client_key = value;
    } else if (id == "Network.AllowHTTP") {
      auto b = parse_bool(value);
      if (!b) return bad("expected yes or no");
      cfg.allow_http = *b;
    } else if (id == "Stage.Workers") {
      ABUP_TRY(auto n, as_int(0, 256));
      cfg.workers = static_cast<unsigned>(n);
    } else if (id == "Stage.MemoryLimitMiB") {
      ABUP_TRY(auto n, as_int(4, 4096));
      cfg.memory_limit = static_cast<std::uint64_t>(n) << 20;
    } else if (id == "Stage.Reuse") {
      auto b = parse_bool(value);
      if (!b) return bad("expected yes or no");
      cfg.reuse = *b;
    }
    // Unknown keys are accepted: configuration written for a newer abup must not stop an
    // older one from starting. (Later work: warn about them in the journal.)
    return {};
  }

  Status load_file(const std::filesystem::path& path) {
    auto text = read_file(path);
    if (!text) {
      if (text.error().code == Errc::not_found) return {};
      return std::move(text).error();
    }
    std::string section;
    std::size_t lineno = 0, pos = 0;
    while (pos <= text->size()) {
      auto nl = text->find('\n', pos);
      std::string line = trim(std::string_view(*text).substr(
          pos, nl == std::string::npos ? std::string::npos : nl - pos));
      pos = nl == std::string::npos ? text->size() + 1 : nl + 1;
      ++lineno;
      std::string where = path.string() + ":" + std::to_string(lineno);
      if (line.empty() || line[0] == '#' || line[0] == ';') continue;
      if (line.front() == '[') {
        if (line.back() != ']' || line.size() < 3)
          return make_error(Errc::invalid_input,
                            where + ": malformed section header '" + line + "'");
        section = line.substr(1, line.size() - 2);
        continue;
      }
      auto eq = line.find('=');
      if (eq == std::string::npos)
        return make_error(Errc::invalid_input, where + ": expected Key=value, got '" + line + "'");
      if (section.empty())
        return make_error(Errc::invalid_input, where + ": setting outside of a [Section]");
      ABUP_CHECK(apply(where, section, trim(line.substr(0, eq)), trim(line.substr(eq + 1))));
    }
    return {};
  }
};

}  // namespace

Result<bool> parse_bool(std::string_view t) {
  if (t == "yes" || t == "true" || t == "on" || t == "1" || t == "y" || t == "t") return true;
  if (t == "no" || t == "false" || t == "off" || t == "0" || t == "n" || t == "f") return false;
  return make_error(Errc::invalid_input, "'" + std::string(t) + "' is not a boolean");
}

Result<Config> load_config(const std::filesystem::path& path, const std::filesystem::path& root) {
  Config cfg;
  cfg.keyrings = {root / "usr/share/abup/keys.d", root / "etc/abup/keys.d"};
  Loader l{cfg};
  ABUP_CHECK(l.load_file(path));
  auto dropins = path;
  dropins += ".d";
  std::error_code ec;
  if (std::filesystem::is_directory(dropins, ec)) {
    std::vector<std::filesystem::path> files;
    for (const auto& e : std::filesystem::directory_iterator(dropins, ec))
      if (e.path().extension() == ".conf") files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const auto& f : files) ABUP_CHECK(l.load_file(f));
  }
  return cfg;
}

}  // namespace abup::agent
