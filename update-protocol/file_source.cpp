#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>

#include "abup/fs.hpp"
#include "update-protocol/source.hpp"

namespace abup::protocol {
namespace {

class FileSource final : public Source {
 public:
  FileSource(std::string path, Fd fd, std::uint64_t size)
      : path_(std::move(path)), fd_(std::move(fd)), size_(size) {}

  const std::string& describe() const override { return path_; }
  std::uint64_t size() const override { return size_; }

  Status read_at(std::uint64_t offset, std::span<std::uint8_t> buf) override {
    if (offset > size_ || buf.size() > size_ - offset)
      return make_error(Errc::invalid_input, path_ + ": read of " + std::to_string(buf.size()) +
                                                 " bytes at offset " + std::to_string(offset) +
                                                 " is past the end (" + std::to_string(size_) +
                                                 " bytes)");
    ABUP_CHECK(pread_full(fd_.get(), buf, offset, path_));
    fetched_ += buf.size();
    return {};
  }

  Status read_range(std::uint64_t offset, std::uint64_t length, const Sink& sink) override {
    if (offset > size_ || length > size_ - offset)
      return make_error(Errc::invalid_input, path_ + ": range past the end of the file");
    ++range_requests_;
    static constexpr std::size_t kPiece = 1 << 20;
    std::vector<std::uint8_t> buf(std::min<std::uint64_t>(kPiece, length));
    while (length > 0) {
      auto n = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), length));
      ABUP_CHECK(read_at(offset, {buf.data(), n}));
      ABUP_CHECK(sink({buf.data(), n}));
      offset += n;
      length -= n;
    }
    return {};
  }

  std::uint64_t bytes_fetched() const override { return fetched_; }

 private:
  std::string path_;
  Fd fd_;
  std::uint64_t size_;
  std::uint64_t fetched_ = 0;
};

}  // namespace

Result<std::uint64_t> Source::read_ranges(std::span<const Range> ranges, const RangesSink& sink) {
  for (std::size_t i = 0; i < ranges.size(); ++i)
    ABUP_CHECK(read_range(ranges[i].offset, ranges[i].length,
                          [&](std::span<const std::uint8_t> piece) { return sink(i, piece); }));
  return ranges.size();
}

Status ReadAheadSource::read_at(std::uint64_t offset, std::span<std::uint8_t> buf) {
  if (buf.size() > window_) return inner_.read_at(offset, buf);
  auto in_window = [&] { return offset >= start_ && offset + buf.size() <= start_ + data_.size(); };
  if (!in_window()) {
    if (offset > size() || buf.size() > size() - offset)
      return inner_.read_at(offset, buf);  // let the source report the out-of-range read
    start_ = offset;
    auto len =
        std::min<std::uint64_t>(std::max<std::uint64_t>(window_, buf.size()), size() - start_);
    data_.resize(static_cast<std::size_t>(len));
    if (auto st = inner_.read_at(start_, data_); !st) {
      data_.clear();
      return st;
    }
  }
  std::memcpy(buf.data(), data_.data() + (offset - start_), buf.size());
  return {};
}

Result<std::unique_ptr<Source>> open_file_source(const std::string& path) {
  ABUP_TRY(Fd fd, open_file(path, O_RDONLY));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0)
    return make_error(Errc::io, "stat " + path + ": " + errno_text(errno));
  if (!S_ISREG(st.st_mode)) return make_error(Errc::invalid_input, path + ": not a regular file");
  return std::unique_ptr<Source>(
      std::make_unique<FileSource>(path, std::move(fd), static_cast<std::uint64_t>(st.st_size)));
}

}  // namespace abup::protocol
