#include "agent/image_stager.hpp"

#include <cstring>
#include <map>
#include <unordered_map>

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

class ZeroDigests {
 public:
  bool is_zero(const Frame& f) {
    auto it = cache_.find(f.uncompressed_size);
    if (it == cache_.end()) {
      Sha2 h(Sha2::Kind::sha256);
      std::vector<std::uint8_t> zeros(std::min<std::uint64_t>(f.uncompressed_size, 1 << 20), 0);
      for (std::uint64_t left = f.uncompressed_size; left > 0;) {
        auto n = std::min<std::uint64_t>(left, zeros.size());
        h.update(std::span<const std::uint8_t>(zeros.data(), n));
        left -= n;
      }
      Sha256 d;
      h.finish(d);
      it = cache_.emplace(f.uncompressed_size, d).first;
    }
    return it->second == f.chunk_sha256;
  }

 private:
  std::map<std::uint64_t, Sha256> cache_;
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

Status ImageStager::plan(bool resume, const ReuseSource& reuse) {
  const auto n = img_.frames.size();
  actions_.assign(n, Action::download);
  reuse_from_.assign(n, 0);
  ZeroDigests zeros;
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
  std::unordered_map<Xxh128, std::vector<std::size_t>, Xxh128Hash> wanted;
  for (std::size_t i = 0; i < n; ++i)
    if (actions_[i] == Action::download && img_.frames[i].uncompressed_size <= kScratch)
      wanted[img_.frames[i].chunk_xxh3].push_back(i);
  if (wanted.empty()) return {};
  auto is_wanted = [&](const Xxh128& key) { return wanted.count(key) > 0; };
  // Candidates come from the manifest recorded when the booted slot was staged (no read
  // needed) when it was cut as this image is, else from cutting the booted slot the same way.
  // Either way a candidate is used only after its SHA-256 matches the signed manifest, when it
  // is copied.
  const std::uint64_t slot_size = reuse.reader->size();
  const std::uint64_t limit = std::min(slot_size, img_.uncompressed_size);
  std::optional<SlotChunks> have;
  if (reuse.recorded) have = recorded_chunks(*reuse.recorded, img_, slot_size, is_wanted);
  if (!have && !img_.chunker.empty()) {
    ABUP_TRY(have, index_slot(*reuse.reader, limit, img_, is_wanted));
  } else if (!have && img_.frames.front().uncompressed_size <= kScratch) {
    ABUP_TRY(have, index_slot_fixed(*reuse.reader, limit, img_.frames.front().uncompressed_size,
                                    is_wanted));
  }
  if (!have) return {};
  for (auto& [key, where] : *have)
    for (auto i : wanted[key])
      if (img_.frames[i].uncompressed_size == where.size) {
        actions_[i] = Action::reuse;
        reuse_from_[i] = where.offset;
      }
  // Crash and race tests stop here: what was found may change before it is copied.
  fault_point("reuse-planned");
  return {};
}

Status ImageStager::write_local(const ReuseSource& reuse) {
  AlignedBuffer scratch(kScratch);
  for (std::size_t i = 0; i < img_.frames.size(); ++i) {
    const auto& f = img_.frames[i];
    switch (actions_[i]) {
      case Action::zero:
        ABUP_CHECK(target_.zero_range(f.uncompressed_offset, f.uncompressed_size));
        sum_.zeroed += f.uncompressed_size;
        break;
      case Action::reuse: {
        auto span = scratch.span(f.uncompressed_size);
        ABUP_CHECK(reuse.reader->read_at(reuse_from_[i], span));
        if (sha256(span) != f.chunk_sha256) {
          actions_[i] = Action::download;  // changed under us, or an XXH3 collision: fetch it
          continue;
        }
        ABUP_CHECK(target_.write_at(f.uncompressed_offset, span));
        sum_.reused += f.uncompressed_size;
        break;
      }
      case Action::skip:
        sum_.skipped += f.uncompressed_size;
        break;
      case Action::download:
        continue;
    }
    progress_.add(f.uncompressed_size, source_.bytes_fetched());
  }
  return {};
}

Status ImageStager::download(unsigned workers, std::uint64_t memory_limit) {
  FramePipeline pipeline(target_, img_, workers, memory_limit, window_log_max_);
  std::uint64_t streamed = 0;
  const std::uint64_t max_gap = img_.chunker.empty() ? kMaxGapFixed : kMaxGapCdc;
  for (std::size_t i = 0; i < img_.frames.size();) {
    if (actions_[i] != Action::download) {
      ++i;
      continue;
    }
    // Coalesce: the next frame to download joins this request when the frames in between
    // (zero, reused, already present) cost less to fetch and drop than a new request.
    std::size_t j = i;
    for (std::size_t k = i + 1; k < img_.frames.size(); ++k) {
      if (actions_[k] != Action::download) continue;
      if (img_.frames[k].offset - (img_.frames[j].offset + img_.frames[j].size) > max_gap) break;
      j = k;
    }
    ++sum_.requests;
    Status st = stream_request(i, j, pipeline, streamed);
    if (st) st = pipeline.drain();
    if (!st) {
      auto worker_error = pipeline.error();
      return worker_error ? *worker_error : std::move(st).error();
    }
    i = j + 1;
  }
  ABUP_CHECK(pipeline.drain());
  sum_.written += pipeline.written() + streamed;
  return {};
}

Status ImageStager::stream_request(std::size_t first, std::size_t last, FramePipeline& pipeline,
                                   std::uint64_t& streamed) {
  const std::uint64_t from = img_.frames[first].offset;
  const std::uint64_t len = img_.frames[last].offset + img_.frames[last].size - from;
  std::size_t cur = first;
  std::uint64_t filled = 0;
  AlignedBuffer* buf = nullptr;
  std::unique_ptr<protocol::FrameStream> streaming;
  auto sink = [&](std::span<const std::uint8_t> piece) -> Status {
    while (!piece.empty()) {
      const auto& f = img_.frames[cur];
      const bool wanted = actions_[cur] == Action::download;
      auto n = static_cast<std::size_t>(std::min<std::uint64_t>(piece.size(), f.size - filled));
      if (!wanted) {
        // A gap frame inside a coalesced request: its bytes are dropped.
      } else if (pipeline.buffered(f)) {
        if (!buf && !(buf = pipeline.acquire())) return *pipeline.error();
        std::memcpy(buf->data() + filled, piece.data(), n);
      } else {
        if (!streaming)
          streaming = std::make_unique<protocol::FrameStream>(
              f, img_.path + " frame " + std::to_string(cur), window_log_max_,
              [this, &f](std::uint64_t off, std::span<const std::uint8_t> out) {
                return target_.write_at(f.uncompressed_offset + off, out);
              });
        ABUP_CHECK(streaming->feed(piece.first(n)));
      }
      filled += n;
      piece = piece.subspan(n);
      if (filled < f.size) continue;
      if (wanted && buf) {
        pipeline.submit(cur, buf);
        buf = nullptr;
      } else if (wanted) {
        ABUP_CHECK(streaming->finish());
        streaming.reset();
        streamed += f.uncompressed_size;
      }
      if (wanted) progress_.add(f.uncompressed_size, source_.bytes_fetched());
      ++cur;
      filled = 0;
    }
    return {};
  };
  return source_.read_range(base_ + from, len, sink);
}

Status ImageStager::sync_and_verify(unsigned workers) {
  ABUP_CHECK(target_.sync());
  return read_back_verify(target_, img_, workers,
                          [&](std::uint64_t n) { progress_.add(n, source_.bytes_fetched()); });
}

}  // namespace abup::agent
