#include "agent/kube/kubeconfig.hpp"

#include <yaml-cpp/yaml.h>

#include "abup/fs.hpp"
#include "abup/hex.hpp"

namespace abup::agent::kube {
namespace {

Error bad(const std::string& what) {
  return make_error(Errc::invalid_input, "kubeconfig: " + what);
}

// A scalar member as a string; absent or null is empty; anything else an error naming it.
Result<std::string> scalar(const YAML::Node& map, const char* key, const std::string& where) {
  YAML::Node v = map[key];
  if (!v || v.IsNull()) return std::string();
  if (!v.IsScalar()) return bad(where + "." + key + ": expected a string");
  return v.as<std::string>();
}

// The entry named `name` in a list of {name, <kind>: {...}} (clusters, users, contexts).
Result<YAML::Node> named_entry(const YAML::Node& root, const char* list, const char* kind,
                               const std::string& name) {
  YAML::Node entries = root[list];
  if (!entries || !entries.IsSequence()) return bad(std::string("no \"") + list + "\" list");
  for (const auto& e : entries) {
    if (!e.IsMap()) return bad(std::string(list) + ": expected entries with name and " + kind);
    YAML::Node n = e["name"];
    if (n && n.IsScalar() && n.as<std::string>() == name) {
      YAML::Node body = e[kind];
      if (!body || !body.IsMap())
        return bad(std::string(list) + " \"" + name + "\": no \"" + kind + "\" map");
      return body;
    }
  }
  return bad(std::string(list) + ": no entry named \"" + name + "\"");
}

Result<std::string> decode_data(const std::string& text, const std::string& where) {
  std::string compact;
  for (char c : text)
    if (c != '\n' && c != '\r' && c != ' ') compact += c;
  auto bytes = base64_decode(compact);
  if (!bytes || bytes->empty()) return bad(where + ": not valid base64");
  return std::string(bytes->begin(), bytes->end());
}

std::string resolve(const std::string& path, const std::filesystem::path& base) {
  if (path.empty() || std::filesystem::path(path).is_absolute() || base.empty()) return path;
  return (base / path).string();
}

// One credential that may come as a file or as inline data, never both.
Status file_or_data(const YAML::Node& map, const char* file_key, const std::string& where,
                    const std::filesystem::path& base, std::string& file, std::string& pem) {
  std::string data_key = std::string(file_key) + "-data";
  ABUP_TRY(std::string f, scalar(map, file_key, where));
  ABUP_TRY(std::string d, scalar(map, data_key.c_str(), where));
  if (!f.empty() && !d.empty())
    return bad(where + ": both " + file_key + " and " + data_key + " are set");
  file = resolve(f, base);
  if (!d.empty()) {
    ABUP_TRY(pem, decode_data(d, where + "." + data_key));
  }
  return {};
}

Result<Kubeconfig> parse(const YAML::Node& root, const std::filesystem::path& base) {
  if (!root.IsMap()) return bad("expected a YAML mapping at the top");
  Kubeconfig k;
  ABUP_TRY(k.context, scalar(root, "current-context", "top level"));
  if (k.context.empty()) return bad("no current-context");
  ABUP_TRY(YAML::Node ctx, named_entry(root, "contexts", "context", k.context));
  const std::string cw = "context \"" + k.context + "\"";
  ABUP_TRY(k.cluster, scalar(ctx, "cluster", cw));
  ABUP_TRY(k.user, scalar(ctx, "user", cw));
  if (k.cluster.empty()) return bad(cw + ": no cluster");

  ABUP_TRY(YAML::Node cluster, named_entry(root, "clusters", "cluster", k.cluster));
  const std::string clw = "cluster \"" + k.cluster + "\"";
  ABUP_TRY(k.server, scalar(cluster, "server", clw));
  if (!k.server.starts_with("https://") && !k.server.starts_with("http://"))
    return bad(clw + ".server: \"" + k.server + "\" is not an http(s):// URL");
  while (k.server.ends_with("/")) k.server.pop_back();
  ABUP_TRY(std::string insecure, scalar(cluster, "insecure-skip-tls-verify", clw));
  if (insecure == "true")
    return bad(clw + ": insecure-skip-tls-verify is not supported (give the cluster CA)");
  ABUP_CHECK(file_or_data(cluster, "certificate-authority", clw, base, k.ca_file, k.ca_pem));

  if (k.user.empty()) return k;  // anonymous: possible against a test server only
  ABUP_TRY(YAML::Node user, named_entry(root, "users", "user", k.user));
  const std::string uw = "user \"" + k.user + "\"";
  for (const char* unsupported : {"exec", "auth-provider", "username"})
    if (user[unsupported])
      return bad(uw + ": \"" + unsupported + "\" credentials are not supported");
  ABUP_CHECK(
      file_or_data(user, "client-certificate", uw, base, k.client_cert_file, k.client_cert_pem));
  ABUP_CHECK(file_or_data(user, "client-key", uw, base, k.client_key_file, k.client_key_pem));
  ABUP_TRY(k.token, scalar(user, "token", uw));
  ABUP_TRY(std::string token_file, scalar(user, "tokenFile", uw));
  k.token_file = resolve(token_file, base);
  const bool has_cert = !k.client_cert_file.empty() || !k.client_cert_pem.empty();
  const bool has_key = !k.client_key_file.empty() || !k.client_key_pem.empty();
  if (has_cert != has_key)
    return bad(uw + ": a client certificate needs its key (client-key or client-key-data)");
  if (!has_cert && k.token.empty() && k.token_file.empty())
    return bad(uw + ": no credentials (client-certificate/-key, token or tokenFile)");
  return k;
}

}  // namespace

Result<Kubeconfig> parse_kubeconfig(std::string_view yaml, const std::filesystem::path& base_dir) {
  try {
    return parse(YAML::Load(std::string(yaml)), base_dir);
  } catch (const YAML::Exception& e) {
    return bad(std::string("not valid YAML: ") + e.what());
  } catch (const std::exception& e) {
    return bad(e.what());
  }
}

Result<Kubeconfig> load_kubeconfig(const std::filesystem::path& path) {
  ABUP_TRY(std::string text, read_file(path));
  auto k = parse_kubeconfig(text, path.parent_path());
  if (!k) return std::move(k).error().with_context(path.string());
  return k;
}

protocol::TransportOptions transport_for(const Kubeconfig& k, protocol::TransportOptions base) {
  base.ca_file = k.ca_file;
  base.ca_pem = k.ca_pem;
  base.client_cert = k.client_cert_file;
  base.client_cert_pem = k.client_cert_pem;
  base.client_key = k.client_key_file;
  base.client_key_pem = k.client_key_pem;
  base.allow_http = k.server.starts_with("http://");
  return base;
}

}  // namespace abup::agent::kube
