#include "agent/image_stager.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

#include "abup/digest.hpp"
#include "abup/fault.hpp"
#include "agent/frame_pipeline.hpp"
#include "agent/slot_index.hpp"
#include "update-protocol/image.hpp"

namespace abup::agent {
namespace {

using protocol::Frame;
using protocol::ManifestImage;

// Compressed bytes of unneeded frames a range request may carry to avoid a new request. Fixed
// 4 MiB frames: a gap is rare and a new request costs little next to a frame. Content-defined
// frames (~60 KiB compressed) are needed in scattered runs; measured on the bench's 1 GiB /usr
// (docs/design.md): a 1 MiB gap made 29 requests of 69 MiB where 16 KiB makes 272 of 17.7 MiB
// (casync: 776 requests, 15.1 MiB). 16 KiB is about what one more request costs on the wire.
constexpr std::uint64_t kMaxGapFixed = 1 << 20;
constexpr std::uint64_t kMaxGapCdc = 16 << 10;
// Chunks up to this size are hashed and copied in one piece when reused.
constexpr std::size_t kScratch = 4 << 20;

// Which frames are all zeros: those whose signed chunk SHA-256 is that of zeros of their size.
// The digests of every size the image has come from one pass over zeros as long as its largest
// frame (the state read out at each size), not one hash per size: content-defined frames come
// in up to a few hundred sizes.
class ZeroDigests {
 public:
  explicit ZeroDigests(const ManifestImage& img) {
    std::vector<std::uint64_t> sizes;
    sizes.reserve(img.frames.size());
    for (const auto& f : img.frames) sizes.push_back(f.uncompressed_size);
    std::sort(sizes.begin(), sizes.end());
    sizes.erase(std::unique(sizes.begin(), sizes.end()), sizes.end());
    const std::vector<std::uint8_t> zeros(64 << 10, 0);
    Sha2 h(Sha2::Kind::sha256);
    std::uint64_t hashed = 0;
    digests_.reserve(sizes.size());
    for (auto size : sizes) {
      while (hashed < size) {
        const auto n =
            static_cast<std::size_t>(std::min<std::uint64_t>(size - hashed, zeros.size()));
        h.update({zeros.data(), n});
        hashed += n;
      }
      Sha256 d;
      h.peek(d);
      digests_.emplace_back(size, d);
    }
  }
  [[nodiscard]] bool is_zero(const Frame& f) const {
    auto it = std::lower_bound(digests_.begin(), digests_.end(), f.uncompressed_size,
                               [](const auto& e, std::uint64_t size) { return e.first < size; });
    return it != digests_.end() && it->first == f.uncompressed_size && it->second == f.chunk_sha256;
  }

 private:
  std::vector<std::pair<std::uint64_t, Sha256>> digests_;  // by size
};

// SHA-256 of `len` bytes read by `read` in pieces: the check before trusting local bytes.
template <typename Read>
Result<Sha256> hash_local(Read&& read, std::uint64_t offset, std::uint64_t len,
                          AlignedBuffer& buf) {
  Sha2 h(Sha2::Kind::sha256);
  for (std::uint64_t done = 0; done < len;) {
    auto n = std::min<std::uint64_t>(buf.capacity(), len - done);
    ABUP_CHECK(read(offset + done, buf.span(n)));
    h.update(buf.span(n));
    done += n;
  }
  Sha256 d;
  h.finish(d);
  return d;
}

}  // namespace

void ProgressReporter::phase(const char* name, std::uint64_t total) {
  p_.phase = name;
  p_.total = total;
  p_.done = 0;
  emit(true);
}

void ProgressReporter::add(std::uint64_t n, std::uint64_t downloaded) {
  p_.done += n;
  p_.downloaded = downloaded;
  emit(false);
}

void ProgressReporter::emit(bool force) {
  if (!fn_) return;
  auto now = std::chrono::steady_clock::now();
  if (!force && now - last_ < std::chrono::milliseconds(100) && p_.done < p_.total) return;
  last_ = now;
  fn_(p_);
}

Status ImageStager::plan(bool resume, const ReuseSource& reuse, unsigned workers) {
  const auto n = img_.frames.size();
  actions_.assign(n, Action::download);
  reuse_from_.clear();
  const ZeroDigests zeros(img_);
  AlignedBuffer scratch(kScratch);
  for (std::size_t i = 0; i < n; ++i) {
    const auto& f = img_.frames[i];
    if (zeros.is_zero(f)) {
      actions_[i] = Action::zero;
      continue;
    }
    if (resume) {
      // Invariant 6: what an earlier run wrote is re-hashed on the device, never assumed.
      ABUP_TRY(auto d,
               hash_local([&](std::uint64_t off,
                              std::span<std::uint8_t> b) { return target_.read_direct(off, b); },
                          f.uncompressed_offset, f.uncompressed_size, scratch));
      if (d == f.chunk_sha256) actions_[i] = Action::skip;
      progress_.add(f.uncompressed_size, 0);
    }
  }
  if (!reuse.reader) return {};
  // The frames to look for, sorted by chunk digest: 4 bytes a frame, where a hash map of digest to
  // frames cost ~100 (as much as the frame table itself, on top of it while the slot is cut).
  std::vector<std::uint32_t> wanted;
  for (std::size_t i = 0; i < n; ++i)
    if (actions_[i] == Action::download && img_.frames[i].uncompressed_size <= kScratch)
      wanted.push_back(static_cast<std::uint32_t>(i));
  if (wanted.empty()) return {};
  wanted.shrink_to_fit();
  auto by_digest = [&](std::uint32_t a, std::uint32_t b) {
    return img_.frames[a].chunk_xxh3 < img_.frames[b].chunk_xxh3;
  };
  std::sort(wanted.begin(), wanted.end(), by_digest);
  struct Digest {
    const ManifestImage& img;
    bool operator()(std::uint32_t i, const Xxh128& key) const {
      return img.frames[i].chunk_xxh3 < key;
    }
    bool operator()(const Xxh128& key, std::uint32_t i) const {
      return key < img.frames[i].chunk_xxh3;
    }
  };
  auto frames_of = [&](const Xxh128& key) {
    return std::equal_range(wanted.begin(), wanted.end(), key, Digest{img_});
  };
  auto is_wanted = [&](const Xxh128& key) {
    auto [first, last] = frames_of(key);
    return first != last;
  };
  // Candidates come from the manifest recorded when the booted slot was staged (no read
  // needed) when it was cut as this image is, else from cutting the booted slot the same way.
  // Either way a candidate is used only after its SHA-256 matches the signed manifest, when it
  // is copied.
  const std::uint64_t slot_size = reuse.reader->size();
  const std::uint64_t limit = std::min(slot_size, img_.uncompressed_size);
  std::optional<SlotChunks> have;
  if (reuse.recorded) have = recorded_chunks(*reuse.recorded, img_, slot_size, is_wanted);
  if (!have && !img_.chunker.empty()) {
    ABUP_TRY(have, index_slot(*reuse.reader, limit, img_, is_wanted, workers));
  } else if (!have && img_.frames.front().uncompressed_size <= kScratch) {
    ABUP_TRY(have, index_slot_fixed(*reuse.reader, limit, img_.frames.front().uncompressed_size,
                                    is_wanted));
  }
  if (!have || have->empty()) return {};
  reuse_from_.assign(n, 0);
  for (auto& [key, where] : *have) {
    auto [first, last] = frames_of(key);
    for (auto it = first; it != last; ++it)
      if (img_.frames[*it].uncompressed_size == where.size) {
        actions_[*it] = Action::reuse;
        reuse_from_[*it] = where.offset;
      }
  }
  // Crash and race tests stop here: what was found may change before it is copied.
  fault_point("reuse-planned");
  return {};
}

Status ImageStager::write_local(const ReuseSource& reuse, unsigned workers) {
  read_back_ = std::make_unique<ReadBack>(target_, img_, ReadBack::kBuffer);
  std::vector<std::uint32_t> copies;
  for (std::size_t i = 0; i < img_.frames.size(); ++i) {
    const auto& f = img_.frames[i];
    switch (actions_[i]) {
      case Action::zero:
        ABUP_CHECK(target_.zero_range(f.uncompressed_offset, f.uncompressed_size));
        read_back_->written(i, ReadBack::Kind::zero);
        sum_.zeroed += f.uncompressed_size;
        break;
      case Action::skip:
        read_back_->written(i);
        sum_.skipped += f.uncompressed_size;
        break;
      case Action::reuse:
        copies.push_back(static_cast<std::uint32_t>(i));
        continue;
      case Action::download:
        continue;
    }
    progress_.add(f.uncompressed_size, source_.bytes_fetched());
  }
  return copy_reused(reuse, copies, workers);
}

// Each chunk is read from the booted slot and written only when its SHA-256 matches the signed
// manifest (a mismatch is downloaded instead). That SHA-256 is most of a delta stage's CPU (on
// the bench's in-place delta, 758 MiB of chunks), so `workers` threads share the chunks, each
// with a buffer of the largest one.
Status ImageStager::copy_reused(const ReuseSource& reuse, const std::vector<std::uint32_t>& frames,
                                unsigned workers) {
  if (frames.empty()) return {};
  std::uint64_t largest = 0;
  for (auto i : frames) largest = std::max(largest, img_.frames[i].uncompressed_size);
  std::atomic<std::size_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex mu;  // guards error, actions_, sum_ and progress_
  std::optional<Error> error;
  auto copy = [&] {
    AlignedBuffer scratch(static_cast<std::size_t>(largest));
    for (std::size_t k; !failed && (k = next.fetch_add(1)) < frames.size();) {
      const auto i = frames[k];
      const auto& f = img_.frames[i];
      auto span = scratch.span(f.uncompressed_size);
      Status st = reuse.reader->read_at(reuse_from_[i], span);
      const bool match = st && sha256(span) == f.chunk_sha256;
      if (match) st = target_.write_at(f.uncompressed_offset, span);
      if (match && st) {
        target_.start_writeback(f.uncompressed_offset, f.uncompressed_size);
        read_back_->written(i);
      }
      std::lock_guard lock(mu);
      if (!st) {
        if (!error) error = std::move(st).error();
        failed = true;
      } else if (!match) {
        actions_[i] = Action::download;  // changed under us, or an XXH3 collision: fetch it
      } else {
        sum_.reused += f.uncompressed_size;
        progress_.add(f.uncompressed_size, source_.bytes_fetched());
      }
    }
  };
  std::vector<std::thread> pool;
  const auto threads = std::min<std::size_t>(std::max(1u, workers), frames.size());
  for (std::size_t t = 1; t < threads; ++t) pool.emplace_back(copy);
  copy();
  for (auto& t : pool) t.join();
  if (error) return *error;
  return {};
}

// Splits the bytes of runs of frames into frames: frames still to download have their SHA-256
// checked as they arrive and go to the pipeline's workers (or through a streaming decoder when
// too large to buffer); other frames inside a coalesced range are dropped. A damaged frame is
// dropped too and stays to download. Two damaged frames in a row in one range stop the transfer:
// a byte duplicated or lost on the way shifts every later byte of the response, so nothing after
// it is worth receiving; one damaged frame followed by an intact one was damaged in place.
class ImageStager::RunWriter {
 public:
  RunWriter(ImageStager& s, FramePipeline& pipeline, std::vector<char>& pending)
      : s_(s), pipeline_(pipeline), pending_(pending) {}
  ~RunWriter() { pipeline_.release(std::move(buf_)); }
  RunWriter(const RunWriter&) = delete;
  RunWriter& operator=(const RunWriter&) = delete;
  [[nodiscard]] std::uint64_t streamed() const { return streamed_; }
  // Frames whose compressed bytes failed their SHA-256, in the order received.
  [[nodiscard]] const std::vector<std::size_t>& damaged() const { return damaged_; }
  // Whether two damaged frames in a row stopped the transfer.
  [[nodiscard]] bool stopped() const { return stopped_; }
  // Whether a frame of the range being received arrived damaged and no intact one came after it.
  [[nodiscard]] bool suspect() const { return suspect_; }

  [[nodiscard]] Status feed(std::size_t run_first, std::span<const std::uint8_t> piece) {
    if (run_first != run_first_) {
      if (filled_ != 0)
        return make_error(Errc::failed,
                          s_.img_.path + ": a range ended inside frame " + std::to_string(cur_));
      run_first_ = cur_ = run_first;
      suspect_ = false;
    }
    while (!piece.empty()) {
      const auto& f = s_.img_.frames[cur_];
      const bool wanted = pending_[cur_] != 0;
      auto n = static_cast<std::size_t>(std::min<std::uint64_t>(piece.size(), f.size - filled_));
      if (!wanted) {
        // A frame inside a coalesced range that is not needed (any more): dropped.
      } else if (pipeline_.buffered(f)) {
        if (!buf_ && !(buf_ = pipeline_.acquire(f.size))) return *pipeline_.error();
        std::memcpy(buf_->data() + filled_, piece.data(), n);
        sha_.update(piece.first(n));
      } else {
        if (!streaming_) {
          ABUP_TRY(streaming_,
                   protocol::FrameStream::open(
                       f, s_.img_.path + " frame " + std::to_string(cur_), s_.window_log_max_,
                       [this, &f](std::uint64_t off, std::span<const std::uint8_t> out) {
                         return s_.target_.write_at(f.uncompressed_offset + off, out);
                       }));
        }
        ABUP_CHECK(streaming_->feed(piece.first(n)));
      }
      filled_ += n;
      piece = piece.subspan(n);
      if (filled_ < f.size) continue;
      if (wanted && buf_) {
        Sha256 d;
        sha_.finish(d);
        if (d != f.sha256) {
          pipeline_.release(std::move(buf_));
          damaged_.push_back(cur_);
          if (suspect_) {
            stopped_ = true;
            return make_error(Errc::untrusted, s_.img_.path + " frames " +
                                                   std::to_string(damaged_.end()[-2]) + " and " +
                                                   std::to_string(cur_) +
                                                   ": damaged on the way (bytes shifted)");
          }
          suspect_ = true;
          ++cur_;
          filled_ = 0;
          continue;
        }
        suspect_ = false;
        pending_[cur_] = 0;
        pipeline_.submit(cur_, std::move(buf_));
      } else if (wanted) {
        ABUP_CHECK(streaming_->finish());
        streaming_.reset();
        pending_[cur_] = 0;
        streamed_ += f.uncompressed_size;
        s_.read_back_->written(cur_);
      }
      if (wanted) s_.progress_.add(f.uncompressed_size, s_.source_.bytes_fetched());
      ++cur_;
      filled_ = 0;
      // A chunk already read back wrong fails the stage: no point downloading the rest.
      if (auto e = s_.read_back_->error()) return *e;
    }
    return {};
  }

 private:
  ImageStager& s_;
  FramePipeline& pipeline_;
  std::vector<char>& pending_;
  std::size_t run_first_ = SIZE_MAX, cur_ = 0;
  std::uint64_t filled_ = 0, streamed_ = 0;
  std::unique_ptr<AlignedBuffer> buf_;
  Sha2 sha_{Sha2::Kind::sha256};
  std::unique_ptr<protocol::FrameStream> streaming_;
  std::vector<std::size_t> damaged_;
  bool suspect_ = false;  // the last frame of this range was damaged
  bool stopped_ = false;
};

Status ImageStager::download(unsigned workers, std::uint64_t memory_limit) {
  if (!read_back_) read_back_ = std::make_unique<ReadBack>(target_, img_, ReadBack::kBuffer);
  // Frames not yet received intact.
  std::vector<char> pending(img_.frames.size(), 0);
  for (std::size_t i = 0; i < pending.size(); ++i) pending[i] = actions_[i] == Action::download;
  // Coalesce: the next frame to download joins a run when the frames in between (zero, reused,
  // already present or received) cost less to fetch and drop than a new range.
  const std::uint64_t max_gap = img_.chunker.empty() ? kMaxGapFixed : kMaxGapCdc;
  std::vector<std::pair<std::size_t, std::size_t>> runs;
  std::vector<protocol::Range> ranges;
  auto plan_runs = [&] {
    runs.clear();
    ranges.clear();
    for (std::size_t i = 0; i < img_.frames.size(); ++i) {
      if (!pending[i]) continue;
      if (!runs.empty()) {
        const auto& end = img_.frames[runs.back().second];
        if (img_.frames[i].offset - (end.offset + end.size) <= max_gap) {
          runs.back().second = i;
          continue;
        }
      }
      runs.emplace_back(i, i);
    }
    for (auto [first, last] : runs) {
      const auto start = img_.frames[first].offset;
      ranges.push_back({base_ + start, img_.frames[last].offset + img_.frames[last].size - start});
    }
  };
  plan_runs();
  if (runs.empty()) return {};
  const std::uint64_t read_back = read_back_->buffer_size();
  FramePipeline pipeline(target_, img_, workers,
                         memory_limit > read_back ? memory_limit - read_back : 0, window_log_max_,
                         read_back_.get());
  std::uint64_t streamed = 0;
  const std::uint64_t requests_before = source_.range_requests();
  std::map<std::size_t, int> downloads_of_bad;  // frame -> downloads that failed their SHA-256
  int damaged_frames = 0;
  // Each pass asks for every frame still pending: the first one for all, later ones for frames
  // that arrived damaged (after a stopped transfer, also for everything after them). Bounded:
  // each pass after the first follows a damaged frame, of which an image gets a fixed number.
  for (; !runs.empty(); plan_runs()) {
    RunWriter writer(*this, pipeline, pending);
    auto requests =
        source_.read_ranges(ranges, [&](std::size_t run, std::span<const std::uint8_t> p) {
          return writer.feed(runs[run].first, p);
        });
    streamed += writer.streamed();
    for (auto bad : writer.damaged()) {
      const auto& f = img_.frames[bad];
      const int tries = ++downloads_of_bad[bad];
      if (tries < kMaxDownloadsOfFrame && ++damaged_frames <= kMaxCorruptFrames) continue;
      return make_error(
          Errc::untrusted,
          img_.path + " frame " + std::to_string(bad) +
              ": compressed frame SHA-256 does not match the signed manifest " +
              (tries >= kMaxDownloadsOfFrame
                   ? "after " + std::to_string(tries) + " downloads"
                   : "(" + std::to_string(damaged_frames) + " damaged frames in this image, " +
                         std::to_string(kMaxCorruptFrames) + " are fetched again at most)") +
              " (its " + std::to_string(f.size) + " bytes at offset " +
              std::to_string(base_ + f.offset) + " of " + source_.describe() +
              ", uncompressed offset " + std::to_string(f.uncompressed_offset) +
              "): a corrupt image, or a server or network that damages data");
    }
    if (requests) continue;
    if (auto e = pipeline.error()) return *e;
    // Stopped by two damaged frames in a row, or failed right after a damaged frame: a byte
    // duplicated or lost inside a multipart part also breaks the part's end, so its framing
    // error is that damage too. Asked again from the damaged frame (bounded above).
    if (!writer.stopped() && !writer.suspect()) return std::move(requests).error();
  }
  sum_.requests += source_.range_requests() - requests_before;
  ABUP_CHECK(pipeline.drain());
  sum_.written += pipeline.written() + streamed;
  return {};
}

Status ImageStager::sync_and_verify() {
  if (!read_back_) read_back_ = std::make_unique<ReadBack>(target_, img_, ReadBack::kBuffer);
  ABUP_CHECK(target_.sync());
  return read_back_->finish([&](std::uint64_t n) { progress_.add(n, source_.bytes_fetched()); });
}

}  // namespace abup::agent
