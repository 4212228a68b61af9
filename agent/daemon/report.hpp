// What the daemon publishes about itself: one status (the D-Bus object's properties,
// docs/dbus.md) and the Prometheus metrics (agent/metrics.hpp). The worker's steps and the
// loop's method calls change it from either thread; after each change the daemon's `on_change`
// hook runs, and the loop takes a snapshot() and hands it to the bus and the metrics sinks.
#pragma once

#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

#include "agent/dbus/api.hpp"
#include "agent/lifecycle.hpp"
#include "agent/metrics.hpp"
#include "agent/stage.hpp"

namespace abup::agent::daemon {

class Reporter {
 public:
  explicit Reporter(Mode mode);

  // Called after every change, on the changing thread (the daemon posts a publish to its loop).
  void set_on_change(std::function<void()> hook);

  // A new step: the State property (dbus::kState*) and the human line for sd_notify STATUS=
  // (none when empty). Leaving the staging state clears the progress.
  void state(std::string_view state, const std::string& line);
  // The operation the published state belongs to.
  void operation(const std::string& id);
  void progress(const StageProgress& p);
  // An update check ended: result is no_update | not_now | update_available | error.
  void checked(std::string_view result, const std::string& offered_version);
  // An operation failed: LastErrorCode/LastError, failures_by_code, State=error.
  void failed(const Error& error, const std::string& line);
  // The same with a code of its own (the AKS contract's: OperationFailed, TargetBootFailed, ...).
  void failed(const std::string& code, const std::string& message, const std::string& line);
  void clear_error();
  void staged(const StageSummary& summary);
  void rolled_back();
  // BootedSlot, NextSlot, DefaultSlot, BootedVersion, StagedVersion from the disk; a failure
  // to read them is logged and leaves the old values.
  void refresh_slots(const LifecycleOptions& where);

  [[nodiscard]] dbus::AgentStatus status() const;
  [[nodiscard]] MetricsSnapshot metrics() const;

 private:
  void changed();

  mutable std::mutex mu_;
  dbus::AgentStatus st_;
  MetricsSnapshot m_;
  std::function<void()> hook_;
};

// The short code of an error as LastErrorCode and the failure metrics spell it: the D-Bus
// error name's last part (Network, Untrusted, Policy, Failed, ...).
[[nodiscard]] std::string error_code_name(const Error& error);

}  // namespace abup::agent::daemon
