// Small request/response exchanges (Omaha, Kubernetes, FleetLock) under the same transport rules.
#include "update-protocol/http/client.hpp"
#include "update-protocol/http/curl/easy.hpp"

namespace abup::protocol {
namespace {

// Safe to send twice (RFC 9110 §9.2.2).
bool idempotent(const std::string& method) {
  return method == "GET" || method == "HEAD" || method == "PUT" || method == "DELETE" ||
         method == "OPTIONS";
}

}  // namespace

Result<HttpResponse> http_request(const std::string& method, const std::string& url,
                                  const std::map<std::string, std::string>& headers,
                                  const std::string& body, const TransportOptions& options,
                                  std::size_t max_body) {
  ABUP_CHECK(curl::check_url(url, options));
  curl::Easy easy(options);
  const bool may_repeat = idempotent(method);
  curl::Request request{.method = method, .headers = &headers, .body = &body};
  if (body.empty() && (method == "GET" || method == "HEAD" || method == "DELETE"))
    request.body = nullptr;

  HttpResponse response;
  bool answered = false;  // the last attempt got an HTTP reply (possibly a retried 5xx)
  Status st = curl::with_retries(options, url, [&](bool&) -> std::optional<curl::Failure> {
    response = HttpResponse{};
    answered = false;
    curl::BodyHandler on_body =
        [&](const curl::ResponseHead&,
            std::span<const std::uint8_t> data) -> std::optional<curl::Failure> {
      if (data.size() > max_body - response.body.size())
        return curl::fatal_failure(Errc::invalid_input, "response body larger than " +
                                                            std::to_string(max_body) + " bytes");
      response.body.append(reinterpret_cast<const char*>(data.data()), data.size());
      return std::nullopt;
    };
    curl::Outcome out = easy.perform(url, request, on_body);
    if (out.failure) {
      // A request that may have reached the server is not repeated unless repeating is harmless.
      if (!may_repeat && !out.failure->nothing_sent) out.failure->transient = false;
      return out.failure;
    }
    answered = true;
    std::optional<curl::Failure> again;
    if (may_repeat && curl::transient_status(out.head.status))
      again = curl::status_failure(out.head, "");
    response.status = out.head.status;
    response.headers = std::move(out.head.headers);
    return again;
  });
  if (!st && (!answered || st.error().code == Errc::cancelled)) return std::move(st).error();
  return response;
}

}  // namespace abup::protocol
