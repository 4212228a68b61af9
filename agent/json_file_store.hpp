// One JSON file abup persists whole (<state-dir>/state.json, daemon.json, aks.json): the store owns
// the path, the atomic replace, a missing file read as the empty record, the schemaVersion policy
// (docs/design.md "Persistent state") and the top-level members this abup does not know; the
// record type only maps its own fields. Errors are values naming the file (and the field).
#pragma once

#include <concepts>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>

#include "abup/result.hpp"
#include "agent/persisted_json.hpp"

namespace abup::agent {

// What every such file carries besides its record's fields. A record type derives from it.
struct PersistedFile {
  // As read (missing: 1). A record read from a newer schema is shown, never written.
  int schema_version = kStateSchemaVersion;
  // Top-level members this abup does not know (a newer abup of the same schema added them),
  // serialized: written back unchanged.
  std::map<std::string, std::string> unknown;
};

// A record type T supplies:
//   static constexpr std::string_view kFileName = "daemon.json";
//   static constexpr std::string_view kMembers[] = {...};  // the top-level members it maps
//   static constexpr std::string_view kAside = "…";  // what moving the file aside costs
//   static Result<T> from_json(const JsonFields& top);  // schemaVersion and unknown: the store's
//   nlohmann::json to_json() const;                     // the same
template <class T>
concept JsonRecord = std::derived_from<T, PersistedFile> && std::default_initializable<T> &&
    requires(const T& record, const JsonFields& top) {
  { T::kFileName } -> std::convertible_to<std::string_view>;
  { T::kAside } -> std::convertible_to<std::string_view>;
  std::span<const std::string_view>(T::kMembers);
  { T::from_json(top) } -> std::same_as<Result<T>>;
  { record.to_json() } -> std::same_as<nlohmann::json>;
};

template <JsonRecord T>
class JsonFileStore {
 public:
  explicit JsonFileStore(const std::filesystem::path& dir) : path_(dir / T::kFileName) {}
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }

  // For acting on it: a missing file is the empty record; an unparsable one or a field of the
  // wrong type (Errc::invalid_input) or a newer schemaVersion (Errc::refused) is an error naming
  // the file and the field. Never throws.
  [[nodiscard]] Result<T> load() const { return read(false); }
  // For showing: as load(), but a file of a newer schema is read as far as this abup knows it.
  [[nodiscard]] Result<T> load_for_status() const { return read(true); }
  // Refuses (Errc::refused) a record read from a newer schema, leaving the file as it is.
  [[nodiscard]] Status save(const T& record) const {
    if (record.schema_version > kStateSchemaVersion)
      return newer_schema_error(path_, record.schema_version, T::kAside);
    nlohmann::json doc = record.to_json();
    doc["schemaVersion"] = kStateSchemaVersion;
    restore_unknown(doc, record.unknown);
    return write_json_file(path_, doc);
  }

 private:
  [[nodiscard]] Result<T> read(bool for_status) const {
    auto record = parse(for_status);
    if (!record) return with_repair_advice(std::move(record).error(), T::kAside);
    return record;
  }

  [[nodiscard]] Result<T> parse(bool for_status) const {
    ABUP_TRY(auto doc, read_json_file(path_));
    if (!doc) return T{};
    const JsonFields top(path_, *doc);
    ABUP_TRY(int schema, top.schema_version());
    if (schema > kStateSchemaVersion && !for_status)
      return newer_schema_error(path_, schema, T::kAside);
    ABUP_TRY(T record, T::from_json(top));
    record.schema_version = schema;
    record.unknown = top.unknown(T::kMembers);
    record.unknown.erase("schemaVersion");
    return record;
  }

  std::filesystem::path path_;
};

}  // namespace abup::agent
