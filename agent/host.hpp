// Facts of the running system, read under --root so tests and the demo run against a tree.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "abup/result.hpp"
#include "abup/version.hpp"

namespace abup::agent {

struct HostFacts {
  std::filesystem::path root = "/";
  std::string os_release;                 // text of etc/os-release (or usr/lib/os-release)
  std::filesystem::path os_release_path;  // the file read; empty when neither exists
  std::optional<Version> version;         // IMAGE_VERSION, else VERSION_ID
  std::string variant;                    // VARIANT_ID
  std::string arch;                       // normalized uname machine
  std::string boot_id;
  std::string machine_id;
};

// Missing files leave fields empty; a malformed version is an error naming the file.
[[nodiscard]] Result<HostFacts> read_host_facts(const std::filesystem::path& root);

// Why the version (or the variant) is unknown, naming the file: "ROOT/etc/os-release has no
// IMAGE_VERSION or VERSION_ID", "neither ROOT/etc/os-release nor ROOT/usr/lib/os-release exists".
// Empty when it is known.
[[nodiscard]] std::string unknown_version_reason(const HostFacts& host);
[[nodiscard]] std::string unknown_variant_reason(const HostFacts& host);

}  // namespace abup::agent
