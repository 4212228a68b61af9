// Fixtures for the http tests that run against a real loopback server (TEST_CASE_FIXTURE), and
// the error of a call that must fail.
#pragma once

#include <doctest/doctest.h>

#include "fixture.hpp"
#include "support/fault_server.hpp"
#include "support/nginx.hpp"

namespace abup::protocol::test {

// nginx over a fresh Docroot: a server that behaves.
struct OnNginx {
  Docroot d;
  abup::test::NginxServer nginx{d.root};
};

// The fault server over a fresh Docroot: its URL paths pick the fault (drop/, flaky/, norange/...).
struct OnFaultServer {
  Docroot d;
  abup::test::FaultServer fault{d.root};
};

// The error of a result that must be one.
template <typename T>
const Error& failure_of(const Result<T>& r) {
  REQUIRE_FALSE(r.has_value());
  return r.error();
}
template <typename T>
const Error& failure_of(const Result<T>&& r) = delete;  // the error would outlive its result

}  // namespace abup::protocol::test
