#include "partitions/boot/backend.hpp"

#include <doctest/doctest.h>

#include <string>

using namespace abup;
using namespace abup::partitions::boot;

TEST_CASE("make_backend picks a backend by name and lists the names on an unknown one") {
  BackendContext ctx;
  ctx.grubenv = "/nonexistent/grubenv";
  auto g = make_backend("grubenv", ctx);
  REQUIRE(g.has_value());
  CHECK((*g)->name() == "grubenv");
  auto u = make_backend("uefi", ctx);
  REQUIRE(u.has_value());
  CHECK((*u)->name() == "uefi");
  auto missing_pair = make_backend("gptprio", ctx);
  REQUIRE_FALSE(missing_pair.has_value());
  CHECK(missing_pair.error().message.find("slot pair") != std::string::npos);
  auto s = make_backend("systemd-boot", ctx);
  REQUIRE(s.has_value());
  CHECK((*s)->name() == "systemd-boot");
  auto bad = make_backend("refind", ctx);
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().code == Errc::invalid_input);
  const std::string& m = bad.error().message;
  CHECK_MESSAGE(m.find("refind") != std::string::npos, m);
  for (const char* n : {"gptprio", "grubenv", "uefi", "systemd-boot"})
    CHECK_MESSAGE(m.find(n) != std::string::npos, m);
  auto bad_slot = (*g)->arm('C');
  REQUIRE_FALSE(bad_slot.has_value());
  CHECK(bad_slot.error().message.find("'C'") != std::string::npos);
}
