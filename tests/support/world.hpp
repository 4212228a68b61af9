// A node in a box for stage and security tests: keys made by openssl, a /usr ext4 image made by
// mkfs.ext4, signed COSI images built by the real abup-image, a Flatcar-layout disk made by sgdisk,
// and a running-system tree; abup runs as the real binary.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "support/disk.hpp"
#include "support/util.hpp"

namespace abup::test {

struct Snapshot {
  std::string booted_slot;  // SHA-256 of the booted slot's bytes
  std::string gpt;          // SHA-256 of both GPT copies
  std::string state;        // state.json text ("" when absent)
  friend bool operator==(const Snapshot&, const Snapshot&) = default;
};

class World {
 public:
  explicit World(std::uint64_t usr_mib = 32, const std::string& running = "202601.01.0",
                 bool hash_partitions = false);

  const std::filesystem::path& dir() const { return tmp_.path(); }
  std::filesystem::path path(const std::string& name) const { return tmp_ / name; }
  std::filesystem::path disk() const { return tmp_ / "disk.img"; }
  std::filesystem::path root() const { return tmp_ / "root"; }
  std::filesystem::path keyring() const { return tmp_ / "keys"; }
  std::filesystem::path usr_image() const { return tmp_ / "usr.img"; }
  std::filesystem::path signer() const { return tmp_ / "signer.pem"; }      // trusted, ed25519
  std::filesystem::path signer2() const { return tmp_ / "signer2.pem"; }    // trusted, ecdsa p256
  std::filesystem::path stranger() const { return tmp_ / "stranger.pem"; }  // not trusted

  // Builds images/NAME.cosi (unsigned) from usr.img, in 1 MiB fixed frames unless `extra` (more
  // abup-image build options) has --chunker or --frame-size.
  std::filesystem::path build(const std::string& name, const std::string& version,
                              const std::string& extra = "");
  // build() + sign with `key` (default: the trusted signer).
  std::filesystem::path build_signed(const std::string& name, const std::string& version,
                                     const std::string& extra = "", std::string key = "");

  // Runs `abup stage --disk --root --keyring --source SOURCE EXTRA`.
  RunResult stage(const std::string& source, const std::string& extra = "") const;
  // Bytes of a slot ('A' or 'B'), the first `len` bytes.
  std::string slot_bytes(char slot, std::uint64_t len) const;
  Snapshot snapshot() const;
  std::string slot_state_json() const;  // `abup status --json`

 private:
  TempDir tmp_;
};

// The value of "key" in a flat JSON object printed by abup (a number or a string).
std::string json_field(const std::string& json, const std::string& key);

}  // namespace abup::test
