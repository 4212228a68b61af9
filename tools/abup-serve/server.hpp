// abup-serve's HTTP server: POST /v1/update (Omaha) and GET/HEAD of the directory's files with
// Range support; every Omaha request and event appended as a JSON line to the logs.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>

#include "abup/result.hpp"
#include "tools/abup-serve/catalog.hpp"

namespace abup::serve {

class Server {
 public:
  // events_log / requests_log: JSON-lines files ("" = none).
  Server(Catalog& catalog, std::string events_log, std::string requests_log);
  using ReadyCallback = std::function<void(std::uint16_t port)>;
  // Listens on host:port (0 = any free port, reported to `ready`) and serves until killed; one
  // thread per connection. Returns only when it cannot listen.
  [[nodiscard]] Status serve(const std::string& host, std::uint16_t port,
                             const ReadyCallback& ready);

  Catalog& catalog() { return catalog_; }
  void log_request(const protocol::omaha::Request& request);

 private:
  void append(const std::string& path, const std::string& line);

  Catalog& catalog_;
  std::string events_log_, requests_log_;
  std::mutex log_mutex_;
};

}  // namespace abup::serve
