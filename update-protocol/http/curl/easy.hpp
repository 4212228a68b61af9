// Internal to http/curl/: one libcurl easy handle running requests under abup's transport rules
// (HTTPS only, capped redirects, CA/mTLS, a low-speed watchdog, cancellation), and the retry loop
// shared by the Source and http_request.
#pragma once

#include <curl/curl.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>

#include "abup/result.hpp"
#include "update-protocol/http/client.hpp"

namespace abup::protocol::curl {

// Refuses anything but https:// (and http:// when options.allow_http).
[[nodiscard]] Status check_url(const std::string& url, const TransportOptions& options);

struct ResponseHead {
  long status = 0;
  std::string status_line;                     // "HTTP/1.1 206 Partial Content", for messages
  std::map<std::string, std::string> headers;  // lower-cased names; repeats joined with ", "
  [[nodiscard]] const std::string* find(const std::string& lower_name) const;
  // "HTTP 503 Service Unavailable" (HTTP/2 has no reason phrase: "HTTP 503").
  [[nodiscard]] std::string describe_status() const;
};

// One failed attempt: what went wrong (without the URL, added by the retry loop) and whether
// trying again may help.
struct Failure {
  Error error;
  bool transient = false;
  bool passthrough = false;   // a sink's own error: returned unchanged, no URL prefix
  bool nothing_sent = false;  // failed resolving or connecting: the request never left
  bool stalled = false;       // aborted as too slow: what it delivered does not reset the retries
  std::chrono::milliseconds retry_after{0};  // from a Retry-After header
};

[[nodiscard]] inline Failure transient_failure(std::string message) {
  return Failure{make_error(Errc::network, std::move(message)), true};
}
[[nodiscard]] inline Failure fatal_failure(Errc code, std::string message) {
  return Failure{make_error(code, std::move(message)), false};
}

// 5xx (but 501/505), 408 and 429: the server may answer differently later.
[[nodiscard]] bool transient_status(long status);
// A Failure for a status the caller did not expect: transient or not, Retry-After honoured,
// 404/410 as Errc::not_found.
[[nodiscard]] Failure status_failure(const ResponseHead& head, const std::string& expected);

struct Request {
  std::string method = "GET";
  std::string range{};  // "first-last" (inclusive), empty for none
  const std::map<std::string, std::string>* headers = nullptr;
  const std::string* body = nullptr;
};

// Receives the final response's body in pieces; a Failure stops the transfer at once.
using BodyHandler =
    std::function<std::optional<Failure>(const ResponseHead&, std::span<const std::uint8_t>)>;

struct Outcome {
  std::optional<Failure> failure;
  ResponseHead head;  // the final response (after redirects)
};

class Easy {
 public:
  explicit Easy(const TransportOptions& options);
  ~Easy();
  Easy(const Easy&) = delete;
  Easy& operator=(const Easy&) = delete;

  // One request. Transport failures (and failures from on_body) come back as Outcome::failure;
  // any HTTP status is a success here and left for the caller to judge.
  [[nodiscard]] Outcome perform(const std::string& url, const Request& request,
                                const BodyHandler& on_body);

 private:
  struct Transfer;
  static std::size_t on_header(char* data, std::size_t size, std::size_t n, void* user);
  static std::size_t on_write(char* data, std::size_t size, std::size_t n, void* user);
  static int on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t);
  [[nodiscard]] Failure transport_failure(CURLcode rc, const Transfer& t) const;

  const TransportOptions& options_;
  CURL* handle_;
  char error_buffer_[CURL_ERROR_SIZE] = {};
};

// Calls attempt() until it succeeds or fails for good, sleeping retry_base·2ⁿ (capped at
// retry_max, with jitter, at least any Retry-After) between transient failures. An attempt that
// made progress (set `progressed`) restarts the count: a resumed download that keeps advancing is
// not failing; except a stalled one (a trickle is not progress, or it would be retried forever).
// Errors other than passthrough ones are prefixed with the URL.
[[nodiscard]] Status with_retries(
    const TransportOptions& options, const std::string& url,
    const std::function<std::optional<Failure>(bool& progressed)>& attempt);

}  // namespace abup::protocol::curl
