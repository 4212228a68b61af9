#include "agent/cli/common.hpp"

#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "agent/daemon/process.hpp"
#include "agent/sysbus.hpp"
#include "partitions/slots.hpp"

namespace abup::agent::cli {

std::vector<OptionSpec> common_options() {
  return {
      {"disk", true, false,
       "PATH  disk image file or block device holding the slots (default: the boot disk)"},
      {"root", true, false, "DIR  root of the running system's files (default /)"},
      {"state-dir", true, false, "DIR  abup's state (default ROOT/var/lib/abup)"},
      {"config", true, false, "PATH  configuration (default ROOT/etc/abup/abup.conf)"},
  };
}

std::vector<OptionSpec> transport_options() {
  return {
      {"ca-file", true, false, "PATH  CA bundle for HTTPS"},
      {"client-cert", true, false, "PATH  client certificate (mTLS)"},
      {"client-key", true, false, "PATH  client key (mTLS)"},
      {"allow-http", false, false, "allow plain http:// sources"},
  };
}

std::vector<OptionSpec> backend_options() {
  return {
      {"boot-backend", true, false,
       "gptprio|grubenv|uefi  boot backend (default: [Update] BootBackend=, gptprio)"},
      {"grubenv", true, false,
       "PATH  GRUB environment block (grubenv; default [Boot] GrubEnv=, ROOT/boot/grub/grubenv)"},
  };
}

std::vector<OptionSpec> reboot_options() {
  return {
      {"reboot", false, false, "reboot once armed (the reboot command, else logind over D-Bus)"},
      {"reboot-command", true, false, "CMD  how to reboot (default: [Reboot] Command=)"},
  };
}

Result<LifecycleOptions> lifecycle_options(const Args& args, const Common& c) {
  LifecycleOptions o;
  o.disk = c.disk;
  o.root = c.root;
  o.state_dir = c.state_dir;
  o.backend = c.config.boot_backend;
  if (auto b = args.get("boot-backend")) {
    auto parsed = parse_boot_backend(*b);
    if (!parsed) return std::move(parsed).error().with_context("--boot-backend");
    o.backend = *parsed;
  }
  o.grubenv = args.has("grubenv") ? std::filesystem::path(*args.get("grubenv")) : c.config.grubenv;
  o.uefi_loader = c.config.uefi_loader;
  o.uefi_cmdline = c.config.uefi_cmdline;
  o.boot = boot_files_config(c.config, o.backend);
  o.boot.scratch = o.state_dir;
  return o;
}

int reboot_after_arming(const Args& args, const Config& config) {
  const std::string cmd = args.get_or("reboot-command", config.reboot_command);
  std::fflush(stdout);
  if (auto st = daemon::reboot_machine(cmd, [] { return reboot_via_logind(); }); !st) {
    std::fprintf(
        stderr, "abup: --reboot: %s; the slot stays armed: reboot the machine yourself%s\n",
        st.error().message.c_str(), cmd.empty() ? " (or configure [Reboot] Command=)" : "");
    return 1;
  }
  return 0;
}

void print_outcome(const Outcome& outcome, bool json) {
  for (const auto& w : outcome.warnings) std::fprintf(stderr, "abup: %s\n", w.c_str());
  if (json) {
    auto j = outcome_json(outcome);
    j["message"] = outcome.message;
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("%s\n", outcome.message.c_str());
  }
  std::fflush(stdout);
}

Result<Common> load_common(const Args& args, bool need_disk) {
  Common c;
  c.root = args.get_or("root", "/");
  c.disk = args.get_or("disk", "");
  if (c.disk.empty() && need_disk) {
    ABUP_TRY(c.disk, partitions::find_boot_disk(c.root));
  }
  c.state_dir = args.has("state-dir") ? std::filesystem::path(*args.get("state-dir"))
                                      : c.root / "var/lib/abup";
  auto cfg_path = args.has("config") ? std::filesystem::path(*args.get("config"))
                                     : c.root / "etc/abup/abup.conf";
  ABUP_TRY(c.config, load_config(cfg_path, c.root, args.has("config")));
  return c;
}

protocol::TransportOptions transport(const Args& args, const Config& config) {
  protocol::TransportOptions t = network_transport(config);
  t.ca_file = args.get_or("ca-file", t.ca_file);
  t.client_cert = args.get_or("client-cert", t.client_cert);
  t.client_key = args.get_or("client-key", t.client_key);
  t.allow_http = args.has("allow-http") || t.allow_http;
  return t;
}

int report(const Error& e, int status) {
  std::fprintf(stderr, "abup: %s\n", e.message.c_str());
  return status;
}

int report(const Error& e) {
  return abup::cli::report("abup", e);
}

}  // namespace abup::agent::cli
