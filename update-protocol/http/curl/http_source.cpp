// The HTTP(S) Source: size from HEAD (or a 1-byte range GET), then strictly checked Range GETs
// that resume where a dropped connection left off.
#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>

#include "update-protocol/http/client.hpp"
#include "update-protocol/http/curl/easy.hpp"
#include "update-protocol/http/multipart.hpp"

namespace abup::protocol {
namespace {

using curl::Failure;
using curl::fatal_failure;
using curl::ResponseHead;

bool parse_u64(std::string_view s, std::uint64_t& out) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size() && !s.empty();
}

std::string range_text(std::uint64_t first, std::uint64_t last) {
  return std::to_string(first) + "-" + std::to_string(last);
}

Failure protocol_failure(std::string message) {
  return fatal_failure(Errc::invalid_input, std::move(message));
}

class HttpSource final : public Source {
 public:
  HttpSource(std::string url, const TransportOptions& options)
      : url_(std::move(url)), options_(options), easy_(options_) {}

  const std::string& describe() const override { return url_; }
  std::uint64_t size() const override { return size_; }
  std::uint64_t bytes_fetched() const override { return fetched_; }

  Status probe_size();

  Status read_at(std::uint64_t offset, std::span<std::uint8_t> buf) override {
    std::size_t filled = 0;
    return read_range(offset, buf.size(), [&](std::span<const std::uint8_t> piece) -> Status {
      std::memcpy(buf.data() + filled, piece.data(), piece.size());
      filled += piece.size();
      return {};
    });
  }

  Status read_range(std::uint64_t offset, std::uint64_t length, const Sink& sink) override {
    if (offset > size_ || length > size_ - offset)
      return make_error(Errc::invalid_input, url_ + ": read of " + std::to_string(length) +
                                                 " bytes at offset " + std::to_string(offset) +
                                                 " is past the end (" + std::to_string(size_) +
                                                 " bytes)");
    std::uint64_t done = 0;
    return curl::with_retries(options_, url_, [&](bool& progressed) -> std::optional<Failure> {
      std::uint64_t before = done;
      auto f = fetch(offset + done, length - done, sink, done);
      progressed = done > before;
      return f;
    });
  }

  Result<std::uint64_t> read_ranges(std::span<const Range> ranges,
                                    const RangesSink& sink) override {
    const std::uint64_t before = range_requests_;
    for (std::size_t i = 0; i < ranges.size();) {
      const std::size_t n = std::min(ranges.size() - i, options_.max_ranges_per_request);
      if (n <= 1 || single_ranges_) {
        ABUP_CHECK(read_range(ranges[i].offset, ranges[i].length,
                              [&](std::span<const std::uint8_t> p) { return sink(i, p); }));
        ++i;
        continue;
      }
      ABUP_CHECK(read_batch(ranges.subspan(i, n), i, sink));
      i += n;
    }
    return range_requests_ - before;
  }

 private:
  // Where a batch of ranges stands: range `k` of it has `done` bytes delivered.
  struct Progress {
    std::size_t k = 0;
    std::uint64_t done = 0;
    bool operator==(const Progress&) const = default;
  };

  // One batch of ranges, in as few multi-range requests as the server allows; resumed from the
  // next byte not yet delivered after a transient failure.
  Status read_batch(std::span<const Range> batch, std::size_t base, const RangesSink& sink) {
    for (const auto& r : batch)
      if (r.length == 0 || r.offset > size_ || r.length > size_ - r.offset)
        return make_error(Errc::invalid_input, url_ + ": range of " + std::to_string(r.length) +
                                                   " bytes at offset " + std::to_string(r.offset) +
                                                   " is empty or past the end (" +
                                                   std::to_string(size_) + " bytes)");
    Progress at;
    auto skip_done = [&] {
      while (at.k < batch.size() && at.done == batch[at.k].length) at = {at.k + 1, 0};
    };
    auto st = curl::with_retries(options_, url_, [&](bool& progressed) -> std::optional<Failure> {
      skip_done();
      if (at.k == batch.size() || single_ranges_) return std::nullopt;
      const Progress before = at;
      std::optional<Failure> f;
      if (at.k + 1 == batch.size()) {
        f = fetch(
            batch[at.k].offset + at.done, batch[at.k].length - at.done,
            [&](std::span<const std::uint8_t> p) { return sink(base + at.k, p); }, at.done);
      } else {
        f = fetch_multi(batch, base, sink, at);
      }
      progressed = !(at == before);
      return f;
    });
    if (!st && !single_ranges_) return st;
    // The server does not answer multi-range requests: the rest one range at a time.
    for (skip_done(); at.k < batch.size(); at = {at.k + 1, 0}) {
      const auto& r = batch[at.k];
      ABUP_CHECK(read_range(r.offset + at.done, r.length - at.done,
                            [&](std::span<const std::uint8_t> p) { return sink(base + at.k, p); }));
    }
    return {};
  }

  // One multi-range GET of the batch's ranges from `at` on. A reply of 200 or a single range
  // sets single_ranges_ and fails (before a body byte reaches the sink).
  std::optional<Failure> fetch_multi(std::span<const Range> batch, std::size_t base,
                                     const RangesSink& sink, Progress& at) {
    std::vector<ContentRange> want;
    for (std::size_t i = at.k; i < batch.size(); ++i) {
      const auto first = batch[i].offset + (i == at.k ? at.done : 0);
      want.push_back({first, batch[i].offset + batch[i].length - 1, size_});
    }
    const std::string header = range_header(want);
    const std::size_t k0 = at.k;
    ++range_requests_;
    std::optional<ByterangesParser> parser;
    auto start = [&](const ResponseHead& head) -> std::optional<Failure> {
      const std::string* type = head.find("content-type");
      if (head.status == 200 ||
          (head.status == 206 && !(type && type->starts_with("multipart/")))) {
        single_ranges_ = true;
        return protocol_failure("server answered a request for " + std::to_string(want.size()) +
                                " ranges with " + head.describe_status() +
                                " and no multipart/byteranges body");
      }
      if (head.status != 206)
        return curl::status_failure(head, "206 for " + std::to_string(want.size()) + " ranges");
      auto boundary = byteranges_boundary(*type);
      if (!boundary)
        return protocol_failure("HTTP 206 to a multi-range request with Content-Type \"" + *type +
                                "\" (expected multipart/byteranges with a boundary)");
      parser.emplace(std::move(*boundary), want, size_);
      return std::nullopt;
    };
    bool sink_failed = false;
    ByterangesParser::OnData on_data = [&](std::size_t part, std::span<const std::uint8_t> p) {
      if (k0 + part != at.k) at = {k0 + part, 0};
      Status s = sink(base + at.k, p);
      if (s) at.done += p.size();
      sink_failed = !s;
      return s;
    };
    curl::BodyHandler on_body = [&](const ResponseHead& head,
                                    std::span<const std::uint8_t> data) -> std::optional<Failure> {
      fetched_ += data.size();  // also what a refused reply brought before it was dropped
      if (!parser)
        if (auto f = start(head)) return f;
      if (Status s = parser->feed(data, on_data); !s) {
        Failure f{std::move(s).error()};
        f.passthrough = sink_failed;  // else the server's fault, named by the URL prefix
        return f;
      }
      return std::nullopt;
    };
    curl::Outcome out = easy_.perform(url_, {.range = header.substr(6)}, on_body);
    if (out.failure) return out.failure;
    if (!parser)
      if (auto f = start(out.head)) return f;
    if (!parser->complete())
      return curl::transient_failure("connection ended inside the multipart reply to ranges " +
                                     header.substr(6));
    return std::nullopt;
  }

  // One ranged GET of [first, first + length), appending to `done` what reached the sink.
  std::optional<Failure> fetch(std::uint64_t first, std::uint64_t length, const Sink& sink,
                               std::uint64_t& done) {
    if (length == 0) return std::nullopt;
    ++range_requests_;
    const std::uint64_t last = first + length - 1;
    std::uint64_t got = 0;
    bool checked = false;
    curl::BodyHandler on_body = [&](const ResponseHead& head,
                                    std::span<const std::uint8_t> data) -> std::optional<Failure> {
      if (!checked) {
        if (auto f = check_ranged_reply(head, first, last, size_)) return f;
        checked = true;
      }
      if (data.size() > length - got)
        return protocol_failure("server sent more than the " + std::to_string(length) +
                                " bytes asked for (range " + range_text(first, last) + ")");
      got += data.size();
      fetched_ += data.size();
      if (Status s = sink(data); !s) {
        Failure f{std::move(s).error()};
        f.passthrough = true;  // the sink's error, unchanged
        return f;
      }
      done += data.size();
      return std::nullopt;
    };
    curl::Outcome out = easy_.perform(url_, {.range = range_text(first, last)}, on_body);
    if (out.failure) return out.failure;
    if (!checked)
      if (auto f = check_ranged_reply(out.head, first, last, size_)) return f;
    if (got < length)
      return curl::transient_failure("connection ended after " + std::to_string(got) + " of " +
                                     std::to_string(length) + " bytes of range " +
                                     range_text(first, last));
    return std::nullopt;
  }

  // A reply to "Range: bytes=first-last" must be 206 naming exactly that range of a resource of
  // `total` bytes (any total when `total` is nullopt: the size probe).
  static std::optional<Failure> check_ranged_reply(const ResponseHead& head, std::uint64_t first,
                                                   std::uint64_t last,
                                                   std::optional<std::uint64_t> total) {
    if (head.status == 200)
      return protocol_failure("server ignored the Range request (HTTP 200 instead of 206)");
    if (head.status != 206)
      return curl::status_failure(head, "206 for range " + range_text(first, last));
    const std::string* cr = head.find("content-range");
    auto range = cr ? parse_content_range(*cr) : std::nullopt;
    if (!range)
      return protocol_failure("HTTP 206 without a valid single Content-Range (got \"" +
                              (cr ? *cr : std::string()) + "\") for range " +
                              range_text(first, last));
    if (range->first != first || range->last != last)
      return protocol_failure("server answered range " + range_text(range->first, range->last) +
                              " to a request for range " + range_text(first, last));
    if (total && range->total != *total)
      return protocol_failure("resource size changed from " + std::to_string(*total) + " to " +
                              std::to_string(range->total) + " bytes");
    std::uint64_t content_length = 0;
    if (const std::string* cl = head.find("content-length");
        cl && (!parse_u64(*cl, content_length) || content_length != last - first + 1))
      return protocol_failure("Content-Length " + *cl + " does not match range " +
                              range_text(first, last));
    return std::nullopt;
  }

  std::optional<Failure> head_request(ResponseHead& head) {
    curl::Outcome out = easy_.perform(url_, {.method = "HEAD"}, nullptr);
    if (out.failure) return out.failure;
    head = std::move(out.head);
    if (curl::transient_status(head.status)) return curl::status_failure(head, "");
    return std::nullopt;
  }

  // GET bytes=0-0: a 206 with Content-Range "bytes 0-0/TOTAL" proves range support and gives
  // the size. A 200 is refused at its first body byte, without downloading the rest.
  std::optional<Failure> range_probe(std::uint64_t& total) {
    bool checked = false;
    std::uint64_t got = 0;
    curl::BodyHandler on_body = [&](const ResponseHead& head,
                                    std::span<const std::uint8_t> data) -> std::optional<Failure> {
      if (!checked) {
        if (auto f = check_ranged_reply(head, 0, 0, std::nullopt)) return f;
        checked = true;
      }
      got += data.size();
      fetched_ += data.size();
      if (got > 1)
        return protocol_failure("server sent more than the 1 byte asked for (range 0-0)");
      return std::nullopt;
    };
    curl::Outcome out = easy_.perform(url_, {.range = "0-0"}, on_body);
    if (out.failure) return out.failure;
    if (out.head.status == 416)
      if (const std::string* cr = out.head.find("content-range"); cr && *cr == "bytes */0") {
        total = 0;  // an empty resource has no byte 0 to ask for
        return std::nullopt;
      }
    if (auto f = check_ranged_reply(out.head, 0, 0, std::nullopt)) return f;
    if (got != 1) return curl::transient_failure("connection ended before the byte of range 0-0");
    total = parse_content_range(*out.head.find("content-range"))->total;
    return std::nullopt;
  }

  std::string url_;
  TransportOptions options_;
  curl::Easy easy_;
  std::uint64_t size_ = 0;
  std::uint64_t fetched_ = 0;
  bool single_ranges_ = false;  // the server does not answer multi-range requests
};

Status HttpSource::probe_size() {
  ResponseHead head;
  ABUP_CHECK(curl::with_retries(options_, url_, [&](bool&) { return head_request(head); }));
  if (head.status == 404 || head.status == 410)
    return make_error(Errc::not_found, url_ + ": " + head.describe_status());
  const std::string* ranges = head.find("accept-ranges");
  const std::string* length = head.find("content-length");
  std::uint64_t n = 0;
  if (head.status / 100 == 2 && ranges && ranges->find("bytes") != std::string::npos && length &&
      parse_u64(*length, n)) {
    size_ = n;
    return {};
  }
  // HEAD refused (405, or 403 from URLs presigned for GET only) or silent about ranges.
  return curl::with_retries(options_, url_, [&](bool&) { return range_probe(size_); });
}

bool has_scheme(const std::string& s, std::string_view scheme) {
  if (s.size() < scheme.size()) return false;
  for (std::size_t i = 0; i < scheme.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[i])) != scheme[i]) return false;
  return true;
}

}  // namespace

Result<std::unique_ptr<Source>> open_http_source(const std::string& url,
                                                 const TransportOptions& options) {
  ABUP_CHECK(curl::check_url(url, options));
  auto source = std::make_unique<HttpSource>(url, options);
  ABUP_CHECK(source->probe_size());
  return std::unique_ptr<Source>(std::move(source));
}

Result<std::unique_ptr<Source>> open_source(const std::string& location,
                                            const TransportOptions& options) {
  if (has_scheme(location, "http://") || has_scheme(location, "https://"))
    return open_http_source(location, options);
  if (has_scheme(location, "file://")) {
    std::string path = location.substr(7);
    if (path.starts_with("localhost/")) path = path.substr(9);
    if (!path.starts_with("/"))
      return make_error(Errc::invalid_input,
                        location + ": a file:// URL needs an absolute path (file:///path)");
    return open_file_source(path);
  }
  if (location.find("://") != std::string::npos)
    return make_error(Errc::invalid_input,
                      location + ": unsupported URL scheme (use https://, file:// or a path)");
  return open_file_source(location);
}

}  // namespace abup::protocol
