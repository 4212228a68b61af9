// A state.json abup cannot use: the real binary against a disk image.
// `abup status` still shows what the disk and the bootloader say, names the file and the field,
// and exits 1; every command that changes the slots refuses with the same words and changes
// nothing (state file, history, the disk image's bytes); nothing aborts.
#include <doctest/doctest.h>

#include "lifecycle_steps.hpp"

using namespace abup::test;
using nlohmann::json;

namespace {

constexpr const char* kUsrB = "e03dd35c-7c2d-4a47-b3fe-27f15780a57c";
constexpr const char* kUsrA = "7130c94a-213a-4e5a-8e26-6cce9662f132";

std::string sha256(const std::filesystem::path& p) {
  return run_ok("sha256sum " + shell_quote(p.string())).substr(0, 64);
}

void put_state(const Node& n, const json& doc) {
  write_file(n.state_dir() / "state.json", doc.dump(2) + "\n");
}

// Everything a refused command must leave as it was.
struct Snapshot {
  std::string state, history, disk;
  explicit Snapshot(const Node& n)
      : state(n.state_text()), history(n.history_text()), disk(sha256(n.disk())) {}
  bool operator==(const Snapshot&) const = default;
};

// Each command that writes: refused, not killed, naming `why`, nothing changed.
void writers_refuse(Node& n, const std::string& why) {
  const auto dir = n.disk().parent_path();
  const Snapshot before(n);
  auto check = [&](const std::string& what, const RunResult& r) {
    INFO(what, "\n", r.out);
    CHECK(r.exit_code != 0);
    CHECK(r.exit_code < 128);  // an exit, not a signal (SIGABRT was 134)
    CHECK(r.out.find(why) != std::string::npos);
    CHECK(Snapshot(n) == before);
  };
  check("stage", run(abup_bin() + " stage --no-progress --disk " + shell_quote(n.disk().string()) +
                     " --root " + shell_quote(n.root().string()) + " --keyring " +
                     shell_quote((dir / "keys").string()) + " --source " +
                     shell_quote((dir / "images" / (std::string(kNew) + ".cosi")).string())));
  for (const char* cmd : {"finalize", "commit", "rollback --force"}) check(cmd, n.abup(cmd));
}

}  // namespace

TEST_CASE("state.json with a field of the wrong type: status shows the disk, writers refuse") {
  Node n("gptprio");
  n.stage(kNew);
  json doc = json::parse(n.state_text());
  doc["slots"][kUsrB]["state"] = 42;
  put_state(n, doc);
  const std::string why = (n.state_dir() / "state.json").string() + ": slots." + kUsrB +
                          ".state: expected a string, got number";

  auto text = n.abup("status");
  INFO(text.out);
  CHECK(text.exit_code == 1);
  CHECK(text.out.find("USR-A") != std::string::npos);
  CHECK(text.out.find("USR-B") != std::string::npos);
  CHECK(text.out.find("boot (gptprio): next A, default A") != std::string::npos);
  CHECK(text.out.find("state: " + why) != std::string::npos);

  auto js = n.abup("status", "--json 2>/dev/null");
  INFO(js.out);
  CHECK(js.exit_code == 1);
  auto st = json::parse(js.out);
  CHECK(st["booted"] == "A");
  CHECK(st["next"] == "A");
  REQUIRE(st["slots"].size() == 2);
  CHECK(st["slots"][0]["partuuid"] == kUsrA);
  CHECK(st["slots"][0]["booted"] == true);
  CHECK(st["slots"][0]["version"] == kRunning);
  CHECK(st["slots"][1]["state"] == "unknown");
  CHECK(st["pending"].is_null());
  CHECK(st["stateError"].get<std::string>().find(why) == 0);

  writers_refuse(n, why);
}

TEST_CASE("state.json that is not JSON: status exits 1 with a stateError, writers refuse") {
  Node n("gptprio");
  n.stage(kNew);
  write_file(n.state_dir() / "state.json", "{\"slots\": {");
  auto js = n.abup("status", "--json 2>/dev/null");
  INFO(js.out);
  CHECK(js.exit_code == 1);
  auto st = json::parse(js.out);
  CHECK(st["slots"].size() == 2);
  CHECK(st["stateError"].get<std::string>().find("state.json: not valid JSON") !=
        std::string::npos);
  writers_refuse(n, "state.json: not valid JSON");
}

TEST_CASE("state.json of a newer schema: status shows it, writers refuse, the file stays") {
  Node n("gptprio");
  n.stage(kNew);
  json doc = json::parse(n.state_text());
  doc["schemaVersion"] = 2;
  doc["slotGroups"] = json::array({"usr"});
  put_state(n, doc);
  const std::string why = (n.state_dir() / "state.json").string() +
                          ": schemaVersion 2, written by a newer abup; this abup writes version 1";

  auto js = n.abup("status", "--json 2>/dev/null");
  INFO(js.out);
  CHECK(js.exit_code == 1);
  auto st = json::parse(js.out);
  CHECK(st["slots"][1]["state"] == "staged");  // read as far as this abup knows it
  CHECK(st["slots"][1]["version"] == kNew);
  CHECK(st["stateError"].get<std::string>().find("written by a newer abup") != std::string::npos);

  writers_refuse(n, why);
  CHECK(json::parse(n.state_text())["slotGroups"] == json::array({"usr"}));
}

TEST_CASE("state.json members this abup does not know survive a finalize and a commit") {
  Node n("gptprio");
  n.stage(kNew);
  json doc = json::parse(n.state_text());
  doc["futureTop"] = {{"x", 1}};
  doc["slots"][kUsrB]["verityRootHash"] = "bb22";
  put_state(n, doc);
  finalize_reboot_commit(n);
  auto out = json::parse(n.state_text());
  CHECK(out["futureTop"] == json{{"x", 1}});
  CHECK(out["slots"][kUsrB]["state"] == "committed");
  CHECK(out["slots"][kUsrB]["verityRootHash"] == "bb22");
}
