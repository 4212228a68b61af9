#include "partitions/boot/backend.hpp"

#include <doctest/doctest.h>

#include <string>
#include <utility>
#include <vector>

using namespace abup;
using namespace abup::partitions::boot;

TEST_CASE("boot backend names: one spelling each, parse gives back the value") {
  for (const auto& [value, name] : std::vector<std::pair<BootBackend, std::string>>{
           {BootBackend::gptprio, "gptprio"},
           {BootBackend::grubenv, "grubenv"},
           {BootBackend::uefi, "uefi"},
           {BootBackend::systemd_boot, "systemd-boot"}}) {
    CAPTURE(name);
    CHECK(to_string(value) == name);
    auto back = parse_boot_backend(name);
    REQUIRE(back);
    CHECK(*back == value);
  }
  // Strict, as systemd's settings: case and spelling matter, and the error lists every name.
  for (const char* bad : {"systemd_boot", "GPTPRIO", "refind", ""}) {
    auto b = parse_boot_backend(bad);
    REQUIRE_FALSE(b);
    CHECK(b.error().code == Errc::usage);
    CHECK(b.error().message ==
          "expected gptprio, grubenv, uefi or systemd-boot, got '" + std::string(bad) + "'");
  }
}

TEST_CASE("make_backend builds the backend it is named") {
  BackendContext ctx;
  ctx.grubenv = "/nonexistent/grubenv";
  auto g = make_backend(BootBackend::grubenv, ctx);
  REQUIRE(g.has_value());
  CHECK((*g)->name() == "grubenv");
  auto u = make_backend(BootBackend::uefi, ctx);
  REQUIRE(u.has_value());
  CHECK((*u)->name() == "uefi");
  auto missing_pair = make_backend(BootBackend::gptprio, ctx);
  REQUIRE_FALSE(missing_pair.has_value());
  CHECK(missing_pair.error().message.find("slot pair") != std::string::npos);
  auto s = make_backend(BootBackend::systemd_boot, ctx);
  REQUIRE(s.has_value());
  CHECK((*s)->name() == "systemd-boot");
  auto bad_slot = (*g)->arm('C');
  REQUIRE_FALSE(bad_slot.has_value());
  CHECK(bad_slot.error().message.find("'C'") != std::string::npos);
}
