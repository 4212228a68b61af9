// The reboot window against a fake clock: days, start, length, wrap past midnight, and a real
// IANA zone from the system's tz database (daylight saving time moves the window in UTC).
#include "agent/daemon/window.hpp"

#include <doctest/doctest.h>

#include <ctime>

#include "agent/config.hpp"
#include "support/util.hpp"

using namespace abup;
using namespace abup::agent::daemon;
using Clock = std::chrono::system_clock;

namespace {

// "2026-11-23 01:30:00" (UTC) -> time point.
Clock::time_point at(const char* text) {
  std::tm tm{};
  REQUIRE(strptime(text, "%Y-%m-%d %H:%M:%S", &tm) != nullptr);
  return Clock::from_time_t(timegm(&tm));
}

std::string show(Clock::time_point t) {
  std::time_t tt = Clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

RebootWindow window(const char* text) {
  auto w = parse_reboot_window(text);
  INFO(text, ": ", w ? "" : w.error().message);
  REQUIRE(w);
  return *w;
}

}  // namespace

TEST_CASE("window: weekdays at night, UTC") {
  auto w = window("Mon..Fri 02:00 3h UTC");
  // 2026-11-23 is a Monday.
  CHECK(show(next_reboot_time(w, at("2026-11-23 01:30:00"))) == "2026-11-23 02:00:00");
  CHECK(show(next_reboot_time(w, at("2026-11-23 02:00:00"))) == "2026-11-23 02:00:00");
  CHECK(show(next_reboot_time(w, at("2026-11-23 04:59:59"))) == "2026-11-23 04:59:59");
  CHECK(show(next_reboot_time(w, at("2026-11-23 05:00:00"))) == "2026-11-24 02:00:00");
  // Friday after the window: next Monday.
  CHECK(show(next_reboot_time(w, at("2026-11-27 06:00:00"))) == "2026-11-30 02:00:00");
  CHECK(show(next_reboot_time(w, at("2026-11-28 12:00:00"))) == "2026-11-30 02:00:00");
}

TEST_CASE("window: a window past midnight, lists, wrapping ranges, every day") {
  auto w = window("Sat,Sun 23:30 2h 30min");
  // Sunday 01:00 is inside Saturday's window (23:30 to 02:00).
  CHECK(show(next_reboot_time(w, at("2026-11-29 01:00:00"))) == "2026-11-29 01:00:00");
  // Monday 01:00 is inside Sunday's.
  CHECK(show(next_reboot_time(w, at("2026-11-30 01:00:00"))) == "2026-11-30 01:00:00");
  CHECK(show(next_reboot_time(w, at("2026-11-30 02:00:00"))) == "2026-12-05 23:30:00");
  auto wrap = window("fri..mon 12:00 1h");
  CHECK(show(next_reboot_time(wrap, at("2026-11-24 13:00:00"))) == "2026-11-27 12:00:00");
  auto daily = window("* 04:00 1h");
  CHECK(show(next_reboot_time(daily, at("2026-11-24 05:00:00"))) == "2026-11-25 04:00:00");
}

TEST_CASE("window: an IANA zone from the tz database follows daylight saving time") {
  if (!std::filesystem::exists(default_zoneinfo() / "Europe/Berlin")) {
    MESSAGE("SKIPPED: no tz database at ", default_zoneinfo().string());
    return;
  }
  auto w = window("Mon..Sun 02:00 1h Europe/Berlin");
  // Winter: CET = UTC+1, so 02:00 local is 01:00 UTC.
  CHECK(show(next_reboot_time(w, at("2026-11-23 00:00:00"))) == "2026-11-23 01:00:00");
  // Summer: CEST = UTC+2.
  CHECK(show(next_reboot_time(w, at("2026-07-01 00:30:00"))) == "2026-07-01 00:30:00");
  CHECK(show(next_reboot_time(w, at("2026-07-01 01:00:00"))) == "2026-07-02 00:00:00");
  auto ny = window("Mon 22:00 1h America/New_York");
  CHECK(show(next_reboot_time(ny, at("2026-11-23 00:00:00"))) == "2026-11-24 03:00:00");
}

TEST_CASE("window: malformed windows are refused with what is wrong") {
  struct Bad {
    const char* text;
    const char* why;
  };
  for (auto b : {Bad{"Mon..Fri 02:00", "too few fields"},
                 Bad{"Mon..Fry 02:00 3h", "'Mon..Fry' is not a day"},
                 Bad{"Mon 24:00 3h", "'24:00' is not a time of day"},
                 Bad{"Mon 2:5 3h", "'2:5' is not a time of day"},
                 Bad{"Mon 02:00 3 parsecs UTC", "not a time span"},
                 Bad{"Mon 02:00 0h", "more than 0"}, Bad{"Mon 02:00 8d", "at most a week"},
                 Bad{"Mon 02:00 3h Mars/Olympus", "unknown time zone 'Mars/Olympus'"},
                 Bad{"Mon 02:00 3h ../etc/passwd", "not a time zone name"}}) {
    auto w = parse_reboot_window(b.text);
    INFO(std::string(b.text), " -> ", w ? std::string() : w.error().message);
    REQUIRE_FALSE(w);
    CHECK(w.error().message.find(b.why) != std::string::npos);
  }
  auto bad = TimeZone::parse_tzif("TZif2 but short", "X");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message.find("time zone X") != std::string::npos);
}

TEST_CASE("window: the config loader names file, line and setting of a bad Window=") {
  abup::test::TempDir dir;
  abup::test::write_file(dir / "abup.conf", "[Reboot]\nStrategy=window\nWindow=Mon 25:00 1h\n");
  auto cfg = abup::agent::load_config(dir / "abup.conf", dir.path());
  REQUIRE_FALSE(cfg);
  CHECK(cfg.error().message.find("abup.conf:3: [Reboot] Window=Mon 25:00 1h") != std::string::npos);
  abup::test::write_file(dir / "abup.conf", "[Reboot]\nWindow=Mon..Fri 02:00 3h UTC\n");
  auto ok = abup::agent::load_config(dir / "abup.conf", dir.path());
  REQUIRE(ok);
  CHECK(ok->reboot_window == "Mon..Fri 02:00 3h UTC");
}
