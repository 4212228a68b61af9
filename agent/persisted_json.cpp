#include "agent/persisted_json.hpp"

#include <algorithm>

#include "abup/fs.hpp"

namespace abup::agent {

using json = nlohmann::json;

Result<json> JsonFields::parse(const std::filesystem::path& file, std::string_view text) {
  json doc = json::parse(text.begin(), text.end(), nullptr, false);
  if (doc.is_discarded())
    return make_error(Errc::invalid_input, file.string() + ": not valid JSON");
  if (!doc.is_object())
    return make_error(Errc::invalid_input, file.string() + ": expected a JSON object, got " +
                                               std::string(doc.type_name()));
  return doc;
}

JsonFields::JsonFields(const std::filesystem::path& file, const json& object, std::string where)
    : file_(file), object_(&object), where_(std::move(where)) {}

std::string JsonFields::path(std::string_view key) const {
  if (where_.empty()) return std::string(key);
  if (key.empty()) return where_;
  return where_ + "." + std::string(key);
}

Error JsonFields::error(std::string_view key, const std::string& why) const {
  const auto p = path(key);
  return make_error(Errc::invalid_input, file_.string() + ": " + (p.empty() ? "" : p + ": ") + why);
}

Error JsonFields::wrong_type(std::string_view key, const char* expected, const json& got) const {
  return error(key, std::string("expected ") + expected + ", got " + got.type_name());
}

const json* JsonFields::find(std::string_view key) const {
  if (!object_->is_object()) return nullptr;
  auto it = object_->find(key);
  return it == object_->end() ? nullptr : &*it;
}

Result<std::string> JsonFields::string(std::string_view key, std::string fallback) const {
  const json* v = find(key);
  if (!v) return fallback;
  if (!v->is_string()) return wrong_type(key, "a string", *v);
  return v->get<std::string>();
}

Result<bool> JsonFields::boolean(std::string_view key, bool fallback) const {
  const json* v = find(key);
  if (!v) return fallback;
  if (!v->is_boolean()) return wrong_type(key, "true or false", *v);
  return v->get<bool>();
}

Result<std::int64_t> JsonFields::integer(std::string_view key, std::int64_t fallback,
                                         std::int64_t min, std::int64_t max) const {
  const json* v = find(key);
  if (!v) return fallback;
  if (!v->is_number_integer()) return wrong_type(key, "an integer", *v);
  // A value above INT64_MAX is stored unsigned: it is out of range all the same.
  if (v->is_number_unsigned() &&
      v->get<std::uint64_t>() > static_cast<std::uint64_t>(std::max<std::int64_t>(max, 0)))
    return error(
        key, v->dump() + " is out of range " + std::to_string(min) + ".." + std::to_string(max));
  const auto n = v->get<std::int64_t>();
  if (n < min || n > max)
    return error(key, std::to_string(n) + " is out of range " + std::to_string(min) + ".." +
                          std::to_string(max));
  return n;
}

Result<std::uint64_t> JsonFields::count(std::string_view key, std::uint64_t fallback) const {
  const json* v = find(key);
  if (!v) return fallback;
  if (!v->is_number_unsigned()) return wrong_type(key, "a non-negative integer", *v);
  return v->get<std::uint64_t>();
}

Result<std::optional<JsonFields>> JsonFields::object(std::string_view key,
                                                     bool null_is_missing) const {
  const json* v = find(key);
  if (!v || (null_is_missing && v->is_null())) return std::optional<JsonFields>();
  if (!v->is_object()) return wrong_type(key, "an object", *v);
  return std::optional<JsonFields>(JsonFields(file_, *v, path(key)));
}

Result<std::vector<JsonFields>> JsonFields::objects(std::string_view key) const {
  std::vector<JsonFields> out;
  const json* v = find(key);
  if (!v) return out;
  if (!v->is_array()) return wrong_type(key, "an array", *v);
  for (std::size_t i = 0; i < v->size(); ++i) {
    const json& e = (*v)[i];
    const auto at = std::string(key) + "[" + std::to_string(i) + "]";
    if (!e.is_object()) return wrong_type(at, "an object", e);
    out.emplace_back(file_, e, path(at));
  }
  return out;
}

Result<std::vector<std::pair<std::string, JsonFields>>> JsonFields::members(
    std::string_view key) const {
  std::vector<std::pair<std::string, JsonFields>> out;
  const json* v = find(key);
  if (!v) return out;
  if (!v->is_object()) return wrong_type(key, "an object", *v);
  for (const auto& [name, e] : v->items()) {
    const auto at = std::string(key) + "." + name;
    if (!e.is_object()) return wrong_type(at, "an object", e);
    out.emplace_back(name, JsonFields(file_, e, path(at)));
  }
  return out;
}

Result<int> JsonFields::schema_version() const {
  ABUP_TRY(auto v, integer("schemaVersion", 1, 1, 1 << 30));
  return static_cast<int>(v);
}

std::map<std::string, std::string> JsonFields::unknown(
    std::span<const std::string_view> known) const {
  std::map<std::string, std::string> out;
  if (!object_->is_object()) return out;
  for (const auto& [name, v] : object_->items())
    if (std::find(known.begin(), known.end(), name) == known.end()) out[name] = v.dump();
  return out;
}

void restore_unknown(json& object, const std::map<std::string, std::string>& unknown) {
  for (const auto& [name, text] : unknown) {
    if (object.contains(name)) continue;
    // Serialized by unknown() from a parsed document: it parses again.
    json v = json::parse(text, nullptr, false);
    if (!v.is_discarded()) object[name] = std::move(v);
  }
}

Result<std::optional<json>> read_json_file(const std::filesystem::path& file) {
  auto text = read_file(file);
  if (!text) {
    if (text.error().code == Errc::not_found) return std::optional<json>();
    return std::move(text).error();
  }
  ABUP_TRY(auto doc, JsonFields::parse(file, *text));
  return std::optional<json>(std::move(doc));
}

Status write_json_file(const std::filesystem::path& file, const json& doc) {
  std::error_code ec;
  std::filesystem::create_directories(file.parent_path(), ec);
  return atomic_write_file(file, doc.dump(2) + "\n", 0600);
}

Error newer_schema_error(const std::filesystem::path& file, int version, std::string_view aside) {
  return make_error(Errc::refused,
                    file.string() + ": schemaVersion " + std::to_string(version) +
                        ", written by a newer abup; this abup writes version " +
                        std::to_string(kStateSchemaVersion) +
                        " and changes nothing. Run the newer abup (boot the slot that has it), "
                        "or move the file aside " +
                        std::string(aside));
}

Error with_repair_advice(Error error, std::string_view aside) {
  if (error.code == Errc::invalid_input)
    error.message += " (correct it, or move it aside " + std::string(aside) + ")";
  return error;
}

}  // namespace abup::agent
