// Reading the JSON files abup persists (state.json, aks.json, daemon.json, history.jsonl) field by
// field, each field's type checked. Anything may be in such a file after a bad edit, a tool of
// another version or a disk fault: a wrong type is an error that names the file and the field
// ("…/state.json: slots.e03dd35c-….state: expected a string, got number"), never an exception.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "abup/result.hpp"

namespace abup::agent {

// The schema version every persisted file carries (missing: 1, the files written before it was
// checked). docs/design.md "Persistent state" has the policy.
inline constexpr int kStateSchemaVersion = 1;

// One JSON object of a persisted file. Optional fields read as their fallback when missing; a
// present field of another type (null included) is an error.
class JsonFields {
 public:
  // The whole document: `text` must be one JSON object. Never throws.
  [[nodiscard]] static Result<nlohmann::json> parse(const std::filesystem::path& file,
                                                    std::string_view text);
  JsonFields(const std::filesystem::path& file, const nlohmann::json& object,
             std::string where = {});

  [[nodiscard]] Result<std::string> string(std::string_view key, std::string fallback = {}) const;
  [[nodiscard]] Result<bool> boolean(std::string_view key, bool fallback) const;
  [[nodiscard]] Result<std::int64_t> integer(std::string_view key, std::int64_t fallback,
                                             std::int64_t min, std::int64_t max) const;
  [[nodiscard]] Result<std::uint64_t> count(std::string_view key, std::uint64_t fallback) const;
  // A nested object: nullopt when missing (or null, when `null_is_missing`).
  [[nodiscard]] Result<std::optional<JsonFields>> object(std::string_view key,
                                                         bool null_is_missing = false) const;
  // An array of objects; missing: empty.
  [[nodiscard]] Result<std::vector<JsonFields>> objects(std::string_view key) const;
  // An object whose members are all objects (a map keyed by id); missing: empty.
  [[nodiscard]] Result<std::vector<std::pair<std::string, JsonFields>>> members(
      std::string_view key) const;
  // `schemaVersion`: missing is 1; otherwise a positive integer.
  [[nodiscard]] Result<int> schema_version() const;

  // The members not among `known`, serialized, so a rewrite can keep what a newer abup added.
  [[nodiscard]] std::map<std::string, std::string> unknown(
      std::span<const std::string_view> known) const;

  [[nodiscard]] const nlohmann::json& raw() const { return *object_; }
  [[nodiscard]] std::string path(std::string_view key) const;  // "slots.e03d….state"
  // "FILE: PATH.KEY: why".
  [[nodiscard]] Error error(std::string_view key, const std::string& why) const;

 private:
  [[nodiscard]] const nlohmann::json* find(std::string_view key) const;
  [[nodiscard]] Error wrong_type(std::string_view key, const char* expected,
                                 const nlohmann::json& got) const;

  std::filesystem::path file_;
  const nlohmann::json* object_;
  std::string where_;
};

// Adds the members `unknown()` kept back into `object`, without replacing a member it has.
void restore_unknown(nlohmann::json& object, const std::map<std::string, std::string>& unknown);

// The non-template half of JsonFileStore (agent/json_file_store.hpp).
// The document of `file`: nullopt when the file is missing; not JSON or not an object is
// Errc::invalid_input naming the file.
[[nodiscard]] Result<std::optional<nlohmann::json>> read_json_file(
    const std::filesystem::path& file);
// Replaces `file` atomically (temp file, fsync, rename, fsync of the directory, which is created
// when missing), mode 0600, as `doc.dump(2)` and a newline.
[[nodiscard]] Status write_json_file(const std::filesystem::path& file, const nlohmann::json& doc);
// Errc::refused: `file` has schemaVersion `version`, newer than kStateSchemaVersion. `aside` says
// what moving the file aside costs ("to start from an empty state").
[[nodiscard]] Error newer_schema_error(const std::filesystem::path& file, int version,
                                       std::string_view aside);
// An Errc::invalid_input error of a file gets "(correct it, or move it aside ASIDE)" appended.
[[nodiscard]] Error with_repair_advice(Error error, std::string_view aside);

}  // namespace abup::agent
