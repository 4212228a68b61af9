// libFuzzer: the update-request annotation is written by whoever can write the Node; parsing must
// never crash or throw. Properties: a request that parses is answerable by salvage, and every
// status built from it serializes and parses back unchanged, with the message within the cap.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "update-protocol/aks/contract.hpp"

namespace aks = abup::protocol::aks;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto salvage = aks::salvage_request(text);
  (void)aks::parse_status(text);
  auto r = aks::parse_request(text);
  if (!r) return 0;
  if (!salvage.answerable || salvage.operation_id != r->operation_id) {
    std::fprintf(stderr, "PROPERTY FAILED: a valid request is not answerable\n");
    std::abort();
  }
  aks::OperationStatus s;
  s.node_update_id = r->node_update_id;
  s.operation_id = r->operation_id;
  s.operation = r->operation;
  s.code = aks::Code::invalid_request;
  s.message = std::string(text);  // arbitrary bytes, possibly longer than the cap
  s.to_version = r->target_version;
  s.started_utc = s.last_updated_utc = s.finished_utc = "2026-11-24T08:00:00Z";
  auto out = aks::serialize_status(s);
  if (!out) {
    std::fprintf(stderr, "PROPERTY FAILED: status does not serialize: %s\n",
                 out.error().message.c_str());
    std::abort();
  }
  auto back = aks::parse_status(*out);
  if (!back || back->operation_id != s.operation_id || back->message.size() > aks::kMessageCap) {
    std::fprintf(stderr, "PROPERTY FAILED: status does not parse back:\n%s\n", out->c_str());
    std::abort();
  }
  return 0;
}
