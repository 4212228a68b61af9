#include "agent/cli/common.hpp"

#include <cstdio>

namespace abup::agent::cli {

std::vector<OptionSpec> common_options() {
  return {
      {"disk", true, false, "PATH  disk image file or block device holding the slots"},
      {"root", true, false, "DIR  root of the running system's files (default /)"},
      {"state-dir", true, false, "DIR  abup's state (default ROOT/var/lib/abup)"},
      {"config", true, false, "PATH  configuration (default ROOT/etc/abup/abup.conf)"},
      {"help", false, false, "show this help"},
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

Result<Common> load_common(const Args& args) {
  Common c;
  c.root = args.get_or("root", "/");
  c.disk = args.get_or("disk", "");
  if (c.disk.empty())
    return make_error(Errc::invalid_input,
                      "--disk PATH is required (finding the boot disk by itself comes with the "
                      "boot lifecycle work)");
  c.state_dir = args.has("state-dir") ? std::filesystem::path(*args.get("state-dir"))
                                      : c.root / "var/lib/abup";
  auto cfg_path = args.has("config") ? std::filesystem::path(*args.get("config"))
                                     : c.root / "etc/abup/abup.conf";
  ABUP_TRY(c.config, load_config(cfg_path, c.root));
  return c;
}

protocol::TransportOptions transport(const Args& args, const Config& config) {
  protocol::TransportOptions t;
  t.ca_file = args.get_or("ca-file", config.ca_file);
  t.client_cert = args.get_or("client-cert", config.client_cert);
  t.client_key = args.get_or("client-key", config.client_key);
  t.allow_http = args.has("allow-http") || config.allow_http;
  return t;
}

int report(const Error& e) {
  std::fprintf(stderr, "abup: %s\n", e.message.c_str());
  return e.code == Errc::invalid_input ? 2 : 1;
}

}  // namespace abup::agent::cli
