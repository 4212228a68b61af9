#include "support/fault_server.hpp"

#include <doctest/doctest.h>

namespace abup::test {

FaultServer::FaultServer(std::filesystem::path root) {
  REQUIRE_MESSAGE(have_program("python3"), "python3 is missing: run tools/setup");
  const std::string script = (source_dir() / "tests/support/fault_server.py").string();
  const std::string root_dir = std::filesystem::absolute(root).string();
  const std::string log = (temp_ / "requests.log").string();
  write_file(log, "");
  process_.start(
      [&](const std::vector<std::uint16_t>& ports) -> std::vector<std::string> {
        return {"/usr/bin/env", "python3", script,  "--port", std::to_string(ports[0]),
                "--root",       root_dir,  "--log", log};
      },
      1, temp_ / "server.out");
}

std::string FaultServer::url(const std::string& path) const {
  return "http://127.0.0.1:" + std::to_string(process_.ports().at(0)) +
         (path.starts_with("/") ? path : "/" + path);
}

std::vector<std::string> FaultServer::requests() const {
  return read_lines(temp_ / "requests.log");
}

}  // namespace abup::test
