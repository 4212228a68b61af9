// Omaha requests (built and parsed) and the two calls over http_request.
#include "update-protocol/omaha/omaha.hpp"

#include <openssl/rand.h>

#include <array>
#include <charconv>
#include <cstdio>
#include <random>
#include <span>

#include "abup/bytes.hpp"
#include "abup/digest.hpp"
#include "abup/hex.hpp"
#include "abup/version.hpp"
#include "update-protocol/omaha/omaha_internal.hpp"

namespace abup::protocol::omaha {
namespace {

// Replies are a few hundred bytes; anything near this is not an Omaha server.
constexpr std::size_t kMaxReplyBody = 1 << 20;

std::string uuid_text(std::span<const std::uint8_t> b) {
  const std::string h = to_hex(b.first(16));
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) +
         "-" + h.substr(20, 12);
}

std::string random_uuid() {
  std::array<std::uint8_t, 16> b{};
  if (RAND_bytes(b.data(), static_cast<int>(b.size())) != 1) {
    // Only a session id: uniqueness matters, not secrecy.
    std::random_device rd;
    for (auto& x : b) x = static_cast<std::uint8_t>(rd());
  }
  b[6] = static_cast<std::uint8_t>((b[6] & 0x0f) | 0x40);  // version 4
  b[8] = static_cast<std::uint8_t>((b[8] & 0x3f) | 0x80);  // RFC 4122 variant
  return uuid_text(b);
}

std::string braced(std::string_view id) {
  if (id.empty() || id.front() == '{') return std::string(id);
  return "{" + std::string(id) + "}";
}

std::string attr(std::string_view name, std::string_view value) {
  return " " + std::string(name) + "=\"" + xml_escape(value) + "\"";
}

std::string event_xml(const Event& e) {
  std::string s = "<event" + attr("eventtype", std::to_string(e.type)) +
                  attr("eventresult", std::to_string(e.result));
  if (e.error_code) s += attr("errorcode", std::to_string(*e.error_code));
  if (!e.previous_version.empty())
    s += attr("previousversion", normalize_version(e.previous_version));
  return s + "></event>";
}

Result<int> int_attribute(const Attributes& a, std::string_view key, bool required) {
  const auto* v = attribute(a, key);
  if (!v) {
    if (required) return make_error(Errc::invalid_input, "<event> has no " + std::string(key));
    return 0;
  }
  int n = 0;
  auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), n);
  if (v->empty() || ec != std::errc() || p != v->data() + v->size())
    return make_error(Errc::invalid_input,
                      "<event " + std::string(key) + "=\"" + *v + "\">: expected an integer");
  return n;
}

Result<HttpResponse> post(const Identity& who, const std::string& body,
                          const TransportOptions& transport) {
  if (who.server.empty())
    return make_error(Errc::invalid_input,
                      "no Omaha server configured ([Update] Server=, e.g. https://host/v1/update)");
  auto r = http_request("POST", who.server, {{"Content-Type", "text/xml"}}, body, transport,
                        kMaxReplyBody);
  if (!r) return std::move(r).error().with_context("Omaha " + who.server);
  if (r->status >= 500)
    return make_error(Errc::network, "Omaha " + who.server + ": HTTP " + std::to_string(r->status) +
                                         " (server error)");
  if (r->status < 200 || r->status >= 300)
    return make_error(Errc::failed, "Omaha " + who.server + ": HTTP " + std::to_string(r->status) +
                                        " (is it the full Omaha endpoint, e.g. "
                                        "https://host/v1/update?)");
  return r;
}

}  // namespace

std::string normalize_version(std::string_view version) {
  auto v = Version::parse(version);
  if (!v) return std::string(version);
  return v->semver();
}

std::string machine_id_for(std::string_view raw_machine_id, bool hashed) {
  if (!hashed) return std::string(raw_machine_id);
  const auto digest = sha384(as_bytes(raw_machine_id));
  return uuid_text(digest);
}

std::string omaha_arch(std::string_view arch) {
  if (arch == "x86_64" || arch == "amd64" || arch == "x64") return "amd64";
  if (arch == "arm64" || arch == "aarch64") return "aarch64";
  return std::string(arch);
}

std::string request_xml(const Identity& who, const std::vector<Event>& events, bool update_check) {
  const std::string version = normalize_version(who.version);
  const std::string arch = omaha_arch(who.arch);
  std::string x = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  x += "<request" + attr("protocol", "3.0") + attr("ismachine", "1") +
       attr("sessionid", "{" + random_uuid() + "}") +
       attr("installsource", who.install_source.empty() ? "scheduler" : who.install_source) + ">\n";
  x += "  <os" + attr("platform", "linux") + attr("version", version) + attr("arch", arch) +
       "></os>\n";
  x += "  <app" + attr("appid", who.app_id) + attr("version", version) + attr("track", who.track) +
       attr("machineid", who.machine_id) + attr("bootid", braced(who.boot_id)) +
       attr("board", who.board.empty() ? arch + "-usr" : who.board) + ">\n";
  for (const auto& e : events) x += "    " + event_xml(e) + "\n";
  if (update_check) x += "    <ping active=\"1\"></ping>\n    <updatecheck></updatecheck>\n";
  x += "  </app>\n</request>\n";
  return x;
}

Result<Request> parse_request(std::string_view xml) {
  Request r;
  int apps = 0;
  std::string root;
  auto on_element = [&](const std::vector<std::string>& path, const Attributes& a) -> Status {
    auto get = [&](const char* key) {
      const auto* v = attribute(a, key);
      return v ? *v : std::string();
    };
    if (path.size() == 1) {
      root = path[0];
      if (root != "request")
        return make_error(Errc::invalid_input, "root element is <" + root + ">, not <request>");
      r.session_id = get("sessionid");
      r.who.install_source = get("installsource");
    } else if (path.size() == 2 && path[1] == "os") {
      r.os_version = get("version");
      r.os_arch = get("arch");
    } else if (path.size() == 2 && path[1] == "app") {
      if (++apps > 1) return make_error(Errc::invalid_input, "more than one <app>");
      r.who.app_id = get("appid");
      r.who.version = get("version");
      r.who.track = get("track");
      r.who.machine_id = get("machineid");
      r.who.boot_id = get("bootid");
      r.who.board = get("board");
      r.who.arch = r.os_arch;
    } else if (path.size() == 3 && path[1] == "app") {
      if (path[2] == "ping") r.ping = true;
      if (path[2] == "updatecheck") r.update_check = true;
      if (path[2] == "event") {
        Event e;
        ABUP_TRY(e.type, int_attribute(a, "eventtype", true));
        ABUP_TRY(e.result, int_attribute(a, "eventresult", true));
        if (attribute(a, "errorcode")) {
          ABUP_TRY(int code, int_attribute(a, "errorcode", true));
          e.error_code = code;
        }
        e.previous_version = get("previousversion");
        r.events.push_back(std::move(e));
      }
    }
    return {};
  };
  ABUP_CHECK(walk_xml(xml, "Omaha request", on_element));
  if (root.empty()) return make_error(Errc::invalid_input, "Omaha request: empty document");
  if (apps == 0) return make_error(Errc::invalid_input, "Omaha request: no <app>");
  if (r.who.app_id.empty())
    return make_error(Errc::invalid_input, "Omaha request: <app> has no appid");
  return r;
}

Result<CheckResult> check(const Identity& who, const std::vector<Event>& events,
                          const TransportOptions& transport) {
  ABUP_TRY(auto reply, post(who, request_xml(who, events, true), transport));
  auto r = parse_reply(reply.body, who.app_id, true);
  if (!r) return std::move(r).error().with_context(who.server);
  return r;
}

Status send_events(const Identity& who, const std::vector<Event>& events,
                   const TransportOptions& transport) {
  if (events.empty()) return {};
  ABUP_TRY(auto reply, post(who, request_xml(who, events, false), transport));
  auto r = parse_reply(reply.body, who.app_id, false);
  if (!r) return std::move(r).error().with_context(who.server);
  if (r->events_acknowledged < events.size())
    return make_error(Errc::network, "Omaha " + who.server + ": " +
                                         std::to_string(r->events_acknowledged) + " of " +
                                         std::to_string(events.size()) +
                                         " events acknowledged (app status '" + r->app_status +
                                         "'); send them again");
  return {};
}

}  // namespace abup::protocol::omaha
