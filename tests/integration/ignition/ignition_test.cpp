// ignition-configs/: each .ign validates against the Ignition 3.4 schema and says what its .bu
// says (check_ignition.py), and every abup configuration file a config writes loads with abup's
// own loader and uses only keys the loader knows.
#include <doctest/doctest.h>

#include <algorithm>
#include <set>
#include <sstream>

#include "agent/config.hpp"
#include "support/util.hpp"

namespace fs = std::filesystem;
using namespace abup;
using namespace abup::test;

namespace {

const char* const kConfigs[] = {"aks-node-pool", "aci-host", "fleetlock", "custom-server",
                                "updates-disabled"};

bool have_python_modules() {
  if (run("python3 -c 'import jsonschema, yaml'").exit_code == 0) return true;
  MESSAGE("SKIPPED: python3-jsonschema / python3-yaml not installed (tools/setup installs them)");
  return false;
}

std::string checker(const std::string& args) {
  return "python3 " +
         shell_quote((source_dir() / "tests/integration/ignition/check_ignition.py").string()) +
         " --schema " +
         shell_quote((source_dir() / "tests/data/ignition/ignition-3.4.schema.json").string()) +
         " " + args;
}

// "Section.Key" of every setting in an INI file, with the line it is on.
std::vector<std::pair<std::string, std::string>> keys_in(const fs::path& file) {
  std::vector<std::pair<std::string, std::string>> out;
  std::istringstream in(read_file(file));
  std::string section;
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    if (line[0] == '[') {
      section = line.substr(1, line.find(']') - 1);
      continue;
    }
    out.emplace_back(section + "." + line.substr(0, line.find('=')), line);
  }
  return out;
}

// Runs the checker, extracting every config's files under `out`.
void extract_all(const fs::path& out) {
  std::string args = "--extract " + shell_quote(out.string());
  for (const char* name : kConfigs)
    args += " " +
            shell_quote((source_dir() / "ignition-configs" / (std::string(name) + ".bu")).string());
  auto r = run(checker(args));
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
}

agent::Config load(const fs::path& root) {
  auto cfg = agent::load_config(root / "etc/abup/abup.conf", root);
  REQUIRE_MESSAGE(cfg, (cfg ? "" : cfg.error().message));
  return *cfg;
}

}  // namespace

TEST_CASE("ignition: every config validates and agrees with its Butane source") {
  if (!have_python_modules()) return;
  TempDir dir;
  extract_all(dir.path());
  int seen = 0;
  for (const auto& e : fs::directory_iterator(source_dir() / "ignition-configs"))
    if (e.path().extension() == ".bu") {
      ++seen;
      CHECK_MESSAGE(fs::exists(fs::path(e.path()).replace_extension(".ign")), e.path());
    }
  CHECK(seen == std::size(kConfigs));  // a new config must be added to kConfigs
}

TEST_CASE("ignition: the checker catches a .ign that drifted from its .bu") {
  if (!have_python_modules()) return;
  TempDir dir;
  for (const char* ext : {".bu", ".ign"})
    fs::copy_file(source_dir() / "ignition-configs" / (std::string("fleetlock") + ext),
                  dir / (std::string("fleetlock") + ext));
  auto ign = read_file(dir / "fleetlock.ign");
  auto pos = ign.find("FleetLockGroup%3Dworkers");
  REQUIRE(pos != std::string::npos);
  write_file(dir / "fleetlock.ign", ign.replace(pos, 24, "FleetLockGroup%3Dwrkers"));
  auto r = run(checker(shell_quote((dir / "fleetlock.bu").string())));
  CHECK(r.exit_code != 0);
  CHECK(r.out.find("50-fleetlock.conf differs") != std::string::npos);

  ign = read_file(source_dir() / "ignition-configs/fleetlock.ign");
  pos = ign.find("\"mode\": 420");
  REQUIRE(pos != std::string::npos);
  write_file(dir / "fleetlock.ign", ign.replace(pos, 11, "\"mode\": \"0644\""));
  r = run(checker(shell_quote((dir / "fleetlock.bu").string())));
  CHECK(r.exit_code != 0);
  CHECK(r.out.find("schema") != std::string::npos);
}

TEST_CASE("ignition: the files each config writes load with abup's config loader") {
  if (!have_python_modules()) return;
  TempDir dir;
  extract_all(dir.path());
  const auto& known = agent::known_config_keys();
  int files = 0;
  for (const char* name : kConfigs) {
    auto conf_d = dir / name / "etc/abup/abup.conf.d";
    REQUIRE_MESSAGE(fs::is_directory(conf_d), name);
    for (const auto& e : fs::directory_iterator(conf_d)) {
      REQUIRE(e.path().extension() == ".conf");  // others are not read
      ++files;
      for (const auto& [key, line] : keys_in(e.path())) {
        INFO(name << ": " << e.path().filename().string() << ": " << line);
        CHECK(std::find(known.begin(), known.end(), key) != known.end());
      }
    }
  }
  CHECK(files == std::size(kConfigs));

  auto aks = load(dir / "aks-node-pool");
  CHECK(aks.mode == agent::Mode::aks);
  CHECK(aks.kubeconfig == "/var/lib/kubelet/kubeconfig");
  CHECK(aks.annotation_prefix == "acl.azure.com");

  auto aci = load(dir / "aci-host");
  CHECK(aci.mode == agent::Mode::autonomous);
  CHECK(aci.reboot_strategy == agent::RebootStrategy::window);
  CHECK(aci.reboot_window == "Mon..Fri 02:00 3h UTC");
  CHECK(aci.server.rfind("https://", 0) == 0);
  CHECK(aci.health_units == std::vector<std::string>{"containerd.service"});
  CHECK(aci.health_timeout == std::chrono::minutes(2));
  CHECK(aci.metrics_textfile == "/var/lib/node_exporter/textfile_collector/abup.prom");

  auto fl = load(dir / "fleetlock");
  CHECK(fl.reboot_strategy == agent::RebootStrategy::fleetlock);
  CHECK(fl.fleetlock_url == "https://airlock.example.net:3333");
  CHECK(fl.fleetlock_group == "workers");

  auto root = dir / "custom-server";
  auto custom = load(root);
  CHECK(custom.track == "canary");
  CHECK(custom.app_id == "{3f9c2a64-5b7e-4d1a-9c6f-2e8b0a7d4c11}");
  REQUIRE(custom.keyrings.size() == 1);
  CHECK(custom.keyrings[0] == "/etc/abup/keys.d");
  // The key and the CA it drops are what openssl reads as such.
  run_ok("openssl pkey -pubin -noout -in " +
         shell_quote((root / "etc/abup/keys.d/contoso-release.pem").string()));
  run_ok("openssl x509 -noout -in " + shell_quote((root / custom.ca_file.substr(1)).string()));

  auto off = load(dir / "updates-disabled");
  CHECK(off.server.empty());
  CHECK(off.reboot_strategy == agent::RebootStrategy::off);
}

TEST_CASE("ignition: a key the loader does not know fails the check") {
  TempDir dir;
  write_file(dir / "x.conf", "[Update]\nTrack=beta\nChannel=beta\n[Reboot]\nStrategy=off\n");
  const auto& known = agent::known_config_keys();
  std::vector<std::string> unknown;
  for (const auto& [key, line] : keys_in(dir / "x.conf"))
    if (std::find(known.begin(), known.end(), key) == known.end()) unknown.push_back(key);
  CHECK(unknown == std::vector<std::string>{"Update.Channel"});
}
