// Prometheus metrics of the agent, in the text exposition format 0.0.4: as a file for
// node-exporter's textfile collector ([Metrics] Textfile=) and on an optional local HTTP
// endpoint ([Metrics] Listen=). The daemon fills a MetricsSnapshot, renders it once per change
// and hands the text to both sinks; neither sink knows where the numbers come from.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "abup/result.hpp"
#include "agent/vocabulary.hpp"

namespace boost::asio {
class io_context;
}

namespace abup::agent {

struct SlotVersion {
  std::string slot;     // "A" | "B"
  std::string version;  // IMAGE_VERSION of the slot's image
};

// Byte counts and timing of one stage (the last one finished, or the one in progress).
struct UpdateTransfer {
  std::string version;  // target version
  std::uint64_t downloaded = 0, reused = 0, written = 0;
  double duration_seconds = 0;
};

struct MetricsSnapshot {
  Mode mode = Mode::autonomous;
  std::string state;
  // Every state the daemon has: each gets a series, 1 for the current one, so that an alert on
  // abup_state{state="failed"} == 1 sees a 0 before and after.
  std::vector<std::string> known_states;
  std::optional<SlotVersion> booted, staged;
  std::optional<std::int64_t> last_check_time;  // Unix seconds
  std::string last_check_result;                // e.g. no_update, update_available, error
  // Unix seconds of the last check the server answered (any result but "error"): an alert on
  // its age catches a node that keeps checking and keeps failing.
  std::optional<std::int64_t> last_successful_check_time;
  // The newest signed release staged on either slot and its manifest's issuedAt (Unix seconds):
  // its age is how long no new release reached the node, whatever the update server says.
  std::string newest_release_version;  // empty: no signed release recorded
  std::int64_t newest_release_issued_at = 0;
  std::optional<std::int64_t> last_update_time;  // Unix seconds the last stage finished
  std::optional<UpdateTransfer> last_update;
  std::uint64_t checks_total = 0;
  std::map<std::string, std::uint64_t> failures_by_code;  // outcome code -> count
  std::uint64_t rollbacks_total = 0;
};

// The exposition text (HELP and TYPE for every family; label values escaped).
[[nodiscard]] std::string render_metrics(const MetricsSnapshot& snapshot);
// Escapes a label value: backslash, double quote and newline.
[[nodiscard]] std::string escape_label_value(std::string_view value);

// Writes `text` to `path` atomically (temp file, fsync, rename), mode 0644: node-exporter reads
// whole files only. The directory must exist; the name should end in .prom.
[[nodiscard]] Status write_metrics_textfile(const std::filesystem::path& path,
                                            std::string_view text);

// Serves the last text given to update() at GET /metrics (and /) over HTTP/1.1 on one address.
// Other paths get 404, other methods 405; a client that stalls is dropped after 10 s.
class MetricsServer {
 public:
  // `listen` is "IP:PORT" ("127.0.0.1:9478", "[::1]:9478"); port 0 picks a free one. Accepts on
  // `io` (the daemon's loop); start_thread() instead runs a loop of its own on a thread.
  [[nodiscard]] static Result<std::unique_ptr<MetricsServer>> start(boost::asio::io_context& io,
                                                                    std::string_view listen);
  [[nodiscard]] static Result<std::unique_ptr<MetricsServer>> start_thread(std::string_view listen);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  void update(std::string text);  // thread-safe
  [[nodiscard]] std::uint16_t port() const;
  // Stops accepting and closes open connections; joins the thread of start_thread(). With
  // start(), call it on the loop's thread (or once the loop has stopped), and destroy the
  // server before that io_context.
  void stop();

  struct Impl;

 private:
  explicit MetricsServer(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace abup::agent
