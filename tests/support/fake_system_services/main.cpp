// abup-fake-system-services: a strict, recording stand-in for systemd's and logind's Manager
// objects on a (private) system bus, for tests where systemd is not PID 1. It owns
// org.freedesktop.login1 and org.freedesktop.systemd1 and implements, with the real signatures:
//   /org/freedesktop/login1     org.freedesktop.login1.Manager.Reboot(b interactive)
//   /org/freedesktop/systemd1   org.freedesktop.systemd1.Manager.GetUnit(s) -> o,
//                               org.freedesktop.systemd1.Manager.LoadUnit(s) -> o
//   /org/freedesktop/systemd1/unit/<escaped name>
//                               org.freedesktop.systemd1.Unit: Id, LoadState, ActiveState,
//                               SubState (read-only properties)
// Anything else gets sd-bus's standard errors (UnknownMethod, UnknownObject, InvalidArgs for a
// wrong signature). Every method call addressed to it is appended to the record file as one JSON
// line {"destination","path","interface","member","method","signature","args"} before it is
// answered. Units come from --unit NAME=ACTIVE[/SUB[/LOAD]] and from the --units JSON file
// ({"kubelet.service": {"ActiveState": "failed", "SubState": "failed"}}), which is read again at
// every call so a test can change a unit's state while the fake runs.
//
// usage: abup-fake-system-services [--address ADDR] --record FILE [--units FILE]
//          [--unit NAME=ACTIVE[/SUB[/LOAD]]]... [--services login1,systemd1] [--ready FILE]
//          [--reboot-error NAME:MESSAGE]
// Without --address it connects where sd_bus_open_system does ($DBUS_SYSTEM_BUS_ADDRESS).
// --ready FILE is written once every name is owned.
#include <fcntl.h>
#include <systemd/sd-bus.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

using json = nlohmann::json;

constexpr const char* kUnitPrefix = "/org/freedesktop/systemd1/unit";

struct UnitState {
  std::string active = "active", sub = "running", load = "loaded";
};

struct Fake {
  std::string record_path;
  std::string units_path;
  std::map<std::string, UnitState> arg_units;
  std::set<std::string> loaded_not_found;  // LoadUnit of an unknown unit, as systemd keeps them
  std::string reboot_error_name, reboot_error_message;

  // The units now: the command line's, overridden by the units file's.
  std::map<std::string, UnitState> units() const {
    auto out = arg_units;
    if (units_path.empty()) return out;
    std::ifstream in(units_path);
    if (!in) return out;
    std::stringstream ss;
    ss << in.rdbuf();
    auto j = json::parse(ss.str(), nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      std::fprintf(stderr, "fake: %s is not a JSON object; ignored\n", units_path.c_str());
      return out;
    }
    for (const auto& [name, v] : j.items()) {
      UnitState s;
      if (v.is_string()) {
        s.active = v.get<std::string>();
      } else if (v.is_object()) {
        s.active = v.value("ActiveState", s.active);
        s.sub = v.value("SubState", s.active == "active"   ? "running"
                                    : s.active == "failed" ? "failed"
                                                           : "dead");
        s.load = v.value("LoadState", s.load);
      }
      out[name] = s;
    }
    return out;
  }

  // The state of a unit object: known, or loaded by LoadUnit without existing.
  bool lookup(const std::string& name, UnitState& s) const {
    auto all = units();
    if (auto it = all.find(name); it != all.end()) {
      s = it->second;
      return true;
    }
    if (loaded_not_found.count(name)) {
      s = UnitState{"inactive", "dead", "not-found"};
      return true;
    }
    return false;
  }

  void record(const json& line) const {
    std::string text = line.dump() + "\n";
    int fd = ::open(record_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
      std::fprintf(stderr, "fake: open %s: %s\n", record_path.c_str(), std::strerror(errno));
      return;
    }
    if (::write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size()))
      std::fprintf(stderr, "fake: short write to %s\n", record_path.c_str());
    ::close(fd);
  }
};

Fake g_fake;

// The message's arguments as JSON (basic types as values, arrays as lists, structs and dict
// entries as lists, variants as {"signature","value"}).
int read_args(sd_bus_message* m, json& out) {
  out = json::array();
  for (;;) {
    char type = 0;
    const char* contents = nullptr;
    int r = sd_bus_message_peek_type(m, &type, &contents);
    if (r <= 0) return r;
    if (type == SD_BUS_TYPE_ARRAY || type == SD_BUS_TYPE_STRUCT || type == SD_BUS_TYPE_VARIANT ||
        type == SD_BUS_TYPE_DICT_ENTRY) {
      if ((r = sd_bus_message_enter_container(m, type, contents)) < 0) return r;
      json inner;
      if ((r = read_args(m, inner)) < 0) return r;
      if ((r = sd_bus_message_exit_container(m)) < 0) return r;
      if (type == SD_BUS_TYPE_VARIANT)
        out.push_back({{"signature", contents}, {"value", inner.empty() ? json() : inner[0]}});
      else
        out.push_back(inner);
      continue;
    }
    union {
      uint8_t y;
      int b;
      int16_t n;
      uint16_t q;
      int32_t i;
      uint32_t u;
      int64_t x;
      uint64_t t;
      double d;
      const char* s;
      int h;
    } v{};
    if ((r = sd_bus_message_read_basic(m, type, &v)) < 0) return r;
    switch (type) {
      case SD_BUS_TYPE_BYTE:
        out.push_back(v.y);
        break;
      case SD_BUS_TYPE_BOOLEAN:
        out.push_back(v.b != 0);
        break;
      case SD_BUS_TYPE_INT16:
        out.push_back(v.n);
        break;
      case SD_BUS_TYPE_UINT16:
        out.push_back(v.q);
        break;
      case SD_BUS_TYPE_INT32:
        out.push_back(v.i);
        break;
      case SD_BUS_TYPE_UINT32:
        out.push_back(v.u);
        break;
      case SD_BUS_TYPE_INT64:
        out.push_back(v.x);
        break;
      case SD_BUS_TYPE_UINT64:
        out.push_back(v.t);
        break;
      case SD_BUS_TYPE_DOUBLE:
        out.push_back(v.d);
        break;
      case SD_BUS_TYPE_UNIX_FD:
        out.push_back("<fd>");
        break;
      default:
        out.push_back(v.s ? v.s : "");
        break;  // s, o, g
    }
  }
}

int on_any_message(sd_bus_message* m, void*, sd_bus_error*) {
  uint8_t type = 0;
  if (sd_bus_message_get_type(m, &type) < 0 || type != SD_BUS_MESSAGE_METHOD_CALL) return 0;
  const char* dest = sd_bus_message_get_destination(m);
  const char* iface = sd_bus_message_get_interface(m);
  const char* member = sd_bus_message_get_member(m);
  const char* path = sd_bus_message_get_path(m);
  const char* sig = sd_bus_message_get_signature(m, 1);
  json line = {{"destination", dest ? dest : ""},
               {"path", path ? path : ""},
               {"interface", iface ? iface : ""},
               {"member", member ? member : ""},
               {"method", std::string(iface ? iface : "") + "." + (member ? member : "")},
               {"signature", sig ? sig : ""}};
  json args;
  if (read_args(m, args) < 0) args = "<unreadable>";
  line["args"] = args;
  sd_bus_message_rewind(m, 1);
  g_fake.record(line);
  return 0;
}

// ---- org.freedesktop.login1.Manager

int method_reboot(sd_bus_message* m, void*, sd_bus_error* error) {
  int interactive = 0;
  if (int r = sd_bus_message_read(m, "b", &interactive); r < 0) return r;
  if (!g_fake.reboot_error_name.empty())
    return sd_bus_error_set(error, g_fake.reboot_error_name.c_str(),
                            g_fake.reboot_error_message.c_str());
  return sd_bus_reply_method_return(m, nullptr);
}

const sd_bus_vtable kLogin1Vtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_METHOD_WITH_ARGS("Reboot", SD_BUS_ARGS("b", interactive), SD_BUS_NO_RESULT,
                            method_reboot, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_VTABLE_END,
};

// ---- org.freedesktop.systemd1.Manager

bool valid_unit_name(const std::string& n) {
  auto dot = n.rfind('.');
  if (n.empty() || n.size() > 255 || dot == std::string::npos || dot == 0 || dot + 1 == n.size())
    return false;
  for (char c : n)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || std::strchr(":-_.\\@", c))) return false;
  return true;
}

int reply_unit_path(sd_bus_message* m, const std::string& name) {
  char* path = nullptr;
  if (int r = sd_bus_path_encode(kUnitPrefix, name.c_str(), &path); r < 0) return r;
  int r = sd_bus_reply_method_return(m, "o", path);
  std::free(path);
  return r;
}

int method_get_unit(sd_bus_message* m, void*, sd_bus_error* error) {
  const char* name = nullptr;
  if (int r = sd_bus_message_read(m, "s", &name); r < 0) return r;
  UnitState s;
  if (!valid_unit_name(name))
    return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Unit name %s is not valid.", name);
  if (!g_fake.lookup(name, s))
    return sd_bus_error_setf(error, "org.freedesktop.systemd1.NoSuchUnit", "Unit %s not loaded.",
                             name);
  return reply_unit_path(m, name);
}

int method_load_unit(sd_bus_message* m, void*, sd_bus_error* error) {
  const char* name = nullptr;
  if (int r = sd_bus_message_read(m, "s", &name); r < 0) return r;
  if (!valid_unit_name(name))
    return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Unit name %s is not valid.", name);
  UnitState s;
  if (!g_fake.lookup(name, s)) g_fake.loaded_not_found.insert(name);
  return reply_unit_path(m, name);
}

const sd_bus_vtable kSystemd1Vtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_METHOD_WITH_ARGS("GetUnit", SD_BUS_ARGS("s", name), SD_BUS_RESULT("o", unit),
                            method_get_unit, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("LoadUnit", SD_BUS_ARGS("s", name), SD_BUS_RESULT("o", unit),
                            method_load_unit, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_VTABLE_END,
};

// ---- org.freedesktop.systemd1.Unit on /org/freedesktop/systemd1/unit/*

std::string unit_of_path(const char* path) {
  char* name = nullptr;
  if (sd_bus_path_decode(path, kUnitPrefix, &name) <= 0 || !name) return {};
  std::string out(name);
  std::free(name);
  return out;
}

int find_unit(sd_bus*, const char* path, const char*, void*, void** found, sd_bus_error*) {
  UnitState s;
  std::string name = unit_of_path(path);
  if (name.empty() || !g_fake.lookup(name, s)) return 0;
  *found = nullptr;
  return 1;
}

int get_unit_property(sd_bus*, const char* path, const char*, const char* property,
                      sd_bus_message* reply, void*, sd_bus_error* error) {
  std::string name = unit_of_path(path);
  UnitState s;
  if (!g_fake.lookup(name, s))
    return sd_bus_error_setf(error, SD_BUS_ERROR_UNKNOWN_OBJECT, "Unknown object '%s'.", path);
  const std::string p = property;
  const std::string& v = p == "Id"            ? name
                         : p == "LoadState"   ? s.load
                         : p == "ActiveState" ? s.active
                                              : s.sub;
  return sd_bus_message_append(reply, "s", v.c_str());
}

const sd_bus_vtable kUnitVtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_PROPERTY("Id", "s", get_unit_property, 0, 0),
    SD_BUS_PROPERTY("LoadState", "s", get_unit_property, 0, 0),
    SD_BUS_PROPERTY("ActiveState", "s", get_unit_property, 0, 0),
    SD_BUS_PROPERTY("SubState", "s", get_unit_property, 0, 0),
    SD_BUS_VTABLE_END,
};

int fail(const char* what, int r) {
  std::fprintf(stderr, "abup-fake-system-services: %s: %s\n", what, std::strerror(-r));
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string address, ready, services = "login1,systemd1";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "abup-fake-system-services: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--address") {
      address = value();
    } else if (a == "--record") {
      g_fake.record_path = value();
    } else if (a == "--units") {
      g_fake.units_path = value();
    } else if (a == "--ready") {
      ready = value();
    } else if (a == "--services") {
      services = value();
    } else if (a == "--reboot-error") {
      auto v = value();
      auto colon = v.find(':');
      g_fake.reboot_error_name = v.substr(0, colon);
      g_fake.reboot_error_message = colon == std::string::npos ? "" : v.substr(colon + 1);
    } else if (a == "--unit") {
      auto v = value();
      auto eq = v.find('=');
      if (eq == std::string::npos) {
        std::fprintf(stderr, "abup-fake-system-services: --unit NAME=ACTIVE[/SUB[/LOAD]]\n");
        return 2;
      }
      UnitState s;
      std::vector<std::string> parts;
      std::stringstream ss(v.substr(eq + 1));
      for (std::string p; std::getline(ss, p, '/');) parts.push_back(p);
      if (!parts.empty()) s.active = parts[0];
      s.sub = parts.size() > 1       ? parts[1]
              : s.active == "active" ? "running"
              : s.active == "failed" ? "failed"
                                     : "dead";
      if (parts.size() > 2) s.load = parts[2];
      g_fake.arg_units[v.substr(0, eq)] = s;
    } else {
      std::fprintf(stderr, "abup-fake-system-services: unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  if (g_fake.record_path.empty()) {
    std::fprintf(stderr, "abup-fake-system-services: --record FILE is required\n");
    return 2;
  }
  const bool login1 = services.find("login1") != std::string::npos;
  const bool systemd1 = services.find("systemd1") != std::string::npos;

  sd_bus* bus = nullptr;
  int r = 0;
  if (address.empty()) {
    r = sd_bus_open_system(&bus);
  } else if ((r = sd_bus_new(&bus)) >= 0 && (r = sd_bus_set_address(bus, address.c_str())) >= 0 &&
             (r = sd_bus_set_bus_client(bus, 1)) >= 0) {
    r = sd_bus_start(bus);
  }
  if (r < 0) return fail("connect to the bus", r);
  if ((r = sd_bus_add_filter(bus, nullptr, on_any_message, nullptr)) < 0)
    return fail("add filter", r);
  if (login1) {
    if ((r = sd_bus_add_object_vtable(bus, nullptr, "/org/freedesktop/login1",
                                      "org.freedesktop.login1.Manager", kLogin1Vtable, nullptr)) <
        0)
      return fail("login1 vtable", r);
    if ((r = sd_bus_request_name(bus, "org.freedesktop.login1", 0)) < 0)
      return fail("own org.freedesktop.login1", r);
  }
  if (systemd1) {
    if ((r = sd_bus_add_object_vtable(bus, nullptr, "/org/freedesktop/systemd1",
                                      "org.freedesktop.systemd1.Manager", kSystemd1Vtable,
                                      nullptr)) < 0)
      return fail("systemd1 vtable", r);
    if ((r = sd_bus_add_fallback_vtable(bus, nullptr, kUnitPrefix, "org.freedesktop.systemd1.Unit",
                                        kUnitVtable, find_unit, nullptr)) < 0)
      return fail("unit vtable", r);
    if ((r = sd_bus_request_name(bus, "org.freedesktop.systemd1", 0)) < 0)
      return fail("own org.freedesktop.systemd1", r);
  }
  if (!ready.empty()) {
    std::ofstream(ready) << "ready\n";
  }
  for (;;) {
    r = sd_bus_process(bus, nullptr);
    if (r < 0) return fail("process", r);
    if (r > 0) continue;
    r = sd_bus_wait(bus, UINT64_MAX);
    if (r < 0 && r != -EINTR) return fail("wait", r);
  }
}
