#include "agent/daemon/window.hpp"

#include <algorithm>
#include <charconv>
#include <cstdlib>

#include "abup/fs.hpp"
#include "agent/config.hpp"

namespace abup::agent::daemon {
namespace {

constexpr std::array<std::string_view, 7> kDays = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
constexpr std::int64_t kDay = 86400;

std::int64_t be(std::string_view d, std::size_t at, std::size_t n) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < n; ++i) v = (v << 8) | static_cast<unsigned char>(d[at + i]);
  if (n == 4) return static_cast<std::int32_t>(static_cast<std::uint32_t>(v));
  return static_cast<std::int64_t>(v);
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  std::size_t b = 0;
  while (b <= s.size()) {
    auto e = s.find(sep, b);
    if (e == s.npos) e = s.size();
    if (e > b) out.push_back(s.substr(b, e - b));
    b = e + 1;
  }
  return out;
}

int day_index(std::string_view name) {
  for (std::size_t i = 0; i < kDays.size(); ++i)
    if (name.size() == 3 &&
        std::equal(name.begin(), name.end(), kDays[i].begin(), [](char a, char b) {
          return std::tolower(static_cast<unsigned char>(a)) ==
                 std::tolower(static_cast<unsigned char>(b));
        }))
      return static_cast<int>(i);
  return -1;
}

Result<std::array<bool, 7>> parse_days(std::string_view text) {
  std::array<bool, 7> days{};
  if (text == "*") {
    days.fill(true);
    return days;
  }
  auto bad = [&](std::string_view part) {
    return make_error(Errc::invalid_input, "'" + std::string(part) +
                                               "' is not a day or range of days (Mon..Fri, "
                                               "Sat,Sun, *)");
  };
  for (auto part : split(text, ',')) {
    auto dots = part.find("..");
    int from = day_index(part.substr(0, dots));
    int to = dots == part.npos ? from : day_index(part.substr(dots + 2));
    if (from < 0 || to < 0) return bad(part);
    for (int d = from;; d = (d + 1) % 7) {
      days[static_cast<std::size_t>(d)] = true;
      if (d == to) break;
    }
  }
  return days;
}

Result<int> parse_clock(std::string_view text) {
  int h = -1, m = -1;
  auto colon = text.find(':');
  if (colon != text.npos) {
    auto r1 = std::from_chars(text.data(), text.data() + colon, h);
    auto r2 = std::from_chars(text.data() + colon + 1, text.data() + text.size(), m);
    if (r1.ec != std::errc() || r1.ptr != text.data() + colon || r2.ec != std::errc() ||
        r2.ptr != text.data() + text.size() || colon == 0 || text.size() - colon != 3)
      h = -1;
  }
  if (h < 0 || h > 23 || m < 0 || m > 59)
    return make_error(Errc::invalid_input,
                      "'" + std::string(text) + "' is not a time of day (HH:MM, 00:00 to 23:59)");
  return h * 60 + m;
}

// Days since 1970-01-01 -> weekday with Monday = 0 (1970-01-01 was a Thursday).
int weekday(std::int64_t days) {
  return static_cast<int>(((days % 7) + 7 + 3) % 7);
}

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  return a / b - ((a % b != 0) && ((a < 0) != (b < 0)));
}

// The UTC instant of local wall time `local` (seconds since the epoch as if it were UTC). In a
// gap (clocks jumped forward) the instant after the jump; in an overlap the earlier one.
std::int64_t local_to_utc(const TimeZone& tz, std::int64_t local) {
  std::int64_t guess = local - tz.offset_at(local);
  std::int64_t again = local - tz.offset_at(guess);
  return std::min(guess, again);
}

}  // namespace

TimeZone TimeZone::utc() {
  return TimeZone();
}

std::filesystem::path default_zoneinfo() {
  const char* dir = std::getenv("TZDIR");
  return dir && *dir ? dir : "/usr/share/zoneinfo";
}

Result<TimeZone> TimeZone::parse_tzif(std::string_view d, const std::string& name) {
  auto bad = [&](const std::string& why) {
    return make_error(Errc::invalid_input, "time zone " + name + ": " + why);
  };
  if (d.size() < 44 || d.substr(0, 4) != "TZif") return bad("not a TZif file");
  std::size_t at = 0;
  std::size_t width = 4;
  // Version 2 and later repeat the data with 64-bit times after the first block: skip to it.
  for (int pass = 0; pass < 2; ++pass) {
    if (d.size() < at + 44 || d.substr(at, 4) != "TZif") return bad("truncated TZif header");
    auto count = [&](int i) { return static_cast<std::size_t>(be(d, at + 20 + 4 * i, 4)); };
    std::size_t isut = count(0), isstd = count(1), leap = count(2), timecnt = count(3),
                typecnt = count(4), charcnt = count(5);
    const std::size_t body = at + 44;
    const std::size_t size =
        timecnt * width + timecnt + typecnt * 6 + charcnt + leap * (width + 4) + isstd + isut;
    if (typecnt == 0 || d.size() < body + size) return bad("truncated TZif data");
    if (pass == 0 && d[4] >= '2') {
      at = body + size;
      width = 8;
      continue;
    }
    TimeZone tz;
    tz.name_ = name;
    const std::size_t idx = body + timecnt * width, types = idx + timecnt;
    auto utoff = [&](std::size_t type) {
      return static_cast<std::int32_t>(be(d, types + type * 6, 4));
    };
    tz.initial_ = utoff(0);
    for (std::size_t i = 0; i < timecnt; ++i) {
      auto type = static_cast<unsigned char>(d[idx + i]);
      if (type >= typecnt) return bad("transition names a missing local time type");
      tz.transitions_.push_back(be(d, body + i * width, width));
      tz.offsets_.push_back(utoff(type));
    }
    if (!std::is_sorted(tz.transitions_.begin(), tz.transitions_.end()))
      return bad("transitions out of order");
    return tz;
  }
  return bad("unreachable");
}

Result<TimeZone> TimeZone::load(const std::string& name, const std::filesystem::path& zoneinfo) {
  if (name == "UTC" || name == "Etc/UTC" || name == "Z") return utc();
  if (name.empty() || name.front() == '/' || name.find("..") != name.npos)
    return make_error(Errc::invalid_input, "'" + name + "' is not a time zone name");
  auto data = read_file(zoneinfo / name);
  if (!data)
    return make_error(Errc::invalid_input,
                      "unknown time zone '" + name + "' (no " + (zoneinfo / name).string() + ")");
  return parse_tzif(*data, name);
}

std::int64_t TimeZone::offset_at(std::int64_t utc) const {
  auto it = std::upper_bound(transitions_.begin(), transitions_.end(), utc);
  if (it == transitions_.begin()) return initial_;
  return offsets_[static_cast<std::size_t>(it - transitions_.begin() - 1)];
}

Result<RebootWindow> parse_reboot_window(std::string_view text,
                                         const std::filesystem::path& zoneinfo) {
  auto words = split(text, ' ');
  auto bad = [&](const std::string& why) {
    return make_error(Errc::invalid_input,
                      why + " (expected DAYS HH:MM LENGTH [ZONE], e.g. Mon..Fri 02:00 3h UTC)");
  };
  if (words.size() < 3) return bad("too few fields");
  RebootWindow w;
  auto days = parse_days(words[0]);
  if (!days) return bad(days.error().message);
  w.days = *days;
  auto start = parse_clock(words[1]);
  if (!start) return bad(start.error().message);
  w.start_minute = *start;
  // LENGTH may have several terms ("2h 30min"); a last word that is no time span is the zone.
  auto join = [&](std::size_t from, std::size_t to) {
    std::string s;
    for (std::size_t i = from; i < to; ++i) s += (s.empty() ? "" : " ") + std::string(words[i]);
    return s;
  };
  std::string zone = "UTC";
  auto length = parse_timespan(join(2, words.size()));
  if (!length && words.size() > 3) {
    zone = std::string(words.back());
    length = parse_timespan(join(2, words.size() - 1));
  }
  if (!length) return bad(length.error().message);
  if (length->count() <= 0 || *length > std::chrono::hours(24 * 7))
    return bad("the length must be more than 0 and at most a week");
  w.length = *length;
  auto tz = TimeZone::load(zone, zoneinfo);
  if (!tz) return std::move(tz).error();
  w.zone = std::move(*tz);
  return w;
}

std::chrono::system_clock::time_point next_reboot_time(const RebootWindow& w,
                                                       std::chrono::system_clock::time_point now) {
  const std::int64_t t =
      std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  const std::int64_t today = floor_div(t + w.zone.offset_at(t), kDay);
  std::int64_t best = INT64_MAX;
  // Windows that opened up to a week ago may still be open; one opens within the next week.
  for (std::int64_t day = today - 8; day <= today + 8; ++day) {
    if (!w.days[static_cast<std::size_t>(weekday(day))]) continue;
    const std::int64_t open = local_to_utc(w.zone, day * kDay + w.start_minute * 60);
    if (open <= t && t < open + w.length.count()) return now;
    if (open > t) best = std::min(best, open);
  }
  return std::chrono::system_clock::time_point(std::chrono::seconds(best));
}

}  // namespace abup::agent::daemon
