#include "partitions/boot/kernel_hash.hpp"

#include <algorithm>
#include <cctype>

#include "partitions/little_endian.hpp"

namespace abup::partitions::boot {
namespace {

std::uint32_t le(std::span<const std::uint8_t> b, std::size_t at, std::size_t n) {
  return static_cast<std::uint32_t>(get_le(b.data() + at, static_cast<int>(n)));
}

Error bad(const std::string& what) {
  return make_error(Errc::invalid_input, "PE image: " + what);
}

bool is_hex(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isxdigit(static_cast<unsigned char>(c));
  });
}

// systemd-stub and Flatcar use SHA-256 root hashes (64 hex digits); SHA-512 trees would be 128.
bool plausible_hash_length(std::size_t n) {
  return n == 64 || n == 96 || n == 128;
}

}  // namespace

Result<std::vector<PeSection>> pe_sections(std::span<const std::uint8_t> b) {
  if (b.size() < 0x40 || b[0] != 'M' || b[1] != 'Z') return bad("no MZ header");
  const std::uint64_t pe = le(b, 0x3c, 4);
  if (pe > b.size() || b.size() - pe < 24) return bad("PE header offset outside the file");
  if (b[pe] != 'P' || b[pe + 1] != 'E' || b[pe + 2] != 0 || b[pe + 3] != 0)
    return bad("no PE signature");
  const std::uint32_t count = le(b, pe + 6, 2);
  const std::uint32_t opt_size = le(b, pe + 20, 2);
  if (count > 96) return bad(std::to_string(count) + " sections (at most 96 allowed)");
  const std::uint64_t table = pe + 24 + opt_size;
  if (table > b.size() || (b.size() - table) / 40 < count)
    return bad("section table runs past the end of the file");
  std::vector<PeSection> out;
  for (std::uint32_t i = 0; i < count; ++i) {
    const std::uint64_t at = table + std::uint64_t{i} * 40;
    PeSection s;
    for (std::size_t k = 0; k < 8 && b[at + k]; ++k) s.name += static_cast<char>(b[at + k]);
    const std::uint64_t vsize = le(b, at + 8, 4);
    const std::uint64_t raw_size = le(b, at + 16, 4);
    s.offset = le(b, at + 20, 4);
    s.size = vsize ? std::min(vsize, raw_size) : raw_size;
    if (s.offset > b.size() || s.size > b.size() - s.offset)
      return bad("section '" + s.name + "' runs past the end of the file");
    out.push_back(std::move(s));
  }
  return out;
}

Result<std::optional<std::string>> usrhash_from_cmdline(std::string_view cmd) {
  std::optional<std::string> found;
  std::size_t i = 0;
  while (i < cmd.size()) {
    while (i < cmd.size() && (std::isspace(static_cast<unsigned char>(cmd[i])) || cmd[i] == 0)) ++i;
    std::size_t j = i;
    while (j < cmd.size() && !std::isspace(static_cast<unsigned char>(cmd[j])) && cmd[j] != 0) ++j;
    std::string_view word = cmd.substr(i, j - i);
    i = j;
    std::string_view value;
    if (word.starts_with("usrhash="))
      value = word.substr(8);
    else if (word.starts_with("verity.usrhash="))
      value = word.substr(15);
    else
      continue;
    if (!is_hex(value) || !plausible_hash_length(value.size()))
      return make_error(
          Errc::invalid_input,
          "kernel command line: '" + std::string(word.substr(0, 200)) + "' is not a hex root hash");
    std::string v(value);
    std::transform(v.begin(), v.end(), v.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (found && *found != v)
      return make_error(
          Errc::invalid_input,
          "kernel command line names two different /usr root hashes: " + *found + " and " + v);
    found = v;
  }
  return found;
}

Result<std::optional<std::string>> embedded_usrhash(std::span<const std::uint8_t> b,
                                                    std::string_view arch) {
  if (b.size() >= 2 && b[0] == 'M' && b[1] == 'Z') {
    if (auto sections = pe_sections(b)) {
      for (const auto& s : *sections)
        if (s.name == ".cmdline") {
          std::string_view text(reinterpret_cast<const char*>(b.data() + s.offset), s.size);
          ABUP_TRY(auto h, usrhash_from_cmdline(text));
          if (h) return h;
        }
    }
  }
  const std::size_t off = arch == "arm64" ? 512 : 0x40;
  if (b.size() >= off + 64) {
    std::string_view s(reinterpret_cast<const char*>(b.data() + off), 64);
    if (std::all_of(s.begin(), s.end(),
                    [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }))
      return std::optional<std::string>(std::string(s));
  }
  return std::optional<std::string>{};
}

Status check_usrhash_binding(std::span<const std::uint8_t> image, std::string_view arch,
                             std::string_view usr_roothash, const std::string& name) {
  ABUP_TRY(auto embedded, embedded_usrhash(image, arch));
  if (!embedded) return {};
  if (usr_roothash.empty())
    return make_error(Errc::refused, "boot file '" + name + "' binds /usr to root hash " +
                                         *embedded + " but the image has no /usr verity hash");
  std::string want(usr_roothash);
  std::transform(want.begin(), want.end(), want.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  if (*embedded != want)
    return make_error(Errc::refused, "boot file '" + name + "' carries /usr root hash " +
                                         *embedded + ", the image's /usr has " + want +
                                         ": kernel and /usr do not belong together");
  return {};
}

}  // namespace abup::partitions::boot
