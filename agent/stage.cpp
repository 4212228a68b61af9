#include "agent/stage.hpp"

#include <zstd.h>

#include <chrono>
#include <cstring>
#include <ctime>
#include <map>
#include <thread>
#include <unordered_map>

#include "abup/digest.hpp"
#include "abup/hex.hpp"
#include "agent/frame_pipeline.hpp"
#include "agent/host.hpp"
#include "agent/state.hpp"
#include "partitions/block_target.hpp"
#include "partitions/slots.hpp"
#include "update-protocol/image.hpp"

namespace abup::agent {
namespace {

using protocol::Frame;
using protocol::ManifestImage;

enum class Action { download, skip, reuse, zero };

// Compressed bytes of unneeded frames a range request may carry to avoid a new request.
constexpr std::uint64_t kMaxGap = 1 << 20;
// Scanning the booted slot stops after this many bytes without a single reusable chunk.
constexpr std::uint64_t kScanGiveUp = 64 << 20;

struct Plan {
  std::vector<Action> actions;
  std::vector<std::uint64_t> reuse_from;  // booted-slot offset per reused frame
};

std::string chunk_key(const Xxh128& d) {
  return std::string(d.begin(), d.end());
}

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

// Streams one frame too large to buffer: verified as a whole at its end (its bytes land on the
// inactive target before that, which is fine: nothing is armed before the read-back).
class StreamingFrame {
 public:
  StreamingFrame(partitions::BlockTarget& t, const Frame& f, std::string what)
      : target_(t), frame_(f), what_(std::move(what)), out_(1 << 20) {
    ZSTD_DCtx_setParameter(dctx_, ZSTD_d_windowLogMax, 31);
  }
  ~StreamingFrame() { ZSTD_freeDCtx(dctx_); }
  Status feed(std::span<const std::uint8_t> piece) {
    sha_.update(piece);
    ZSTD_inBuffer in{piece.data(), piece.size(), 0};
    while (in.pos < in.size) {
      if (done_) return make_error(Errc::invalid_input, what_ + ": trailing bytes after the frame");
      ZSTD_outBuffer o{out_.data(), out_.size(), 0};
      auto r = ZSTD_decompressStream(dctx_, &o, &in);
      if (ZSTD_isError(r))
        return make_error(Errc::invalid_input, what_ + ": zstd: " + ZSTD_getErrorName(r));
      if (produced_ + o.pos > frame_.uncompressed_size)
        return make_error(Errc::invalid_input,
                          what_ + ": frame decompresses past its declared size");
      ABUP_CHECK(target_.write_at(frame_.uncompressed_offset + produced_, {out_.data(), o.pos}));
      xxh_.update({out_.data(), o.pos});
      produced_ += o.pos;
      if (r == 0) done_ = true;
    }
    return {};
  }
  Status finish() {
    Sha256 d;
    sha_.finish(d);
    if (d != frame_.sha256)
      return make_error(Errc::untrusted,
                        what_ + ": compressed frame SHA-256 does not match the signed manifest");
    if (!done_ || produced_ != frame_.uncompressed_size)
      return make_error(Errc::invalid_input, what_ + ": frame decodes to " +
                                                 std::to_string(produced_) +
                                                 " bytes, the manifest says " +
                                                 std::to_string(frame_.uncompressed_size));
    if (xxh_.finish() != frame_.chunk_xxh3)
      return make_error(Errc::untrusted,
                        what_ + ": decoded chunk digest does not match the signed manifest");
    return {};
  }

 private:
  partitions::BlockTarget& target_;
  const Frame& frame_;
  std::string what_;
  ZSTD_DCtx* dctx_ = ZSTD_createDCtx();
  Sha2 sha_{Sha2::Kind::sha256};
  Xxh128Stream xxh_;
  std::vector<std::uint8_t> out_;
  std::uint64_t produced_ = 0;
  bool done_ = false;
};

class Progress {
 public:
  explicit Progress(const StageOptions& o) : fn_(o.on_progress) {}
  void phase(const char* name, std::uint64_t total) {
    p_.phase = name;
    p_.total = total;
    p_.done = 0;
    emit(true);
  }
  void add(std::uint64_t n, std::uint64_t downloaded) {
    p_.done += n;
    p_.downloaded = downloaded;
    emit(false);
  }
  void emit(bool force) {
    if (!fn_) return;
    auto now = std::chrono::steady_clock::now();
    if (!force && now - last_ < std::chrono::milliseconds(100) && p_.done < p_.total) return;
    last_ = now;
    fn_(p_);
  }

 private:
  std::function<void(const StageProgress&)> fn_;
  StageProgress p_;
  std::chrono::steady_clock::time_point last_{};
};

}  // namespace

Result<StageSummary> stage(const StageOptions& o) {
  const auto started = std::chrono::steady_clock::now();
  StageSummary sum;
  Progress progress(o);
  const unsigned workers =
      o.workers ? o.workers : std::max(1u, std::thread::hardware_concurrency());

  ABUP_TRY(auto pair, partitions::discover_slots(o.disk));
  ABUP_TRY(auto booted, partitions::booted_slot(pair, o.root));
  ABUP_TRY(auto host, read_host_facts(o.root));
  char target_name;
  if (o.slot) {
    target_name = *o.slot;
  } else if (booted) {
    target_name = *booted == 'A' ? 'B' : 'A';
  } else {
    return make_error(Errc::refused,
                      "cannot tell which slot is booted: " + (o.root / "proc/cmdline").string() +
                          " names neither usr partition (pass --slot A|B to choose the target)");
  }

  StateStore store(o.state_dir);
  ABUP_TRY(Fd lock, store.lock());
  ABUP_TRY(auto state, store.load());
  ABUP_TRY(auto keyring, protocol::Keyring::load(o.keyrings));
  if (keyring.size() == 0)
    return make_error(Errc::untrusted, "no trusted keys: " + keyring.describe() +
                                           " (add PEM public keys, or pass --keyring DIR)");
  ABUP_TRY(auto source, protocol::open_source(o.source, o.transport));

  progress.phase("verify", 0);
  protocol::VerifyOptions vo;
  vo.keyring = &keyring;
  vo.threshold = o.threshold;
  vo.policy.running = host.version;
  vo.policy.arch = host.arch;
  vo.policy.variant = host.variant;
  vo.policy.now = static_cast<std::int64_t>(std::time(nullptr));
  vo.policy.allow_downgrade = o.allow_downgrade;
  ABUP_TRY(auto image, protocol::open_verified_image(*source, vo));
  const ManifestImage* img = image.manifest.find_mount("/usr");
  if (!img)
    return make_error(Errc::invalid_input,
                      source->describe() + ": the image has no /usr partition image");
  const std::uint64_t base = image.data_offset(*img);

  ABUP_TRY(auto target, partitions::BlockTarget::open(pair, target_name, booted,
                                                      img->uncompressed_size, o.root));
  const auto& slot = target.slot();
  const std::string uuid = slot.partuuid();
  const std::string digest = to_hex(image.manifest_digest);
  sum.version = image.manifest.version;
  sum.slot_label = slot.label();
  sum.partuuid = uuid;
  sum.image_bytes = img->uncompressed_size;
  sum.frames = img->frames.size();

  // Record the attempt before the first write: a crash leaves "staging", never a stale "staged".
  const SlotRecord* prev = state.slot(uuid);
  const bool resume = prev && prev->manifest_sha256 == digest;
  sum.resumed = resume && prev->state != SlotState::unknown;
  state.slots[uuid] =
      SlotRecord{SlotState::staging, image.manifest.version, digest, o.source, now_utc(), ""};
  ABUP_CHECK(store.save(state));
  auto record_failure = [&](Error e) -> Error {
    auto& r = state.slots[uuid];
    r.state = SlotState::failed;
    r.error = e.message;
    r.updated_at = now_utc();
    (void)store.save(state);  // best effort: the error being returned matters more
    return e;
  };

  // Plan every chunk.
  Plan plan;
  plan.actions.assign(img->frames.size(), Action::download);
  plan.reuse_from.assign(img->frames.size(), 0);
  ZeroDigests zeros;
  auto scratch_owner = std::make_unique<AlignedBuffer>(4 << 20);  // freed before downloads
  AlignedBuffer& scratch = *scratch_owner;
  progress.phase("plan", resume ? img->uncompressed_size : 0);
  for (std::size_t i = 0; i < img->frames.size(); ++i) {
    const auto& f = img->frames[i];
    if (zeros.is_zero(f)) {
      plan.actions[i] = Action::zero;
      continue;
    }
    if (resume) {
      // Invariant 6: what an earlier run wrote is re-hashed on the device, never assumed.
      auto d = hash_local(
          [&](std::uint64_t off, std::span<std::uint8_t> b) { return target.read_direct(off, b); },
          f.uncompressed_offset, f.uncompressed_size, scratch);
      if (!d) return record_failure(std::move(d).error());
      if (*d == f.chunk_sha256) plan.actions[i] = Action::skip;
      progress.add(f.uncompressed_size, 0);
    }
  }
  std::optional<partitions::SlotReader> booted_reader;
  if (o.reuse && booted) {
    std::unordered_map<std::string, std::vector<std::size_t>> wanted;
    for (std::size_t i = 0; i < img->frames.size(); ++i)
      if (plan.actions[i] == Action::download)
        wanted[chunk_key(img->frames[i].chunk_xxh3)].push_back(i);
    auto reader = partitions::SlotReader::open(pair, *booted);
    if (reader && !wanted.empty()) {
      booted_reader = std::move(*reader);
      // Candidates come from the manifest recorded when the booted slot was staged (no read
      // needed), else from scanning the booted slot chunk by chunk. Either way a candidate is
      // only used after its SHA-256 matches the signed manifest, when it is copied.
      std::unordered_map<std::string, std::pair<std::uint64_t, std::uint64_t>> have;
      if (auto text = store.load_manifest(booted_reader->slot().partuuid())) {
        if (auto m = protocol::parse_manifest(*text); m && m->find_mount("/usr"))
          for (const auto& f : m->find_mount("/usr")->frames) {
            auto key = chunk_key(f.chunk_xxh3);
            if (wanted.count(key) &&
                f.uncompressed_offset + f.uncompressed_size <= booted_reader->slot().size)
              have.emplace(key, std::make_pair(f.uncompressed_offset, f.uncompressed_size));
          }
      } else {
        // A scan reads the booted slot; when its first chunks match nothing, it holds an
        // unrelated image and the rest of the scan would only cost time.
        const std::uint64_t chunk = img->frames.front().uncompressed_size;
        const std::uint64_t limit = std::min(booted_reader->slot().size, img->uncompressed_size);
        std::uint64_t scanned_without_match = 0;
        if (chunk <= scratch.capacity())
          for (std::uint64_t off = 0; off + chunk <= limit; off += chunk) {
            if (!booted_reader->read_at(off, scratch.span(chunk))) break;
            auto key = chunk_key(xxh128(scratch.span(chunk)));
            if (wanted.count(key)) {
              have.emplace(key, std::make_pair(off, chunk));
              scanned_without_match = 0;
            } else if ((scanned_without_match += chunk) >= kScanGiveUp && have.empty()) {
              break;
            }
          }
      }
      for (auto& [key, where] : have)
        for (auto i : wanted[key])
          if (img->frames[i].uncompressed_size == where.second) {
            plan.actions[i] = Action::reuse;
            plan.reuse_from[i] = where.first;
          }
    }
  }

  // Local work first: zeros and chunks copied from the booted slot (verified by SHA-256).
  progress.phase("write", img->uncompressed_size);
  for (std::size_t i = 0; i < img->frames.size(); ++i) {
    const auto& f = img->frames[i];
    Status st;
    if (plan.actions[i] == Action::zero) {
      st = target.zero_range(f.uncompressed_offset, f.uncompressed_size);
      if (st) sum.zeroed += f.uncompressed_size;
    } else if (plan.actions[i] == Action::reuse) {
      auto span = scratch.span(f.uncompressed_size);
      st = booted_reader->read_at(plan.reuse_from[i], span);
      if (st && sha256(span) != f.chunk_sha256) {
        plan.actions[i] = Action::download;  // changed under us or an xxh3 collision: fetch it
        continue;
      }
      if (st) st = target.write_at(f.uncompressed_offset, span);
      if (st) sum.reused += f.uncompressed_size;
    } else if (plan.actions[i] == Action::skip) {
      sum.skipped += f.uncompressed_size;
    } else {
      continue;
    }
    if (!st) return record_failure(std::move(st).error().with_context("stage " + slot.label()));
    progress.add(f.uncompressed_size, source->bytes_fetched());
  }

  // Downloads: runs of frames to fetch, one range request each, decoded on the workers.
  scratch_owner.reset();
  {
    FramePipeline pipeline(target, *img, workers, o.memory_limit);
    std::uint64_t streamed = 0;
    std::size_t i = 0;
    while (i < img->frames.size()) {
      if (plan.actions[i] != Action::download) {
        ++i;
        continue;
      }
      // Coalesce: the next frame to download joins this request when the frames in between
      // (zero, reused, already present) cost less to fetch and discard than a new request.
      std::size_t j = i;
      for (std::size_t k = i + 1; k < img->frames.size(); ++k) {
        if (plan.actions[k] != Action::download) continue;
        if (img->frames[k].offset - (img->frames[j].offset + img->frames[j].size) > kMaxGap) break;
        j = k;
      }
      const std::uint64_t from = img->frames[i].offset;
      const std::uint64_t len = img->frames[j].offset + img->frames[j].size - from;
      std::size_t cur = i;
      std::uint64_t filled = 0;
      AlignedBuffer* buf = nullptr;
      std::unique_ptr<StreamingFrame> streaming;
      auto sink = [&](std::span<const std::uint8_t> piece) -> Status {
        while (!piece.empty()) {
          const auto& f = img->frames[cur];
          const std::string what = img->path + " frame " + std::to_string(cur);
          auto n = static_cast<std::size_t>(std::min<std::uint64_t>(piece.size(), f.size - filled));
          if (plan.actions[cur] != Action::download) {
            // A gap frame inside a coalesced request: its bytes are dropped.
          } else if (pipeline.buffered(f)) {
            if (!buf && !(buf = pipeline.acquire())) return *pipeline.error();
            std::memcpy(buf->data() + filled, piece.data(), n);
          } else {
            if (!streaming) streaming = std::make_unique<StreamingFrame>(target, f, what);
            ABUP_CHECK(streaming->feed(piece.first(n)));
          }
          filled += n;
          piece = piece.subspan(n);
          if (filled == f.size) {
            if (plan.actions[cur] != Action::download) {
              ++cur;
              filled = 0;
              continue;
            }
            if (buf) {
              pipeline.submit(cur, buf);
              buf = nullptr;
            } else {
              ABUP_CHECK(streaming->finish());
              streaming.reset();
              streamed += f.uncompressed_size;
            }
            progress.add(f.uncompressed_size, source->bytes_fetched());
            ++cur;
            filled = 0;
          }
        }
        return {};
      };
      ++sum.requests;
      Status st = source->read_range(base + from, len, sink);
      if (st) st = pipeline.drain();
      if (!st) {
        auto worker_error = pipeline.error();
        return record_failure(worker_error ? *worker_error : std::move(st).error());
      }
      i = j + 1;
    }
    ABUP_CHECK(pipeline.drain());
    sum.written = pipeline.written() + streamed;
  }
  // Invariant 3: fsync, then prove every byte from the device itself.
  if (auto st = target.sync(); !st) return record_failure(std::move(st).error());
  progress.phase("read-back", img->uncompressed_size);
  auto rb = read_back_verify(target, *img, workers,
                             [&](std::uint64_t n) { progress.add(n, source->bytes_fetched()); });
  if (!rb) return record_failure(std::move(rb).error());

  if (auto st = store.save_manifest(uuid, image.manifest_json); !st)
    return record_failure(std::move(st).error());
  auto& rec = state.slots[uuid];
  rec.state = SlotState::staged;
  rec.updated_at = now_utc();
  ABUP_CHECK(store.save(state));

  sum.downloaded = source->bytes_fetched();
  sum.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return sum;
}

}  // namespace abup::agent
