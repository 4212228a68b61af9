#include "support/nginx.hpp"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <sstream>
#include <thread>

namespace abup::test {
namespace {

bool accepts(std::uint16_t port) {
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  bool ok = ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(s);
  return ok;
}

std::string with_slash(const std::string& path) {
  return path.starts_with("/") ? path : "/" + path;
}

}  // namespace

std::vector<std::string> read_lines(const std::filesystem::path& p) {
  std::vector<std::string> lines;
  std::istringstream in(read_file(p));
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// ---- ServerProcess

void ServerProcess::start(
    const std::function<std::vector<std::string>(const std::vector<std::uint16_t>&)>& make,
    std::size_t port_count, const std::filesystem::path& log) {
  for (int attempt = 0; attempt < 4; ++attempt) {
    ports_.clear();
    for (std::size_t i = 0; i < port_count; ++i) ports_.push_back(free_port());
    if (try_start(make(ports_), log)) return;
  }
  INFO("server log ", log.string(), ":\n", read_file(log));
  FAIL("test server did not start");
}

bool ServerProcess::try_start(const std::vector<std::string>& argv,
                              const std::filesystem::path& log) {
  pid_ = spawn_child(argv, log);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {  // died: port taken, bad config, ...
      pid_ = -1;
      return false;
    }
    bool all = true;
    for (auto p : ports_) all = all && accepts(p);
    if (all) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  stop();
  return false;
}

void ServerProcess::stop() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
}

// ---- NginxServer

NginxServer::NginxServer(std::filesystem::path root, NginxOptions options)
    : dir_(temp_.path()), root_(std::filesystem::absolute(std::move(root))), options_(options) {
  REQUIRE_MESSAGE(std::filesystem::exists("/usr/sbin/nginx"),
                  "nginx is missing: run tools/setup (package nginx-light)");
  if (options_.https || options_.require_client_cert) make_certificates();
  std::size_t ports = options_.https || options_.require_client_cert ? 2 : 1;
  process_.start(
      [&](const std::vector<std::uint16_t>& p) -> std::vector<std::string> {
        write_file(dir_ / "nginx.conf", config(p[0], p.size() > 1 ? p[1] : 0));
        return {"/usr/sbin/nginx",
                "-p",
                dir_.string(),
                "-c",
                (dir_ / "nginx.conf").string(),
                "-e",
                (dir_ / "error.log").string()};
      },
      ports, dir_ / "nginx.out");
}

std::string NginxServer::url(const std::string& path) const {
  return "http://127.0.0.1:" + std::to_string(process_.ports().at(0)) + with_slash(path);
}

std::string NginxServer::https_url(const std::string& path) const {
  return "https://127.0.0.1:" + std::to_string(process_.ports().at(1)) + with_slash(path);
}

std::vector<std::string> NginxServer::access_log(std::size_t wait_for) const {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  for (;;) {
    auto lines = read_lines(dir_ / "access.log");
    if (lines.size() >= wait_for || std::chrono::steady_clock::now() > deadline) return lines;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

void NginxServer::make_certificates() {
  REQUIRE_MESSAGE(have_program("openssl"), "openssl is missing: run tools/setup");
  write_file(dir_ / "openssl.cnf", R"([req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = CA:FALSE
subjectAltName = IP:127.0.0.1,DNS:localhost
extendedKeyUsage = serverAuth
[client]
basicConstraints = CA:FALSE
extendedKeyUsage = clientAuth
)");
  const std::string d = shell_quote(dir_.string());
  const std::string key = " -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
  run_ok("cd " + d + " && openssl req -x509 -config openssl.cnf -extensions ca" + key +
         " -keyout ca.key -out ca.pem -days 2 -subj /CN=abup-test-ca");
  for (const std::string name : {"server", "client"}) {
    run_ok("cd " + d + " && openssl req -new -config openssl.cnf" + key + " -keyout " + name +
           ".key -out " + name + ".csr -subj /CN=abup-test-" + name + " && openssl x509 -req -in " +
           name + ".csr -CA ca.pem -CAkey ca.key -set_serial " +
           std::to_string(name == "server" ? 2 : 3) + " -days 2 -extfile openssl.cnf -extensions " +
           name + " -out " + name + ".pem");
  }
}

std::string NginxServer::config(std::uint16_t http_port, std::uint16_t https_port) const {
  const std::string d = dir_.string();
  const std::string root = root_.string();
  std::ostringstream c;
  c << "daemon off;\nmaster_process off;\nworker_processes 1;\n";
  if (::geteuid() == 0) c << "user root;\n";  // else nginx looks up its build-time user
  c << "pid " << d << "/nginx.pid;\nlock_file " << d << "/nginx.lock;\n"
    << "error_log " << d << "/error.log info;\n"
    << "events { worker_connections 128; }\n"
    << "http {\n"
    << "  default_type application/octet-stream;\n"
    << "  log_format ranges '$request_method $request_uri $http_range $status $body_bytes_sent "
       "$connection';\n"
    << "  access_log " << d << "/access.log ranges;\n"
    << "  client_body_temp_path " << d << "/client_body;\n"
    << "  proxy_temp_path " << d << "/proxy;\n"
    << "  fastcgi_temp_path " << d << "/fastcgi;\n"
    << "  uwsgi_temp_path " << d << "/uwsgi;\n"
    << "  scgi_temp_path " << d << "/scgi;\n"
    << "  sendfile on;\n  keepalive_timeout 30;\n";
  auto locations = [&](bool tls) {
    c << "    root " << root << ";\n"
      << "    location /norange/ { alias " << root << "/; max_ranges 0; }\n"
      << "    location /onerange/ { alias " << root << "/; max_ranges 1; }\n";
    if (tls)
      c << "    location /tohttp/ { rewrite ^/tohttp/(.*)$ http://127.0.0.1:" << http_port
        << "/$1 redirect; }\n";
  };
  c << "  server {\n    listen 127.0.0.1:" << http_port << ";\n";
  locations(false);
  c << "  }\n";
  if (https_port) {
    c << "  server {\n    listen 127.0.0.1:" << https_port << " ssl;\n"
      << "    ssl_certificate " << d << "/server.pem;\n"
      << "    ssl_certificate_key " << d << "/server.key;\n";
    if (options_.require_client_cert)
      c << "    ssl_client_certificate " << d << "/ca.pem;\n    ssl_verify_client on;\n";
    if (!options_.tls_protocols.empty())
      c << "    ssl_protocols " << options_.tls_protocols
        << ";\n    ssl_ciphers DEFAULT:@SECLEVEL=0;\n";
    locations(true);
    c << "  }\n";
  }
  c << "}\n";
  return c.str();
}

}  // namespace abup::test
