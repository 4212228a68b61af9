#include "agent/metrics.hpp"

#include <cmath>
#include <cstdio>

#include "abup/fs.hpp"

namespace abup::agent {
namespace {

// One metric family: HELP and TYPE once, then its samples.
class Writer {
 public:
  void family(std::string_view name, std::string_view type, std::string_view help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    for (char c : help) {  // HELP text escapes backslash and newline only
      if (c == '\\')
        out_ += "\\\\";
      else if (c == '\n')
        out_ += "\\n";
      else
        out_ += c;
    }
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }
  void sample(std::string_view name,
              std::initializer_list<std::pair<std::string_view, std::string_view>> labels,
              double value) {
    out_ += name;
    if (labels.size() != 0) {
      out_ += '{';
      bool first = true;
      for (const auto& [k, v] : labels) {
        if (!first) out_ += ',';
        first = false;
        out_ += k;
        out_ += "=\"";
        out_ += escape_label_value(v);
        out_ += '"';
      }
      out_ += '}';
    }
    out_ += ' ';
    out_ += number(value);
    out_ += '\n';
  }
  std::string take() { return std::move(out_); }

 private:
  static std::string number(double v) {
    if (std::isnan(v)) return "NaN";
    if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
    char buf[64];
    // Integers up to 2^53 print exactly; byte counters stay integral.
    if (v == std::floor(v) && std::fabs(v) < 9007199254740992.0)
      std::snprintf(buf, sizeof buf, "%.0f", v);
    else
      std::snprintf(buf, sizeof buf, "%.17g", v);
    return buf;
  }
  std::string out_;
};

double as_double(std::uint64_t n) {
  return static_cast<double>(n);
}

}  // namespace

std::string escape_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string render_metrics(const MetricsSnapshot& s) {
  Writer w;
  w.family("abup_state", "gauge", "Current state of the agent: 1 for the state it is in.");
  bool listed = false;
  for (const auto& st : s.known_states) {
    w.sample("abup_state", {{"state", st}}, st == s.state ? 1 : 0);
    listed = listed || st == s.state;
  }
  if (!listed && !s.state.empty()) w.sample("abup_state", {{"state", s.state}}, 1);

  w.family("abup_info", "gauge", "Agent build and control mode (always 1).");
  w.sample("abup_info", {{"mode", std::string(to_string(s.mode))}}, 1);

  w.family("abup_slot_version_info", "gauge",
           "Image version per slot role: booted (running now) and staged (written, verified, "
           "waiting for finalize or the reboot).");
  if (s.booted)
    w.sample("abup_slot_version_info",
             {{"role", "booted"}, {"slot", s.booted->slot}, {"version", s.booted->version}}, 1);
  if (s.staged)
    w.sample("abup_slot_version_info",
             {{"role", "staged"}, {"slot", s.staged->slot}, {"version", s.staged->version}}, 1);

  w.family("abup_update_checks_total", "counter", "Update checks made since the agent started.");
  w.sample("abup_update_checks_total", {}, as_double(s.checks_total));
  if (s.last_check_time) {
    w.family("abup_last_check_timestamp_seconds", "gauge", "Unix time of the last update check.");
    w.sample("abup_last_check_timestamp_seconds", {}, static_cast<double>(*s.last_check_time));
    w.family("abup_last_check_result", "gauge",
             "Result of the last update check (always 1, the result is the label).");
    w.sample("abup_last_check_result", {{"result", s.last_check_result}}, 1);
  }
  if (!s.newest_release_version.empty()) {
    w.family("abup_newest_signed_release_timestamp_seconds", "gauge",
             "Unix time the newest signed release staged on this node was issued (its signed "
             "issuedAt).");
    w.sample("abup_newest_signed_release_timestamp_seconds",
             {{"version", s.newest_release_version}},
             static_cast<double>(s.newest_release_issued_at));
  }
  if (s.last_successful_check_time) {
    w.family("abup_last_successful_check_timestamp_seconds", "gauge",
             "Unix time of the last update check the server answered.");
    w.sample("abup_last_successful_check_timestamp_seconds", {},
             static_cast<double>(*s.last_successful_check_time));
  }

  if (s.last_update) {
    const auto& u = *s.last_update;
    w.family("abup_last_update_bytes", "gauge",
             "Bytes of the last stage: downloaded from the server, reused from the booted slot or "
             "already on the target, written to the target.");
    w.sample("abup_last_update_bytes", {{"version", u.version}, {"kind", "downloaded"}},
             as_double(u.downloaded));
    w.sample("abup_last_update_bytes", {{"version", u.version}, {"kind", "reused"}},
             as_double(u.reused));
    w.sample("abup_last_update_bytes", {{"version", u.version}, {"kind", "written"}},
             as_double(u.written));
    w.family("abup_last_update_duration_seconds", "gauge",
             "Wall time of the last stage, from the first request to the verified read-back.");
    w.sample("abup_last_update_duration_seconds", {{"version", u.version}}, u.duration_seconds);
  }
  if (s.last_update_time) {
    w.family("abup_last_update_timestamp_seconds", "gauge", "Unix time the last stage finished.");
    w.sample("abup_last_update_timestamp_seconds", {}, static_cast<double>(*s.last_update_time));
  }

  w.family("abup_failures_total", "counter", "Failed operations by outcome code.");
  for (const auto& [code, n] : s.failures_by_code)
    w.sample("abup_failures_total", {{"code", code}}, as_double(n));

  w.family("abup_rollbacks_total", "counter",
           "Rollbacks: armed by an operator or the control plane, or a fall-back of the boot "
           "loader after a new slot failed to boot.");
  w.sample("abup_rollbacks_total", {}, as_double(s.rollbacks_total));
  return w.take();
}

Status write_metrics_textfile(const std::filesystem::path& path, std::string_view text) {
  ABUP_CHECK_CTX(atomic_write_file(path, text, 0644), "metrics textfile");
  return {};
}

}  // namespace abup::agent
