// [Reboot] Window=: when a reboot is allowed. "DAYS HH:MM LENGTH [ZONE]", e.g.
// "Mon..Fri 02:00 3h UTC", "Sat,Sun 23:30 2h 30min Europe/Berlin", "* 04:00 1h". DAYS is a comma
// list of days (Mon Tue Wed Thu Fri Sat Sun) and ranges (Fri..Mon wraps), or "*" for every day;
// the window opens at HH:MM local time of each listed day and stays open LENGTH (a systemd time
// span, at most a week; it may run past midnight). ZONE is UTC (the default) or an IANA zone
// read from the tz database (TZif files under $TZDIR, else /usr/share/zoneinfo).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "abup/result.hpp"

namespace abup::agent::daemon {

// UTC offsets of one zone over time, from its TZif file (the 64-bit section when present).
// Past the last transition the last offset holds (TZif files of the usual "fat" build list
// transitions up to 2037).
class TimeZone {
 public:
  static TimeZone utc();
  [[nodiscard]] static Result<TimeZone> load(const std::string& name,
                                             const std::filesystem::path& zoneinfo);
  [[nodiscard]] static Result<TimeZone> parse_tzif(std::string_view data, const std::string& name);
  // Seconds east of UTC in effect at `utc` (seconds since the epoch).
  [[nodiscard]] std::int64_t offset_at(std::int64_t utc) const;
  [[nodiscard]] const std::string& name() const { return name_; }

 private:
  std::string name_ = "UTC";
  std::vector<std::int64_t> transitions_;  // UTC seconds, ascending
  std::vector<std::int32_t> offsets_;      // offset from transitions_[i] on
  std::int32_t initial_ = 0;               // before the first transition
};

struct RebootWindow {
  std::array<bool, 7> days{};  // [0] = Monday
  int start_minute = 0;        // minutes after local midnight
  std::chrono::seconds length{0};
  TimeZone zone = TimeZone::utc();
};

[[nodiscard]] std::filesystem::path default_zoneinfo();
[[nodiscard]] Result<RebootWindow> parse_reboot_window(
    std::string_view text, const std::filesystem::path& zoneinfo = default_zoneinfo());
// `now` when it lies inside a window, else the start of the next one.
[[nodiscard]] std::chrono::system_clock::time_point next_reboot_time(
    const RebootWindow& window, std::chrono::system_clock::time_point now);

}  // namespace abup::agent::daemon
