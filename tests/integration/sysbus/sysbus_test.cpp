// abup's system-bus client (agent/sysbus.hpp) against a real dbus-daemon with the recording fake
// of logind and systemd; and the fake's own strictness, which later tests rely on.
#include "agent/sysbus.hpp"

#include <doctest/doctest.h>
#include <systemd/sd-bus.h>

#include <cstdlib>
#include <memory>

#include "support/private_bus.hpp"

using namespace abup::test;
using abup::agent::reboot_via_logind;
using abup::agent::unit_active_state;

namespace {

struct BusUnref {
  void operator()(sd_bus* b) const { sd_bus_flush_close_unref(b); }
};

std::unique_ptr<sd_bus, BusUnref> connect(const PrivateBus& bus) {
  sd_bus* raw = nullptr;
  REQUIRE(sd_bus_new(&raw) >= 0);
  std::unique_ptr<sd_bus, BusUnref> b(raw);
  REQUIRE(sd_bus_set_address(raw, bus.address().c_str()) >= 0);
  REQUIRE(sd_bus_set_bus_client(raw, 1) >= 0);
  REQUIRE(sd_bus_start(raw) >= 0);
  return b;
}

// The D-Bus error name a call with one string argument gets ("" when it succeeds).
std::string error_of(sd_bus* b, const char* dest, const char* path, const char* iface,
                     const char* member, const char* sig, const char* arg) {
  sd_bus_error err = SD_BUS_ERROR_NULL;
  sd_bus_message* reply = nullptr;
  int r = sig ? sd_bus_call_method(b, dest, path, iface, member, &err, &reply, sig, arg)
              : sd_bus_call_method(b, dest, path, iface, member, &err, &reply, nullptr);
  std::string name = r < 0 && err.name ? err.name : "";
  sd_bus_error_free(&err);
  sd_bus_message_unref(reply);
  return name;
}

}  // namespace

TEST_CASE("reboot_via_logind calls login1 Manager.Reboot with interactive=false") {
  PrivateBus bus;
  bus.export_address();
  auto st = reboot_via_logind();
  REQUIRE_MESSAGE(st.has_value(), (st ? "" : st.error().message));
  auto calls = bus.calls("org.freedesktop.login1.Manager.Reboot");
  REQUIRE(calls.size() == 1);
  CHECK(calls[0]["destination"] == "org.freedesktop.login1");
  CHECK(calls[0]["path"] == "/org/freedesktop/login1");
  CHECK(calls[0]["signature"] == "b");
  CHECK(calls[0]["args"] == nlohmann::json::array({false}));
}

TEST_CASE("reboot_via_logind names the D-Bus error when logind refuses or is absent") {
  SUBCASE("refused") {
    PrivateBus bus(PrivateBusOptions().failing_reboot(
        "org.freedesktop.DBus.Error.AccessDenied:Not allowed today"));
    bus.export_address();
    auto st = reboot_via_logind();
    REQUIRE_FALSE(st.has_value());
    INFO(st.error().message);
    CHECK(st.error().message.find("org.freedesktop.login1.Manager.Reboot") != std::string::npos);
    CHECK(st.error().message.find("org.freedesktop.DBus.Error.AccessDenied: Not allowed today") !=
          std::string::npos);
    CHECK(bus.calls("org.freedesktop.login1.Manager.Reboot").size() == 1);
  }
  SUBCASE("no logind on the bus") {
    PrivateBus bus(PrivateBusOptions().only("systemd1"));
    bus.export_address();
    auto st = reboot_via_logind();
    REQUIRE_FALSE(st.has_value());
    INFO(st.error().message);
    CHECK(st.error().message.find("org.freedesktop.DBus.Error.ServiceUnknown") !=
          std::string::npos);
    CHECK(st.error().message.find(bus.address()) != std::string::npos);
  }
  SUBCASE("no bus") {
    TempDir tmp;
    const std::string address = "unix:path=" + (tmp / "nothing").string();
    ::setenv("DBUS_SYSTEM_BUS_ADDRESS", address.c_str(), 1);
    auto st = reboot_via_logind();
    ::unsetenv("DBUS_SYSTEM_BUS_ADDRESS");
    REQUIRE_FALSE(st.has_value());
    INFO(st.error().message);
    CHECK(st.error().message.find("connect to the system bus (" + address + ")") !=
          std::string::npos);
  }
}

TEST_CASE("unit_active_state reads ActiveState through GetUnit or LoadUnit") {
  PrivateBus bus(
      PrivateBusOptions().unit("kubelet.service", "failed").unit("containerd.service", "active"));
  bus.export_address();
  auto s = unit_active_state("kubelet.service");
  REQUIRE_MESSAGE(s.has_value(), (s ? "" : s.error().message));
  CHECK(*s == "failed");
  CHECK(unit_active_state("containerd.service").value() == "active");
  bus.set_unit("kubelet.service", "activating", "start");
  CHECK(unit_active_state("kubelet.service").value() == "activating");

  // A unit systemd has not loaded: GetUnit says NoSuchUnit, LoadUnit answers a not-found unit.
  const auto before = bus.records().size();
  CHECK(unit_active_state("nothere.service").value() == "inactive");
  auto rec = bus.records();
  REQUIRE(rec.size() == before + 3);
  CHECK(rec[before]["method"] == "org.freedesktop.systemd1.Manager.GetUnit");
  CHECK(rec[before]["args"] == nlohmann::json::array({"nothere.service"}));
  CHECK(rec[before + 1]["method"] == "org.freedesktop.systemd1.Manager.LoadUnit");
  CHECK(rec[before + 2]["method"] == "org.freedesktop.DBus.Properties.Get");
  CHECK(rec[before + 2]["args"] ==
        nlohmann::json::array({"org.freedesktop.systemd1.Unit", "ActiveState"}));

  auto bad = unit_active_state("no-suffix");
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().message.find("org.freedesktop.DBus.Error.InvalidArgs") != std::string::npos);
}

TEST_CASE("the fake is strict: unknown methods and wrong signatures are refused, and recorded") {
  PrivateBus bus(PrivateBusOptions().unit("kubelet.service", "failed"));
  auto b = connect(bus);
  const char* login1 = "org.freedesktop.login1";
  const char* manager = "org.freedesktop.login1.Manager";
  CHECK(error_of(b.get(), login1, "/org/freedesktop/login1", manager, "PowerOff", "s", "x") ==
        "org.freedesktop.DBus.Error.UnknownMethod");
  CHECK(error_of(b.get(), login1, "/org/freedesktop/login1", manager, "Reboot", "s", "yes") ==
        "org.freedesktop.DBus.Error.InvalidArgs");
  CHECK(error_of(b.get(), "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                 "org.freedesktop.systemd1.Manager", "StartUnit", "s",
                 "kubelet.service") == "org.freedesktop.DBus.Error.UnknownMethod");
  CHECK(bus.calls("org.freedesktop.login1.Manager.Reboot").size() == 1);
  CHECK(bus.calls("org.freedesktop.login1.Manager.Reboot")[0]["signature"] == "s");
  CHECK(bus.calls("org.freedesktop.systemd1.Manager.StartUnit").size() == 1);

  // The unit object answers the properties systemd has, with their real types.
  char* sub = nullptr;
  sd_bus_error err = SD_BUS_ERROR_NULL;
  REQUIRE(sd_bus_get_property_string(b.get(), "org.freedesktop.systemd1",
                                     "/org/freedesktop/systemd1/unit/kubelet_2eservice",
                                     "org.freedesktop.systemd1.Unit", "SubState", &err, &sub) >= 0);
  CHECK(std::string(sub) == "failed");
  std::free(sub);
  sd_bus_error_free(&err);
  CHECK(error_of(b.get(), "org.freedesktop.systemd1",
                 "/org/freedesktop/systemd1/unit/other_2eservice",
                 "org.freedesktop.DBus.Properties", "GetAll", "s",
                 "org.freedesktop.systemd1.Unit") == "org.freedesktop.DBus.Error.UnknownObject");
}
