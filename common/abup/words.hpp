// Closed vocabularies: the words an enum is spelled with, each written once in a table, with one
// strict parse and one to_string (agent/vocabulary.cpp, partitions/boot/backend.cpp).
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>

#include "abup/result.hpp"

namespace abup {

template <class E, std::size_t N>
using Words = std::array<std::pair<E, std::string_view>, N>;

template <class E, std::size_t N>
[[nodiscard]] std::string_view word(const Words<E, N>& words, E value) {
  for (const auto& [v, w] : words)
    if (v == value) return w;
  return "?";  // unreachable for a value of the enum
}

// "expected a, b or c, got 'x'": the caller prefixes where and which setting.
template <class E, std::size_t N>
[[nodiscard]] Result<E> parse_word(const Words<E, N>& words, std::string_view text,
                                   Errc code = Errc::usage) {
  for (const auto& [v, w] : words)
    if (w == text) return v;
  std::string msg = "expected ";
  for (std::size_t i = 0; i < N; ++i)
    msg += std::string(i == 0 ? "" : i + 1 == N ? " or " : ", ") + std::string(words[i].second);
  return make_error(code, msg + ", got '" + std::string(text) + "'");
}

}  // namespace abup
