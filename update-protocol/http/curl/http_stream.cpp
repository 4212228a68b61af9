// Long-lived GETs whose body is consumed as it arrives (Kubernetes watches).
#include "update-protocol/http/client.hpp"
#include "update-protocol/http/curl/easy.hpp"

namespace abup::protocol {

Result<HttpResponse> http_stream(const std::string& url,
                                 const std::map<std::string, std::string>& headers,
                                 const TransportOptions& options,
                                 const std::function<bool(std::string_view)>& on_data,
                                 std::size_t max_error_body) {
  ABUP_CHECK(curl::check_url(url, options));
  curl::Easy easy(options);
  curl::Request request{.method = "GET", .headers = &headers};
  HttpResponse response;
  bool stopped = false;
  curl::BodyHandler on_body =
      [&](const curl::ResponseHead& head,
          std::span<const std::uint8_t> data) -> std::optional<curl::Failure> {
    std::string_view piece(reinterpret_cast<const char*>(data.data()), data.size());
    if (head.status < 200 || head.status > 299) {
      response.body.append(piece.substr(0, max_error_body - response.body.size()));
      return std::nullopt;
    }
    if (on_data(piece)) return std::nullopt;
    stopped = true;
    curl::Failure f{make_error(Errc::cancelled, "stopped by the consumer")};
    f.passthrough = true;
    return f;
  };
  curl::Outcome out = easy.perform(url, request, on_body);
  if (out.failure && !stopped) return std::move(out.failure->error).with_context(url);
  response.status = out.head.status;
  response.headers = std::move(out.head.headers);
  return response;
}

}  // namespace abup::protocol
