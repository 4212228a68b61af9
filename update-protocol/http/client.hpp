// Outbound HTTP for abup. Says nothing of the library behind it (libcurl, in http/curl/).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "abup/result.hpp"
#include "update-protocol/source.hpp"

namespace abup::protocol {

struct TransportOptions {
  std::string ca_file;      // PEM bundle, then the only CAs trusted; empty = system default
  std::string client_cert;  // PEM, for mTLS
  std::string client_key;
  // The same as PEM text held in memory (kubeconfig *-data), used without temporary files; each
  // one, when set, replaces its file counterpart.
  std::string ca_pem, client_cert_pem, client_key_pem;
  // An HTTP(S) proxy URL ("http://proxy:3128") for every request; empty: the proxy environment
  // variables (https_proxy, all_proxy). no_proxy/NO_PROXY applies either way.
  std::string proxy;
  bool allow_http = false;  // plain http:// is refused unless set
  int max_redirects = 5;
  int max_retries = 6;  // per request, on transient failures (connect, 5xx, 408/429, reset)
  std::chrono::milliseconds retry_base{250};  // doubles each try, capped at retry_max
  std::chrono::milliseconds retry_max{8000};
  // Per attempt: a dead server fails within these (times the retries), never hangs. Errors name
  // the limit hit and the abup.conf setting behind it ([Network] ConnectTimeoutSec=, ...).
  std::chrono::seconds connect_timeout{30};  // name lookup, TCP, TLS (and a proxy's CONNECT)
  // Slower than low_speed_limit bytes/s over low_speed_time aborts the attempt (and retries).
  // Time the consumer spends inside a Source sink does not count: back-pressure is not a slow link.
  long low_speed_limit = 1024;  // 0 disables
  std::chrono::seconds low_speed_time{30};
  std::string user_agent = "abup/0.1";
  // Ranges asked for in one request by Source::read_ranges ("Range: bytes=a-b,c-d,...", answered
  // as multipart/byteranges); 1 asks for one range per request. A server that answers such a
  // request with 200 or a single range is then asked one range at a time by that Source.
  std::size_t max_ranges_per_request = 16;
  // When set and true, transfers and retry waits stop with Errc::cancelled (checked at least
  // once a second). Must outlive the requests and Sources using these options.
  const std::atomic<bool>* cancel = nullptr;
};

// A URL source: HEAD (or a 1-byte range GET when HEAD is refused) for the size, then Range GETs.
// Every ranged reply must be 206 with a Content-Range naming exactly the requested range; a 200,
// another range or a body longer than asked is an error, never silently accepted.
// Transient failures (connect, timeouts, too slow, connection dropped mid-body, 5xx, 408, 429) are
// retried; a ranged read resumes from the next byte not yet delivered.
// Proxy environment variables (https_proxy, no_proxy, ...) are honoured.
// A Source is not thread-safe: it owns one connection (reused across requests).
[[nodiscard]] Result<std::unique_ptr<Source>> open_http_source(const std::string& url,
                                                               const TransportOptions& options);

// `location` is an http(s):// URL, a file:// URL or a local path.
[[nodiscard]] Result<std::unique_ptr<Source>> open_source(const std::string& location,
                                                          const TransportOptions& options);

struct HttpResponse {
  long status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
};

// A small request/response exchange (Omaha, Kubernetes, FleetLock); bodies are bounded by
// max_body (an error past it). Any HTTP status is returned as a response. Idempotent methods (GET,
// HEAD, PUT, DELETE, OPTIONS) are retried on transport failures and on 5xx/408/429 (the last such
// response is returned once retries run out); other methods (POST, PATCH) are retried only when
// the request never left (resolve/connect failures), and any reply is returned as-is.
[[nodiscard]] Result<HttpResponse> http_request(const std::string& method, const std::string& url,
                                                const std::map<std::string, std::string>& headers,
                                                const std::string& body,
                                                const TransportOptions& options,
                                                std::size_t max_body = 16 << 20);

// A long-lived GET whose body is consumed as it arrives (a Kubernetes watch). A 2xx body goes to
// on_data piece by piece (returning false stops the transfer, which is then a success); any other
// status is returned with its body (up to max_error_body) and on_data is not called. Not retried:
// a stream that broke has lost its position, the caller decides how to resume. Set
// options.low_speed_limit = 0 for streams that may be idle.
[[nodiscard]] Result<HttpResponse> http_stream(const std::string& url,
                                               const std::map<std::string, std::string>& headers,
                                               const TransportOptions& options,
                                               const std::function<bool(std::string_view)>& on_data,
                                               std::size_t max_error_body = 1 << 20);

}  // namespace abup::protocol
