// Omaha 3.0 as Nebraska speaks it (docs/reference/omaha.md, docs/architecture.md §7): the update
// check, the answer, and progress events. Pure builders and parsers (fuzzable) plus two calls over
// http_request. The server is always the full endpoint URL, POSTed to as is (text/xml).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "abup/result.hpp"
#include "update-protocol/http/client.hpp"

namespace abup::protocol::omaha {

// Who asks: one node, one app.
struct Identity {
  std::string server;  // full endpoint URL, e.g. https://host/v1/update
  std::string app_id;
  std::string track;
  std::string version;     // running version; sent normalized (normalize_version)
  std::string arch;        // amd64 | aarch64 (normalized from uname/os-release names)
  std::string machine_id;  // as sent (see machine_id_for)
  std::string boot_id;
  std::string board;  // empty: "<arch>-usr"
  // Why this request: "scheduler" (the default when empty) or "ondemandupdate" (a person asked).
  std::string install_source;
};

// Error codes sent with 3/0 (update_engine's numbering, which Nebraska shows).
enum class ErrorCode { generic = 1, download = 9, fell_back = 44 };

// Nebraska accepts only 13/1, 14/1, 800/1, 3/2 (+ previous_version), 3/0 (+ error_code), 3/1:
// the named constructors below are the ones abup sends (docs/reference/omaha.md).
struct Event {
  int type = 0;
  int result = 0;
  std::optional<int> error_code;
  std::string previous_version;  // sent normalized

  [[nodiscard]] static Event download_started() { return {13, 1, std::nullopt, {}}; }
  [[nodiscard]] static Event download_finished() { return {14, 1, std::nullopt, {}}; }
  // Staged and armed: the reboot into the new version comes next.
  [[nodiscard]] static Event installed() { return {800, 1, std::nullopt, {}}; }
  // Running the new version after the reboot (sent with a ping and an update check).
  [[nodiscard]] static Event updated_from(std::string previous) {
    return {3, 2, std::nullopt, std::move(previous)};
  }
  [[nodiscard]] static Event failed(ErrorCode code) { return {3, 0, static_cast<int>(code), {}}; }
  // 3/0 and 3/2 end an update in Nebraska's view; after a progress event one must follow.
  [[nodiscard]] bool terminal() const { return type == 3 && (result == 0 || result == 2); }
  // "13/1", "3/0 error 44": for logs.
  [[nodiscard]] std::string name() const {
    std::string s = std::to_string(type) + "/" + std::to_string(result);
    if (error_code) s += " error " + std::to_string(*error_code);
    return s;
  }
};
inline constexpr int kErrorFellBack = static_cast<int>(ErrorCode::fell_back);

struct Offer {
  std::string version;  // <manifest version>, as given
  std::string url;      // first codebase (with '/' added) resolved against the first package name
  std::uint64_t size = 0;    // 0 = unknown
  std::string package_hash;  // package `hash` as given (base64), may be empty
  std::string sha256;        // postinstall action `sha256` (base64 of the whole file), may be empty
};

struct CheckResult {
  enum class Kind { no_update, update, not_now };  // not_now: app status other than "ok"
  Kind kind = Kind::no_update;
  std::optional<Offer> offer;           // set for Kind::update
  std::string app_status;               // the app's status attribute as given
  std::size_t events_acknowledged = 0;  // <event status="ok"/> in the reply
};

// Leading zeros stripped per numeric component ("202607.02.0" -> "202607.2.0"); a semver
// pre-release suffix kept as is.
[[nodiscard]] std::string normalize_version(std::string_view version);
// Flatcar sends /etc/machine-id as is; Microsoft's agent a UUID made of the first 16 bytes of
// SHA-384 over it (hashed = true).
[[nodiscard]] std::string machine_id_for(std::string_view raw_machine_id, bool hashed);

// The Omaha arch for an arch name of uname, os-release or COSI: "x86_64"/"amd64"/"x64" -> "amd64",
// "arm64"/"aarch64" -> "aarch64" (Nebraska treats unknown values as amd64); else as given.
[[nodiscard]] std::string omaha_arch(std::string_view arch);
// Text escaped for an XML attribute value or element content (&, <, >, ", ', and control
// characters).
[[nodiscard]] std::string xml_escape(std::string_view text);

// Request documents. With update_check, the events are batched with <ping/> and <updatecheck/>;
// without, it is an event-only request.
[[nodiscard]] std::string request_xml(const Identity& who, const std::vector<Event>& events,
                                      bool update_check);
// Parses a reply (a real XML parser: attribute order and unknown elements do not matter; what
// is needed is checked strictly, every failure names what is wrong). `app_id` must match.
[[nodiscard]] Result<CheckResult> parse_response(std::string_view xml, std::string_view app_id);

// What a request says (the server side: abup-serve, tests). `who.server` stays empty.
struct Request {
  Identity who;
  std::string session_id;
  std::string os_version, os_arch;
  std::vector<Event> events;
  bool ping = false;
  bool update_check = false;
};
// Parses a request document (same parser and limits as parse_response); the one <app> required.
[[nodiscard]] Result<Request> parse_request(std::string_view xml);

// POSTs request_xml(who, events, true). Errc::network for transport failures and 5xx (the
// caller backs off), Errc::invalid_input for a malformed reply.
// Errc::failed for an <updatecheck status> other than ok/noupdate and for other HTTP statuses
// (4xx: most likely Server= is not the endpoint).
[[nodiscard]] Result<CheckResult> check(const Identity& who, const std::vector<Event>& events,
                                        const TransportOptions& transport);
// POSTs an event-only request; an error unless every event was acknowledged.
[[nodiscard]] Status send_events(const Identity& who, const std::vector<Event>& events,
                                 const TransportOptions& transport);

}  // namespace abup::protocol::omaha
