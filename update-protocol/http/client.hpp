// Outbound HTTP for abup. Says nothing of the library behind it (libcurl, in http/curl/).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "abup/result.hpp"
#include "update-protocol/source.hpp"

namespace abup::protocol {

struct TransportOptions {
  std::string ca_file;      // PEM bundle; empty = system default
  std::string client_cert;  // PEM, for mTLS
  std::string client_key;
  bool allow_http = false;  // plain http:// is refused unless set
  int max_redirects = 5;
  int max_retries = 6;      // per request, on transient failures (connect, 5xx, 408/429, reset)
  std::chrono::milliseconds retry_base{250};  // doubles each try, capped at retry_max
  std::chrono::milliseconds retry_max{8000};
  std::chrono::seconds connect_timeout{30};
  long low_speed_limit = 1024;  // bytes/s; slower than this for low_speed_time aborts (and retries)
  std::chrono::seconds low_speed_time{60};
  std::string user_agent = "abup/0.1";
};

// A URL source: HEAD (or a 1-byte range GET when HEAD is refused) for the size, then Range GETs.
// Every ranged reply must be 206 with a Content-Range naming exactly the requested range; a 200,
// another range or a body longer than asked is an error, never silently accepted.
// Proxy environment variables (https_proxy, no_proxy, ...) are honoured.
[[nodiscard]] Result<std::unique_ptr<Source>> open_http_source(const std::string& url,
                                                               const TransportOptions& options);

// `location` is an http(s):// URL or a local path.
[[nodiscard]] Result<std::unique_ptr<Source>> open_source(const std::string& location,
                                                          const TransportOptions& options);

struct HttpResponse {
  long status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
};

// A small request/response exchange (Omaha, Kubernetes, FleetLock); bodies are bounded by
// max_body (an error past it).
[[nodiscard]] Result<HttpResponse> http_request(const std::string& method, const std::string& url,
                                                const std::map<std::string, std::string>& headers,
                                                const std::string& body,
                                                const TransportOptions& options,
                                                std::size_t max_body = 16 << 20);

}  // namespace abup::protocol
