// What the Omaha client tests ask with: a fixed node identity and plain-http transport options
// that fail at once (no retries), shared by the omaha and security tests.
#pragma once

#include <string>

#include "update-protocol/http/client.hpp"
#include "update-protocol/omaha/omaha.hpp"

namespace abup::test {

// The identity of a node running 202601.01.0 on x86_64 (machine "m-1", boot "b-1").
inline protocol::omaha::Identity test_identity(const std::string& server,
                                               const std::string& app_id) {
  protocol::omaha::Identity who;
  who.server = server;
  who.app_id = app_id;
  who.track = "stable";
  who.version = "202601.01.0";
  who.arch = "x86_64";
  who.machine_id = "m-1";
  who.boot_id = "b-1";
  return who;
}

inline protocol::TransportOptions plain_http() {
  protocol::TransportOptions t;
  t.allow_http = true;
  t.max_retries = 0;
  return t;
}

}  // namespace abup::test
