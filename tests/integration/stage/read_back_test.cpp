// The read-back runs beside the write (agent/read_back.*): a chunk the device loses after it was
// written, zero ranges included, still fails the stage with nothing staged, and a stage killed
// while reading back resumes.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "abup/bytes.hpp"
#include "abup/digest.hpp"
#include "abup/hex.hpp"
#include "support/world.hpp"

using namespace abup::test;

namespace {

// `abup stage` of `source` in the background with ABUP_FAULT=read-back-window:1:stop: it stops
// (SIGSTOP) when the read-back is about to read its first window, by when every zero range and
// the frames of that window are written.
class StoppedStage {
 public:
  StoppedStage(const World& w, const std::string& source) : dir_(w.dir()) {
    run_ok("cd " + shell_quote(dir_.string()) + "; (sh -c 'echo $$ > pid; exec env " +
           "ABUP_FAULT=read-back-window:1:stop " + abup_bin() + " stage --no-progress --disk " +
           shell_quote(w.disk().string()) + " --root " + shell_quote(w.root().string()) +
           " --keyring " + shell_quote(w.keyring().string()) + " --source " + shell_quote(source) +
           "' > out 2>&1; echo $? > rc) >/dev/null 2>&1 &");
    for (int i = 0; i < 600 && !(std::filesystem::exists(dir_ / "pid") && stopped()); ++i)
      run_ok("sleep 0.1");
    REQUIRE(stopped());
  }
  // Lets it go on; its exit code and output.
  RunResult finish() {
    run_ok("kill -CONT " + pid());
    for (int i = 0; i < 600 && !std::filesystem::exists(dir_ / "rc"); ++i) run_ok("sleep 0.1");
    REQUIRE(std::filesystem::exists(dir_ / "rc"));
    return {std::stoi(read_file(dir_ / "rc")), read_file(dir_ / "out")};
  }

 private:
  std::string pid() const {
    auto p = read_file(dir_ / "pid");
    return p.substr(0, p.find('\n'));
  }
  bool stopped() const {
    return run("cat /proc/" + pid() + "/stat").out.find(") T ") != std::string::npos;
  }
  std::filesystem::path dir_;
};

// Overwrites 4 KiB of USR-B at `offset` with random bytes, as a device that lost a write would
// hold them.
void damage_slot_b(const World& w, std::uint64_t offset) {
  run_ok("set -e; d=" + shell_quote(w.disk().string()) +
         "; b=$(sgdisk -i 4 $d | awk '/First sector/{print $3}');"
         " head -c 4096 /dev/urandom | dd of=$d bs=512 seek=$((b + " +
         std::to_string(offset / 512) + ")) conv=notrunc status=none");
}

}  // namespace

TEST_CASE("a chunk the device loses before its read-back fails the stage, and nothing is staged") {
  World w;
  auto img = w.build_signed("x", "202607.02.0");
  const auto before = w.snapshot();
  const auto manifest = nlohmann::json::parse(
      run_ok("tar -xOf " + shell_quote(img.string()) + " abup/manifest.json"));
  const auto& frames = manifest["images"][0]["frames"];
  std::size_t chunk = 0;
  std::uint64_t offset = 0;
  SUBCASE("a written chunk") {}
  SUBCASE("a zero range (checked as zeros, not hashed)") {
    // The last all-zero chunk (World's images: fixed 1 MiB frames, schema 1 objects).
    std::uint64_t at = 0;
    for (std::size_t i = 0; i < frames.size(); ++i) {
      const auto n = frames[i]["uncompressedSize"].get<std::uint64_t>();
      const std::string zeros(static_cast<std::size_t>(n), '\0');
      if (frames[i]["chunkSha256"] == abup::to_hex(abup::sha256(abup::as_bytes(zeros)))) {
        chunk = i;
        offset = at;
      }
      at += n;
    }
    REQUIRE(chunk > 0);
  }
  StoppedStage stage(w, img.string());
  damage_slot_b(w, offset);
  auto r = stage.finish();
  INFO(r.out);
  CHECK(r.exit_code != 0);
  CHECK(r.out.find("read-back of USR-B at offset " + std::to_string(offset) +
                   " does not match the signed manifest (chunk " + std::to_string(chunk) +
                   "): the device did not keep what was written") != std::string::npos);
  auto status = nlohmann::json::parse(w.slot_state_json());
  CHECK(status["slots"][1]["state"] == "failed");
  const auto after = w.snapshot();
  CHECK(after.booted_slot == before.booted_slot);
  CHECK(after.gpt == before.gpt);
}

TEST_CASE("killed while reading back, the same command resumes and stages byte for byte") {
  World w;
  auto img = w.build_signed("x", "202607.02.0");
  auto killed = run("ABUP_FAULT=read-back-window:1 " + abup_bin() + " stage --no-progress --disk " +
                    shell_quote(w.disk().string()) + " --root " + shell_quote(w.root().string()) +
                    " --keyring " + shell_quote(w.keyring().string()) + " --source " +
                    shell_quote(img.string()));
  INFO(killed.out);
  REQUIRE(killed.exit_code == 137);
  auto status = nlohmann::json::parse(w.slot_state_json());
  CHECK(status["slots"][1]["state"] == "staging");
  auto r = w.stage(img.string(), "--json");
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  CHECK(std::stoull(json_field(r.out, "skippedBytes")) > 0);
  auto usr = read_file(w.usr_image());
  CHECK_MESSAGE(w.slot_bytes('B', usr.size()) == usr, "slot B holds the image byte for byte");
  status = nlohmann::json::parse(w.slot_state_json());
  CHECK(status["slots"][1]["state"] == "staged");
}
