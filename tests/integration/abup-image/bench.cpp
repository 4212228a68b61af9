#include "bench.hpp"

#include <doctest/doctest.h>

#include <sstream>

namespace abup::test {

std::string q(const std::filesystem::path& p) {
  return shell_quote(p.string());
}

Bench::Bench() {
  // Text, incompressible data and empty space, so frames differ in size as in a real /usr.
  run_ok("set -e; d=" + q(tmp_ / "tree") +
         "; mkdir -p $d/bin $d/share/doc $d/lib; cp -r /usr/share/doc/[a-b]* $d/share/doc/ "
         "2>/dev/null || true; head -c 2500000 /dev/urandom > $d/bin/tool;"
         " printf 'ID=flatcar\\n' > $d/lib/os-release");
  run_ok("truncate -s " + std::to_string(kUsrBytes) + " " + q(usr()) + " && mkfs.ext4 -q -F -d " +
         q(tmp_ / "tree") + " " + q(usr()));
  std::filesystem::create_directories(keyring());
}

std::filesystem::path Bench::key(const KeyKind& kind, bool trusted, const std::string& name) {
  const std::string stem = name.empty() ? kind.name : name;
  auto priv = tmp_ / (stem + ".pem");
  run_ok("set -e; openssl genpkey " + std::string(kind.genpkey) + " -out " + q(priv) +
         " 2>/dev/null; openssl pkey -in " + q(priv) + " -pubout -out " + q(pub(stem)));
  if (trusted) std::filesystem::copy_file(pub(stem), keyring() / (stem + ".pem"));
  return priv;
}

std::filesystem::path Bench::build(const std::string& name, const std::string& extra,
                                   const std::string& version) {
  auto out = tmp_ / (name + ".cosi");
  image_tool_ok("build --usr " + q(usr()) + " --version " + version + " --frame-size 1M --out " +
                q(out) + " " + extra);
  return out;
}

std::filesystem::path Bench::copy(const std::filesystem::path& from,
                                  const std::string& name) const {
  auto to = tmp_ / (name + ".cosi");
  std::filesystem::copy_file(from, to, std::filesystem::copy_options::overwrite_existing);
  return to;
}

RunResult image_tool(const std::string& args) {
  return run(abup_image_bin() + " " + args);
}

std::string image_tool_ok(const std::string& args) {
  return run_ok(abup_image_bin() + " " + args);
}

std::string openssl_keyid(const std::filesystem::path& public_pem) {
  auto out = run_ok("openssl pkey -pubin -in " + q(public_pem) + " -outform DER | sha256sum");
  return out.substr(0, 64);
}

std::string sha256_file(const std::filesystem::path& p) {
  return run_ok("sha256sum < " + q(p)).substr(0, 64);
}

std::string tar_member(const std::filesystem::path& archive, const std::string& member) {
  return run_ok("tar -xOf " + q(archive) + " " + shell_quote(member));
}

std::vector<std::string> tar_names(const std::filesystem::path& archive) {
  std::istringstream in(run_ok("tar -tf " + q(archive)));
  std::vector<std::string> names;
  for (std::string line; std::getline(in, line);) names.push_back(line);
  return names;
}

std::uint64_t tar_data_offset(const std::filesystem::path& archive, const std::string& member) {
  // "block N: -rw-r--r-- 0/0 SIZE DATE TIME NAME": the header is block N, the data follows it.
  std::istringstream in(run_ok("tar -tvR -f " + q(archive)));
  for (std::string line; std::getline(in, line);) {
    if (line.size() > member.size() + 1 &&
        line.compare(line.size() - member.size() - 1, std::string::npos, " " + member) == 0)
      return (std::stoull(line.substr(6)) + 1) * 512;
  }
  FAIL("tar -tvR does not list ", member);
  return 0;
}

nlohmann::json inspect_json(const std::filesystem::path& cosi) {
  auto j = nlohmann::json::parse(image_tool_ok("inspect --json " + q(cosi)), nullptr, false);
  REQUIRE_FALSE(j.is_discarded());
  return j;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

}  // namespace abup::test
