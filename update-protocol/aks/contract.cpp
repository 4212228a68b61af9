#include "update-protocol/aks/contract.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <nlohmann/json.hpp>

#include "abup/version.hpp"

namespace abup::protocol::aks {

using json = nlohmann::json;

namespace {

constexpr std::array<std::string_view, 4> kOperations = {"stage", "finalize", "rollback", "commit"};
constexpr std::array<std::string_view, 8> kCodes = {
    "InProgress",      "Success",          "AlreadyAtTarget",    "NotStaged",
    "OperationFailed", "TargetBootFailed", "AgentInternalError", "InvalidRequest"};
constexpr std::array<std::string_view, 8> kRequestFields = {
    "schemaVersion", "nodeUpdateId", "operationId", "operation",
    "targetVersion", "server",       "appId",       "track"};
constexpr std::array<std::string_view, 11> kStatusFields = {
    "schemaVersion", "nodeUpdateId", "operationId", "operation",      "code",       "message",
    "fromVersion",   "toVersion",    "startedUtc",  "lastUpdatedUtc", "finishedUtc"};

Error bad(const std::string& what) {
  return make_error(Errc::invalid_input, what);
}

template <std::size_t N>
bool known(const std::array<std::string_view, N>& names, const std::string& key) {
  return std::find(names.begin(), names.end(), key) != names.end();
}

// The printable form of a field value for messages: short and on one line.
std::string shown(const json& v) {
  std::string s = v.dump(-1, ' ', true, json::error_handler_t::replace);
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

// A string member, or an error naming it; `required` decides whether absence is an error.
Result<std::optional<std::string>> string_field(const json& doc, const char* name, bool required,
                                                const char* doc_name) {
  auto it = doc.find(name);
  if (it == doc.end()) {
    if (required) return bad(std::string(doc_name) + ": missing required field \"" + name + "\"");
    return std::optional<std::string>{};
  }
  if (!it->is_string())
    return bad(std::string(doc_name) + ": field \"" + name + "\" must be a string, got " +
               shown(*it));
  return std::optional<std::string>{it->get<std::string>()};
}

bool is_http_url(std::string_view url) {
  std::string lower(url.substr(0, std::min<std::size_t>(url.size(), 8)));
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  std::size_t skip = lower.starts_with("https://") ? 8 : lower.starts_with("http://") ? 7 : 0;
  if (skip == 0) return false;
  for (unsigned char c : url)
    if (c <= 0x20 || c == 0x7f) return false;
  std::string_view rest = url.substr(skip);
  std::string_view host = rest.substr(0, rest.find_first_of("/?#"));
  if (auto at = host.rfind('@'); at != std::string_view::npos) host = host.substr(at + 1);
  return !host.empty() && host.front() != ':';
}

bool digits(std::string_view s, std::size_t n) {
  return s.size() == n &&
         std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c) != 0; });
}

Result<json> parse_object(std::string_view text, const char* doc_name) {
  json doc = json::parse(text.begin(), text.end(), nullptr, false);
  if (doc.is_discarded()) return bad(std::string(doc_name) + ": not valid JSON");
  if (!doc.is_object()) return bad(std::string(doc_name) + ": expected a JSON object");
  return doc;
}

Status check_schema_version(const json& doc, const char* doc_name) {
  ABUP_TRY(auto schema, string_field(doc, "schemaVersion", true, doc_name));
  if (*schema != kSchemaVersion)
    return bad(std::string(doc_name) + ": schemaVersion \"" + *schema + "\" is not supported (" +
               "expected \"" + std::string(kSchemaVersion) + "\")");
  return {};
}

Result<std::string> uuid_field(const json& doc, const char* name, const char* doc_name) {
  ABUP_TRY(auto value, string_field(doc, name, true, doc_name));
  if (!is_uuid(*value))
    return bad(std::string(doc_name) + ": " + name + " " + shown(json(*value)) +
               " is not a UUID (8-4-4-4-12 hex digits)");
  return std::move(*value);
}

}  // namespace

std::string_view to_string(Operation op) {
  return kOperations[static_cast<std::size_t>(op)];
}

std::string_view to_string(Code code) {
  return kCodes[static_cast<std::size_t>(code)];
}

std::optional<Operation> parse_operation(std::string_view text) {
  for (std::size_t i = 0; i < kOperations.size(); ++i)
    if (kOperations[i] == text) return static_cast<Operation>(i);
  return std::nullopt;
}

std::optional<Code> parse_code(std::string_view text) {
  for (std::size_t i = 0; i < kCodes.size(); ++i)
    if (kCodes[i] == text) return static_cast<Code>(i);
  return std::nullopt;
}

bool is_uuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !std::isxdigit(static_cast<unsigned char>(s[i]))) return false;
  }
  return true;
}

bool is_rfc3339_utc(std::string_view s) {
  // YYYY-MM-DDTHH:MM:SSZ
  if (s.size() != 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
      s[16] != ':' || s[19] != 'Z')
    return false;
  if (!digits(s.substr(0, 4), 4) || !digits(s.substr(5, 2), 2) || !digits(s.substr(8, 2), 2) ||
      !digits(s.substr(11, 2), 2) || !digits(s.substr(14, 2), 2) || !digits(s.substr(17, 2), 2))
    return false;
  auto num = [&](std::size_t at) { return (s[at] - '0') * 10 + (s[at + 1] - '0'); };
  return num(5) >= 1 && num(5) <= 12 && num(8) >= 1 && num(8) <= 31 && num(11) <= 23 &&
         num(14) <= 59 && num(17) <= 60;
}

Result<Request> parse_request(std::string_view text) {
  constexpr const char* kDoc = "update-request";
  ABUP_TRY(json doc, parse_object(text, kDoc));
  for (const auto& [key, value] : doc.items())
    if (!known(kRequestFields, key))
      return bad(std::string(kDoc) + ": unknown field " + shown(json(key)));
  ABUP_CHECK(check_schema_version(doc, kDoc));
  Request r;
  ABUP_TRY(r.node_update_id, uuid_field(doc, "nodeUpdateId", kDoc));
  ABUP_TRY(r.operation_id, uuid_field(doc, "operationId", kDoc));
  ABUP_TRY(auto op, string_field(doc, "operation", true, kDoc));
  auto parsed = parse_operation(*op);
  if (!parsed || *parsed == Operation::commit)
    return bad(std::string(kDoc) + ": operation " + shown(json(*op)) +
               " is not one of stage, finalize, rollback");
  r.operation = *parsed;
  const bool needs_target = r.operation != Operation::rollback;
  const std::string for_op = " (operation " + std::string(to_string(r.operation)) + ")";

  ABUP_TRY(auto target, string_field(doc, "targetVersion", needs_target, kDoc));
  if (!needs_target && target)
    return bad(std::string(kDoc) + ": field \"targetVersion\" must be absent" + for_op);
  if (target) {
    if (auto v = Version::parse(*target); !v)
      return bad(std::string(kDoc) + ": targetVersion " + shown(json(*target)) +
                 " is not a release version (" + v.error().message + ")");
    r.target_version = *target;
  }
  // The node updates only from the source the control plane chose: required for stage and
  // finalize, checked when given with rollback.
  ABUP_TRY(auto server, string_field(doc, "server", needs_target, kDoc));
  if (server) {
    if (!is_http_url(*server))
      return bad(std::string(kDoc) + ": server " + shown(json(*server)) +
                 " is not an http(s):// URL with a host");
    r.server = *server;
  }
  for (auto [name, out] : {std::pair{"appId", &r.app_id}, std::pair{"track", &r.track}}) {
    ABUP_TRY(auto value, string_field(doc, name, needs_target, kDoc));
    if (value && value->empty())
      return bad(std::string(kDoc) + ": field \"" + name + "\" must not be empty" + for_op);
    if (value) *out = *value;
  }
  return r;
}

Salvage salvage_request(std::string_view text) {
  Salvage s;
  json doc = json::parse(text.begin(), text.end(), nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) return s;
  auto str = [&](const char* name) -> std::string {
    auto it = doc.find(name);
    return it != doc.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  s.node_update_id = str("nodeUpdateId");
  s.operation_id = str("operationId");
  auto op = parse_operation(str("operation"));
  s.answerable =
      is_uuid(s.node_update_id) && is_uuid(s.operation_id) && op && *op != Operation::commit;
  if (op) s.operation = *op;
  s.target_version = str("targetVersion");
  if (s.target_version.size() > 64 || !Version::parse(s.target_version)) s.target_version.clear();
  return s;
}

std::string cap_message(std::string_view message) {
  if (message.size() <= kMessageCap) return std::string(message);
  std::size_t keep = kMessageCap - kTruncatedMark.size();
  // Never cut inside a UTF-8 sequence: back up over continuation bytes (10xxxxxx).
  while (keep > 0 && (static_cast<unsigned char>(message[keep]) & 0xC0) == 0x80) --keep;
  return std::string(message.substr(0, keep)) + std::string(kTruncatedMark);
}

Result<std::string> serialize_status(const OperationStatus& s) {
  constexpr const char* kDoc = "update-status";
  auto need_time = [&](const char* name, const std::string& value) -> Status {
    if (!is_rfc3339_utc(value))
      return bad(std::string(kDoc) + ": " + name + " " + shown(json(value)) +
                 " is not an RFC 3339 UTC time");
    return {};
  };
  if (!is_uuid(s.node_update_id)) return bad(std::string(kDoc) + ": nodeUpdateId is not a UUID");
  if (!is_uuid(s.operation_id)) return bad(std::string(kDoc) + ": operationId is not a UUID");
  ABUP_CHECK(need_time("startedUtc", s.started_utc));
  ABUP_CHECK(need_time("lastUpdatedUtc", s.last_updated_utc));
  const bool terminal = is_terminal(s.code);
  if (terminal) ABUP_CHECK(need_time("finishedUtc", s.finished_utc));
  // An ordered object keeps the documented member order, which people reading kubectl output
  // appreciate; nlohmann's default object sorts keys.
  nlohmann::ordered_json doc;
  doc["schemaVersion"] = kSchemaVersion;
  doc["nodeUpdateId"] = s.node_update_id;
  doc["operationId"] = s.operation_id;
  doc["operation"] = to_string(s.operation);
  doc["code"] = to_string(s.code);
  doc["message"] = cap_message(s.message);
  if (!s.from_version.empty()) doc["fromVersion"] = s.from_version;
  if (!s.to_version.empty()) doc["toVersion"] = s.to_version;
  doc["startedUtc"] = s.started_utc;
  doc["lastUpdatedUtc"] = s.last_updated_utc;
  if (terminal) doc["finishedUtc"] = s.finished_utc;
  // Invalid UTF-8 in a message (an error text quoting bytes) is replaced, never thrown on.
  return doc.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<OperationStatus> parse_status(std::string_view text) {
  constexpr const char* kDoc = "update-status";
  ABUP_TRY(json doc, parse_object(text, kDoc));
  for (const auto& [key, value] : doc.items())
    if (!known(kStatusFields, key))
      return bad(std::string(kDoc) + ": unknown field " + shown(json(key)));
  ABUP_CHECK(check_schema_version(doc, kDoc));
  OperationStatus s;
  ABUP_TRY(s.node_update_id, uuid_field(doc, "nodeUpdateId", kDoc));
  ABUP_TRY(s.operation_id, uuid_field(doc, "operationId", kDoc));
  ABUP_TRY(auto op, string_field(doc, "operation", true, kDoc));
  auto parsed_op = parse_operation(*op);
  if (!parsed_op) return bad(std::string(kDoc) + ": operation " + shown(json(*op)) + " unknown");
  s.operation = *parsed_op;
  ABUP_TRY(auto code, string_field(doc, "code", true, kDoc));
  auto parsed_code = parse_code(*code);
  if (!parsed_code) return bad(std::string(kDoc) + ": code " + shown(json(*code)) + " unknown");
  s.code = *parsed_code;
  ABUP_TRY(auto message, string_field(doc, "message", false, kDoc));
  if (message) {
    if (message->size() > kMessageCap)
      return bad(std::string(kDoc) + ": message longer than " + std::to_string(kMessageCap) +
                 " bytes");
    s.message = *message;
  }
  ABUP_TRY(auto from, string_field(doc, "fromVersion", false, kDoc));
  ABUP_TRY(auto to, string_field(doc, "toVersion", false, kDoc));
  s.from_version = from.value_or("");
  s.to_version = to.value_or("");
  const bool terminal = is_terminal(s.code);
  for (auto [name, out, required] : {std::tuple{"startedUtc", &s.started_utc, true},
                                     std::tuple{"lastUpdatedUtc", &s.last_updated_utc, true},
                                     std::tuple{"finishedUtc", &s.finished_utc, terminal}}) {
    ABUP_TRY(auto value, string_field(doc, name, required, kDoc));
    if (value && !terminal && std::string_view(name) == "finishedUtc")
      return bad(std::string(kDoc) + ": finishedUtc given for InProgress");
    if (value && !is_rfc3339_utc(*value))
      return bad(std::string(kDoc) + ": " + name + " " + shown(json(*value)) +
                 " is not an RFC 3339 UTC time");
    if (value) *out = *value;
  }
  return s;
}

}  // namespace abup::protocol::aks
