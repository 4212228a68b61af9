// A random-access byte source: a local file or an HTTP(S) URL read with Range requests.
// Nothing read from a Source is trusted: callers verify it against the signed manifest.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "abup/result.hpp"

namespace abup::protocol {

// [offset, offset + length) of a source.
struct Range {
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
};

class Source {
 public:
  using Sink = std::function<Status(std::span<const std::uint8_t>)>;
  // Receives the bytes of ranges[range] of a read_ranges() call.
  using RangesSink = std::function<Status(std::size_t range, std::span<const std::uint8_t>)>;
  virtual ~Source() = default;

  // URL or path, for messages.
  [[nodiscard]] virtual const std::string& describe() const = 0;
  [[nodiscard]] virtual std::uint64_t size() const = 0;
  // Reads exactly buf.size() bytes at offset (a short source is an error).
  [[nodiscard]] virtual Status read_at(std::uint64_t offset, std::span<std::uint8_t> buf) = 0;
  // Streams [offset, offset + length) to sink, in order, in pieces of any size. Transient failures
  // are retried from the next byte not yet delivered: the sink never sees a byte twice or out of
  // order. A sink error stops the transfer and is returned unchanged.
  [[nodiscard]] virtual Status read_range(std::uint64_t offset, std::uint64_t length,
                                          const Sink& sink) = 0;
  // Streams each of `ranges` (ascending, not overlapping, none empty) to sink, range after range,
  // with read_range's guarantees. An HTTP source asks for several ranges per request
  // (multipart/byteranges) where the server answers such requests. Returns the number of
  // requests made (retries included).
  [[nodiscard]] virtual Result<std::uint64_t> read_ranges(std::span<const Range> ranges,
                                                          const RangesSink& sink);
  // Body bytes received from the origin so far (for summaries and the resume tests).
  [[nodiscard]] virtual std::uint64_t bytes_fetched() const = 0;
  // Ranged requests made so far (HTTP: every ranged GET, read_at's included, retries and
  // transfers stopped by the sink too; a file: each read_range): callers count a phase by the
  // difference, as the stage does for its rangeRequests.
  [[nodiscard]] virtual std::uint64_t range_requests() const { return range_requests_; }

 protected:
  std::uint64_t range_requests_ = 0;
};

[[nodiscard]] Result<std::unique_ptr<Source>> open_file_source(const std::string& path);

// Serves small reads from a window read ahead of the wrapped source, so walking a tar index over
// HTTP costs a couple of range requests instead of one per header. Larger reads and
// read_range() pass through.
class ReadAheadSource final : public Source {
 public:
  ReadAheadSource(Source& inner, std::size_t window = 32 << 10) : inner_(inner), window_(window) {}
  [[nodiscard]] const std::string& describe() const override { return inner_.describe(); }
  [[nodiscard]] std::uint64_t size() const override { return inner_.size(); }
  [[nodiscard]] Status read_at(std::uint64_t offset, std::span<std::uint8_t> buf) override;
  [[nodiscard]] Status read_range(std::uint64_t offset, std::uint64_t length,
                                  const Sink& sink) override {
    return inner_.read_range(offset, length, sink);
  }
  [[nodiscard]] Result<std::uint64_t> read_ranges(std::span<const Range> ranges,
                                                  const RangesSink& sink) override {
    return inner_.read_ranges(ranges, sink);
  }
  [[nodiscard]] std::uint64_t bytes_fetched() const override { return inner_.bytes_fetched(); }
  [[nodiscard]] std::uint64_t range_requests() const override { return inner_.range_requests(); }

 private:
  Source& inner_;
  std::size_t window_;
  std::uint64_t start_ = 0;
  std::vector<std::uint8_t> data_;
};

}  // namespace abup::protocol
