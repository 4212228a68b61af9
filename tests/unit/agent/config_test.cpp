#include "agent/config.hpp"

#include <doctest/doctest.h>

#include <cctype>
#include <set>
#include <sstream>

#include "abup/fs.hpp"
#include "support/util.hpp"

using namespace abup;
using namespace abup::agent;
using abup::test::TempDir;

namespace {

Result<Config> load_text(const TempDir& dir, const std::string& text) {
  auto path = dir.path() / "abup.conf";
  REQUIRE(atomic_write_file(path, text));
  return load_config(path, dir.path());
}

}  // namespace

TEST_CASE("config: every setting has a default") {
  TempDir dir;
  auto cfg = load_config(dir.path() / "missing.conf", dir.path());
  REQUIRE(cfg);
  CHECK(cfg->mode == Mode::autonomous);
  CHECK(cfg->server.empty());
  CHECK(cfg->app_id == kFlatcarAppId);
  CHECK(cfg->track == "stable");
  CHECK(cfg->reboot_strategy == RebootStrategy::immediate);
  CHECK(cfg->annotation_prefix == "acl.azure.com");
  CHECK(cfg->kubeconfig == "/var/lib/kubelet/kubeconfig");
  CHECK(cfg->check_interval == std::chrono::minutes(45));
  REQUIRE(cfg->keyrings.size() == 2);
  CHECK(cfg->keyrings[0] == dir.path() / "usr/share/abup/keys.d");
}

TEST_CASE("config: the daemon's settings, drop-ins override in lexical order") {
  TempDir dir;
  std::filesystem::create_directories(dir.path() / "abup.conf.d");
  REQUIRE(atomic_write_file(dir.path() / "abup.conf.d/20-b.conf", "[Update]\nTrack=beta\n"));
  REQUIRE(atomic_write_file(dir.path() / "abup.conf.d/10-a.conf", "[Update]\nTrack=alpha\n"));
  REQUIRE(atomic_write_file(dir.path() / "abup.conf.d/ignored.txt", "[Update]\nTrack=x\n"));
  auto cfg = load_text(dir, R"(# comment
[Update]
Mode=aks
Server=https://nebraska.example.net/v1/update
AppId={b0ec8f0d-1c13-4bf4-9efd-ea54464a7098}
MachineID=raw
CheckInterval=1h 30min
[Reboot]
Strategy=fleetlock
FleetLockURL=http://127.0.0.1:8081
Window=Mon..Fri 02:00 3h UTC
[Kubernetes]
NodeName=aks-nodepool1-0
AnnotationPrefix=acl.example.com
[Health]
Units=containerd.service
Units=kubelet.service
Command=true
Timeout=2min
[Network]
AllowHTTP=yes
)");
  REQUIRE(cfg);
  CHECK(cfg->mode == Mode::aks);
  CHECK(cfg->server == "https://nebraska.example.net/v1/update");
  CHECK(cfg->app_id == "{b0ec8f0d-1c13-4bf4-9efd-ea54464a7098}");
  CHECK(cfg->track == "beta");
  CHECK_FALSE(cfg->machine_id_hashed);
  CHECK(cfg->check_interval == std::chrono::seconds(5400));
  CHECK(cfg->reboot_strategy == RebootStrategy::fleetlock);
  CHECK(cfg->fleetlock_url == "http://127.0.0.1:8081");
  CHECK(cfg->reboot_window == "Mon..Fri 02:00 3h UTC");
  CHECK(cfg->node_name == "aks-nodepool1-0");
  CHECK(cfg->annotation_prefix == "acl.example.com");
  CHECK(cfg->health_units == std::vector<std::string>{"containerd.service", "kubelet.service"});
  CHECK(cfg->health_commands == std::vector<std::string>{"true"});
  CHECK(cfg->health_timeout == std::chrono::minutes(2));
  CHECK(cfg->allow_http);
}

TEST_CASE("config: a malformed value names the file, line and setting") {
  TempDir dir;
  struct Case {
    std::string text, expect;
  };
  for (const auto& c : std::vector<Case>{
           {"[Update]\nMode=standalone\n", "abup.conf:2: [Update] Mode=standalone: expected aks"},
           {"[Update]\n\nServer=nebraska/v1\n", "abup.conf:3: [Update] Server=nebraska/v1"},
           {"[Reboot]\nStrategy=later\n", "Strategy=later: expected off, immediate"},
           {"[Update]\nBootBackend=systemd_boot\n",
            "abup.conf:2: [Update] BootBackend=systemd_boot: expected gptprio, grubenv, uefi or "
            "systemd-boot, got 'systemd_boot'"},
           {"[Update]\nCheckInterval=10 parsecs\n", "CheckInterval=10 parsecs: '10 parsecs'"},
           {"[Update]\nCheckInterval=5s\n", "must be at least 60s"},
           {"[Kubernetes]\nAnnotationPrefix=ACL.Azure.com\n", "expected a DNS subdomain"},
           {"[Network]\nAllowHTTP=maybe\n", "AllowHTTP=maybe: expected yes or no"},
           {"[Update]\nMachineID=uuid\n", "expected hashed or raw"},
           {"Mode=aks\n", "abup.conf:1: setting outside of a [Section]"},
       }) {
    CAPTURE(c.text);
    auto cfg = load_text(dir, c.text);
    REQUIRE_FALSE(cfg);
    CHECK(cfg.error().code == Errc::usage);
    CHECK(cfg.error().message.find(c.expect) != std::string::npos);
  }
}

TEST_CASE("config: unknown sections and keys are errors naming the file, line and nearest name") {
  // Each of these once left SignatureThreshold at 1 and staged a single-signed image.
  TempDir dir;
  const std::string f = (dir.path() / "abup.conf").string();
  struct Case {
    std::string text, expect;
  };
  for (const auto& c : std::vector<Case>{
           {"[Update]\nSignatureTreshold=2\n",
            f + ":2: unknown setting 'SignatureTreshold' in [Update] (did you mean "
                "SignatureThreshold?)"},
           {"[update]\nSignatureThreshold=2\n",
            f + ":1: unknown section [update] (did you mean [Update]?)"},
           {"# x\n[Updates]\nSignatureThreshold=2\n",
            f + ":2: unknown section [Updates] (did you mean [Update]?)"},
           {"[Network]\nSignatureThreshold=2\n",
            f + ":2: unknown setting 'SignatureThreshold' in [Network] (it belongs in [Update])"},
           {"[Network]\nSignatureTreshold=2\n",
            f + ":2: unknown setting 'SignatureTreshold' in [Network] (did you mean [Update] "
                "SignatureThreshold?)"},
           {"[Update]\nsignaturethreshold=2\n",
            f + ":2: unknown setting 'signaturethreshold' in [Update] (did you mean "
                "SignatureThreshold?)"},
           {"[Update]\nFrobnicate=yes\n", f + ":2: unknown setting 'Frobnicate' in [Update]"},
           {"[Zeppelin]\n", f + ":1: unknown section [Zeppelin]"},
       }) {
    CAPTURE(c.text);
    auto cfg = load_text(dir, c.text);
    REQUIRE_FALSE(cfg);
    CHECK(cfg.error().code == Errc::usage);
    CHECK(cfg.error().message == c.expect);
  }
}

TEST_CASE("config: drop-ins are held to the same rules") {
  TempDir dir;
  std::filesystem::create_directories(dir.path() / "abup.conf.d");
  auto dropin = dir.path() / "abup.conf.d/50-keys.conf";
  REQUIRE(atomic_write_file(dropin, "[Update]\nSignatureThreshold=2\n[Updates]\n"));
  auto cfg = load_text(dir, "[Update]\nTrack=stable\n");
  REQUIRE_FALSE(cfg);
  CHECK(cfg.error().code == Errc::usage);
  CHECK(cfg.error().message ==
        dropin.string() + ":3: unknown section [Updates] (did you mean [Update]?)");
}

TEST_CASE("config: an explicit configuration file must exist, the default one may be absent") {
  TempDir dir;
  auto missing = dir.path() / "nonexistent.conf";
  auto cfg = load_config(missing, dir.path(), true);
  REQUIRE_FALSE(cfg);
  CHECK(cfg.error().code == Errc::usage);
  CHECK(cfg.error().message == "configuration " + missing.string() + " does not exist");
  CHECK(load_config(missing, dir.path(), false));
}

TEST_CASE("config: [Network] timeouts bound a dead server") {
  TempDir dir;
  auto def = load_config(dir.path() / "missing.conf", dir.path());
  REQUIRE(def);
  CHECK(def->connect_timeout == std::chrono::seconds(30));
  CHECK(def->low_speed_limit == 1024);
  CHECK(def->low_speed_time == std::chrono::seconds(30));
  auto cfg = load_text(dir,
                       "[Network]\nConnectTimeoutSec=5\nLowSpeedLimitBytes=0\n"
                       "LowSpeedTimeSec=2min\n");
  REQUIRE_MESSAGE(cfg, (cfg ? "" : cfg.error().message));
  CHECK(cfg->connect_timeout == std::chrono::seconds(5));
  CHECK(cfg->low_speed_limit == 0);
  CHECK(cfg->low_speed_time == std::chrono::minutes(2));
  auto bad = load_text(dir, "[Network]\nConnectTimeoutSec=0\n");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message.find("ConnectTimeoutSec=0: must be at least 1s") != std::string::npos);
  bad = load_text(dir, "[Network]\nLowSpeedLimitBytes=-1\n");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message.find("LowSpeedLimitBytes=-1: expected a whole number") !=
        std::string::npos);
}

TEST_CASE("config: time spans in systemd's spelling") {
  CHECK(parse_timespan("90").value() == std::chrono::seconds(90));
  CHECK(parse_timespan("90s").value() == std::chrono::seconds(90));
  CHECK(parse_timespan("5min").value() == std::chrono::minutes(5));
  CHECK(parse_timespan("1h 30min").value() == std::chrono::minutes(90));
  CHECK(parse_timespan("2d").value() == std::chrono::hours(48));
  CHECK_FALSE(parse_timespan(""));
  CHECK_FALSE(parse_timespan("min"));
  CHECK_FALSE(parse_timespan("-5s"));
  CHECK_FALSE(parse_timespan("5 lightyears"));
  CHECK_FALSE(parse_timespan("99999999999999w"));
}

TEST_CASE("config: the shipped abup.conf lists every known key with its default") {
  auto text = test::read_file(test::source_dir() / "packaging/abup.conf");
  // Uncomment the "#Key=value" lines: what the file documents as the defaults.
  std::string active, section;
  std::set<std::string> listed;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.size() > 2 && line[0] == '[') section = line.substr(1, line.size() - 2);
    if (line.size() > 1 && line[0] == '#' && std::isupper(static_cast<unsigned char>(line[1])) &&
        line.find('=') != std::string::npos && line.find(' ') > line.find('=')) {
      line = line.substr(1);
      listed.insert(section + "." + line.substr(0, line.find('=')));
    }
    active += line + "\n";
  }
  std::set<std::string> known(known_config_keys().begin(), known_config_keys().end());
  CHECK(listed == known);
  CHECK(known.size() == known_config_keys().size());

  TempDir dir;
  auto cfg = load_text(dir, active);
  REQUIRE_MESSAGE(cfg, (cfg ? "" : cfg.error().message));
  auto def = load_config(dir.path() / "missing.conf", dir.path());
  REQUIRE(def);
  CHECK(cfg->mode == def->mode);
  CHECK(cfg->server == def->server);
  CHECK(cfg->app_id == def->app_id);
  CHECK(cfg->track == def->track);
  CHECK(cfg->machine_id_hashed == def->machine_id_hashed);
  CHECK(cfg->first_check == def->first_check);
  CHECK(cfg->check_interval == def->check_interval);
  CHECK(cfg->check_jitter == def->check_jitter);
  CHECK(cfg->max_backoff == def->max_backoff);
  CHECK(cfg->signature_threshold == def->signature_threshold);
  CHECK(cfg->boot_backend == def->boot_backend);
  CHECK(cfg->allow_http == def->allow_http);
  CHECK(cfg->workers == def->workers);
  CHECK(cfg->memory_limit == def->memory_limit);
  CHECK(cfg->reuse == def->reuse);
  CHECK(cfg->reboot_strategy == def->reboot_strategy);
  CHECK(cfg->fleetlock_group == def->fleetlock_group);
  CHECK(cfg->kubeconfig == def->kubeconfig);
  CHECK(cfg->annotation_prefix == def->annotation_prefix);
  CHECK(cfg->heartbeat == def->heartbeat);
  CHECK(cfg->health_timeout == def->health_timeout);
  CHECK(cfg->metrics_listen == def->metrics_listen);
  CHECK(cfg->connect_timeout == def->connect_timeout);
  CHECK(cfg->low_speed_limit == def->low_speed_limit);
  CHECK(cfg->low_speed_time == def->low_speed_time);
  CHECK(cfg->require_expiry == def->require_expiry);
}

TEST_CASE("config: [Security] RequireExpiry= is off by default, a bad value names the key") {
  TempDir dir;
  auto def = load_config(dir.path() / "missing.conf", dir.path());
  REQUIRE(def);
  CHECK_FALSE(def->require_expiry);
  auto cfg = load_text(dir, "[Security]\nRequireExpiry=yes\n");
  REQUIRE_MESSAGE(cfg, (cfg ? "" : cfg.error().message));
  CHECK(cfg->require_expiry);
  auto bad = load_text(dir, "[Security]\nRequireExpiry=always\n");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message.find("RequireExpiry=always") != std::string::npos);
  bad = load_text(dir, "[Security]\nRequireExpires=yes\n");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message.find("RequireExpiry") != std::string::npos);
}

TEST_CASE("config: the shipped abup.conf loads as it is") {
  TempDir dir;
  auto path = dir.path() / "abup.conf";
  REQUIRE(atomic_write_file(path, test::read_file(test::source_dir() / "packaging/abup.conf")));
  auto cfg = load_config(path, dir.path(), true);
  REQUIRE_MESSAGE(cfg, (cfg ? "" : cfg.error().message));
}

TEST_CASE("config: uefi loaders and command lines per slot") {
  TempDir dir;
  auto cfg = load_text(dir,
                       "[Boot]\nUefiLoaderA=\\EFI\\acl\\a.efi\nUefiCmdlineA=console=ttyS0 "
                       "mount.usr=PARTUUID=7130c94a\nUefiCmdlineB=quiet\n");
  REQUIRE(cfg);
  CHECK(cfg->uefi_loader.at('A') == "\\EFI\\acl\\a.efi");
  CHECK(cfg->uefi_loader.count('B') == 0);  // the backend's default \EFI\acl\usr-b.efi
  CHECK(cfg->uefi_cmdline.at('A') == "console=ttyS0 mount.usr=PARTUUID=7130c94a");
  CHECK(cfg->uefi_cmdline.at('B') == "quiet");
  auto bad = load_text(dir, "[Boot]\nUefiLoaderB=EFI/acl/b.efi\n");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message.find("abup.conf:2: [Boot] UefiLoaderB=EFI/acl/b.efi: expected a path "
                                 "on the ESP") != std::string::npos);
}

TEST_CASE("config: [Boot] ESP=, RequireBootFiles= yes|no|auto, BootFilePath.NAME=") {
  TempDir dir;
  auto cfg =
      load_text(dir, "[Boot]\nESP=/boot\nRequireBootFiles=auto\nBootFilePath.uki=EFI/x-%s.efi\n");
  REQUIRE_MESSAGE(cfg.has_value(), (cfg ? "" : cfg.error().message));
  CHECK(cfg->esp == "/boot");
  CHECK_FALSE(cfg->require_boot_files.has_value());
  CHECK(cfg->boot_file_paths.at("uki") == "EFI/x-%s.efi");
  auto yes = load_text(dir, "[Boot]\nRequireBootFiles=yes\n");
  REQUIRE(yes.has_value());
  CHECK(yes->require_boot_files == std::optional<bool>(true));
  auto bad = load_text(dir, "[Boot]\nRequireBootFiles=sometimes\n");
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().message.find("RequireBootFiles=sometimes") != std::string::npos);
}

TEST_CASE("config: [Boot] LoaderEntryA|B= are systemd-boot entry ids: a .efi file name each") {
  TempDir dir;
  auto cfg = load_text(dir, "[Boot]\nLoaderEntryA=acl-a.efi\nLoaderEntryB=ACL-B.EFI\n");
  REQUIRE_MESSAGE(cfg.has_value(), (cfg ? "" : cfg.error().message));
  CHECK(cfg->loader_entry.at('A') == "acl-a.efi");
  CHECK(cfg->loader_entry.at('B') == "ACL-B.EFI");
  auto reset = load_text(dir, "[Boot]\nLoaderEntryA=acl-a.efi\nLoaderEntryA=\n");
  REQUIRE(reset.has_value());
  CHECK(reset->loader_entry.count('A') == 0);  // back to acl-usr-a.efi
  const std::pair<const char*, const char*> bad[] = {
      {"LoaderEntryA=EFI/Linux/a.efi", "is a path"},
      {"LoaderEntryB=EFI\\Linux\\b.efi", "is a path"},
      {"LoaderEntryA=acl-a.conf", "does not end in .efi"},
      {"LoaderEntryA=.efi", "starts with '.'"},
      {"LoaderEntryA=x.efi\nLoaderEntryB=x.efi", "names the same entry"},
  };
  for (const auto& [text, why] : bad) {
    CAPTURE(text);
    auto r = load_text(dir, std::string("[Boot]\n") + text + "\n");
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().message.find(why) != std::string::npos);
    CHECK(r.error().message.find("[Boot] LoaderEntry") != std::string::npos);
  }
}
