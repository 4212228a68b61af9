#include "agent/kube/kubeconfig.hpp"

#include <doctest/doctest.h>

using namespace abup::agent::kube;

namespace {

std::string with_user(const std::string& user) {
  return "apiVersion: v1\nkind: Config\ncurrent-context: ctx\nclusters:\n- name: c\n  cluster:\n"
         "    server: https://10.0.0.1:443/\n    certificate-authority: pki/ca.crt\n"
         "contexts:\n- name: ctx\n  context:\n    cluster: c\n    user: u\n"
         "users:\n- name: u\n  user:\n" +
         user;
}

std::string error_of(const std::string& yaml) {
  auto k = parse_kubeconfig(yaml, "/var/lib/kubelet");
  REQUIRE_FALSE(k);
  return k.error().message;
}

}  // namespace

TEST_CASE("kubelet's kubeconfig: files relative to its folder") {
  auto k = parse_kubeconfig(
      with_user("    client-certificate: /var/lib/kubelet/pki/kubelet-client-current.pem\n"
                "    client-key: pki/kubelet-client-current.pem\n"),
      "/var/lib/kubelet");
  REQUIRE_MESSAGE(k, (k ? "" : k.error().message));
  CHECK(k->server == "https://10.0.0.1:443");
  CHECK(k->ca_file == "/var/lib/kubelet/pki/ca.crt");
  CHECK(k->client_cert_file == "/var/lib/kubelet/pki/kubelet-client-current.pem");
  CHECK(k->client_key_file == "/var/lib/kubelet/pki/kubelet-client-current.pem");
}

TEST_CASE("inline data is decoded, tokens are taken") {
  auto k = parse_kubeconfig(with_user("    client-certificate-data: Q0VSVA==\n"
                                      "    client-key-data: S0VZ\n"),
                            "/x");
  REQUIRE(k);
  CHECK(k->client_cert_pem == "CERT");
  CHECK(k->client_key_pem == "KEY");
  k = parse_kubeconfig(with_user("    tokenFile: token\n"), "/x");
  REQUIRE(k);
  CHECK(k->token_file == "/x/token");
}

TEST_CASE("kubeconfig errors name what is wrong") {
  CHECK(error_of("a: [").find("not valid YAML") != std::string::npos);
  CHECK(error_of("- 1\n").find("mapping") != std::string::npos);
  CHECK(error_of("clusters: []\n").find("no current-context") != std::string::npos);
  std::string other = with_user("    token: t\n");
  other.replace(other.find("current-context: ctx"), 20, "current-context: oth");
  CHECK(error_of(other).find("contexts: no entry named \"oth\"") != std::string::npos);
  CHECK(error_of(with_user("    client-certificate: a\n")).find("needs its key") !=
        std::string::npos);
  CHECK(error_of(with_user("    client-key-data: '!!!'\n    client-certificate: a\n"))
            .find("client-key-data: not valid base64") != std::string::npos);
  CHECK(error_of(with_user("    exec:\n      command: az\n")).find("\"exec\"") !=
        std::string::npos);
  CHECK(error_of(with_user("    client-certificate: a\n    client-certificate-data: QQ==\n"))
            .find("both client-certificate and client-certificate-data") != std::string::npos);
  CHECK(error_of(with_user("    foo: bar\n")).find("no credentials") != std::string::npos);
}
