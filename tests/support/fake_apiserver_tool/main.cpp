// abup-fake-apiserver: the tests' strict fake Kubernetes API server (support/fake_apiserver.hpp:
// TLS, client certificates verified, one v1/Node, merge-PATCH, watch, Events, every request
// recorded) as a process, for the QEMU end-to-end suite: the guest's abup daemon reaches it
// through QEMU's user networking, and the host harness plays the control plane over stdin/stdout.
//
// Control protocol: one JSON object per line on stdin, one JSON reply per line on stdout,
// {"ok": true, ...} or {"error": "..."}. The first line on stdout (unasked) is
// {"ok": true, "url": "https://127.0.0.1:PORT", "port": PORT, "dir": DIR} once it listens. It
// exits 0 at the end of stdin; anything it does not understand is an error reply.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "abup/args.hpp"
#include "support/fake_apiserver.hpp"

namespace {

using json = nlohmann::json;

constexpr const char* kUsage =
    R"(usage: abup-fake-apiserver --node NAME [--san IP:ADDR|DNS:NAME]...

The tests' fake Kubernetes API server on 127.0.0.1 (a free port), for one v1/Node NAME. Only
the client certificate of system:node:NAME (or a bearer token) is let in. Commands, one JSON
object per line on stdin, each answered with one JSON line on stdout:
  {"op":"kubeconfig","server":URL}            write a kubeconfig with inline certificates
                                              naming URL as the server -> {"path":...}
  {"op":"set-annotation","key":K,"value":V}   the control plane writes an annotation
  {"op":"node"}                               -> {"node": the Node object}
  {"op":"annotation-history","key":K}         every value the client PATCHed -> {"values":[...]}
  {"op":"requests"}                           -> {"requests":[{method,target,contentType,
                                                 body,identity}...]}
  {"op":"events"}                             -> {"events":[...]}
  {"op":"watch-count"}                        -> {"watches":N}

Options:
)";

std::string str(const json& cmd, const char* key) {
  if (!cmd.contains(key) || !cmd[key].is_string())
    throw std::invalid_argument(std::string("\"") + key + "\" must be a string");
  return cmd[key].get<std::string>();
}

json answer(abup::test::FakeApiServer& api, const json& cmd) {
  const std::string op = str(cmd, "op");
  auto only = [&](std::initializer_list<const char*> keys) {
    for (const auto& [k, v] : cmd.items()) {
      bool known = false;
      for (const char* want : keys) known |= k == want;
      if (!known) throw std::invalid_argument("unknown field \"" + k + "\" for " + op);
    }
  };
  if (op == "kubeconfig") {
    only({"op", "server"});
    return {{"path", api.write_kubeconfig(true, str(cmd, "server")).string()}};
  }
  if (op == "set-annotation") {
    only({"op", "key", "value"});
    api.set_annotation(str(cmd, "key"), str(cmd, "value"));
    return json::object();
  }
  if (op == "node") {
    only({"op"});
    return {{"node", api.node()}};
  }
  if (op == "annotation-history") {
    only({"op", "key"});
    return {{"values", api.annotation_history(str(cmd, "key"))}};
  }
  if (op == "requests") {
    only({"op"});
    json out = json::array();
    for (const auto& r : api.requests())
      out.push_back({{"method", r.method},
                     {"target", r.target},
                     {"contentType", r.content_type},
                     {"body", r.body},
                     {"identity", r.identity}});
    return {{"requests", out}};
  }
  if (op == "events") {
    only({"op"});
    return {{"events", api.events()}};
  }
  if (op == "watch-count") {
    only({"op"});
    return {{"watches", api.watch_count()}};
  }
  throw std::invalid_argument("unknown op \"" + op + "\"");
}

}  // namespace

int main(int argc, char** argv) {
  using namespace abup;
  // The support code reports failures through doctest assertions: outside a test run, a
  // failed one ends the process with its message.
  doctest::Context context;
  context.setAsDefaultForAssertsOutOfTestCases();
  context.setAssertHandler([](const doctest::AssertData& ad) {
    std::fprintf(stderr, "abup-fake-apiserver: %s:%d: %s %s\n", ad.m_file, ad.m_line, ad.m_expr,
                 ad.m_exception.c_str());
    std::exit(1);
  });
  const std::vector<OptionSpec> specs = {
      {"node", true, false, "NAME  the Node's name (client identity system:node:NAME)"},
      {"san", true, true, "IP:ADDR|DNS:NAME  another subjectAltName of the server certificate"},
      {"help", false, false, "show this help"},
  };
  auto args = Args::parse(std::vector<std::string>(argv + 1, argv + argc), specs);
  if (!args) {
    std::fprintf(stderr, "abup-fake-apiserver: %s\n", args.error().message.c_str());
    return 2;
  }
  if (args->has("help")) {
    std::printf("%s%s", kUsage, format_options(specs).c_str());
    return 0;
  }
  if (!args->has("node")) {
    std::fprintf(stderr, "abup-fake-apiserver: --node NAME is required\n");
    return 2;
  }
  try {
    test::FakeApiServer api(*args->get("node"), args->all("san"));
    const std::string url = api.server_url();
    std::cout << json{{"ok", true},
                      {"url", url},
                      {"port", std::stoi(url.substr(url.rfind(':') + 1))},
                      {"dir", api.dir().string()}}
                     .dump()
              << std::endl;
    std::string line;
    while (std::getline(std::cin, line)) {
      json reply;
      try {
        json cmd = json::parse(line);
        if (!cmd.is_object()) throw std::invalid_argument("a command is a JSON object");
        reply = answer(api, cmd);
        reply["ok"] = true;
      } catch (const std::exception& e) {
        reply = {{"error", e.what()}};
      }
      std::cout << reply.dump(-1, ' ', false, json::error_handler_t::replace) << std::endl;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "abup-fake-apiserver: %s\n", e.what());
    return 1;
  }
  return 0;
}
