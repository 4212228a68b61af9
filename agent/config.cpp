#include "agent/config.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <string_view>

#include "abup/fs.hpp"
#include "agent/daemon/window.hpp"

namespace abup::agent {
namespace {

std::string trim(std::string_view s) {
  auto b = s.find_first_not_of(" \t\r");
  if (b == s.npos) return {};
  auto e = s.find_last_not_of(" \t\r");
  return std::string(s.substr(b, e - b + 1));
}

// Every setting, as "Section.Key": the one list the loader checks names against (Loader::apply
// handles each; config_test proves the shipped abup.conf sets every one of them).
const std::vector<std::string> kKnownKeys = {
    "Update.Mode",
    "Update.Server",
    "Update.AppId",
    "Update.Track",
    "Update.MachineID",
    "Update.FirstCheck",
    "Update.CheckInterval",
    "Update.CheckJitter",
    "Update.MaxBackoff",
    "Update.Keyring",
    "Update.SignatureThreshold",
    "Update.BootBackend",
    "Network.Proxy",
    "Network.CAFile",
    "Network.ClientCertificate",
    "Network.ClientKey",
    "Network.AllowHTTP",
    "Network.ConnectTimeoutSec",
    "Network.LowSpeedLimitBytes",
    "Network.LowSpeedTimeSec",
    "Network.MaxRangesPerRequest",
    "Network.Retries",
    "Stage.Workers",
    "Stage.MemoryLimitMiB",
    "Stage.Reuse",
    "Boot.GrubEnv",
    "Boot.UefiLoaderA",
    "Boot.UefiLoaderB",
    "Boot.UefiCmdlineA",
    "Boot.UefiCmdlineB",
    "Boot.LoaderEntryA",
    "Boot.LoaderEntryB",
    "Boot.ESP",
    "Boot.RequireBootFiles",
    "Reboot.Strategy",
    "Reboot.Window",
    "Reboot.FleetLockURL",
    "Reboot.FleetLockGroup",
    "Reboot.Command",
    "Kubernetes.Kubeconfig",
    "Kubernetes.NodeName",
    "Kubernetes.AnnotationPrefix",
    "Kubernetes.Heartbeat",
    "Health.Units",
    "Health.Command",
    "Health.Timeout",
    "Metrics.Textfile",
    "Metrics.Listen",
    "Security.RequireExpiry",
};

std::string section_of(const std::string& id) {
  return id.substr(0, id.find('.'));
}
std::string key_of(const std::string& id) {
  return id.substr(id.find('.') + 1);
}

bool known_section(const std::string& section) {
  return std::any_of(kKnownKeys.begin(), kKnownKeys.end(),
                     [&](const std::string& id) { return section_of(id) == section; });
}

// Levenshtein distance, ignoring case: "update" and "Updates" are one typo from "Update".
std::size_t distance(std::string_view a, std::string_view b) {
  auto low = [](char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); };
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t up = row[j];
      row[j] =
          std::min({row[j] + 1, row[j - 1] + 1, diag + (low(a[i - 1]) == low(b[j - 1]) ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// The candidate nearest to `name`, when near enough to be a likely typo; else empty.
std::string nearest(const std::string& name, const std::vector<std::string>& candidates) {
  std::string best;
  std::size_t best_d = std::max<std::size_t>(2, name.size() / 3) + 1;
  for (const auto& c : candidates)
    if (auto d = distance(name, c); d < best_d) {
      best_d = d;
      best = c;
    }
  return best;
}

std::string unknown_section(const std::string& section) {
  std::vector<std::string> sections;
  for (const auto& id : kKnownKeys)
    if (std::find(sections.begin(), sections.end(), section_of(id)) == sections.end())
      sections.push_back(section_of(id));
  std::string msg = "unknown section [" + section + "]";
  if (auto n = nearest(section, sections); !n.empty()) msg += " (did you mean [" + n + "]?)";
  return msg;
}

std::string unknown_key(const std::string& section, const std::string& key) {
  std::string msg = "unknown setting '" + key + "' in [" + section + "]";
  std::vector<std::string> here, elsewhere;
  for (const auto& id : kKnownKeys) (section_of(id) == section ? here : elsewhere).push_back(id);
  std::vector<std::string> here_keys;
  for (const auto& id : here) here_keys.push_back(key_of(id));
  if (auto n = nearest(key, here_keys); !n.empty()) return msg + " (did you mean " + n + "?)";
  // The right name in the wrong section (or nearly so): say where it belongs.
  for (const auto& id : elsewhere)
    if (key_of(id) == key) return msg + " (it belongs in [" + section_of(id) + "])";
  std::vector<std::string> other_keys;
  for (const auto& id : elsewhere) other_keys.push_back(key_of(id));
  if (auto n = nearest(key, other_keys); !n.empty())
    for (const auto& id : elsewhere)
      if (key_of(id) == n) return msg + " (did you mean [" + section_of(id) + "] " + n + "?)";
  return msg;
}

struct Loader {
  Config& cfg;
  bool keyrings_set = false;

  Status apply(const std::string& where, const std::string& section, const std::string& key,
               const std::string& value) {
    auto bad = [&](const std::string& why) {
      return make_error(Errc::usage,
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
    auto as_bool = [&](bool& out) -> Status {
      auto b = parse_bool(value);
      if (!b) return bad("expected yes or no");
      out = *b;
      return {};
    };
    auto as_span = [&](std::chrono::seconds& out, std::chrono::seconds min) -> Status {
      auto t = parse_timespan(value);
      if (!t) return bad(t.error().message);
      if (*t < min) return bad("must be at least " + std::to_string(min.count()) + "s");
      out = *t;
      return {};
    };
    auto as_url = [&](std::string& out, bool allow_empty) -> Status {
      if (value.empty() ? !allow_empty
                        : value.rfind("https://", 0) != 0 && value.rfind("http://", 0) != 0)
        return bad("expected an http:// or https:// URL");
      out = value;
      return {};
    };
    auto as_word = [&](auto& out, auto parse) -> Status {
      auto w = parse(value);
      if (!w) return bad(w.error().message);
      out = *w;
      return {};
    };
    // Repeatable list settings: each value appends; an empty value resets (systemd style).
    auto as_list = [&](std::vector<std::string>& out) {
      if (value.empty())
        out.clear();
      else
        out.push_back(value);
    };
    std::string id = section + "." + key;
    if (id == "Update.Mode") {
      ABUP_CHECK(as_word(cfg.mode, parse_mode));
    } else if (id == "Update.Server") {
      ABUP_CHECK(as_url(cfg.server, true));
    } else if (id == "Update.AppId") {
      if (value.empty()) return bad("must not be empty");
      cfg.app_id = value;
    } else if (id == "Update.Track") {
      if (value.empty()) return bad("must not be empty");
      cfg.track = value;
    } else if (id == "Update.MachineID") {
      if (value != "hashed" && value != "raw") return bad("expected hashed or raw");
      cfg.machine_id_hashed = value == "hashed";
    } else if (id == "Update.FirstCheck") {
      ABUP_CHECK(as_span(cfg.first_check, std::chrono::seconds(0)));
    } else if (id == "Update.CheckInterval") {
      ABUP_CHECK(as_span(cfg.check_interval, std::chrono::seconds(60)));
    } else if (id == "Update.CheckJitter") {
      ABUP_CHECK(as_span(cfg.check_jitter, std::chrono::seconds(0)));
    } else if (id == "Update.MaxBackoff") {
      ABUP_CHECK(as_span(cfg.max_backoff, std::chrono::seconds(60)));
    } else if (id == "Reboot.Strategy") {
      ABUP_CHECK(as_word(cfg.reboot_strategy, parse_reboot_strategy));
    } else if (id == "Reboot.Window") {
      // Empty: no window (as the default); Strategy=window then refuses to start without one.
      if (!value.empty())
        if (auto w = daemon::parse_reboot_window(value); !w) return bad(w.error().message);
      cfg.reboot_window = value;
    } else if (id == "Reboot.FleetLockURL") {
      ABUP_CHECK(as_url(cfg.fleetlock_url, true));
    } else if (id == "Reboot.FleetLockGroup") {
      if (value.empty()) return bad("must not be empty");
      cfg.fleetlock_group = value;
    } else if (id == "Kubernetes.Kubeconfig") {
      cfg.kubeconfig = value;
    } else if (id == "Kubernetes.NodeName") {
      cfg.node_name = value;
    } else if (id == "Kubernetes.AnnotationPrefix") {
      bool ok = !value.empty() && value.size() <= 253 && value.front() != '.' &&
                value.back() != '.' && value.front() != '-' && value.back() != '-';
      for (char c : value)
        ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.');
      if (!ok) return bad("expected a DNS subdomain such as acl.azure.com");
      cfg.annotation_prefix = value;
    } else if (id == "Kubernetes.Heartbeat") {
      ABUP_CHECK(as_span(cfg.heartbeat, std::chrono::seconds(1)));
    } else if (id == "Health.Units") {
      as_list(cfg.health_units);
    } else if (id == "Health.Command") {
      as_list(cfg.health_commands);
    } else if (id == "Health.Timeout") {
      ABUP_CHECK(as_span(cfg.health_timeout, std::chrono::seconds(1)));
    } else if (id == "Metrics.Textfile") {
      cfg.metrics_textfile = value;
    } else if (id == "Metrics.Listen") {
      cfg.metrics_listen = value;
    } else if (id == "Network.Proxy") {
      cfg.proxy = value;
    } else if (id == "Update.Keyring") {
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
      ABUP_CHECK(as_word(cfg.boot_backend, parse_boot_backend));
    } else if (id == "Boot.GrubEnv") {
      cfg.grubenv = value;
    } else if (id == "Boot.UefiLoaderA" || id == "Boot.UefiLoaderB") {
      if (value.empty()) {
        cfg.uefi_loader.erase(id.back());  // back to the backend's default
        return {};
      }
      if (value.front() != '\\')
        return bad(
            "expected a path on the ESP starting with a backslash, e.g. \\EFI\\acl\\usr-a.efi");
      cfg.uefi_loader[id.back()] = value;
    } else if (id == "Boot.UefiCmdlineA" || id == "Boot.UefiCmdlineB") {
      cfg.uefi_cmdline[id.back()] = value;
    } else if (id == "Boot.LoaderEntryA" || id == "Boot.LoaderEntryB") {
      if (value.empty()) {
        cfg.loader_entry.erase(id.back());  // back to acl-usr-a.efi / acl-usr-b.efi
        return {};
      }
      if (auto st = check_loader_entry(value); !st) return bad(st.error().message);
      const char other = id.back() == 'A' ? 'B' : 'A';
      if (auto it = cfg.loader_entry.find(other);
          it != cfg.loader_entry.end() && it->second == value)
        return bad(std::string("LoaderEntry") + other +
                   "= names the same entry; each slot needs its own");
      cfg.loader_entry[id.back()] = value;
    } else if (id == "Boot.ESP") {
      cfg.esp = value;
    } else if (id == "Boot.RequireBootFiles") {
      if (value == "auto") {
        cfg.require_boot_files.reset();
      } else {
        bool b = false;
        ABUP_CHECK(as_bool(b));
        cfg.require_boot_files = b;
      }
    } else if (id.starts_with("Boot.BootFilePath.")) {
      cfg.boot_file_paths[id.substr(18)] = value;
    } else if (id == "Reboot.Command") {
      cfg.reboot_command = value;
    } else if (id == "Network.CAFile") {
      cfg.ca_file = value;
    } else if (id == "Network.ClientCertificate") {
      cfg.client_cert = value;
    } else if (id == "Network.ClientKey") {
      cfg.client_key = value;
    } else if (id == "Network.AllowHTTP") {
      ABUP_CHECK(as_bool(cfg.allow_http));
    } else if (id == "Stage.Workers") {
      ABUP_TRY(auto n, as_int(0, 256));
      cfg.workers = static_cast<unsigned>(n);
    } else if (id == "Stage.MemoryLimitMiB") {
      ABUP_TRY(auto n, as_int(4, 4096));
      cfg.memory_limit = static_cast<std::uint64_t>(n) << 20;
    } else if (id == "Stage.Reuse") {
      ABUP_CHECK(as_bool(cfg.reuse));
    } else if (id == "Network.ConnectTimeoutSec") {
      ABUP_CHECK(as_span(cfg.connect_timeout, std::chrono::seconds(1)));
    } else if (id == "Network.LowSpeedLimitBytes") {
      ABUP_TRY(auto n, as_int(0, 1LL << 30));
      cfg.low_speed_limit = static_cast<long>(n);
    } else if (id == "Network.MaxRangesPerRequest") {
      ABUP_TRY(auto n, as_int(1, 256));
      cfg.max_ranges_per_request = static_cast<std::size_t>(n);
    } else if (id == "Network.Retries") {
      ABUP_TRY(auto n, as_int(0, 20));
      cfg.retries = static_cast<int>(n);
    } else if (id == "Network.LowSpeedTimeSec") {
      ABUP_CHECK(as_span(cfg.low_speed_time, std::chrono::seconds(1)));
    } else if (id == "Security.RequireExpiry") {
      ABUP_CHECK(as_bool(cfg.require_expiry));
    } else {
      // Fail closed: a misspelt SignatureThreshold= must not leave the default of 1 in force.
      return make_error(Errc::usage, where + ": " + unknown_key(section, key));
    }
    return {};
  }

  Status load_file(const std::filesystem::path& path, bool must_exist) {
    auto text = read_file(path);
    if (!text) {
      if (text.error().code == Errc::not_found && !must_exist) return {};
      if (text.error().code == Errc::not_found)
        return make_error(Errc::usage, "configuration " + path.string() + " does not exist");
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
          return make_error(Errc::usage, where + ": malformed section header '" + line + "'");
        section = line.substr(1, line.size() - 2);
        if (!known_section(section))
          return make_error(Errc::usage, where + ": " + unknown_section(section));
        continue;
      }
      auto eq = line.find('=');
      if (eq == std::string::npos)
        return make_error(Errc::usage, where + ": expected Key=value, got '" + line + "'");
      if (section.empty())
        return make_error(Errc::usage, where + ": setting outside of a [Section]");
      ABUP_CHECK(apply(where, section, trim(line.substr(0, eq)), trim(line.substr(eq + 1))));
    }
    return {};
  }
};

}  // namespace

Status check_loader_entry(std::string_view id) {
  auto fail = [&](const char* why) {
    return make_error(Errc::usage, std::string("systemd-boot entry id '") + std::string(id) + "' " +
                                       why +
                                       " (expected a UKI file name in EFI/Linux/ such as "
                                       "acl-usr-a.efi)");
  };
  if (id.empty()) return fail("is empty");
  if (id.find_first_of("/\\") != std::string_view::npos) return fail("is a path");
  if (id.front() == '.') return fail("starts with '.'");
  for (char c : id)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return fail("has a control character");
  std::string lower(id);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (lower.size() <= 4 || !lower.ends_with(".efi")) return fail("does not end in .efi");
  return {};
}

protocol::TransportOptions network_transport(const Config& config) {
  protocol::TransportOptions t;
  t.ca_file = config.ca_file;
  t.client_cert = config.client_cert;
  t.client_key = config.client_key;
  t.allow_http = config.allow_http;
  t.proxy = config.proxy;
  t.connect_timeout = config.connect_timeout;
  t.low_speed_limit = config.low_speed_limit;
  t.low_speed_time = config.low_speed_time;
  t.max_ranges_per_request = config.max_ranges_per_request;
  t.max_retries = config.retries;
  return t;
}

const std::vector<std::string>& known_config_keys() {
  return kKnownKeys;
}

Result<bool> parse_bool(std::string_view t) {
  if (t == "yes" || t == "true" || t == "on" || t == "1" || t == "y" || t == "t") return true;
  if (t == "no" || t == "false" || t == "off" || t == "0" || t == "n" || t == "f") return false;
  return make_error(Errc::usage, "'" + std::string(t) + "' is not a boolean");
}

Result<std::chrono::seconds> parse_timespan(std::string_view text) {
  static constexpr std::pair<std::string_view, long long> kUnits[] = {
      {"s", 1},       {"sec", 1},       {"second", 1},    {"seconds", 1}, {"m", 60},
      {"min", 60},    {"minute", 60},   {"minutes", 60},  {"h", 3600},    {"hr", 3600},
      {"hour", 3600}, {"hours", 3600},  {"d", 86400},     {"day", 86400}, {"days", 86400},
      {"w", 604800},  {"week", 604800}, {"weeks", 604800}};
  auto bad = [&] {
    return make_error(Errc::usage,
                      "'" + std::string(text) + "' is not a time span (e.g. 90s, 5min, 1h 30min)");
  };
  long long total = 0;
  std::size_t i = 0, terms = 0;
  while (true) {
    while (i < text.size() && text[i] == ' ') ++i;
    if (i == text.size()) break;
    long long n = 0;
    auto [p, ec] = std::from_chars(text.data() + i, text.data() + text.size(), n);
    if (ec != std::errc() || n < 0) return bad();
    i = static_cast<std::size_t>(p - text.data());
    while (i < text.size() && text[i] == ' ') ++i;
    std::size_t u = i;
    while (i < text.size() && text[i] >= 'a' && text[i] <= 'z') ++i;
    std::string_view unit = text.substr(u, i - u);
    long long mult = unit.empty() ? 1 : 0;
    for (const auto& [name, m] : kUnits)
      if (name == unit) mult = m;
    if (mult == 0 || n > (1LL << 40) / mult) return bad();
    total += n * mult;
    ++terms;
  }
  if (terms == 0) return bad();
  return std::chrono::seconds(total);
}

Result<Config> load_config(const std::filesystem::path& path, const std::filesystem::path& root,
                           bool must_exist) {
  Config cfg;
  cfg.keyrings = {root / "usr/share/abup/keys.d", root / "etc/abup/keys.d"};
  Loader l{cfg};
  ABUP_CHECK(l.load_file(path, must_exist));
  auto dropins = path;
  dropins += ".d";
  std::error_code ec;
  if (std::filesystem::is_directory(dropins, ec)) {
    std::vector<std::filesystem::path> files;
    for (const auto& e : std::filesystem::directory_iterator(dropins, ec))
      if (e.path().extension() == ".conf") files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const auto& f : files) ABUP_CHECK(l.load_file(f, true));
  }
  return cfg;
}

}  // namespace abup::agent
