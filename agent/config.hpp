// abup.conf: systemd-style INI (`[Section]`, `Key=value`, `#`/`;` comments), read from
// <root>/etc/abup/abup.conf (or --config) and then the drop-ins abup.conf.d/*.conf in lexical
// order, later values overriding earlier ones. Every key has a default; a malformed value, an
// unknown section or an unknown key is an error naming the file, line and setting.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "abup/result.hpp"
#include "agent/vocabulary.hpp"
#include "update-protocol/http/client.hpp"

namespace abup::agent {

inline constexpr std::string_view kFlatcarAppId = "{e96281a6-d1af-4bde-9a0a-97b76e56dc57}";

struct Config {
  // [Update]
  Mode mode = Mode::autonomous;
  std::string server;  // full Omaha endpoint URL; empty: no update checks
  std::string app_id{kFlatcarAppId};
  std::string track = "stable";
  bool machine_id_hashed = true;             // MachineID=hashed (Microsoft's agent) | raw (Flatcar)
  std::chrono::seconds first_check{7 * 60};  // FirstCheck=: after start, +- CheckJitter
  std::chrono::seconds check_interval{45 * 60};
  std::chrono::seconds check_jitter{5 * 60};
  std::chrono::seconds max_backoff{4 * 3600};   // errors and 5xx double the interval up to this
  std::vector<std::filesystem::path> keyrings;  // default: usr/share/abup/keys.d, etc/abup/keys.d
  int signature_threshold = 1;
  BootBackend boot_backend = BootBackend::gptprio;
  // [Network]
  std::string proxy;  // empty: the usual environment variables
  std::string ca_file, client_cert, client_key;
  bool allow_http = false;
  // A dead or stalled server fails within these, per attempt (named in the error when hit).
  std::chrono::seconds connect_timeout{30};  // ConnectTimeoutSec=
  std::size_t max_ranges_per_request = 16;   // MaxRangesPerRequest= (1: one range per request)
  long low_speed_limit = 1024;               // LowSpeedLimitBytes= (bytes/s; 0: no limit)
  std::chrono::seconds low_speed_time{30};   // LowSpeedTimeSec=
  // Retries= (0-20): attempts after a transient failure (connect, reset, stall, 5xx, 408/429),
  // with jittered exponential backoff; a request that made progress starts counting again.
  int retries = 6;
  // [Stage]
  unsigned workers = 0;
  std::uint64_t memory_limit = 4 << 20;  // MemoryLimitMiB=
  bool reuse = true;
  // [Boot]
  std::filesystem::path grubenv;  // empty: ROOT/boot/grub/grubenv
  // uefi: per slot ('A', 'B'), the loader on the ESP its Boot#### entry names (UefiLoaderA=,
  // default \EFI\acl\usr-a.efi) and the load option's optional data, the kernel command line
  // of an EFI-stub kernel (UefiCmdlineA=, default none: a UKI carries its own).
  std::map<char, std::string> uefi_loader, uefi_cmdline;
  // systemd-boot: per slot, its boot loader entry id (LoaderEntryA=, LoaderEntryB=): the UKI's
  // file name in ESP/EFI/Linux/; unset: acl-usr-a.efi, acl-usr-b.efi.
  std::map<char, std::string> loader_entry;
  // Boot files (agent/boot_files): ESP= mount point (default: found by partition type in
  // mountinfo); RequireBootFiles= yes | no | auto (auto: gptprio, uefi, systemd-boot require an
  // image to carry boot files); BootFilePath.NAME= ESP-relative path template, %s = slot letter.
  std::filesystem::path esp;
  std::optional<bool> require_boot_files;  // nullopt = auto (the default)
  std::map<std::string, std::string> boot_file_paths;
  // [Reboot]
  RebootStrategy reboot_strategy = RebootStrategy::immediate;
  std::string reboot_window;  // "DAYS HH:MM LENGTH [TZ]", e.g. "Mon..Fri 02:00 3h UTC"
  std::string fleetlock_url;  // base URL; /v1/pre-reboot and /v1/steady-state are appended
  std::string fleetlock_group = "default";
  std::string reboot_command;  // run instead of asking logind (sh -c)
  // [Kubernetes]
  std::filesystem::path kubeconfig = "/var/lib/kubelet/kubeconfig";
  std::string node_name;  // empty: the lowercased host name
  std::string annotation_prefix = "acl.azure.com";
  std::chrono::seconds heartbeat{60};  // InProgress refresh
  // [Health] (autonomous mode: gates the commit after a reboot)
  std::vector<std::string> health_units;     // must be active
  std::vector<std::string> health_commands;  // sh -c, must exit 0 within health_timeout
  std::chrono::seconds health_timeout{60};
  // [Metrics]
  std::filesystem::path metrics_textfile;  // empty: no textfile (node-exporter collector)
  std::string metrics_listen;              // empty: no endpoint; e.g. 127.0.0.1:9478
  // [Security]
  bool require_expiry = false;  // RequireExpiry=: refuse a signed manifest without expiresAt
};

// Loads `path` and its drop-in directory. A missing `path` gives the defaults, or with
// must_exist (an explicit --config) an error. Unknown sections and keys are Errc::usage errors
// naming the file, line and the nearest known name: a typo in a security setting must not leave
// its default in force. Section and key names are case-sensitive, as systemd's. Paths in values
// are taken as they are; keyring defaults are resolved under `root`.
[[nodiscard]] Result<Config> load_config(const std::filesystem::path& path,
                                         const std::filesystem::path& root,
                                         bool must_exist = false);
// [Network] as the options of every outbound request, the one place that maps it: the daemon adds
// its cancel flag, the CLI its command-line overrides, aks mode its kubeconfig's credentials.
[[nodiscard]] protocol::TransportOptions network_transport(const Config& config);
// Every setting the loader understands, as "Section.Key" (e.g. "Update.Mode").
[[nodiscard]] const std::vector<std::string>& known_config_keys();
// "yes/no, true/false, on/off, 1/0" as systemd spells them.
[[nodiscard]] Result<bool> parse_bool(std::string_view text);
// A systemd-boot entry id ([Boot] LoaderEntryA|B=): a file name in EFI/Linux/ ending in .efi.
[[nodiscard]] Status check_loader_entry(std::string_view id);
// A systemd time span: "90", "90s", "5min", "1h 30min", "2d" (a bare number is seconds).
[[nodiscard]] Result<std::chrono::seconds> parse_timespan(std::string_view text);

}  // namespace abup::agent
