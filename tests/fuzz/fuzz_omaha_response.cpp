// libFuzzer: Omaha replies come from the network before anything about them is trusted; parsing
// must never crash, and its result must be consistent: an offer exactly when the answer is
// "update", with a URL and a version.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "update-protocol/omaha/omaha.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using abup::protocol::omaha::CheckResult;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto r = abup::protocol::omaha::parse_response(text, "{b0ec8f0d-1c13-4bf4-9efd-ea54464a7098}");
  if (!r) {
    if (r.error().message.empty()) {
      std::fprintf(stderr, "PROPERTY FAILED: an error without a message\n");
      std::abort();
    }
    return 0;
  }
  const bool update = r->kind == CheckResult::Kind::update;
  if (update != r->offer.has_value() ||
      (update && (r->offer->url.empty() || r->offer->version.empty()))) {
    std::fprintf(stderr, "PROPERTY FAILED: kind and offer disagree\n");
    std::abort();
  }
  if (r->kind != CheckResult::Kind::not_now && r->app_status != "ok") {
    std::fprintf(stderr, "PROPERTY FAILED: app status '%s' but not 'not now'\n",
                 r->app_status.c_str());
    std::abort();
  }
  return 0;
}
