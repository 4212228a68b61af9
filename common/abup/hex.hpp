#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace abup {

[[nodiscard]] std::string to_hex(std::span<const std::uint8_t> bytes);
// Lower- or upper-case hex; nullopt on odd length or a non-hex character.
[[nodiscard]] std::optional<std::vector<std::uint8_t>> from_hex(std::string_view hex);
[[nodiscard]] std::string base64_encode(std::span<const std::uint8_t> bytes);
[[nodiscard]] std::optional<std::vector<std::uint8_t>> base64_decode(std::string_view text);
// RFC 3986 percent-encoding (upper-case hex) of all but the unreserved characters and `keep`
// (e.g. "/" for a path).
[[nodiscard]] std::string percent_encode(std::string_view text, std::string_view keep = {});

}  // namespace abup
