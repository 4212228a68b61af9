// The daemon's Reporter: what each step does to the published status and to the metrics, and
// that the change hook runs once per change.
#include "agent/daemon/report.hpp"

#include <doctest/doctest.h>

using namespace abup;
using namespace abup::agent;
using namespace abup::agent::daemon;

TEST_CASE("reporter: a check, a stage with progress, a failure, counted by code") {
  Reporter r(Mode::autonomous);
  int changes = 0;
  r.set_on_change([&] { ++changes; });
  CHECK(r.status().mode == "autonomous");
  CHECK(r.status().state == dbus::kStateIdle);

  r.checked("update_available", "202607.02.0");
  CHECK(changes == 1);
  CHECK(r.status().available_version == "202607.02.0");
  CHECK(r.status().last_check > 0);
  CHECK(r.metrics().checks_total == 1);
  CHECK(r.metrics().last_check_result == "update_available");
  REQUIRE(r.metrics().last_successful_check_time.has_value());
  const auto answered = *r.metrics().last_successful_check_time;
  CHECK(answered == r.metrics().last_check_time);
  // A failed check moves the last check, not the last successful one.
  r.checked("error", "");
  CHECK(r.metrics().last_check_result == "error");
  CHECK(r.metrics().last_successful_check_time == answered);
  CHECK(r.metrics().checks_total == 2);

  r.operation("op-1");
  r.state(dbus::kStateStaging, "");
  r.progress(StageProgress{"write", 100, 40, 10});
  CHECK(r.status().progress == dbus::Progress{"write", 40, 100});
  CHECK(r.metrics().state == "staging");

  StageSummary s;
  s.version = "202607.02.0";
  s.downloaded = 1000;
  s.reused = 300;
  s.skipped = 200;
  s.written = 4000;
  s.zeroed = 96;
  s.seconds = 2.5;
  r.staged(s);
  r.state(dbus::kStateStaged, "");
  CHECK(r.status().progress == dbus::Progress{});  // leaving staging clears it
  CHECK(r.status().staged_version == "202607.02.0");
  const auto m = r.metrics();
  REQUIRE(m.last_update);
  CHECK(m.last_update->downloaded == 1000);
  CHECK(m.last_update->reused == 500);
  CHECK(m.last_update->written == 4096);
  CHECK(m.last_update->duration_seconds == doctest::Approx(2.5));
  CHECK(m.last_update_time.has_value());

  r.failed(make_error(Errc::network, "connection refused"), "");
  r.failed(make_error(Errc::network, "timed out"), "");
  r.failed("NotStaged", "no successful stage", "");
  CHECK(r.status().state == dbus::kStateError);
  CHECK(r.status().last_error_code == "NotStaged");
  CHECK(r.metrics().failures_by_code.at("Network") == 2);
  CHECK(r.metrics().failures_by_code.at("NotStaged") == 1);
  r.clear_error();
  CHECK(r.status().last_error.empty());
  r.rolled_back();
  CHECK(r.metrics().rollbacks_total == 1);
  CHECK(changes == 12);
}

TEST_CASE("reporter: every published state has a metrics series") {
  Reporter r(Mode::aks);
  const auto known = r.metrics().known_states;
  for (auto s :
       {dbus::kStateIdle, dbus::kStateChecking, dbus::kStateStaging, dbus::kStateStaged,
        dbus::kStateArmed, dbus::kStateRebooting, dbus::kStateCommitting, dbus::kStateError})
    CHECK(std::find(known.begin(), known.end(), std::string(s)) != known.end());
  CHECK(render_metrics(r.metrics()).find("abup_info{mode=\"aks\"} 1") != std::string::npos);
}
