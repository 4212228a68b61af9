#include "agent/metrics.hpp"

#include <doctest/doctest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <thread>

#include "support/util.hpp"

using namespace abup;
using namespace abup::agent;
using abup::test::TempDir;

namespace {

MetricsSnapshot busy_node() {
  MetricsSnapshot s;
  s.mode = Mode::autonomous;
  s.known_states = {"idle", "checking", "staging", "staged", "armed", "failed"};
  s.state = "staged";
  s.booted = SlotVersion{"A", "202601.01.0"};
  s.staged = SlotVersion{"B", "202607.02.0"};
  s.last_check_time = 1795000000;
  s.last_check_result = "update_available";
  s.last_successful_check_time = 1794990000;
  s.newest_release_version = "202607.02.0";
  s.newest_release_issued_at = 1794900000;
  s.checks_total = 3;
  s.last_update = UpdateTransfer{"202607.02.0", 52428800, 83886080, 52428800, 12.5};
  s.last_update_time = 1795000100;
  s.failures_by_code = {{"OperationFailed", 2}, {"TargetBootFailed", 1}};
  s.rollbacks_total = 1;
  return s;
}

bool promtool_accepts(const std::string& text, std::string* out) {
  TempDir dir;
  test::write_file(dir / "m.prom", text);
  auto r = test::run("promtool check metrics < " + test::shell_quote((dir / "m.prom").string()));
  *out = r.out;
  return r.exit_code == 0;
}

}  // namespace

TEST_CASE("metrics: every family has HELP and TYPE, samples carry their labels") {
  auto text = render_metrics(busy_node());
  CHECK(text.find("# HELP abup_state ") != std::string::npos);
  CHECK(text.find("# TYPE abup_state gauge\n") != std::string::npos);
  CHECK(text.find("abup_state{state=\"staged\"} 1\n") != std::string::npos);
  CHECK(text.find("abup_state{state=\"idle\"} 0\n") != std::string::npos);
  CHECK(
      text.find("abup_slot_version_info{role=\"booted\",slot=\"A\",version=\"202601.01.0\"} 1\n") !=
      std::string::npos);
  CHECK(
      text.find("abup_slot_version_info{role=\"staged\",slot=\"B\",version=\"202607.02.0\"} 1\n") !=
      std::string::npos);
  CHECK(text.find("abup_last_check_timestamp_seconds 1795000000\n") != std::string::npos);
  CHECK(text.find("abup_last_check_result{result=\"update_available\"} 1\n") != std::string::npos);
  CHECK(text.find("abup_last_successful_check_timestamp_seconds 1794990000\n") !=
        std::string::npos);
  CHECK(text.find("abup_newest_signed_release_timestamp_seconds{version=\"202607.02.0\"} "
                  "1794900000\n") != std::string::npos);
  CHECK(text.find("abup_last_update_bytes{version=\"202607.02.0\",kind=\"reused\"} 83886080\n") !=
        std::string::npos);
  CHECK(text.find("abup_last_update_duration_seconds{version=\"202607.02.0\"} 12.5\n") !=
        std::string::npos);
  CHECK(text.find("abup_failures_total{code=\"TargetBootFailed\"} 1\n") != std::string::npos);
  CHECK(text.find("abup_rollbacks_total 1\n") != std::string::npos);
  // Each TYPE line appears once per family.
  CHECK(text.find("# TYPE abup_state ") == text.rfind("# TYPE abup_state "));
}

TEST_CASE("metrics: a fresh agent reports no staged slot and no check") {
  MetricsSnapshot s;
  s.mode = Mode::aks;
  s.state = "idle";
  s.booted = SlotVersion{"B", "1.2.3"};
  auto text = render_metrics(s);
  CHECK(text.find("role=\"staged\"") == std::string::npos);
  CHECK(text.find("abup_last_check_timestamp_seconds") == std::string::npos);
  CHECK(text.find("abup_last_successful_check_timestamp_seconds") == std::string::npos);
  CHECK(text.find("abup_newest_signed_release_timestamp_seconds") == std::string::npos);
  CHECK(text.find("abup_state{state=\"idle\"} 1\n") != std::string::npos);
  CHECK(text.find("abup_rollbacks_total 0\n") != std::string::npos);
}

TEST_CASE("metrics: label values are escaped") {
  CHECK(escape_label_value("a\"b\\c\nd") == "a\\\"b\\\\c\\nd");
  auto s = busy_node();
  s.failures_by_code = {{"bad \"code\"\\\nnext", 1}};
  auto text = render_metrics(s);
  CHECK(text.find("abup_failures_total{code=\"bad \\\"code\\\"\\\\\\nnext\"} 1\n") !=
        std::string::npos);
}

TEST_CASE("metrics: promtool check metrics accepts the output") {
  if (!test::have_program("promtool")) {
    MESSAGE("SKIPPED: promtool not installed (tools/setup installs the prometheus package)");
    return;
  }
  std::string out;
  auto s = busy_node();
  s.failures_by_code["quote\"and\\slash"] = 4;
  CHECK_MESSAGE(promtool_accepts(render_metrics(s), &out), out);
  CHECK_MESSAGE(promtool_accepts(render_metrics(MetricsSnapshot{}), &out), out);
  // The check can fail: promtool rejects a counter without _total and a broken label.
  CHECK_FALSE(promtool_accepts("# HELP x_bytes y\n# TYPE x_bytes counter\nx_bytes 1\n", &out));
  CHECK_FALSE(promtool_accepts("# TYPE x gauge\nx{a=\"b} 1\n", &out));
}

TEST_CASE("metrics: the textfile is replaced atomically with mode 0644") {
  TempDir dir;
  auto path = dir / "abup.prom";
  REQUIRE(write_metrics_textfile(path, "old\n"));
  REQUIRE(write_metrics_textfile(path, render_metrics(busy_node())));
  CHECK(test::read_file(path) == render_metrics(busy_node()));
  CHECK((std::filesystem::status(path).permissions() & std::filesystem::perms::all) ==
        (std::filesystem::perms::owner_read | std::filesystem::perms::owner_write |
         std::filesystem::perms::group_read | std::filesystem::perms::others_read));
  int entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir.path())) ++entries;
  CHECK(entries == 1);  // no temp file left behind
  auto bad = write_metrics_textfile(dir / "missing-dir/abup.prom", "x");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message.find("missing-dir") != std::string::npos);
}

TEST_CASE("metrics: the HTTP endpoint serves the last text on its own thread") {
  if (!test::have_program("curl")) {
    MESSAGE("SKIPPED: curl not installed");
    return;
  }
  auto server = MetricsServer::start_thread("127.0.0.1:0");
  REQUIRE_MESSAGE(server, (server ? "" : server.error().message));
  auto port = std::to_string((*server)->port());
  CHECK((*server)->port() != 0);
  (*server)->update(render_metrics(busy_node()));
  auto url = "http://127.0.0.1:" + port;
  auto body = test::run_ok("curl -sS --fail " + url + "/metrics");
  CHECK(body == render_metrics(busy_node()));
  auto head = test::run_ok("curl -sS -i " + url + "/metrics");
  CHECK(head.find("HTTP/1.1 200 OK") == 0);
  CHECK(head.find("Content-Type: text/plain; version=0.0.4; charset=utf-8") != std::string::npos);
  (*server)->update("abup_rollbacks_total 7\n");
  CHECK(test::run_ok("curl -sS " + url + "/metrics") == "abup_rollbacks_total 7\n");
  CHECK(test::run_ok("curl -sS -o /dev/null -w '%{http_code}' " + url + "/nope") == "404");
  CHECK(test::run_ok("curl -sS -o /dev/null -w '%{http_code}' -X POST " + url + "/metrics") ==
        "405");
  // Two requests on one keep-alive connection.
  auto two = test::run_ok("curl -sS -v " + url + "/metrics " + url + "/metrics 2>&1");
  CHECK(two.find("Re-using existing connection") != std::string::npos);
  if (test::have_program("promtool")) {
    (*server)->update(render_metrics(busy_node()));
    test::run_ok("curl -sS " + url + "/metrics | promtool check metrics");
  }
  (*server)->stop();
  CHECK(test::run("curl -sS --max-time 5 " + url + "/metrics").exit_code != 0);
}

TEST_CASE("metrics: the endpoint runs on a caller's io_context") {
  boost::asio::io_context io;
  auto server = MetricsServer::start(io, "[::1]:0");
  if (!server && server.error().message.find("address") != std::string::npos) {
    MESSAGE("SKIPPED: no IPv6 loopback here");
    return;
  }
  REQUIRE_MESSAGE(server, (server ? "" : server.error().message));
  (*server)->update("abup_rollbacks_total 2\n");
  std::string got;
  std::thread client([&] {
    got = test::run("curl -sS -g 'http://[::1]:" + std::to_string((*server)->port()) + "/metrics'")
              .out;
    boost::asio::post(io, [&] { (*server)->stop(); });
  });
  io.run();  // returns once stop() closed the acceptor and the connection
  client.join();
  CHECK(got == "abup_rollbacks_total 2\n");
}

TEST_CASE("metrics: a bad Listen= value is refused with what is wrong") {
  for (const char* bad : {"9478", "localhost:9478", "127.0.0.1:99999", "127.0.0.1:", "1.2.3:80"}) {
    auto s = MetricsServer::start_thread(bad);
    REQUIRE_FALSE(s);
    INFO(bad << ": " << s.error().message);
    CHECK(s.error().message.find("[Metrics] Listen=") == 0);
  }
  auto first = MetricsServer::start_thread("127.0.0.1:0");
  REQUIRE(first);
  auto clash = MetricsServer::start_thread("127.0.0.1:" + std::to_string((*first)->port()));
  REQUIRE_FALSE(clash);
  CHECK(clash.error().message.find("metrics endpoint") == 0);
}
