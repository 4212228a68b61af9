#include "update-protocol/http/multipart.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>

namespace abup::protocol {
namespace {

// Bounds on what is not payload: a hostile server cannot make the parser buffer without end.
constexpr std::size_t kMaxLine = 2048;
constexpr std::size_t kMaxPartHeaders = 8 << 10;
constexpr std::size_t kMaxPreamble = 1024;
constexpr std::size_t kMaxEpilogue = 1024;

bool parse_u64(std::string_view s, std::uint64_t& out) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size() && !s.empty();
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// RFC 2046 bchars.
bool boundary_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) ||
         std::string_view("'()+_,-./:=? ").find(c) != std::string_view::npos;
}

std::string text(const ContentRange& r) {
  return std::to_string(r.first) + "-" + std::to_string(r.last);
}

// What a line of the body looked like, for messages: printable, and not too long.
std::string shown(std::string_view line) {
  std::string out;
  for (char c : line.substr(0, 60)) out += std::isprint(static_cast<unsigned char>(c)) ? c : '?';
  if (line.size() > 60) out += "...";
  return "\"" + out + "\"";
}

}  // namespace

std::optional<ContentRange> parse_content_range(std::string_view v) {
  if (!v.starts_with("bytes ")) return std::nullopt;
  v.remove_prefix(6);
  auto dash = v.find('-');
  auto slash = v.find('/');
  if (dash == std::string_view::npos || slash == std::string_view::npos || slash < dash)
    return std::nullopt;
  ContentRange r;
  if (!parse_u64(v.substr(0, dash), r.first) ||
      !parse_u64(v.substr(dash + 1, slash - dash - 1), r.last) ||
      !parse_u64(v.substr(slash + 1), r.total) || r.last < r.first || r.last >= r.total)
    return std::nullopt;
  return r;
}

std::optional<std::string> byteranges_boundary(std::string_view content_type) {
  auto semi = content_type.find(';');
  if (!iequals(trim(content_type.substr(0, semi)), "multipart/byteranges")) return std::nullopt;
  std::optional<std::string> boundary;
  while (semi != std::string_view::npos) {
    content_type.remove_prefix(semi + 1);
    semi = content_type.find(';');
    auto param = trim(content_type.substr(0, semi));
    auto eq = param.find('=');
    if (eq == std::string_view::npos) return std::nullopt;
    if (!iequals(trim(param.substr(0, eq)), "boundary")) continue;
    if (boundary) return std::nullopt;  // two boundaries: which one?
    auto value = trim(param.substr(eq + 1));
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"')
      value = value.substr(1, value.size() - 2);
    if (value.empty() || value.size() > 70 || value.back() == ' ' ||
        !std::all_of(value.begin(), value.end(), boundary_char))
      return std::nullopt;
    boundary = std::string(value);
  }
  return boundary;
}

std::string range_header(std::span<const ContentRange> ranges) {
  std::string out = "bytes=";
  for (std::size_t i = 0; i < ranges.size(); ++i) {
    if (i) out += ',';
    out += text(ranges[i]);
  }
  return out;
}

ByterangesParser::ByterangesParser(std::string boundary, std::vector<ContentRange> expected,
                                   std::uint64_t total)
    : delimiter_("--" + std::move(boundary)), expected_(std::move(expected)), total_(total) {}

bool ByterangesParser::complete() const {
  if (state_ == State::epilogue) return true;
  std::string_view l(line_);
  if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
  return state_ == State::delimiter && part_ + 1 == expected_.size() &&
         trim(l) == delimiter_ + "--";
}

Status ByterangesParser::error(const std::string& what) const {
  return make_error(Errc::invalid_input, "malformed multipart/byteranges reply to a request for " +
                                             std::to_string(expected_.size()) +
                                             " ranges (at body byte " + std::to_string(offset_) +
                                             "): " + what);
}

Status ByterangesParser::feed(std::span<const std::uint8_t> in, const OnData& on_data) {
  while (!in.empty()) {
    if (state_ == State::data) {
      auto n = static_cast<std::size_t>(std::min<std::uint64_t>(left_, in.size()));
      ABUP_CHECK(on_data(part_, in.first(n)));
      left_ -= n;
      delivered_ += n;
      offset_ += n;
      in = in.subspan(n);
      if (left_ == 0) state_ = State::after_data;
      continue;
    }
    if (state_ == State::after_data) {
      // Exactly CRLF, then the delimiter: a part of another length than its range shows here.
      if (in[0] != (crlf_ == 0 ? '\r' : '\n'))
        return error("part " + std::to_string(part_ + 1) + " does not end where its range " +
                     text(expected_[part_]) + " does (its data is shorter or longer)");
      ++offset_;
      in = in.subspan(1);
      if (++crlf_ == 2) {
        crlf_ = 0;
        state_ = State::delimiter;
      }
      continue;
    }
    if (state_ == State::epilogue) {
      for (auto c : in) {
        if (c != '\r' && c != '\n' && c != ' ' && c != '\t')
          return error("data after the closing delimiter");
        if (++preamble_bytes_ > kMaxEpilogue) return error("endless epilogue");
        ++offset_;
      }
      return {};
    }
    const auto nl = std::find(in.begin(), in.end(), std::uint8_t{'\n'});
    const auto n = static_cast<std::size_t>(nl - in.begin());
    if (line_.size() + n > kMaxLine)
      return error("a line of more than " + std::to_string(kMaxLine) + " bytes");
    line_.append(reinterpret_cast<const char*>(in.data()), n);
    if (nl == in.end()) {
      offset_ += n;
      return {};
    }
    in = in.subspan(n + 1);
    std::string_view l(line_);
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    ABUP_CHECK(line(l));
    offset_ += n + 1;
    line_.clear();
  }
  return {};
}

Status ByterangesParser::line(std::string_view l) {
  const std::string part = "part " + std::to_string(part_ + 1);
  switch (state_) {
    case State::preamble: {
      auto t = trim(l);  // RFC 2046 allows whitespace ("transport padding") after a delimiter
      if (t == delimiter_) {
        state_ = State::headers;
        return {};
      }
      if (t == delimiter_ + "--") return error("the closing delimiter comes before any part");
      if ((preamble_bytes_ += l.size() + 2) > kMaxPreamble)
        return error("no delimiter line \"" + delimiter_ + "\" in the first " +
                     std::to_string(kMaxPreamble) + " bytes");
      return {};
    }
    case State::headers: {
      if (l.empty()) return end_of_headers();
      if ((header_bytes_ += l.size()) > kMaxPartHeaders)
        return error(part + " has more than " + std::to_string(kMaxPartHeaders) +
                     " bytes of headers");
      auto colon = l.find(':');
      if (colon == std::string_view::npos || colon == 0)
        return error(part + " has a malformed header line " + shown(l));
      if (!iequals(l.substr(0, colon), "content-range")) return {};
      if (range_) return error(part + " has two Content-Range headers");
      range_ = parse_content_range(trim(l.substr(colon + 1)));
      if (!range_) return error(part + " has an invalid Content-Range " + shown(l));
      return {};
    }
    case State::delimiter: {
      auto t = trim(l);
      if (t == delimiter_) {
        if (part_ + 1 >= expected_.size())
          return error("an extra part after the " + std::to_string(expected_.size()) +
                       " ranges asked for");
        ++part_;
        state_ = State::headers;
        return {};
      }
      if (t == delimiter_ + "--") {
        if (part_ + 1 < expected_.size())
          return error("only " + std::to_string(part_ + 1) + " parts; range " +
                       text(expected_[part_ + 1]) + " and any after it are missing");
        state_ = State::epilogue;
        preamble_bytes_ = 0;
        return {};
      }
      return error("expected the delimiter after " + part + " (range " + text(expected_[part_]) +
                   "), got " + shown(l));
    }
    case State::data:
    case State::after_data:
    case State::epilogue:
      break;
  }
  return {};
}

Status ByterangesParser::end_of_headers() {
  const std::string part = "part " + std::to_string(part_ + 1);
  if (!range_) return error(part + " has no Content-Range");
  const auto got = *range_;
  range_.reset();
  header_bytes_ = 0;
  if (got.total != total_)
    return error(part + " names a resource of " + std::to_string(got.total) + " bytes, not " +
                 std::to_string(total_));
  const auto& want = expected_[part_];
  if (got.first != want.first || got.last != want.last) {
    bool asked = std::any_of(expected_.begin(), expected_.end(), [&](const ContentRange& r) {
      return r.first == got.first && r.last == got.last;
    });
    return error(part + " is range " + text(got) + " where " + text(want) + " was asked for" +
                 (asked ? " (parts out of order)" : " (a range not asked for)"));
  }
  left_ = got.last - got.first + 1;
  delivered_ = 0;
  state_ = State::data;
  return {};
}

}  // namespace abup::protocol
