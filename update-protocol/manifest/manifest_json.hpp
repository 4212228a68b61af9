// How parse_manifest reads abup/manifest.json's text: a DOM of everything but the frame tables,
// whose elements are decoded into Frame structs one at a time as the text streams by. A DOM of
// the whole text costs ~500 bytes of small heap objects per frame (each frame an array of hex
// strings), several times the text itself; this keeps peak memory at the text plus the table.
// Internal to the manifest module: the validation rules and their order live in manifest.cpp.
#pragma once

#include <cstddef>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "abup/hex.hpp"
#include "abup/result.hpp"
#include "update-protocol/manifest/manifest.hpp"

namespace abup::protocol::manifest_json {

using json = nlohmann::json;

[[nodiscard]] inline Error bad(const std::string& path, const std::string& what) {
  return make_error(Errc::invalid_input, "abup/manifest.json: " + path + ": " + what);
}

template <typename T>
Result<T> get(const json& o, const std::string& path, const char* key, bool required = true) {
  auto it = o.find(key);
  std::string p = path.empty() ? key : path + "." + key;
  if (it == o.end() || it->is_null()) {
    if (required) return bad(p, "missing");
    return T{};
  }
  if constexpr (std::is_same_v<T, std::string>) {
    if (!it->is_string()) return bad(p, "expected a string");
    return it->get<std::string>();
  } else if constexpr (std::is_same_v<T, bool>) {
    if (!it->is_boolean()) return bad(p, "expected true or false");
    return it->get<bool>();
  } else {
    if (!it->is_number_integer() ||
        (it->is_number_integer() && !it->is_number_unsigned() && it->get<std::int64_t>() < 0))
      return bad(p, "expected a non-negative integer");
    return it->get<T>();
  }
}

template <std::size_t N>
Result<std::array<std::uint8_t, N>> get_digest(const json& o, const std::string& path,
                                               const char* key) {
  ABUP_TRY(auto text, get<std::string>(o, path, key));
  auto raw = from_hex(text);
  if (!raw || raw->size() != N)
    return bad(path + "." + key, "expected " + std::to_string(2 * N) + " hex digits");
  std::array<std::uint8_t, N> out;
  std::copy(raw->begin(), raw->end(), out.begin());
  return out;
}

// One image's `frames` array as read. Its elements are decoded in both schemas' shapes (schema 1:
// an object; schema 2: a six-field array), since which one applies is only known once the whole
// manifest is (schemaVersion and chunker may come after the frames). No element is both, so the
// frames kept are all of one shape: the leading elements that decoded in it.
struct FrameTable {
  std::size_t count = 0;      // elements of the array, all of them
  std::vector<Frame> frames;  // the leading elements that decoded: offset, size and uncompressed
                              // size as the shape carries them (the rest is derived later)
  std::size_t fixed_ok = 0;   // leading elements that decoded as schema-1 objects
  std::size_t cdc_ok = 0;     // ... as schema-2 arrays
  std::optional<Error> fixed_error;  // why element fixed_ok did not, if it did not
  std::optional<Error> cdc_error;    // why element cdc_ok did not
};

struct ManifestJson {
  // The manifest with each images[i].frames array emptied (its elements are in `frames`).
  json top;
  std::map<std::size_t, FrameTable> frames;  // by index in `images`
};

// Invalid JSON or a key given twice in one object (signed bytes must mean one thing to every
// reader) is an error. Frames are kept up to kMaxFrames in all; the elements are still counted.
[[nodiscard]] Result<ManifestJson> read(std::string_view text);
// The top-level string members `keys` of an object, everything else skipped; a key missing or
// not a string is absent from the result.
[[nodiscard]] Result<std::map<std::string, std::string>> read_top_strings(
    std::string_view text, const std::vector<std::string>& keys);

}  // namespace abup::protocol::manifest_json
