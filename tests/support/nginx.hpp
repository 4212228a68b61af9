// Real HTTP(S) servers on loopback for the transport tests: Debian's nginx serving a directory.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "support/util.hpp"

namespace abup::test {

// A server program run as a child on a free 127.0.0.1 port; killed (and reaped) when the object
// dies, and by the kernel if the test process dies first (PR_SET_PDEATHSIG). Shared by NginxServer
// and FaultServer.
class ServerProcess {
 public:
  ServerProcess() = default;
  ~ServerProcess() { stop(); }
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // Runs argv (stdout and stderr to `log`) and waits until every port accepts connections. Ports
  // picked by free_port() can be taken by someone else before the server binds them, so `make`
  // is asked for a fresh command line with fresh ports up to a few times. Fails the test
  // (REQUIRE) with the log when the server does not come up.
  void start(const std::function<std::vector<std::string>(const std::vector<std::uint16_t>&)>& make,
             std::size_t port_count, const std::filesystem::path& log);
  void stop();
  [[nodiscard]] const std::vector<std::uint16_t>& ports() const { return ports_; }

 private:
  bool try_start(const std::vector<std::string>& argv, const std::filesystem::path& log);
  pid_t pid_ = -1;
  std::vector<std::uint16_t> ports_;
};

struct NginxOptions {
  bool https = false;                // also listen with TLS (certificates from a fresh test CA)
  bool require_client_cert = false;  // ssl_verify_client on, against that CA
  // nginx's ssl_protocols, e.g. "TLSv1.1" (then with SECLEVEL=0 ciphers, so that OpenSSL 3
  // offers it at all); empty: nginx's default.
  std::string tls_protocols = {};
};

// nginx (daemon off, master_process off) serving `root` over http and optionally https, with:
//   /norange/<path>  the same files with max_ranges 0 (Range requests answered with 200)
//   /onerange/<path> the same files with max_ranges 1 (multi-range requests answered with 200)
//   /tohttp/<path>   on the https server: a 302 to the plain-http URL of <path>
class NginxServer {
 public:
  explicit NginxServer(std::filesystem::path root, NginxOptions options = {});
  NginxServer(const NginxServer&) = delete;
  NginxServer& operator=(const NginxServer&) = delete;

  // "http://127.0.0.1:PORT/" + path (path without a leading slash, or with one).
  [[nodiscard]] std::string url(const std::string& path) const;
  [[nodiscard]] std::string https_url(const std::string& path) const;
  [[nodiscard]] std::string ca_file() const { return (dir_ / "ca.pem").string(); }
  [[nodiscard]] std::string client_cert() const { return (dir_ / "client.pem").string(); }
  [[nodiscard]] std::string client_key() const { return (dir_ / "client.key").string(); }
  // One line per request: "METHOD URI RANGE STATUS BYTES CONNECTION" (RANGE "-" when absent;
  // CONNECTION is nginx's connection serial number).
  // nginx logs a request after answering it, so a client can be done before the line is there:
  // this waits (up to 2 s) until there are at least `wait_for` lines.
  [[nodiscard]] std::vector<std::string> access_log(std::size_t wait_for = 0) const;

 private:
  void make_certificates();
  std::string config(std::uint16_t http_port, std::uint16_t https_port) const;

  TempDir temp_;
  std::filesystem::path dir_;
  std::filesystem::path root_;
  NginxOptions options_;
  ServerProcess process_;  // last: stopped before the temp dir goes
};

// Splits a file into lines (without the newlines).
std::vector<std::string> read_lines(const std::filesystem::path& p);

}  // namespace abup::test
