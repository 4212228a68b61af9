// HTTPS against nginx with a test CA: verification, an https→http redirect, mutual TLS.
#include <doctest/doctest.h>

#include "fixture.hpp"
#include "support/disk.hpp"
#include "support/nginx.hpp"

namespace abup::protocol::test {

using abup::test::NginxServer;

namespace {

TransportOptions https_options() {
  auto o = fast_options();
  o.allow_http = false;
  return o;
}

// nginx serving a fresh Docroot over https, and https-only options that trust its test CA.
struct OnHttps {
  Docroot d;
  NginxServer nginx;
  TransportOptions options = https_options();

  explicit OnHttps(abup::test::NginxOptions tls = {.https = true}) : nginx(d.root, tls) {
    options.ca_file = nginx.ca_file();
  }
};

// The same, with nginx asking for a client certificate from its test CA.
struct OnMutualTls : OnHttps {
  OnMutualTls() : OnHttps({.https = true, .require_client_cert = true}) {}
};

}  // namespace

TEST_CASE_FIXTURE(OnHttps,
                  "https with the CA file works, and without it the certificate is not trusted") {
  auto src = open_ok(nginx.https_url("image.bin"), options);
  CHECK(src->size() == kImageSize);
  CHECK(read_all(*src, 1000, 100000) == d.image.substr(1000, 100000));

  auto r = open_http_source(nginx.https_url("image.bin"), https_options());
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == Errc::untrusted);
  CHECK(r.error().message.starts_with(nginx.https_url("image.bin") +
                                      ": TLS: server certificate not trusted"));
}

TEST_CASE_FIXTURE(OnHttps, "a redirect from https to http is refused") {
  auto r = open_http_source(nginx.https_url("tohttp/image.bin"), options);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == Errc::refused);
  CHECK(r.error().message.find("redirected to a URL that is not https://") != std::string::npos);
  CHECK(r.error().message.find("--allow-http") != std::string::npos);

  options.allow_http = true;  // then the redirect is followed
  auto src = open_ok(nginx.https_url("tohttp/image.bin"), options);
  CHECK(read_all(*src, 0, 10) == d.image.substr(0, 10));
}

TEST_CASE_FIXTURE(
    OnMutualTls,
    "mutual TLS: with the client certificate it works, without it the server refuses") {
  options.client_cert = nginx.client_cert();
  options.client_key = nginx.client_key();
  auto src = open_ok(nginx.https_url("image.bin"), options);
  CHECK(read_all(*src, 0, 4096) == d.image.substr(0, 4096));

  options.client_cert.clear();
  options.client_key.clear();
  auto r = open_http_source(nginx.https_url("image.bin"), options);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == Errc::network);
  CHECK(r.error().message.find("HTTP 400") != std::string::npos);
}

TEST_CASE("a server that speaks only TLS 1.1 is refused, even where OpenSSL would allow it") {
  using namespace abup::test;
  Docroot d;
  NginxServer nginx(d.root, {.https = true, .tls_protocols = "TLSv1.1"});
  // An OpenSSL configuration that allows TLS 1.0 and 1.1 and weak ciphers: what refuses the
  // server below is then abup's own floor (TLS 1.2), not the system's defaults.
  TempDir t;
  write_file(t / "openssl.cnf",
             "openssl_conf = init\n[init]\nssl_conf = ssl\n[ssl]\nsystem_default = sys\n"
             "[sys]\nMinProtocol = TLSv1\nCipherString = DEFAULT:@SECLEVEL=0\n");
  const std::string env = "OPENSSL_CONF=" + shell_quote((t / "openssl.cnf").string()) + " ";
  // The control: under that configuration a client without a floor gets through.
  auto curl =
      run(env + "curl -sS -o /dev/null -w '%{http_code}' --cacert " + shell_quote(nginx.ca_file()) +
          " " + shell_quote(nginx.https_url("image.bin")) + " 2>&1");
  REQUIRE_MESSAGE(curl.out == "200", "TLS 1.1 control failed: " << curl.out);
  // abup, under the same configuration, refuses the handshake before any HTTP.
  make_root(t / "root", 'A', "202601.01.0");
  auto r = run(env + abup_bin() + " check --root " + shell_quote((t / "root").string()) +
               " --app-id e96281a6-d1af-4bde-9a0a-97b76e56dc57 --ca-file " +
               shell_quote(nginx.ca_file()) + " --server " +
               shell_quote(nginx.https_url("v1/update")) + " 2>&1");
  INFO(r.out);
  CHECK(r.exit_code == 1);
  CHECK(r.out.find(nginx.https_url("v1/update") + ": TLS: the server offers no TLS 1.2 or newer, "
                                                  "which abup requires") != std::string::npos);
  // Refused at the handshake, once: no request reached the server, no retry was made.
  const auto log = nginx.access_log(1);
  CHECK(log.size() == 1);  // the control's GET only
  for (const auto& line : log) CHECK(line.starts_with("GET "));
  CHECK(r.out.find("attempts") == std::string::npos);
}

}  // namespace abup::protocol::test
