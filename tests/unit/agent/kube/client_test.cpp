// The Kubernetes client against the fake API server over real TLS with client certificates.
#include "agent/kube/client.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <thread>

#include "agent/kube/kubeconfig.hpp"
#include "support/fake_apiserver.hpp"

using namespace abup;
using namespace abup::agent::kube;
using abup::test::FakeApiServer;

namespace {

protocol::TransportOptions fast() {
  protocol::TransportOptions t;
  t.retry_base = std::chrono::milliseconds(10);
  t.retry_max = std::chrono::milliseconds(50);
  t.max_retries = 2;
  t.connect_timeout = std::chrono::seconds(5);
  return t;
}

Client client_for(const FakeApiServer& api, bool inline_data) {
  auto k = load_kubeconfig(api.write_kubeconfig(inline_data));
  REQUIRE_MESSAGE(k, (k ? "" : k.error().message));
  return Client(*k, fast());
}

// Node "node-1" as `c` reads it, which must succeed.
NodeObject node_1(const Client& c) {
  auto n = c.get_node("node-1");
  REQUIRE_MESSAGE(n, (n ? "" : n.error().message));
  return *std::move(n);
}

// The fake API server with Node "node-1", a client for it (kubeconfig with inline data), and the
// Node as that client first read it.
struct WithNode {
  FakeApiServer api{"node-1"};
  Client c = client_for(api, true);
  NodeObject n = node_1(c);
};

}  // namespace

TEST_CASE("kubeconfig files and inline data both authenticate as system:node") {
  FakeApiServer api("node-1");
  for (bool inline_data : {false, true}) {
    CAPTURE(inline_data);
    auto c = client_for(api, inline_data);
    CHECK(c.config().server == api.server_url());
    auto n = node_1(c);
    CHECK(n.name == "node-1");
    CHECK(n.uid == "5f0c7a52-1d3e-4c4b-9a55-0e2c1b7f9d10");
    CHECK(api.requests().back().identity == "system:node:node-1");
  }
}

TEST_CASE("a bearer token file is sent and re-read") {
  FakeApiServer api("node-1");
  auto k = load_kubeconfig(api.write_token_kubeconfig("s3cret"));
  REQUIRE(k);
  Client c(*k, fast());
  REQUIRE(c.get_node("node-1"));
  CHECK(api.requests().back().identity == "token:s3cret");
  test::write_file(api.dir() / "token", "rotated\n");
  REQUIRE(c.get_node("node-1"));
  CHECK(api.requests().back().identity == "token:rotated");
}

TEST_CASE("a server certificate from another CA is refused") {
  FakeApiServer api("node-1");
  FakeApiServer other("node-1");
  auto k = load_kubeconfig(api.write_kubeconfig(true));
  REQUIRE(k);
  k->server = other.server_url();
  Client c(*k, fast());
  auto n = c.get_node("node-1");
  REQUIRE_FALSE(n);
  CHECK(n.error().code == Errc::untrusted);
}

TEST_CASE_FIXTURE(WithNode,
                  "merge-patch sets and removes annotations and bumps the resourceVersion") {
  auto after = c.patch_annotations("node-1", {{"acl.azure.com/update-status", "{\"a\":1}"}});
  REQUIRE_MESSAGE(after, (after ? "" : after.error().message));
  CHECK(after->annotations.at("acl.azure.com/update-status") == "{\"a\":1}");
  CHECK(after->annotations.count("node.alpha.kubernetes.io/ttl") == 1);
  CHECK(std::stoull(after->resource_version) > std::stoull(n.resource_version));
  auto req = api.requests().back();
  CHECK(req.method == "PATCH");
  CHECK(req.content_type == "application/merge-patch+json");
  CHECK(nlohmann::json::parse(req.body) ==
        nlohmann::json::parse(
            R"({"metadata":{"annotations":{"acl.azure.com/update-status":"{\"a\":1}"}}})"));
  auto removed = c.patch_annotations("node-1", {{"acl.azure.com/update-status", std::nullopt}});
  REQUIRE(removed);
  CHECK(removed->annotations.count("acl.azure.com/update-status") == 0);
}

TEST_CASE("API errors carry the status and the server's message") {
  FakeApiServer api("node-1");
  auto c = client_for(api, false);
  api.fail("PATCH", 409, 1);
  auto r = c.patch_annotations("node-1", {{"k", "v"}});
  REQUIRE_FALSE(r);
  CHECK(r.error().message.find("HTTP 409") != std::string::npos);
  CHECK(r.error().message.find("fault injected") != std::string::npos);
  api.delete_node();
  auto g = c.get_node("node-1");
  REQUIRE_FALSE(g);
  CHECK(g.error().code == Errc::not_found);
}

TEST_CASE_FIXTURE(WithNode, "events name the Node as involvedObject") {
  REQUIRE(c.post_event(n, {"Warning", "UpdateRequestInvalid", "bad request"}));
  auto ev = api.events();
  REQUIRE(ev.size() == 1);
  CHECK(ev[0]["involvedObject"]["name"] == "node-1");
  CHECK(ev[0]["involvedObject"]["uid"] == n.uid);
  CHECK(ev[0]["type"] == "Warning");
  CHECK(ev[0]["reason"] == "UpdateRequestInvalid");
}

TEST_CASE_FIXTURE(
    WithNode, "a watch delivers changes, resumes from its resourceVersion, and reports expiry") {
  std::string rv = n.resource_version;
  std::atomic<bool> stop{false};
  std::vector<std::string> seen;
  std::thread writer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    api.set_annotation("k", "one");
  });
  auto end = c.watch_node("node-1", rv, 5, stop, [&](const NodeObject& node) {
    seen.push_back(node.annotations.count("k") ? node.annotations.at("k") : "");
    return false;  // one event is enough
  });
  writer.join();
  REQUIRE(end);
  CHECK(*end == WatchEnd::stopped);
  REQUIRE(seen == std::vector<std::string>{"one"});
  auto req = api.requests().back();
  CHECK(req.target.find("fieldSelector=metadata.name%3Dnode-1") != std::string::npos);
  CHECK(req.target.find("timeoutSeconds=5") != std::string::npos);

  // A change made while nobody watched arrives when resuming from the last resourceVersion.
  api.set_annotation("k", "two");
  end = c.watch_node("node-1", rv, 5, stop, [&](const NodeObject& node) {
    seen.push_back(node.annotations.at("k"));
    return false;
  });
  REQUIRE(end);
  CHECK(seen.back() == "two");

  // Broken mid-stream: an error, and the half line was not taken as an event.
  std::thread breaker([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    api.break_watches();
  });
  int taken = 0;
  end = c.watch_node("node-1", rv, 5, stop, [&](const NodeObject&) {
    ++taken;
    return true;
  });
  breaker.join();
  CHECK_FALSE(end);
  CHECK(taken == 0);

  api.compact();
  end = c.watch_node("node-1", rv, 5, stop, [&](const NodeObject&) { return true; });
  REQUIRE(end);
  CHECK(*end == WatchEnd::expired);

  api.delete_node();
  rv.assign(1, '0');
  end = c.watch_node("node-1", rv, 5, stop, [&](const NodeObject&) { return true; });
  REQUIRE_FALSE(end);
  CHECK(end.error().code == Errc::not_found);
}

TEST_CASE_FIXTURE(WithNode, "a stream the server ends at timeoutSeconds is closed cleanly") {
  std::string rv = n.resource_version;
  std::atomic<bool> stop{false};
  auto end = c.watch_node("node-1", rv, 1, stop, [](const NodeObject&) { return true; });
  REQUIRE(end);
  CHECK(*end == WatchEnd::closed);
}
