#include "support/world.hpp"

#include <doctest/doctest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "abup/digest.hpp"
#include "abup/hex.hpp"
#include "partitions/gpt.hpp"

namespace abup::test {
namespace {

std::string sha(const std::string& bytes) {
  return to_hex(sha256(as_bytes(bytes)));
}

struct SlotRange {
  std::uint64_t offset, size;
};

SlotRange slot_range(const std::filesystem::path& disk, char slot) {
  auto gpt = partitions::read_gpt_path(disk.string());
  REQUIRE(gpt.has_value());
  const auto* e = gpt->find_by_number(slot == 'A' ? kPartUsrA : kPartUsrB);
  REQUIRE(e != nullptr);
  return {e->first_lba * 512, (e->last_lba - e->first_lba + 1) * 512};
}

std::string read_range(const std::filesystem::path& p, std::uint64_t off, std::uint64_t len) {
  std::ifstream f(p, std::ios::binary);
  f.seekg(static_cast<std::streamoff>(off));
  std::string out(len, '\0');
  f.read(out.data(), static_cast<std::streamsize>(len));
  return out;
}

}  // namespace

World::World(std::uint64_t usr_mib, const std::string& running, bool hash_partitions) {
  auto q = [](const std::filesystem::path& p) { return shell_quote(p.string()); };
  // A /usr tree with text, incompressible data and empty space, like a real one.
  run_ok(
      "set -e; d=" + q(tmp_ / "tree") +
      "; mkdir -p $d/bin $d/share/doc $d/lib; cp -r /usr/share/doc/[a-c]* $d/share/doc/ "
      "2>/dev/null || true;"
      " head -c 3000000 /dev/urandom > $d/bin/tool; head -c 5000000 /dev/urandom > $d/lib/libx.so;"
      " printf 'ID=flatcar\\n' > $d/lib/os-release");
  run_ok("truncate -s 24M " + q(usr_image()) + " && mkfs.ext4 -q -F -d " + q(tmp_ / "tree") + " " +
         q(usr_image()));
  run_ok("set -e; cd " + q(tmp_.path()) +
         "; openssl genpkey -algorithm ed25519 -out signer.pem 2>/dev/null;"
         " openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out signer2.pem "
         "2>/dev/null;"
         " openssl genpkey -algorithm ed25519 -out stranger.pem 2>/dev/null; mkdir -p keys images;"
         " openssl pkey -in signer.pem -pubout -out keys/signer.pem;"
         " openssl pkey -in signer2.pem -pubout -out keys/signer2.pem");
  make_flatcar_disk(disk(), DiskLayout{usr_mib, hash_partitions, false});
  // The booted slot holds data of its own, so "unchanged" means something.
  auto a = slot_range(disk(), 'A');
  run_ok("head -c " + std::to_string(std::min<std::uint64_t>(a.size, 8 << 20)) +
         " /dev/urandom | dd of=" + q(disk()) + " bs=512 seek=" + std::to_string(a.offset / 512) +
         " conv=notrunc status=none");
  make_root(root(), 'A', running);
  allow_no_boot_files(root());  // these tests are about /usr; boot_files_test removes it
}

std::filesystem::path World::build(const std::string& name, const std::string& version,
                                   const std::string& extra) {
  auto out = tmp_ / "images" / (name + ".cosi");
  // 1 MiB fixed frames unless the test chooses how frames are cut.
  const bool chooses = extra.find("--chunker") != std::string::npos ||
                       extra.find("--frame-size") != std::string::npos;
  run_ok(abup_image_bin() + " build --usr " + shell_quote(usr_image().string()) + " --version " +
         version + (chooses ? "" : " --frame-size 1M") + " --out " + shell_quote(out.string()) +
         " " + extra);
  return out;
}

std::filesystem::path World::build_signed(const std::string& name, const std::string& version,
                                          const std::string& extra, std::string key) {
  auto out = build(name, version, extra);
  if (key.empty()) key = signer().string();
  run_ok(abup_image_bin() + " sign --key " + shell_quote(key) + " " + shell_quote(out.string()));
  return out;
}

RunResult World::stage(const std::string& source, const std::string& extra) const {
  return run(abup_bin() + " stage --no-progress --disk " + shell_quote(disk().string()) +
             " --root " + shell_quote(root().string()) + " --keyring " +
             shell_quote(keyring().string()) + " --source " + shell_quote(source) + " " + extra);
}

std::string World::slot_bytes(char slot, std::uint64_t len) const {
  auto r = slot_range(disk(), slot);
  return read_range(disk(), r.offset, std::min(len, r.size));
}

Snapshot World::snapshot() const {
  Snapshot s;
  auto a = slot_range(disk(), 'A');
  s.booted_slot = sha(read_range(disk(), a.offset, a.size));
  auto size = std::filesystem::file_size(disk());
  s.gpt = sha(read_range(disk(), 0, 34 * 512) + read_range(disk(), size - 33 * 512, 33 * 512));
  auto state = root() / "var/lib/abup/state.json";
  s.state = std::filesystem::exists(state) ? read_file(state) : "";
  return s;
}

std::string World::slot_state_json() const {
  return run_ok(abup_bin() + " status --json --disk " + shell_quote(disk().string()) + " --root " +
                shell_quote(root().string()));
}

std::string json_field(const std::string& text, const std::string& key) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.contains(key)) return "<missing " + key + ">";
  const auto& v = j[key];
  return v.is_string() ? v.get<std::string>() : v.dump();
}

}  // namespace abup::test
