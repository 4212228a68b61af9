// docs/security.md, the version and freshness policy (gaps G1-G3): genuinely signed releases that
// a node must still refuse. Each refusal names why, and leaves both slots, the boot configuration
// (the GPT priorities read by cgpt) and state.json byte-identical.
#include <doctest/doctest.h>

#include "support/node.hpp"
#include "support/world.hpp"

using namespace abup::test;

namespace {

struct NodeSnapshot {
  std::string slot_a, slot_b, boot, state;
  friend bool operator==(const NodeSnapshot&, const NodeSnapshot&) = default;
};

NodeSnapshot snapshot(const Node& n) {
  return {n.slot_digest('A'), n.slot_digest('B'),
          run_ok("cgpt show " + shell_quote(n.disk().string())), n.state_text()};
}

void expect_refused(const RunResult& r, const std::string& message) {
  INFO(r.out);
  CHECK(r.exit_code != 0);
  CHECK_MESSAGE(r.out.find(message) != std::string::npos, "expected: ", message);
}

void require_ok(const RunResult& r) {
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
}

// Sets `key` to the JSON `value` in the (unsigned) abup/manifest.json of `cosi`, or removes it
// when `value` is empty: a manifest abup-image would not write, for the signer to sign as is.
void edit_manifest(const std::filesystem::path& cosi, const std::string& key,
                   const std::string& value) {
  run_ok("python3 - " + shell_quote(cosi.string()) + " " + shell_quote(key) + " " +
         shell_quote(value) +
         " <<'EOF'\n"
         "import io, json, os, sys, tarfile\n"
         "path, key, value = sys.argv[1], sys.argv[2], sys.argv[3]\n"
         "with tarfile.open(path) as t, tarfile.open(path + '.new', 'w', "
         "format=tarfile.USTAR_FORMAT) as o:\n"
         "    for m in t.getmembers():\n"
         "        data = t.extractfile(m).read() if m.isfile() else None\n"
         "        if m.name == 'abup/manifest.json':\n"
         "            d = json.loads(data)\n"
         "            if value: d[key] = json.loads(value)\n"
         "            else: d.pop(key, None)\n"
         "            data = json.dumps(d, indent=2).encode()\n"
         "            m.size = len(data)\n"
         "        o.addfile(m, io.BytesIO(data) if data is not None else None)\n"
         "os.replace(path + '.new', path)\n"
         "EOF\n");
}

std::string utc_time(const std::string& when) {
  return run_ok("date -u -d " + shell_quote(when) + " +%Y-%m-%dT%H:%M:%SZ | tr -d '\\n'");
}

}  // namespace

TEST_CASE(
    "security: after a rollback, a signed release below the highest committed one is refused") {
  // G1: the node committed 202607.02.0, then its operator rolled back to 202601.01.0 (rollback
  // downloads nothing, so no version policy stands in its way). A server now offers a genuinely
  // signed 202604.01.0: newer than the running version, older than what this node committed.
  Node n("gptprio");
  n.stage("202607.02.0");
  require_ok(n.abup("finalize"));
  REQUIRE(n.reboot() == 'B');
  require_ok(n.abup("commit"));
  CHECK(n.status()["highestCommittedVersion"] == "202607.02.0");
  require_ok(n.abup("rollback"));
  REQUIRE(n.reboot() == 'A');
  require_ok(n.abup("commit"));
  auto st = n.status();
  CHECK(st["booted"] == "A");
  CHECK(st["slots"][0]["version"] == kRunning);
  CHECK(st["highestCommittedVersion"] == "202607.02.0");  // a rollback never lowers it

  auto img = n.build("202604.01.0");
  const auto before = snapshot(n);
  expect_refused(n.stage_image(img),
                 "downgrade to 202604.01.0 below 202607.02.0, the highest version this node "
                 "committed (it runs 202601.01.0; state.json highestCommittedVersion), refused");
  CHECK(snapshot(n) == before);

  // The operator, on the node, may still choose it.
  require_ok(n.stage_image(img, "--allow-downgrade"));
  CHECK(n.status()["slots"][1]["version"] == "202604.01.0");
}

TEST_CASE("security: a signed downgrade manifest that never expires is refused") {
  // G2: a recall (allowDowngrade) without expiresAt could be replayed to roll nodes back for
  // ever. abup-image will not sign one; a signer who writes one anyway gets it refused by abup.
  World w;  // runs 202601.01.0
  auto no_expiry = run(abup_image_bin() + " build --usr " + shell_quote(w.usr_image().string()) +
                       " --version 202512.01.0 --allow-downgrade --out " +
                       shell_quote(w.path("x.cosi").string()));
  INFO(no_expiry.out);
  CHECK(no_expiry.exit_code == 2);
  CHECK(no_expiry.out.find("--allow-downgrade needs --expires-in-days or --expires-at") !=
        std::string::npos);

  auto img = w.build("recall", "202512.01.0");
  edit_manifest(img, "allowDowngrade", "true");
  run_ok(abup_image_bin() + " sign --key " + shell_quote(w.signer().string()) + " " +
         shell_quote(img.string()));
  const auto before = w.snapshot();
  auto r = w.stage(img.string());
  INFO(r.out);
  CHECK(r.exit_code != 0);
  CHECK(r.out.find("downgrade from 202601.01.0 to 202512.01.0 refused: the signed manifest "
                   "allows downgrade but has no expiresAt, so it could be replayed forever") !=
        std::string::npos);
  CHECK(w.snapshot() == before);

  // The same recall, signed with an expiry, is what a vendor sends: it stages unattended.
  auto ok = w.stage(
      w.build_signed("recall-7d", "202512.01.0", "--allow-downgrade --expires-in-days 7").string());
  INFO(ok.out);
  CHECK(ok.exit_code == 0);
}

TEST_CASE("security: a replayed recall is refused once a release signed after it runs") {
  // G2: the vendor recalled a bad release with a signed downgrade to 202604.01.0 (expiring in a
  // week), then shipped the fix 202607.02.0, which this node committed. Within the week, anyone
  // who kept the recall replays it: the fix was signed after it and supersedes it.
  Node n("gptprio");
  const auto issued = utc_time("1 hour ago");
  auto recall =
      n.build("202604.01.0", false, "--allow-downgrade --expires-in-days 7 --issued-at " + issued);
  n.stage("202607.02.0");
  require_ok(n.abup("finalize"));
  REQUIRE(n.reboot() == 'B');
  require_ok(n.abup("commit"));

  const auto before = snapshot(n);
  expect_refused(n.stage_image(recall),
                 "downgrade from 202607.02.0 to 202604.01.0 refused: the signed manifest allows "
                 "downgrade but was issued at " +
                     issued +
                     ", before the running release "
                     "202607.02.0 (issued ");
  CHECK(snapshot(n) == before);

  // A recall signed after the running release still works, unattended.
  require_ok(n.stage_image(n.build("202605.01.0", false, "--allow-downgrade --expires-in-days 7")));
  CHECK(n.status()["slots"][0]["version"] == "202605.01.0");
}

TEST_CASE("security: with RequireExpiry=yes, a signed manifest that never expires is refused") {
  // G3: without expiresAt an old signed release stays valid for ever, so a server (or whoever
  // sits on its path) can keep serving it. [Security] RequireExpiry=yes closes that.
  World w;
  write_file(w.root() / "etc/abup/abup.conf.d/50-security.conf", "[Security]\nRequireExpiry=yes\n");
  auto forever = w.build_signed("forever", "202607.02.0");
  const auto before = w.snapshot();
  auto r = w.stage(forever.string());
  INFO(r.out);
  CHECK(r.exit_code != 0);
  CHECK(r.out.find("the signed manifest of 202607.02.0 has no expiresAt and [Security] "
                   "RequireExpiry=yes refuses one that never expires") != std::string::npos);
  CHECK(w.snapshot() == before);

  auto ok = w.stage(w.build_signed("dated", "202607.02.0", "--expires-in-days 30").string());
  INFO(ok.out);
  CHECK(ok.exit_code == 0);
}

TEST_CASE("security: status shows the newest signed release staged here and its age") {
  // G4: a server can withhold new releases (answer "no update" for ever); abup cannot force it
  // to offer, but the issue time of the newest signed release this node holds is signed, so a
  // withholding server cannot make it look fresh. Monitoring alerts on its age.
  World w;
  CHECK(json_field(w.slot_state_json(), "newestSignedRelease") == "null");
  const auto issued = utc_time("10 days ago");
  auto img = w.build_signed("old", "202607.02.0", "--issued-at " + issued);
  auto r = w.stage(img.string());
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  auto st = nlohmann::json::parse(w.slot_state_json());
  CHECK(st["newestSignedRelease"]["version"] == "202607.02.0");
  CHECK(st["newestSignedRelease"]["issuedAt"] == issued);
  CHECK(st["newestSignedRelease"]["ageDays"] == 10);
  auto text = run_ok(abup_bin() + " status --no-daemon --disk " + shell_quote(w.disk().string()) +
                     " --root " + shell_quote(w.root().string()));
  CHECK(text.find("newest signed release staged here: 202607.02.0, issued " + issued +
                  " (10 days ago)") != std::string::npos);

  // It comes from the slot's record in state.json, which keeps the manifest's issuedAt: the
  // manifest (5 MB at 4 GiB) is not parsed for it.
  const auto state_dir = w.root() / "var/lib/abup";
  const auto state_file = state_dir / "state.json";
  auto state = nlohmann::json::parse(read_file(state_file));
  std::string uuid;
  for (const auto& [id, rec] : state["slots"].items())
    if (rec["version"] == "202607.02.0") uuid = id;
  REQUIRE(!uuid.empty());
  CHECK(state["slots"][uuid]["issuedAt"] == issued);
  const auto manifest = state_dir / "manifests" / (uuid + ".json");
  const auto aside = w.dir() / "manifest.aside";
  std::filesystem::rename(manifest, aside);
  CHECK(nlohmann::json::parse(w.slot_state_json())["newestSignedRelease"]["issuedAt"] == issued);
  // A record written by an older abup has no issuedAt: the manifest's own is read.
  std::filesystem::rename(aside, manifest);
  state["slots"][uuid].erase("issuedAt");
  write_file(state_file, state.dump());
  st = nlohmann::json::parse(w.slot_state_json());
  CHECK(st["newestSignedRelease"]["version"] == "202607.02.0");
  CHECK(st["newestSignedRelease"]["issuedAt"] == issued);
}
