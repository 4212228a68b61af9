#include "update-protocol/http/curl/easy.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <deque>
#include <mutex>
#include <random>
#include <thread>

namespace abup::protocol::curl {
namespace {

using Clock = std::chrono::steady_clock;

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

std::string trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

bool cancelled(const TransportOptions& o) {
  return o.cancel && o.cancel->load(std::memory_order_relaxed);
}

// The low-speed watchdog. libcurl's own CURLOPT_LOW_SPEED_LIMIT/TIME cannot be used: it measures
// wall time, and a Source sink may block for seconds (back-pressure from the decoder workers)
// while libcurl reads nothing, which it would take for a stalled link. So the rate is measured
// here, from the xferinfo callback, on a clock that stops while the sink runs: abort when fewer
// than limit bytes/s arrived over the last `window` of that active time.
class SpeedWatch {
 public:
  SpeedWatch(long limit, std::chrono::seconds window)
      : limit_(limit), window_(window), start_(Clock::now()) {}

  void received(std::size_t n) { bytes_ += n; }
  void exclude(Clock::duration d) { excluded_ += d; }

  bool too_slow() {
    if (limit_ <= 0 || window_.count() <= 0) return false;
    auto now = Clock::now() - start_ - excluded_;
    if (samples_.empty() || now - samples_.back().at >= std::chrono::milliseconds(100))
      samples_.push_back({now, bytes_});
    while (samples_.size() >= 2 && samples_[1].at <= now - window_) samples_.pop_front();
    const Sample& from = samples_.front();
    if (from.at > now - window_) return false;  // not a full window of history yet
    double seconds = std::chrono::duration<double>(now - from.at).count();
    return static_cast<double>(bytes_ - from.bytes) < static_cast<double>(limit_) * seconds;
  }

 private:
  struct Sample {
    Clock::duration at;
    std::uint64_t bytes;
  };
  long limit_;
  std::chrono::seconds window_;
  Clock::time_point start_;
  Clock::duration excluded_{};
  std::uint64_t bytes_ = 0;
  std::deque<Sample> samples_;
};

std::chrono::milliseconds parse_retry_after(const ResponseHead& head) {
  const std::string* v = head.find("retry-after");
  long long seconds = 0;
  if (!v || std::from_chars(v->data(), v->data() + v->size(), seconds).ec != std::errc() ||
      seconds < 0)
    return std::chrono::milliseconds(0);  // an HTTP-date: the backoff decides
  return std::chrono::seconds(std::min<long long>(seconds, 3600));
}

bool transient_code(CURLcode rc) {
  switch (rc) {
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_PARTIAL_FILE:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_HTTP3:
    case CURLE_QUIC_CONNECT_ERROR:
      return true;
    default:
      return false;
  }
}

bool tls_trust_code(CURLcode rc) {
  return rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_ISSUER_ERROR ||
         rc == CURLE_SSL_PINNEDPUBKEYNOTMATCH || rc == CURLE_SSL_INVALIDCERTSTATUS;
}

// Sets `field` from an option, reporting (rather than ignoring) what libcurl refuses.
template <typename T>
void set(CURL* h, CURLoption opt, T value, CURLcode& first_error) {
  CURLcode rc = curl_easy_setopt(h, opt, value);
  if (rc != CURLE_OK && first_error == CURLE_OK) first_error = rc;
}

}  // namespace

Status check_url(const std::string& url, const TransportOptions& options) {
  std::string scheme = lower(url.substr(0, url.find("://")));
  if (url.find("://") == std::string::npos || (scheme != "https" && scheme != "http"))
    return make_error(Errc::invalid_input, url + ": not an http(s):// URL");
  if (scheme == "http" && !options.allow_http)
    return make_error(Errc::refused, url + ": plain http:// is refused (the image and its " +
                                         "metadata would travel unauthenticated); use https:// " +
                                         "or pass --allow-http");
  return {};
}

const std::string* ResponseHead::find(const std::string& lower_name) const {
  auto it = headers.find(lower_name);
  return it == headers.end() ? nullptr : &it->second;
}

std::string ResponseHead::describe_status() const {
  auto sp = status_line.find(' ');
  if (sp != std::string::npos) {
    std::string rest = trim(std::string_view(status_line).substr(sp + 1));
    if (!rest.empty()) return "HTTP " + rest;
  }
  return "HTTP " + std::to_string(status);
}

bool transient_status(long status) {
  return (status >= 500 && status != 501 && status != 505) || status == 408 || status == 429;
}

Failure status_failure(const ResponseHead& head, const std::string& expected) {
  std::string msg =
      head.describe_status() + (expected.empty() ? "" : " (expected " + expected + ")");
  if (transient_status(head.status)) {
    Failure f = transient_failure(std::move(msg));
    f.retry_after = parse_retry_after(head);
    return f;
  }
  if (head.status == 404 || head.status == 410) return fatal_failure(Errc::not_found, msg);
  return fatal_failure(Errc::network, msg);
}

struct Easy::Transfer {
  const TransportOptions& options;
  const BodyHandler& on_body;
  SpeedWatch watch;
  ResponseHead head;
  std::optional<Failure> failure;  // set by a callback that stopped the transfer
  bool too_slow = false;
  bool was_cancelled = false;
};

Easy::Easy(const TransportOptions& options) : options_(options) {
  global_init();
  handle_ = curl_easy_init();
}

Easy::~Easy() {
  if (handle_) curl_easy_cleanup(handle_);
}

std::size_t Easy::on_header(char* data, std::size_t size, std::size_t n, void* user) {
  auto& t = *static_cast<Transfer*>(user);
  std::string_view line(data, size * n);
  t.watch.received(line.size());
  // Every response (redirects, 1xx, a proxy's CONNECT reply) starts with its status line.
  if (line.starts_with("HTTP/")) {
    t.head = ResponseHead{};
    t.head.status_line = trim(line);
    auto sp = t.head.status_line.find(' ');
    if (sp != std::string::npos) {
      auto s = std::string_view(t.head.status_line).substr(sp + 1);
      std::from_chars(s.data(), s.data() + s.size(), t.head.status);
    }
    return line.size();
  }
  auto colon = line.find(':');
  if (colon == std::string_view::npos || colon == 0 || line.front() == ' ' || line.front() == '\t')
    return line.size();  // the blank end-of-head line, or obsolete folding: nothing we rely on
  std::string name = lower(std::string(line.substr(0, colon)));
  std::string value = trim(line.substr(colon + 1));
  auto [it, fresh] = t.head.headers.emplace(name, value);
  if (!fresh) it->second += ", " + value;
  return line.size();
}

std::size_t Easy::on_write(char* data, std::size_t size, std::size_t n, void* user) {
  auto& t = *static_cast<Transfer*>(user);
  std::size_t len = size * n;
  t.watch.received(len);
  if (!t.on_body) return len;
  auto began = Clock::now();
  t.failure = t.on_body(t.head, {reinterpret_cast<const std::uint8_t*>(data), len});
  t.watch.exclude(Clock::now() - began);
  return t.failure ? 0 : len;  // 0 makes libcurl stop with CURLE_WRITE_ERROR
}

int Easy::on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto& t = *static_cast<Transfer*>(user);
  if (cancelled(t.options)) {
    t.was_cancelled = true;
    return 1;
  }
  if (t.watch.too_slow()) {
    t.too_slow = true;
    return 1;
  }
  return 0;
}

Failure Easy::transport_failure(CURLcode rc, const Transfer& t) const {
  if (t.was_cancelled) return fatal_failure(Errc::cancelled, "transfer cancelled");
  // The two limits that make a dead server fail: the message says which one was hit and which
  // setting moves it, so an operator on a slow link knows what to change.
  if (t.too_slow) {
    const std::string rate = std::to_string(options_.low_speed_limit) + " bytes/s for " +
                             std::to_string(options_.low_speed_time.count()) + " s";
    Failure f = transient_failure(
        (t.head.status == 0
             ? "no answer: under " + rate
             : "transfer slower than " + rate + " (time spent by the consumer excluded)") +
        ": the low-speed limit, [Network] LowSpeedLimitBytes= and LowSpeedTimeSec=");
    f.stalled = true;
    return f;
  }
  std::string msg = curl_easy_strerror(rc);
  if (error_buffer_[0] && msg != error_buffer_) msg += ": " + std::string(error_buffer_);
  if (t.head.status != 0) msg += " (after " + t.head.describe_status() + ")";
  // No overall CURLOPT_TIMEOUT is set, so a timeout is the connect timeout (name lookup, TCP and
  // TLS handshakes, a proxy's CONNECT).
  if (rc == CURLE_OPERATION_TIMEDOUT) {
    Failure f = transient_failure(
        "no connection within " + std::to_string(options_.connect_timeout.count()) +
        " s: the connect timeout, [Network] ConnectTimeoutSec= (" + msg + ")");
    f.nothing_sent = t.head.status == 0;
    return f;
  }
  if (rc == CURLE_TOO_MANY_REDIRECTS)
    return fatal_failure(Errc::network, "more than " + std::to_string(options_.max_redirects) +
                                            " redirects (" + msg + ")");
  // A reply that does not start with a status line on a reused connection: bytes left over from
  // the previous reply (one more than its Content-Length, e.g. a byte duplicated on the way) or
  // a damaged reply. A new connection gets a clean one.
  if ((rc == CURLE_UNSUPPORTED_PROTOCOL &&
       std::string_view(error_buffer_).find("HTTP/0.9") != std::string_view::npos) ||
      rc == CURLE_WEIRD_SERVER_REPLY)
    return transient_failure("the reply is not HTTP (" + msg + ")");
  if (rc == CURLE_UNSUPPORTED_PROTOCOL)
    return fatal_failure(Errc::refused,
                         "redirected to a URL that is not https:// (" + msg +
                             (options_.allow_http ? ")" : "); pass --allow-http to permit http"));
  if (tls_trust_code(rc))
    return fatal_failure(Errc::untrusted,
                         "TLS: server certificate not trusted (" + msg +
                             (!options_.ca_pem.empty()   ? "; CA from configuration data"
                              : options_.ca_file.empty() ? "; system CA store"
                                                         : "; CA file " + options_.ca_file) +
                             ")");
  // OpenSSL's words for a handshake without a common protocol version: the server speaks only
  // what abup's floor (TLS 1.2) refuses. Not retried: a server's configuration does not change
  // in seconds.
  if (rc == CURLE_SSL_CONNECT_ERROR &&
      (std::string_view(error_buffer_).find("protocol version") != std::string_view::npos ||
       std::string_view(error_buffer_).find("unsupported protocol") != std::string_view::npos))
    return fatal_failure(
        Errc::refused,
        "TLS: the server offers no TLS 1.2 or newer, which abup requires (" + msg + ")");
  if (rc == CURLE_SSL_CACERT_BADFILE || rc == CURLE_SSL_CERTPROBLEM)
    return fatal_failure(Errc::invalid_input,
                         "TLS: cannot use the configured certificate files (" + msg + ")");
  Failure f{make_error(Errc::network, msg), transient_code(rc)};
  f.nothing_sent = rc == CURLE_COULDNT_RESOLVE_HOST || rc == CURLE_COULDNT_RESOLVE_PROXY ||
                   rc == CURLE_COULDNT_CONNECT;
  return f;
}

Outcome Easy::perform(const std::string& url, const Request& request, const BodyHandler& on_body) {
  if (!handle_) return {fatal_failure(Errc::failed, "curl_easy_init failed"), {}};
  if (cancelled(options_)) return {fatal_failure(Errc::cancelled, "transfer cancelled"), {}};
  // A reset keeps the connection cache, DNS cache and TLS sessions: every request starts from
  // known options and still reuses the connection.
  curl_easy_reset(handle_);
  Transfer t{options_, on_body, SpeedWatch(options_.low_speed_limit, options_.low_speed_time),
             {},       {},      false,
             false};
  error_buffer_[0] = 0;
  CURLcode bad = CURLE_OK;
  CURL* h = handle_;
  const char* protocols = options_.allow_http ? "http,https" : "https";
  set(h, CURLOPT_URL, url.c_str(), bad);
  set(h, CURLOPT_PROTOCOLS_STR, protocols, bad);
  set(h, CURLOPT_REDIR_PROTOCOLS_STR, protocols, bad);
  // TLS 1.2 at least, whatever the system's OpenSSL policy allows (Debian's already says so).
  set(h, CURLOPT_SSLVERSION, static_cast<long>(CURL_SSLVERSION_TLSv1_2), bad);
  set(h, CURLOPT_FOLLOWLOCATION, 1L, bad);
  set(h, CURLOPT_MAXREDIRS, static_cast<long>(options_.max_redirects), bad);
  set(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options_.connect_timeout.count() * 1000),
      bad);
  set(h, CURLOPT_USERAGENT, options_.user_agent.c_str(), bad);
  set(h, CURLOPT_NOSIGNAL, 1L, bad);
  set(h, CURLOPT_TCP_KEEPALIVE, 1L, bad);
  set(h, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L, bad);
  set(h, CURLOPT_ERRORBUFFER, error_buffer_, bad);
  // NULL restores libcurl's default: the proxy from the environment.
  set(h, CURLOPT_PROXY, options_.proxy.empty() ? nullptr : options_.proxy.c_str(), bad);
  if (!options_.ca_file.empty()) {
    set(h, CURLOPT_CAINFO, options_.ca_file.c_str(), bad);
    set(h, CURLOPT_CAPATH, static_cast<const char*>(nullptr), bad);
  }
  if (!options_.client_cert.empty()) set(h, CURLOPT_SSLCERT, options_.client_cert.c_str(), bad);
  if (!options_.client_key.empty()) set(h, CURLOPT_SSLKEY, options_.client_key.c_str(), bad);
  // libcurl copies a blob (CURL_BLOB_COPY), so the options may change between requests.
  auto blob = [&](CURLoption opt, const std::string& pem) {
    curl_blob b{const_cast<char*>(pem.data()), pem.size(), CURL_BLOB_COPY};
    set(h, opt, &b, bad);
  };
  if (!options_.ca_pem.empty()) {
    blob(CURLOPT_CAINFO_BLOB, options_.ca_pem);
    // Only the given CAs: libcurl would also load its built-in bundle path.
    set(h, CURLOPT_CAINFO, static_cast<const char*>(nullptr), bad);
    set(h, CURLOPT_CAPATH, static_cast<const char*>(nullptr), bad);
  }
  if (!options_.client_cert_pem.empty()) {
    blob(CURLOPT_SSLCERT_BLOB, options_.client_cert_pem);
    set(h, CURLOPT_SSLCERTTYPE, "PEM", bad);
  }
  if (!options_.client_key_pem.empty()) {
    blob(CURLOPT_SSLKEY_BLOB, options_.client_key_pem);
    set(h, CURLOPT_SSLKEYTYPE, "PEM", bad);
  }
  set(h, CURLOPT_HEADERFUNCTION, &Easy::on_header, bad);
  set(h, CURLOPT_HEADERDATA, static_cast<void*>(&t), bad);
  set(h, CURLOPT_WRITEFUNCTION, &Easy::on_write, bad);
  set(h, CURLOPT_WRITEDATA, static_cast<void*>(&t), bad);
  set(h, CURLOPT_XFERINFOFUNCTION, &Easy::on_progress, bad);
  set(h, CURLOPT_XFERINFODATA, static_cast<void*>(&t), bad);
  set(h, CURLOPT_NOPROGRESS, 0L, bad);

  if (request.method == "GET") {
    set(h, CURLOPT_HTTPGET, 1L, bad);
  } else if (request.method == "HEAD") {
    set(h, CURLOPT_NOBODY, 1L, bad);
  } else {
    if (request.method != "POST") set(h, CURLOPT_CUSTOMREQUEST, request.method.c_str(), bad);
    if (request.body || request.method == "POST" || request.method == "PUT" ||
        request.method == "PATCH") {
      static const std::string kEmpty;
      const std::string& body = request.body ? *request.body : kEmpty;
      set(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()), bad);
      set(h, CURLOPT_POSTFIELDS, body.c_str(), bad);
    }
  }
  if (!request.range.empty()) set(h, CURLOPT_RANGE, request.range.c_str(), bad);
  // Bigger receive buffers: image downloads are hundreds of MiB, and each recv is a syscall.
  set(h, CURLOPT_BUFFERSIZE, 512L * 1024, bad);

  curl_slist* header_list = nullptr;
  // "Expect:" stops libcurl waiting for a 100-continue that small API servers rarely send.
  header_list = curl_slist_append(header_list, "Expect:");
  if (request.headers)
    for (const auto& [name, value] : *request.headers)
      header_list = curl_slist_append(header_list, (name + ": " + value).c_str());
  set(h, CURLOPT_HTTPHEADER, header_list, bad);

  CURLcode rc = bad != CURLE_OK ? bad : curl_easy_perform(h);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, static_cast<curl_slist*>(nullptr));
  curl_slist_free_all(header_list);

  Outcome out;
  if (bad != CURLE_OK) {
    out.failure = fatal_failure(
        Errc::invalid_input, std::string("libcurl refused an option: ") + curl_easy_strerror(bad));
  } else if (t.failure) {
    out.failure = std::move(t.failure);
  } else if (rc != CURLE_OK) {
    out.failure = transport_failure(rc, t);
  }
  out.head = std::move(t.head);
  return out;
}

Status with_retries(const TransportOptions& options, const std::string& url,
                    const std::function<std::optional<Failure>(bool& progressed)>& attempt) {
  static thread_local std::minstd_rand jitter(std::random_device{}());
  int failures = 0;
  int attempts = 0;
  for (;;) {
    bool progressed = false;
    ++attempts;
    std::optional<Failure> f = attempt(progressed);
    if (!f) return {};
    if (f->passthrough) return std::move(f->error);
    if (progressed && !f->stalled) failures = 0;
    if (!f->transient || failures >= options.max_retries) {
      Error e = std::move(f->error).with_context(url);
      if (f->transient) e.message += " (gave up after " + std::to_string(attempts) + " attempts)";
      return e;
    }
    // Full backoff halved by jitter, so a fleet that failed together does not retry together.
    std::chrono::milliseconds delay = options.retry_base * (1LL << std::min(failures, 20));
    delay = std::min<std::chrono::milliseconds>(delay, options.retry_max);
    delay -= std::chrono::milliseconds(
        std::uniform_int_distribution<long long>(0, delay.count() / 2)(jitter));
    delay = std::max(delay, std::min<std::chrono::milliseconds>(f->retry_after, options.retry_max));
    ++failures;
    for (auto until = Clock::now() + delay; Clock::now() < until;) {
      if (cancelled(options)) return make_error(Errc::cancelled, url + ": transfer cancelled");
      std::this_thread::sleep_for(
          std::min<Clock::duration>(until - Clock::now(), std::chrono::milliseconds(50)));
    }
  }
}

}  // namespace abup::protocol::curl
