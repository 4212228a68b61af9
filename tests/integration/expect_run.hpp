// One check the integration tests make of nearly every command they run: its exit status and
// the words its output must hold, with the output shown when either is wrong.
#pragma once

#include <doctest/doctest.h>

#include <initializer_list>
#include <string>

#include "support/util.hpp"

namespace abup::test {

// `r` exited with `code` and its output holds each of `parts` (one assertion each).
inline void expect_run(const RunResult& r, int code,
                       std::initializer_list<std::string> parts = {}) {
  INFO(r.out);
  CHECK(r.exit_code == code);
  for (const auto& part : parts) CHECK_MESSAGE(r.out.find(part) != std::string::npos, part);
}

}  // namespace abup::test
