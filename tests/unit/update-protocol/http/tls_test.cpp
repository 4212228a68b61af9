// HTTPS against nginx with a test CA: verification, an https→http redirect, mutual TLS.
#include <doctest/doctest.h>

#include "fixture.hpp"
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

}  // namespace abup::protocol::test
