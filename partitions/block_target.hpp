// The only way abup writes a slot. Opening one enforces docs/architecture.md §3 invariant 1: the
// target must be a slot of the pair, not the booted one, not mounted, and large enough; block
// devices are opened O_EXCL. All offsets are relative to the start of the target partition.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "abup/fs.hpp"
#include "abup/result.hpp"
#include "partitions/slots.hpp"

namespace abup::partitions {

class BlockTarget {
 public:
  // `booted` is the booted slot (nullopt when unknown: then only an explicit `target` is
  // accepted). `needed` is the image size in bytes. `root` is where /proc/self/mountinfo lives.
  [[nodiscard]] static Result<BlockTarget> open(const SlotPair& pair, char target,
                                                std::optional<char> booted, std::uint64_t needed,
                                                const std::filesystem::path& root);
  // The same rules for the target slot's verity hash partition (hash-a/hash-b); an error when the
  // slot has none.
  [[nodiscard]] static Result<BlockTarget> open_hash(const SlotPair& pair, char target,
                                                     std::optional<char> booted,
                                                     std::uint64_t needed,
                                                     const std::filesystem::path& root);

  [[nodiscard]] const Slot& slot() const { return slot_; }
  // The partition this target writes: slot().entry, or *slot().hash for open_hash().
  [[nodiscard]] const GptEntry& partition() const { return part_; }
  [[nodiscard]] std::uint64_t size() const { return size_; }
  // The opened device node (block devices) or disk-image file.
  [[nodiscard]] const std::string& path() const { return path_; }
  [[nodiscard]] Status write_at(std::uint64_t offset, std::span<const std::uint8_t> data);
  // Makes [offset, offset+length) read as zeros (FALLOC_FL_ZERO_RANGE / BLKZEROOUT, else writes).
  [[nodiscard]] Status zero_range(std::uint64_t offset, std::uint64_t length);
  [[nodiscard]] Status sync();
  // Starts writeback of a written range now (sync_file_range), so the final sync() does not
  // meet the whole image still dirty in the page cache. Advisory: failures are ignored.
  void start_writeback(std::uint64_t offset, std::uint64_t length);
  // Writes back the range's dirty pages and waits for them (sync_file_range WAIT_BEFORE | WRITE |
  // WAIT_AFTER): what a read_direct() of the range then reads is what the device holds. Unlike
  // sync(), it neither flushes the device's write cache nor waits for the rest of the target.
  [[nodiscard]] Status wait_written(std::uint64_t offset, std::uint64_t length);
  // Reads from the device, bypassing the page cache (O_DIRECT; where a filesystem refuses it,
  // fdatasync + POSIX_FADV_DONTNEED before the read). buf must be 4096-aligned, offset and size
  // multiples of 4096 except at the end of the target.
  [[nodiscard]] Status read_direct(std::uint64_t offset, std::span<std::uint8_t> buf);
  // Makes read_direct use the fdatasync + POSIX_FADV_DONTNEED path, as on a filesystem that
  // refuses O_DIRECT (tests exercise it this way; no production caller needs it).
  void use_fadvise_read_back() { direct_fd_.reset(); }
  // Ordinary (cached) read, for planning.
  [[nodiscard]] Status read_at(std::uint64_t offset, std::span<std::uint8_t> buf);

  // read_direct()s kept in flight while the caller checks earlier ones (Linux AIO). A direct read
  // through a file's O_DIRECT fd holds the file's inode lock until it completes, which stalls
  // every write to the same file meanwhile; submitted asynchronously it holds it only while being
  // submitted. Where AIO is unavailable or a read fails, wait() does it as read_direct() (which
  // reports the error). Not thread-safe; buffers must stay valid until waited for.
  class AsyncReads {
   public:
    AsyncReads(BlockTarget& target, unsigned depth);
    ~AsyncReads();
    AsyncReads(const AsyncReads&) = delete;
    AsyncReads& operator=(const AsyncReads&) = delete;
    // Starts a read_direct(offset, buf); at most `depth` may be started and not yet waited for.
    void start(std::uint64_t offset, std::span<std::uint8_t> buf);
    // Waits for the oldest read started and not yet waited for.
    [[nodiscard]] Status wait();

   private:
    struct Read;
    void reap(Read& r);
    BlockTarget& target_;
    unsigned long ctx_ = 0;  // aio_context_t; 0: none
    std::vector<Read> reads_;
    std::size_t first_ = 0, count_ = 0;
    std::uint64_t next_id_ = 0;
  };

 private:
  [[nodiscard]] static Result<BlockTarget> open_part(const SlotPair& pair, char target, bool hash,
                                                     std::optional<char> booted,
                                                     std::uint64_t needed,
                                                     const std::filesystem::path& root);
  [[nodiscard]] Status check_range(std::uint64_t offset, std::uint64_t length,
                                   const char* op) const;
  [[nodiscard]] Status read_cached(std::uint64_t offset, std::span<std::uint8_t> buf);

  Slot slot_;
  GptEntry part_;
  std::string what_, path_;
  std::uint64_t base_ = 0;  // partition offset within the opened file
  std::uint64_t size_ = 0;  // partition size
  bool block_device_ = false;
  std::shared_ptr<Fd> fd_, direct_fd_;  // direct_fd_ null where O_DIRECT is refused
};

// Exclusive advisory lock (flock) on the whole disk: the disk-image file or the whole-disk block
// device node, never a partition (the target partition itself is opened O_EXCL). Two abup
// processes with different state directories then cannot write the same slots, and udev leaves
// a locked disk alone while it is written (systemd's "Locking Block Device Access"). Fails at
// once when held, naming the holder's pid and command from /proc/locks when it can.
[[nodiscard]] Result<Fd> lock_disk(const std::string& disk);

// Read-only access to a slot (the booted one, for reusing identical chunks).
class SlotReader {
 public:
  [[nodiscard]] static Result<SlotReader> open(const SlotPair& pair, char slot);
  [[nodiscard]] const Slot& slot() const { return slot_; }
  [[nodiscard]] std::uint64_t size() const { return slot_.size; }
  [[nodiscard]] Status read_at(std::uint64_t offset, std::span<std::uint8_t> buf) const;

 private:
  Slot slot_;
  std::string what_;
  std::uint64_t base_ = 0;
  std::shared_ptr<Fd> fd_;
};

}  // namespace abup::partitions
