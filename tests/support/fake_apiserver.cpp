#include "support/fake_apiserver.hpp"

#include <sys/socket.h>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <thread>

namespace abup::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using json = nlohmann::json;

namespace {

constexpr std::size_t kMaxAnnotationBytes = 256 * 1024;

std::string q(const std::filesystem::path& p) {
  return shell_quote(p.string());
}

std::string base64_file(const std::filesystem::path& p) {
  return run_ok("base64 -w0 " + q(p));
}

std::map<std::string, std::string> query_of(const std::string& target) {
  std::map<std::string, std::string> out;
  auto qm = target.find('?');
  if (qm == std::string::npos) return out;
  std::string rest = target.substr(qm + 1);
  auto unescape = [](std::string s) {
    std::string o;
    for (std::size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '%' && i + 2 < s.size()) {
        o += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
        i += 2;
      } else {
        o += s[i];
      }
    }
    return o;
  };
  std::size_t start = 0;
  while (start <= rest.size()) {
    auto amp = rest.find('&', start);
    std::string kv = rest.substr(start, amp == std::string::npos ? std::string::npos : amp - start);
    auto eq = kv.find('=');
    if (eq != std::string::npos) out[kv.substr(0, eq)] = unescape(kv.substr(eq + 1));
    if (amp == std::string::npos) break;
    start = amp + 1;
  }
  return out;
}

json status_body(int code, const std::string& reason, const std::string& message) {
  return {{"kind", "Status"},   {"apiVersion", "v1"}, {"status", "Failure"},
          {"message", message}, {"reason", reason},   {"code", code}};
}

}  // namespace

struct FakeApiServer::Impl {
  TempDir tmp;
  std::string name;
  std::vector<std::string> extra_sans;
  asio::io_context io;
  ssl::context tls{ssl::context::tls_server};
  tcp::acceptor acceptor{io};
  std::thread accept_thread;

  mutable std::mutex mu;
  std::condition_variable changed;
  json node;  // null when deleted
  // (rv, node) after each change; {"deleted": last node} for the deletion.
  std::deque<std::pair<std::uint64_t, json>> history;
  std::uint64_t rv = 100;
  std::uint64_t compacted = 0;  // watches from below this rv are expired
  std::uint64_t break_generation = 0;
  bool stopping = false;
  bool down = false;
  int watches = 0;
  struct Fault {
    std::string method;
    int status;
    int times;
  };
  std::vector<Fault> faults;
  std::vector<ApiRequest> requests;
  std::vector<json> events;
  std::map<std::string, std::vector<std::string>> annotation_values;
  std::set<int> open_fds;
  std::vector<std::thread> connections;

  void make_pki() {
    std::string d = q(tmp.path());
    std::string sans = "IP:127.0.0.1,DNS:localhost";
    for (const auto& san : extra_sans) {
      bool ok = (san.starts_with("IP:") || san.starts_with("DNS:")) &&
                san.find_first_not_of(
                    "abcdefghijklmnopqrstuvwxyz"
                    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:.-") == std::string::npos;
      if (!ok) throw std::invalid_argument("subjectAltName '" + san + "': expected IP:… or DNS:…");
      sans += "," + san;
    }
    run_ok(
        "set -e; cd " + d +
        "; openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2"
        " -subj /CN=fake-kubernetes-ca -keyout ca.key -out ca.crt 2>/dev/null;"
        " openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=kube-apiserver"
        " -keyout server.key -out server.csr 2>/dev/null;"
        " printf 'subjectAltName=" +
        sans +
        "\\n' > server.ext;"
        " openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2"
        " -extfile server.ext -out server.crt 2>/dev/null;"
        " openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
        " -subj '/O=system:nodes/CN=system:node:" +
        name +
        "' -keyout client.key -out client.csr 2>/dev/null;"
        " openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2"
        " -out client.crt 2>/dev/null");
  }

  void bump(const char* why) {
    (void)why;
    node["metadata"]["resourceVersion"] = std::to_string(++rv);
    history.emplace_back(rv, node);
    changed.notify_all();
  }

  std::string identity_of(SSL* s, const std::string& authorization) {
    if (X509* cert = SSL_get0_peer_certificate(s)) {
      char cn[256] = {};
      X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn);
      return cn;
    }
    if (authorization.starts_with("Bearer ")) return "token:" + authorization.substr(7);
    return "";
  }

  using Stream = beast::ssl_stream<tcp::socket>;

  template <class Body>
  void send(Stream& stream, http::response<Body>& res) {
    res.set(http::field::content_type, "application/json");
    res.prepare_payload();
    http::write(stream, res);
  }

  void reply(Stream& stream, unsigned version, bool keep_alive, int status, const json& body) {
    http::response<http::string_body> res{static_cast<http::status>(status), version};
    res.keep_alive(keep_alive);
    res.body() = body.dump();
    send(stream, res);
  }

  // A watch: chunked JSON lines until the timeout, a break, the node's deletion or shutdown.
  void watch(Stream& stream, unsigned version, const std::map<std::string, std::string>& query) {
    auto selector = query.count("fieldSelector") ? query.at("fieldSelector") : "";
    std::uint64_t from = query.count("resourceVersion") && !query.at("resourceVersion").empty()
                             ? std::stoull(query.at("resourceVersion"))
                             : 0;
    int timeout = query.count("timeoutSeconds") ? std::stoi(query.at("timeoutSeconds")) : 1800;
    http::response<http::empty_body> res{http::status::ok, version};
    res.set(http::field::content_type, "application/json");
    res.chunked(true);
    http::response_serializer<http::empty_body> sr{res};
    http::write_header(stream, sr);
    auto chunk = [&](const std::string& line) {
      asio::write(stream, http::make_chunk(asio::buffer(line)));
    };
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout);
    std::unique_lock lock(mu);
    const std::uint64_t generation = break_generation;
    if (selector != "metadata.name=" + name) {
      lock.unlock();
      asio::write(stream, http::make_chunk_last());
      return;
    }
    if (from != 0 && from < compacted) {
      std::string line =
          json{{"type", "ERROR"},
               {"object", status_body(410, "Expired",
                                      "too old resource version: " + std::to_string(from) + " (" +
                                          std::to_string(compacted) + ")")}}
              .dump() +
          "\n";
      lock.unlock();
      chunk(line);
      asio::write(stream, http::make_chunk_last());
      return;
    }
    // resourceVersion 0 or absent: start with the current object, as the apiserver does.
    if (from == 0 && !node.is_null()) from = rv - 1;
    for (;;) {
      std::vector<std::string> lines;
      for (const auto& [v, obj] : history)
        if (v > from) {
          bool gone = obj.contains("deleted");
          lines.push_back(
              json{{"type", gone ? "DELETED" : "MODIFIED"}, {"object", gone ? obj["deleted"] : obj}}
                  .dump() +
              "\n");
          from = v;
        }
      if (!lines.empty()) {
        lock.unlock();
        for (const auto& l : lines) chunk(l);
        lock.lock();
        continue;
      }
      if (stopping) return;
      if (break_generation != generation) {
        // Half an event, then the connection drops: the client must not take it.
        lock.unlock();
        chunk("{\"type\":\"MODIFIED\",\"object\":{\"kind\":\"No");
        beast::get_lowest_layer(stream).shutdown(tcp::socket::shutdown_both);
        throw beast::system_error(asio::error::connection_aborted);
      }
      if (changed.wait_until(lock, deadline) == std::cv_status::timeout) break;
    }
    lock.unlock();
    asio::write(stream, http::make_chunk_last());
  }

  // Returns false when the connection is to be closed.
  bool handle(Stream& stream, http::request<http::string_body>& req) {
    const std::string target(req.target());
    const std::string method(req.method_string());
    const bool keep = req.keep_alive();
    const unsigned version = req.version();
    std::string identity =
        identity_of(stream.native_handle(), std::string(req[http::field::authorization]));
    auto query = query_of(target);
    const std::string path = target.substr(0, target.find('?'));
    std::unique_lock lock(mu);
    requests.push_back(
        {method, target, std::string(req[http::field::content_type]), req.body(), identity});
    for (auto& f : faults) {
      if (f.times > 0 && (f.method == "*" || f.method == method)) {
        --f.times;
        lock.unlock();
        reply(stream, version, keep, f.status,
              status_body(f.status, "InjectedFault", "fault injected by the test"));
        return keep;
      }
    }
    if (identity != "system:node:" + name && !identity.starts_with("token:")) {
      lock.unlock();
      reply(stream, version, keep, 401, status_body(401, "Unauthorized", "Unauthorized"));
      return keep;
    }
    const std::string node_path = "/api/v1/nodes/" + name;
    if (method == "GET" && path == "/api/v1/nodes" && query["watch"] == "true") {
      ++watches;
      lock.unlock();
      watch(stream, version, query);
      return false;
    }
    if (method == "GET" && path == node_path) {
      json body =
          node.is_null() ? status_body(404, "NotFound", "nodes \"" + name + "\" not found") : node;
      int status = node.is_null() ? 404 : 200;
      lock.unlock();
      reply(stream, version, keep, status, body);
      return keep;
    }
    if (method == "PATCH" && path == node_path) {
      auto [status, body] = patch(req);
      lock.unlock();
      reply(stream, version, keep, status, body);
      return keep;
    }
    if (method == "POST" && path == "/api/v1/namespaces/default/events") {
      auto [status, body] = post_event(req);
      lock.unlock();
      reply(stream, version, keep, status, body);
      return keep;
    }
    lock.unlock();
    reply(stream, version, keep, path.starts_with("/api/v1/nodes/") ? 403 : 404,
          status_body(403, "Forbidden", "not allowed for system:node:" + name + ": " + target));
    return keep;
  }

  // Called with mu held.
  std::pair<int, json> patch(const http::request<http::string_body>& req) {
    if (node.is_null())
      return {404, status_body(404, "NotFound", "nodes \"" + name + "\" not found")};
    if (req[http::field::content_type] != "application/merge-patch+json")
      return {415, status_body(415, "UnsupportedMediaType",
                               "the body of the request was in an unknown format")};
    json p = json::parse(req.body(), nullptr, false);
    if (p.is_discarded() || !p.is_object())
      return {400, status_body(400, "BadRequest", "invalid JSON patch")};
    json next = node;
    next.merge_patch(p);  // RFC 7386
    std::size_t total = 0;
    if (next["metadata"].contains("annotations")) {
      for (const auto& [k, v] : next["metadata"]["annotations"].items()) {
        if (!v.is_string())
          return {422, status_body(422, "Invalid", "annotation " + k + ": not a string")};
        total += k.size() + v.get<std::string>().size();
      }
    }
    if (total > kMaxAnnotationBytes)
      return {422, status_body(422, "Invalid",
                               "metadata.annotations: Too long: must have at most "
                               "262144 bytes")};
    if (p.contains("metadata") && p["metadata"].contains("annotations"))
      for (const auto& [k, v] : p["metadata"]["annotations"].items())
        if (v.is_string()) annotation_values[k].push_back(v);
    node = std::move(next);
    bump("patch");
    return {200, node};
  }

  std::pair<int, json> post_event(const http::request<http::string_body>& req) {
    json e = json::parse(req.body(), nullptr, false);
    if (e.is_discarded() || e.value("kind", "") != "Event" || !e.contains("involvedObject") ||
        e["involvedObject"].value("kind", "") != "Node" ||
        e["involvedObject"].value("name", "") != name || e.value("reason", "").empty() ||
        e.value("message", "").empty())
      return {422, status_body(422, "Invalid",
                               "Event: involvedObject must be this Node, with "
                               "reason and message")};
    e["metadata"]["name"] = name + ".abup-" + std::to_string(events.size());
    events.push_back(e);
    return {201, e};
  }

  void serve(tcp::socket socket) {
    int fd = socket.native_handle();
    {
      std::lock_guard lock(mu);
      open_fds.insert(fd);
    }
    try {
      Stream stream(std::move(socket), tls);
      stream.handshake(ssl::stream_base::server);
      beast::flat_buffer buffer;
      for (;;) {
        http::request<http::string_body> req;
        http::read(stream, buffer, req);
        if (!handle(stream, req)) break;
      }
      beast::error_code ec;
      stream.shutdown(ec);
    } catch (const std::exception&) {
      // The client went away, or the test broke the connection: nothing to report.
    }
    std::lock_guard lock(mu);
    open_fds.erase(fd);
  }

  void accept_loop() {
    for (;;) {
      tcp::socket socket(io);
      beast::error_code ec;
      acceptor.accept(socket, ec);
      std::lock_guard lock(mu);
      if (stopping) return;
      if (ec) continue;
      if (down) {
        socket.close(ec);
        continue;
      }
      connections.emplace_back([this, s = std::move(socket)]() mutable { serve(std::move(s)); });
    }
  }
};

FakeApiServer::FakeApiServer(std::string node_name, std::vector<std::string> extra_sans)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.name = std::move(node_name);
  m.extra_sans = std::move(extra_sans);
  m.make_pki();
  auto dir = m.tmp.path();
  m.tls.use_certificate_chain_file((dir / "server.crt").string());
  m.tls.use_private_key_file((dir / "server.key").string(), ssl::context::pem);
  m.tls.load_verify_file((dir / "ca.crt").string());
  // Like kube-apiserver: a client certificate is verified when offered; a token may stand in.
  m.tls.set_verify_mode(ssl::verify_peer);
  m.node = {{"apiVersion", "v1"},
            {"kind", "Node"},
            {"metadata",
             {{"name", m.name},
              {"uid", "5f0c7a52-1d3e-4c4b-9a55-0e2c1b7f9d10"},
              {"resourceVersion", std::to_string(m.rv)},
              {"labels", {{"kubernetes.io/hostname", m.name}}},
              {"annotations", {{"node.alpha.kubernetes.io/ttl", "0"}}}}},
            {"spec", json::object()},
            {"status", {{"nodeInfo", {{"osImage", "Azure Container Linux"}}}}}};
  m.history.emplace_back(m.rv, m.node);
  tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
  m.acceptor.open(ep.protocol());
  m.acceptor.set_option(tcp::acceptor::reuse_address(true));
  m.acceptor.bind(ep);
  m.acceptor.listen();
  m.accept_thread = std::thread([&m] { m.accept_loop(); });
}

FakeApiServer::~FakeApiServer() {
  Impl& m = *impl_;
  {
    std::lock_guard lock(m.mu);
    m.stopping = true;
    m.changed.notify_all();
    for (int fd : m.open_fds) ::shutdown(fd, SHUT_RDWR);
  }
  ::shutdown(m.acceptor.native_handle(), SHUT_RDWR);
  beast::error_code ec;
  m.acceptor.close(ec);
  m.accept_thread.join();
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(m.mu);
    threads.swap(m.connections);
  }
  for (auto& t : threads) t.join();
}

std::string FakeApiServer::server_url() const {
  return "https://127.0.0.1:" + std::to_string(impl_->acceptor.local_endpoint().port());
}

const std::filesystem::path& FakeApiServer::dir() const {
  return impl_->tmp.path();
}

std::filesystem::path FakeApiServer::write_kubeconfig(bool inline_data,
                                                      const std::string& server) const {
  auto d = dir();
  auto path = d / (inline_data ? "kubeconfig-inline" : "kubeconfig");
  std::string cluster = inline_data
                            ? "    certificate-authority-data: " + base64_file(d / "ca.crt") + "\n"
                            : "    certificate-authority: ca.crt\n";
  std::string user = inline_data
                         ? "    client-certificate-data: " + base64_file(d / "client.crt") +
                               "\n    client-key-data: " + base64_file(d / "client.key") + "\n"
                         : "    client-certificate: " + (d / "client.crt").string() +
                               "\n    client-key: client.key\n";
  write_file(path,
             "apiVersion: v1\nkind: Config\nclusters:\n- name: other\n  cluster:\n"
             "    server: https://192.0.2.1:6443\n- name: aks\n  cluster:\n" +
                 cluster + "    server: " + (server.empty() ? server_url() : server) +
                 "\ncontexts:\n- name: node\n  context:\n    cluster: aks\n"
                 "    user: kubelet\ncurrent-context: node\nusers:\n- name: kubelet\n"
                 "  user:\n" +
                 user);
  return path;
}

std::filesystem::path FakeApiServer::write_token_kubeconfig(const std::string& token) const {
  auto d = dir();
  write_file(d / "token", token + "\n");
  auto path = d / "kubeconfig-token";
  write_file(path, "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority: " +
                       (d / "ca.crt").string() + "\n    server: " + server_url() +
                       "\n  name: c\ncontexts:\n- context:\n    cluster: c\n    user: u\n"
                       "  name: x\ncurrent-context: x\nusers:\n- name: u\n  user:\n"
                       "    tokenFile: token\n");
  return path;
}

void FakeApiServer::set_annotation(const std::string& key, const std::string& value) {
  std::lock_guard lock(impl_->mu);
  if (impl_->node.is_null()) return;
  impl_->node["metadata"]["annotations"][key] = value;
  impl_->bump("control plane");
}

std::string FakeApiServer::annotation(const std::string& key) const {
  std::lock_guard lock(impl_->mu);
  if (impl_->node.is_null()) return "";
  const json& a = impl_->node["metadata"]["annotations"];
  return a.contains(key) ? a[key].get<std::string>() : "";
}

nlohmann::json FakeApiServer::node() const {
  std::lock_guard lock(impl_->mu);
  return impl_->node;
}

void FakeApiServer::delete_node() {
  std::lock_guard lock(impl_->mu);
  if (impl_->node.is_null()) return;
  // Watchers get the last state of the object in a DELETED event.
  json last = impl_->node;
  last["metadata"]["resourceVersion"] = std::to_string(++impl_->rv);
  impl_->node = nullptr;
  impl_->history.emplace_back(impl_->rv, json{{"deleted", last}});
  impl_->changed.notify_all();
}

void FakeApiServer::compact() {
  std::lock_guard lock(impl_->mu);
  impl_->compacted = impl_->rv + 1;
  impl_->history.clear();
}

void FakeApiServer::break_watches() {
  std::lock_guard lock(impl_->mu);
  ++impl_->break_generation;
  impl_->changed.notify_all();
}

void FakeApiServer::fail(const std::string& method, int status, int times) {
  std::lock_guard lock(impl_->mu);
  impl_->faults.push_back({method, status, times});
}

void FakeApiServer::set_down(bool down) {
  std::lock_guard lock(impl_->mu);
  impl_->down = down;
  if (down)
    for (int fd : impl_->open_fds) ::shutdown(fd, SHUT_RDWR);
}

std::vector<ApiRequest> FakeApiServer::requests() const {
  std::lock_guard lock(impl_->mu);
  return impl_->requests;
}

std::vector<nlohmann::json> FakeApiServer::events() const {
  std::lock_guard lock(impl_->mu);
  return impl_->events;
}

std::vector<std::string> FakeApiServer::annotation_history(const std::string& key) const {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->annotation_values.find(key);
  return it == impl_->annotation_values.end() ? std::vector<std::string>{} : it->second;
}

int FakeApiServer::watch_count() const {
  std::lock_guard lock(impl_->mu);
  return impl_->watches;
}

}  // namespace abup::test
