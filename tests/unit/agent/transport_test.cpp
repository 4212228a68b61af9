// [Network] reaches every outbound request: the daemon's (both modes) and the CLI's, whose
// command-line options override it.
#include <doctest/doctest.h>

#include "abup/fs.hpp"
#include "agent/cli/common.hpp"
#include "agent/config.hpp"
#include "agent/daemon/autonomous.hpp"
#include "agent/daemon/cancel.hpp"
#include "support/util.hpp"

using namespace abup;
using namespace abup::agent;
using abup::test::TempDir;

namespace {

// Every [Network] setting away from its default.
Config network_config(const TempDir& dir) {
  auto path = dir.path() / "abup.conf";
  REQUIRE(
      atomic_write_file(path,
                        "[Network]\nProxy=http://proxy.example:3128\nCAFile=/etc/ca.pem\n"
                        "ClientCertificate=/etc/cert.pem\nClientKey=/etc/key.pem\nAllowHTTP=yes\n"
                        "ConnectTimeoutSec=7\nLowSpeedLimitBytes=99\nLowSpeedTimeSec=11\n"
                        "MaxRangesPerRequest=3\nRetries=4\n"));
  auto cfg = load_config(path, dir.path());
  REQUIRE_MESSAGE(cfg, (cfg ? "" : cfg.error().message));
  return *cfg;
}

void check_network(const protocol::TransportOptions& t) {
  CHECK(t.proxy == "http://proxy.example:3128");
  CHECK(t.ca_file == "/etc/ca.pem");
  CHECK(t.client_cert == "/etc/cert.pem");
  CHECK(t.client_key == "/etc/key.pem");
  CHECK(t.allow_http);
  CHECK(t.connect_timeout == std::chrono::seconds(7));
  CHECK(t.low_speed_limit == 99);
  CHECK(t.low_speed_time == std::chrono::seconds(11));
  CHECK(t.max_ranges_per_request == 3);
  CHECK(t.max_retries == 4);
}

}  // namespace

TEST_CASE("transport: the daemon's requests carry every [Network] setting and its cancel flag") {
  TempDir dir;
  const Config cfg = network_config(dir);
  daemon::Canceller cancel;
  auto t = daemon::daemon_transport(cfg, cancel);
  check_network(t);
  CHECK(t.cancel == cancel.flag());
}

TEST_CASE("transport: the CLI's requests carry [Network], command-line options override it") {
  TempDir dir;
  const Config cfg = network_config(dir);
  auto none = Args::parse({}, agent::cli::transport_options());
  REQUIRE(none);
  check_network(agent::cli::transport(*none, cfg));

  auto args = Args::parse({"--ca-file", "/cli/ca.pem", "--client-cert", "/cli/cert.pem",
                           "--client-key", "/cli/key.pem"},
                          agent::cli::transport_options());
  REQUIRE(args);
  auto t = agent::cli::transport(*args, cfg);
  CHECK(t.ca_file == "/cli/ca.pem");
  CHECK(t.client_cert == "/cli/cert.pem");
  CHECK(t.client_key == "/cli/key.pem");
  CHECK(t.max_ranges_per_request == 3);
  CHECK(t.proxy == "http://proxy.example:3128");

  auto flag = Args::parse({"--allow-http"}, agent::cli::transport_options());
  REQUIRE(flag);
  CHECK(agent::cli::transport(*flag, Config{}).allow_http);
  CHECK_FALSE(agent::cli::transport(*none, Config{}).allow_http);
}
