#include "serve.hpp"

#include <doctest/doctest.h>

namespace abup::test {
namespace {

std::vector<nlohmann::json> json_lines(const std::filesystem::path& p) {
  std::vector<nlohmann::json> out;
  if (!std::filesystem::exists(p)) return out;
  for (const auto& line : read_lines(p)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    REQUIRE_MESSAGE(!j.is_discarded(), "not JSON: " << line);
    out.push_back(std::move(j));
  }
  return out;
}

}  // namespace

Serve::Serve(const std::filesystem::path& dir) {
  const std::string bin = (binary_dir() / "abup-serve").string();
  const std::string d = std::filesystem::absolute(dir).string();
  process_.start(
      [&](const std::vector<std::uint16_t>& ports) -> std::vector<std::string> {
        return {bin,
                "--dir",
                d,
                "--listen",
                "127.0.0.1:" + std::to_string(ports[0]),
                "--events",
                (temp_ / "events.jsonl").string(),
                "--requests",
                (temp_ / "requests.jsonl").string()};
      },
      1, temp_ / "serve.out");
}

std::string Serve::url(const std::string& path) const {
  return "http://127.0.0.1:" + std::to_string(port()) + (path.starts_with("/") ? "" : "/") + path;
}

std::vector<nlohmann::json> Serve::events() const {
  return json_lines(temp_ / "events.jsonl");
}

std::vector<nlohmann::json> Serve::requests() const {
  return json_lines(temp_ / "requests.jsonl");
}

void write_tracks(const std::filesystem::path& dir, const nlohmann::json& tracks) {
  write_file(dir / "tracks.json.tmp", tracks.dump());
  std::filesystem::rename(dir / "tracks.json.tmp", dir / "tracks.json");
}

void write_omaha_config(const std::filesystem::path& root, const std::string& server,
                        const std::string& extra) {
  std::filesystem::create_directories(root / "etc/abup");
  write_file(root / "etc/abup/abup.conf", "[Update]\nServer=" + server + "\nAppId=" + kAppId +
                                              "\nTrack=stable\n" + extra +
                                              "\n[Network]\nAllowHTTP=yes\n");
}

RunResult abup_check(const std::filesystem::path& root, const std::string& extra) {
  return run(abup_bin() + " check --root " + shell_quote(root.string()) + " " + extra);
}

}  // namespace abup::test
