#include "agent/host.hpp"

#include <sys/utsname.h>

#include "abup/fs.hpp"
#include "update-protocol/cosi/cosi.hpp"

namespace abup::agent {

static std::string first_line(const std::filesystem::path& p) {
  auto text = read_file(p);
  if (!text) return {};
  auto s = text->substr(0, text->find('\n'));
  while (!s.empty() && (s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}

Result<HostFacts> read_host_facts(const std::filesystem::path& root) {
  HostFacts h;
  h.root = root;
  std::filesystem::path osr = root / "etc/os-release";
  auto text = read_file(osr);
  if (!text) {
    osr = root / "usr/lib/os-release";
    text = read_file(osr);
  }
  if (text) {
    h.os_release = *text;
    h.os_release_path = osr;
    auto v = protocol::os_release_value(h.os_release, "IMAGE_VERSION");
    if (v.empty()) v = protocol::os_release_value(h.os_release, "VERSION_ID");
    if (!v.empty()) {
      auto parsed = Version::parse(v);
      if (!parsed) return std::move(parsed).error().with_context(osr.string());
      h.version = std::move(*parsed);
    }
    h.variant = protocol::os_release_value(h.os_release, "VARIANT_ID");
  }
  struct utsname u {};
  if (::uname(&u) == 0) h.arch = protocol::normalize_arch(u.machine);
  h.boot_id = first_line(root / "proc/sys/kernel/random/boot_id");
  h.machine_id = first_line(root / "etc/machine-id");
  return h;
}

static std::string missing(const HostFacts& h, const char* keys) {
  if (h.os_release_path.empty())
    return "neither " + (h.root / "etc/os-release").string() + " nor " +
           (h.root / "usr/lib/os-release").string() + " exists";
  return h.os_release_path.string() + " has no " + keys;
}

std::string unknown_version_reason(const HostFacts& h) {
  return h.version ? std::string() : missing(h, "IMAGE_VERSION or VERSION_ID");
}

std::string unknown_variant_reason(const HostFacts& h) {
  return h.variant.empty() ? missing(h, "VARIANT_ID") : std::string();
}

}  // namespace abup::agent
