#include "update-protocol/cosi/tar.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "abup/bytes.hpp"

namespace abup::protocol {
namespace {

constexpr std::size_t kMaxExtendedHeader = 64 * 1024;

std::string_view field(std::span<const std::uint8_t> b, std::size_t off, std::size_t len) {
  auto p = reinterpret_cast<const char*>(b.data() + off);
  return {p, strnlen(p, len)};
}

// Octal, space/NUL terminated; or GNU base-256 (high bit of the first byte set).
std::optional<std::uint64_t> parse_number(std::span<const std::uint8_t> b, std::size_t off,
                                          std::size_t len) {
  if (b[off] & 0x80) {
    if (b[off] != 0x80) return std::nullopt;  // negative or too large
    std::uint64_t v = 0;
    for (std::size_t i = 1; i < len; ++i) {
      if (v >> 56) return std::nullopt;
      v = v << 8 | b[off + i];
    }
    return v;
  }
  std::uint64_t v = 0;
  std::size_t i = 0;
  while (i < len && b[off + i] == ' ') ++i;
  bool any = false;
  for (; i < len; ++i) {
    auto c = b[off + i];
    if (c == 0 || c == ' ') break;
    if (c < '0' || c > '7' || (v >> 60)) return std::nullopt;
    v = v * 8 + (c - '0');
    any = true;
  }
  for (; i < len; ++i)
    if (b[off + i] != 0 && b[off + i] != ' ') return std::nullopt;
  return any ? std::optional(v) : std::optional<std::uint64_t>(0);
}

// pax records: "<len> <key>=<value>\n"
Result<std::vector<std::pair<std::string, std::string>>> parse_pax(std::string_view data) {
  std::vector<std::pair<std::string, std::string>> out;
  while (!data.empty()) {
    auto sp = data.find(' ');
    if (sp == data.npos || sp == 0 || sp > 8)
      return make_error(Errc::invalid_input, "malformed pax record length");
    std::size_t len = 0;
    for (char c : data.substr(0, sp)) {
      if (c < '0' || c > '9') return make_error(Errc::invalid_input, "malformed pax record length");
      len = len * 10 + static_cast<std::size_t>(c - '0');
    }
    if (len <= sp + 1 || len > data.size() || data[len - 1] != '\n')
      return make_error(Errc::invalid_input, "pax record length out of bounds");
    auto rec = data.substr(sp + 1, len - sp - 2);
    auto eq = rec.find('=');
    if (eq == rec.npos) return make_error(Errc::invalid_input, "pax record without '='");
    out.emplace_back(std::string(rec.substr(0, eq)), std::string(rec.substr(eq + 1)));
    data.remove_prefix(len);
  }
  return out;
}

bool all_zero(std::span<const std::uint8_t> b) {
  return std::all_of(b.begin(), b.end(), [](auto c) { return c == 0; });
}

void put_octal(std::uint8_t* dst, std::size_t len, std::uint64_t v) {
  // len-1 digits then NUL
  for (std::size_t i = len - 1; i-- > 0;) {
    dst[i] = static_cast<std::uint8_t>('0' + (v & 7));
    v >>= 3;
  }
  dst[len - 1] = 0;
}

std::vector<std::uint8_t> ustar_block(std::string_view name, std::uint64_t size, char type,
                                      std::uint64_t mtime) {
  std::vector<std::uint8_t> b(kTarBlock, 0);
  std::memcpy(b.data(), name.data(), std::min<std::size_t>(name.size(), 100));
  put_octal(&b[100], 8, 0644);
  put_octal(&b[108], 8, 0);
  put_octal(&b[116], 8, 0);
  put_octal(&b[124], 12, size);
  put_octal(&b[136], 12, mtime);
  b[156] = static_cast<std::uint8_t>(type);
  std::memcpy(&b[257], "ustar", 6);
  b[263] = '0';
  b[264] = '0';
  std::memset(&b[148], ' ', 8);
  unsigned sum = 0;
  for (auto c : b) sum += c;
  put_octal(&b[148], 7, sum);
  b[155] = ' ';
  return b;
}

}  // namespace

const TarEntry* TarIndex::find(std::string_view name) const {
  for (const auto& e : entries)
    if (e.name == name) return &e;
  return nullptr;
}

Result<std::optional<TarHeader>> parse_tar_header(std::span<const std::uint8_t> b) {
  if (b.size() != kTarBlock) return make_error(Errc::invalid_input, "short tar header");
  if (all_zero(b)) return std::optional<TarHeader>();
  auto magic = field(b, 257, 6);
  if (magic != "ustar" && magic != "ustar ")
    return make_error(Errc::invalid_input, "not a ustar header (no 'ustar' magic at byte 257)");
  auto stored = parse_number(b, 148, 8);
  unsigned sum = 0;
  for (std::size_t i = 0; i < kTarBlock; ++i) sum += (i >= 148 && i < 156) ? ' ' : b[i];
  if (!stored || *stored != sum)
    return make_error(Errc::invalid_input, "tar header checksum mismatch");
  auto size = parse_number(b, 124, 12);
  if (!size) return make_error(Errc::invalid_input, "tar header has a malformed size field");
  TarHeader h;
  h.type = static_cast<char>(b[156]) ? static_cast<char>(b[156]) : '0';
  h.size = *size;
  auto prefix = magic == "ustar" ? field(b, 345, 155) : std::string_view();
  h.name = prefix.empty() ? std::string(field(b, 0, 100))
                          : std::string(prefix) + "/" + std::string(field(b, 0, 100));
  return std::optional<TarHeader>(std::move(h));
}

Result<TarIndex> read_tar_index(Source& source) {
  TarIndex index;
  const std::uint64_t total = source.size();
  std::uint64_t off = 0;
  std::optional<std::string> next_name;
  bool has_next_size = false;
  std::uint64_t next_size = 0;
  std::uint64_t entry_start = 0;
  bool in_extended = false;
  std::vector<std::uint8_t> block(kTarBlock);
  auto where = [&](std::uint64_t at) {
    return source.describe() + ": tar header at offset " + std::to_string(at);
  };
  for (;;) {
    if (off + kTarBlock > total) {
      if (off == total && index.entries.empty())
        return make_error(Errc::invalid_input,
                          source.describe() + ": empty file, not a tar archive");
      return make_error(Errc::invalid_input,
                        source.describe() +
                            ": truncated tar archive (no end-of-archive marker "
                            "before the end of the file at offset " +
                            std::to_string(total) + ")");
    }
    ABUP_CHECK(source.read_at(off, block));
    auto header = parse_tar_header(block);
    if (!header) return std::move(header).error().with_context(where(off));
    auto parsed = std::move(*header);
    if (!parsed) {
      index.end_offset = off;
      return index;
    }
    auto h = std::move(*parsed);
    if (!in_extended) entry_start = off;
    std::uint64_t data = off + kTarBlock;
    if (h.size > total || data + h.size > total)
      return make_error(Errc::invalid_input, where(off) + " ('" + h.name + "'): entry of " +
                                                 std::to_string(h.size) +
                                                 " bytes runs past the end of the file");
    std::uint64_t next = data + h.size + tar_padding(h.size);
    if (h.type == 'x' || h.type == 'L' || h.type == 'g') {
      if (h.size > kMaxExtendedHeader)
        return make_error(Errc::invalid_input, where(off) + ": extended header too large");
      std::string ext(h.size, '\0');
      ABUP_CHECK(source.read_at(data, {reinterpret_cast<std::uint8_t*>(ext.data()), ext.size()}));
      if (h.type == 'L') {
        next_name = std::string(ext.c_str());
      } else if (h.type == 'x') {
        auto recs = parse_pax(ext);
        if (!recs) return std::move(recs).error().with_context(where(off));
        for (auto& [k, v] : *recs) {
          if (k == "path") next_name = v;
          if (k == "size") {
            std::uint64_t n = 0;
            if (v.empty() || v.size() > 19 ||
                !std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; }))
              return make_error(Errc::invalid_input, where(off) + ": malformed pax size");
            for (char c : v) n = n * 10 + static_cast<std::uint64_t>(c - '0');
            next_size = n;
            has_next_size = true;
          }
        }
      }
      in_extended = h.type != 'g';
      off = next;
      continue;
    }
    if (has_next_size) {
      h.size = next_size;
      if (data + h.size > total)
        return make_error(Errc::invalid_input, where(off) + ": pax size runs past the end");
      next = data + h.size + tar_padding(h.size);
    }
    TarEntry e{next_name.value_or(h.name), h.type, entry_start, data, h.size};
    next_name.reset();
    has_next_size = false;
    in_extended = false;
    if (e.name.empty()) return make_error(Errc::invalid_input, where(off) + ": empty name");
    if (index.find(e.name))
      return make_error(Errc::invalid_input, where(off) + ": duplicate entry '" + e.name + "'");
    if (index.entries.size() >= kMaxTarEntries)
      return make_error(Errc::invalid_input, source.describe() + ": too many tar entries");
    index.entries.push_back(std::move(e));
    off = next;
  }
}

std::vector<std::uint8_t> make_tar_header(std::string_view name, std::uint64_t size,
                                          std::uint64_t mtime) {
  std::vector<std::uint8_t> out;
  bool needs_pax = name.size() > 100 || size >= (std::uint64_t{1} << 33);
  if (needs_pax) {
    std::string recs;
    auto rec = [&](std::string_view k, const std::string& v) {
      std::size_t body = 1 + k.size() + 1 + v.size() + 1;  // " k=v\n"
      std::size_t len = body + std::to_string(body).size();
      if (std::to_string(len).size() != std::to_string(body).size()) ++len;
      recs += std::to_string(len) + " " + std::string(k) + "=" + v + "\n";
    };
    rec("path", std::string(name));
    rec("size", std::to_string(size));
    out = ustar_block("PaxHeader", recs.size(), 'x', mtime);
    out.insert(out.end(), recs.begin(), recs.end());
    out.resize(out.size() + tar_padding(recs.size()), 0);
    size = std::min<std::uint64_t>(size, (std::uint64_t{1} << 33) - 1);
  }
  auto b = ustar_block(name.substr(0, std::min<std::size_t>(name.size(), 100)), size, '0', mtime);
  out.insert(out.end(), b.begin(), b.end());
  return out;
}

std::vector<std::uint8_t> tar_end_marker() {
  return std::vector<std::uint8_t>(2 * kTarBlock, 0);
}

Status TarAppender::add(std::string_view name, std::string_view data) {
  ABUP_TRY(auto at, begin(name, data.size()));
  (void)at;
  ABUP_CHECK(write_data(as_bytes(data)));
  return end_entry();
}

Result<std::uint64_t> TarAppender::begin(std::string_view name, std::uint64_t size) {
  auto h = make_tar_header(name, size);
  ABUP_CHECK(pwrite_full(fd_, h, offset_, what_));
  offset_ += h.size();
  pending_ = size;
  written_ = 0;
  return offset_;
}

Status TarAppender::write_data(std::span<const std::uint8_t> data) {
  if (written_ + data.size() > pending_)
    return make_error(Errc::failed, what_ + ": tar entry data longer than its header says");
  ABUP_CHECK(pwrite_full(fd_, data, offset_, what_));
  offset_ += data.size();
  written_ += data.size();
  return {};
}

Status TarAppender::end_entry() {
  if (written_ != pending_)
    return make_error(Errc::failed, what_ + ": tar entry data shorter than its header says");
  std::vector<std::uint8_t> pad(tar_padding(pending_), 0);
  ABUP_CHECK(pwrite_full(fd_, pad, offset_, what_));
  offset_ += pad.size();
  pending_ = written_ = 0;
  return {};
}

Status TarAppender::finish() {
  ABUP_CHECK(pwrite_full(fd_, tar_end_marker(), offset_, what_));
  offset_ += 2 * kTarBlock;
  if (::ftruncate(fd_, static_cast<off_t>(offset_)) != 0)
    return make_error(Errc::io, "truncate " + what_ + ": " + errno_text(errno));
  return {};
}

}  // namespace abup::protocol
