#include "agent/boot_files.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <sstream>

#include "abup/bytes.hpp"
#include "abup/digest.hpp"
#include "abup/fault.hpp"
#include "abup/fs.hpp"
#include "abup/hex.hpp"
#include "partitions/boot/kernel_hash.hpp"
#include "partitions/gpt.hpp"

namespace abup::agent {
namespace {

namespace fs = std::filesystem;
namespace boot = partitions::boot;

constexpr std::string_view kEspType = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";

char lower(char slot) {
  return slot == 'A' ? 'a' : slot == 'B' ? 'b' : slot;
}

fs::path under(const fs::path& root, const fs::path& p) {
  return p.is_absolute() ? root / p.relative_path() : root / p;
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() + 1) {
      out += static_cast<char>(std::strtol(s.substr(i + 1, 3).c_str(), nullptr, 8));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

Status check_writable(const fs::path& esp, bool ro_mount) {
  struct statvfs sv {};
  if (ro_mount || (::statvfs(esp.c_str(), &sv) == 0 && (sv.f_flag & ST_RDONLY)))
    return make_error(Errc::refused, "ESP at " + esp.string() +
                                         " is mounted read-only; remount it read-write "
                                         "(mount -o remount,rw " +
                                         esp.string() + ")");
  std::error_code ec;
  if (!fs::is_directory(esp, ec))
    return make_error(Errc::not_found, "ESP at " + esp.string() + " is not a directory");
  return {};
}

std::uint64_t free_bytes(const fs::path& esp, const BootFilesConfig& c) {
  if (c.free_bytes) return c.free_bytes(esp);
#ifdef ABUP_FAULT_INJECTION
  // Test builds only: a full ESP without mounting a full filesystem (which needs root).
  if (const char* v = std::getenv("ABUP_FAULT_ESP_FREE_BYTES"))
    return std::strtoull(v, nullptr, 10);
#endif
  struct statvfs sv {};
  if (::statvfs(esp.c_str(), &sv) != 0) return 0;
  return static_cast<std::uint64_t>(sv.f_bavail) * sv.f_frsize;
}

constexpr std::size_t kPiece = 1 << 20;  // boot files move in pieces: memory is not their size

struct Digest {
  std::uint64_t size = 0;
  Sha256 sha256{};
};

// Hashes `path` bypassing the page cache: O_DIRECT where the filesystem allows it, else
// fsync + POSIX_FADV_DONTNEED so the read comes from the device.
Result<Digest> digest_uncached(const fs::path& path) {
  void* buf = nullptr;
  if (::posix_memalign(&buf, 4096, kPiece) != 0)
    return make_error(Errc::io, "read back " + path.string() + ": out of memory");
  std::unique_ptr<void, decltype(&std::free)> hold(buf, &std::free);
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
  if (fd >= 0) {
    Fd f(fd);
    Sha2 sha(Sha2::Kind::sha256);
    Digest d;
    for (;;) {
      ssize_t n = ::read(f.get(), buf, kPiece);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) break;  // EINVAL: O_DIRECT refused at read time; fall back below
      if (n == 0) {
        sha.finish(d.sha256);
        return d;
      }
      sha.update(std::span<const std::uint8_t>(static_cast<std::uint8_t*>(buf),
                                               static_cast<std::size_t>(n)));
      d.size += static_cast<std::uint64_t>(n);
    }
  }
  ABUP_TRY(Fd f, open_file(path, O_RDONLY));
  (void)::fdatasync(f.get());
  (void)::posix_fadvise(f.get(), 0, 0, POSIX_FADV_DONTNEED);
  Sha2 sha(Sha2::Kind::sha256);
  Digest d;
  for (;;) {
    ssize_t n = ::read(f.get(), buf, kPiece);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return make_error(Errc::io, "read " + path.string() + ": " + errno_text(errno));
    if (n == 0) break;
    sha.update(std::span<const std::uint8_t>(static_cast<std::uint8_t*>(buf),
                                             static_cast<std::size_t>(n)));
    d.size += static_cast<std::uint64_t>(n);
  }
  sha.finish(d.sha256);
  return d;
}

// A boot file decompressed into the scratch dir and checked against the signed manifest. The file
// has no name (O_TMPFILE, else unlinked at once), so every way out of a stage, kill -9 included,
// gives its space back.
struct Staged {
  Fd fd;
  std::uint64_t size = 0;
};

Result<Fd> open_scratch(const BootFilesConfig& c) {
  std::error_code ec;
  fs::path dir = c.scratch.empty() ? fs::temp_directory_path(ec) : c.scratch;
  if (ec) dir = "/tmp";
  fs::create_directories(dir, ec);
  int fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd >= 0) return Fd(fd);
  if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL && errno != ENOENT)
    return make_error(Errc::io,
                      "create a temporary boot file in " + dir.string() + ": " + errno_text(errno));
  std::string name = (dir / "boot-file.abup-tmp.XXXXXX").string();
  fd = ::mkostemp(name.data(), O_CLOEXEC);
  if (fd < 0)
    return make_error(Errc::io,
                      "create a temporary boot file in " + dir.string() + ": " + errno_text(errno));
  ::unlink(name.c_str());
  return Fd(fd);
}

// The root-hash binding needs the PE headers, the .cmdline section and a few bytes at a fixed
// offset: the verified file is mapped read-only, and only the pages the parser touches are read
// (they count as file-backed RSS, a few pages rather than the file).
Status check_binding(const protocol::Manifest& m, const protocol::CosiMetadata& md,
                     const std::string& name, const Staged& f) {
  if (f.size == 0) return check_root_hash_binding(m, md, name, {});
  void* p = ::mmap(nullptr, f.size, PROT_READ, MAP_PRIVATE, f.fd.get(), 0);
  if (p == MAP_FAILED)
    return make_error(Errc::io,
                      "boot file '" + name + "': map its verified copy: " + errno_text(errno));
  auto st = check_root_hash_binding(
      m, md, name, std::span<const std::uint8_t>(static_cast<const std::uint8_t*>(p), f.size));
  ::munmap(p, f.size);
  return st;
}

Result<Staged> fetch_boot_file(const BootFilesConfig& c, protocol::Source& source,
                               const protocol::VerifiedImage& image, const protocol::BootFile& b) {
  ABUP_TRY(Fd fd, open_scratch(c));
  Staged f{std::move(fd), 0};
  const auto what = "temporary copy of boot file '" + b.name + "'";
  ABUP_CHECK(protocol::stream_boot_file(source, image, b,
                                        [&](std::span<const std::uint8_t> piece) -> Status {
                                          ABUP_CHECK(write_all(f.fd.get(), piece, what));
                                          f.size += piece.size();
                                          return Status{};
                                        }));
  ABUP_CHECK(check_binding(image.manifest, image.archive.metadata, b.name, f));
  return f;
}

std::string usr_roothash(const protocol::CosiMetadata& md) {
  for (const auto& i : md.images)
    if (i.mount_point == "/usr" && i.verity) return i.verity->roothash;
  return {};
}

Error no_boot_files(const BootFilesConfig& c, const std::string& version) {
  const bool by_default = !c.require.has_value();
  return make_error(Errc::refused,
                    "image " + version + " carries no boot files, but the " +
                        std::string(to_string(c.backend)) +
                        " backend boots the slot's kernel from the ESP" +
                        (by_default ? " ([Boot] RequireBootFiles=auto)" : "") +
                        ": the new /usr would boot on the old kernel. Stage an image built with "
                        "its kernel (abup-image build --boot-file NAME=FILE, or sign a COSI whose "
                        "ESP image carries the UKI), or set [Boot] RequireBootFiles=no to keep "
                        "the old kernel");
}

boot::BackendContext placement_context(const BootFilesConfig& c) {
  boot::BackendContext ctx;
  ctx.uefi_loader = c.uefi_loader;
  ctx.loader_entry = c.loader_entry;
  return ctx;
}

Status remove_old_uki(const fs::path& esp, const std::string& uki) {
  std::error_code ec;
  // A fresh ESP has no EFI/Linux/ yet: nothing to free (the writer creates the directory).
  if (!fs::is_directory((esp / uki).parent_path(), ec)) return {};
  fs::remove_all(esp / (uki + ".extra.d"), ec);
  if (::unlink((esp / uki).c_str()) != 0 && errno != ENOENT)
    return make_error(Errc::io, "remove the inactive slot's old UKI " + (esp / uki).string() +
                                    ": " + errno_text(errno));
  return fsync_dir((esp / uki).parent_path());
}

// A boot file's temporary name is fixed (not per process): a stage cut short by a power cut
// leaves at most one copy per file, which the next stage reclaims and overwrites instead of
// leaving another on a small ESP.
fs::path temp_name(const fs::path& path) {
  auto tmp = path;
  tmp += ".abup-new";
  return tmp;
}

// Write to the temporary name, fsync, rename over the file, fsync it and the directory. A power
// cut on the way leaves the (inactive slot's) file old, absent or, on vfat before the second
// fsync, empty: the slot is recorded staged only once every file is durable and read back.
Status write_boot_file(const fs::path& path, const Staged& from) {
  const auto tmp = temp_name(path);
  {
    ABUP_TRY(Fd fd, open_file(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644));
    std::vector<std::uint8_t> buf(std::min<std::uint64_t>(kPiece, from.size));
    Status st;
    for (std::uint64_t at = 0; st && at < from.size;) {
      std::span<std::uint8_t> piece(buf.data(), static_cast<std::size_t>(std::min<std::uint64_t>(
                                                    buf.size(), from.size - at)));
      st = pread_full(from.fd.get(), piece, at, "temporary copy");
      if (st) st = write_all(fd.get(), piece, tmp.string());
      at += piece.size();
    }
    if (st && ::fsync(fd.get()) != 0)
      st = make_error(Errc::io, "fsync " + tmp.string() + ": " + errno_text(errno));
    if (!st) {
      ::unlink(tmp.c_str());  // give the ESP's space back; the old file is untouched
      return st;
    }
  }
  fault_point("boot-file-synced");  // crash tests: the new bytes are durable, not yet renamed
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    return make_error(Errc::io,
                      "rename " + tmp.string() + " to " + path.string() + ": " + errno_text(errno));
  // vfat keeps a file's size and first cluster in its directory entry; rename gives the file a
  // new entry that the directory's fsync writes empty and only the file's own fsync fills in
  // (the e2e power cut found the new name holding 0 bytes after rename + fsync of the directory).
  ABUP_TRY(Fd renamed, open_file(path, O_RDONLY));
  if (::fsync(renamed.get()) != 0)
    return make_error(Errc::io, "fsync " + path.string() + ": " + errno_text(errno));
  return fsync_dir(path.parent_path());
}

}  // namespace

std::string_view to_string(BootFileCheck c) {
  switch (c) {
    case BootFileCheck::ok:
      return "ok";
    case BootFileCheck::missing:
      return "missing";
    case BootFileCheck::mismatch:
      return "mismatch";
  }
  return "?";
}

BootFilesConfig boot_files_config(const Config& config, BootBackend backend) {
  BootFilesConfig c;
  c.backend = backend;
  c.esp = config.esp;
  c.require = config.require_boot_files;
  c.placement.paths = config.boot_file_paths;
  c.uefi_loader = config.uefi_loader;
  c.loader_entry = config.loader_entry;
  return c;
}

Result<fs::path> find_esp(const fs::path& root, const std::string& disk, const BootFilesConfig& c) {
  if (!c.esp.empty()) {
    auto esp = under(root, c.esp);
    ABUP_CHECK(check_writable(esp, false));
    return esp;
  }
  ABUP_TRY(auto gpt, partitions::read_gpt_path(disk));
  std::string uuid;
  for (const auto& e : gpt.entries)
    if (e.type.str() == kEspType) uuid = e.unique.str();
  if (uuid.empty())
    return make_error(Errc::not_found, "no EFI system partition (type " + std::string(kEspType) +
                                           ") on " + disk + "; set [Boot] ESP= to its mount point");
  std::vector<std::string> sources{"/dev/disk/by-partuuid/" + uuid, "PARTUUID=" + uuid};
  std::error_code ec;
  auto link = root / "dev/disk/by-partuuid" / uuid;
  if (auto real = fs::canonical(link, ec); !ec) {
    auto rel = real.lexically_relative(fs::canonical(root, ec));
    sources.push_back("/" + rel.string());
  }
  const auto info_path = root / "proc/self/mountinfo";
  ABUP_TRY(auto info, read_file(info_path));
  std::istringstream lines(info);
  for (std::string line; std::getline(lines, line);) {
    // id parent maj:min root mountpoint options [optional...] - fstype source superoptions
    std::istringstream w(line);
    std::vector<std::string> f;
    for (std::string x; w >> x;) f.push_back(x);
    std::size_t dash = 0;
    while (dash < f.size() && f[dash] != "-") ++dash;
    if (f.size() < 6 || dash + 2 >= f.size()) continue;
    const std::string source = unescape(f[dash + 2]);
    if (std::find(sources.begin(), sources.end(), source) == sources.end()) continue;
    bool ro = false;
    std::istringstream opts(f[5]);
    for (std::string o; std::getline(opts, o, ',');) ro |= o == "ro";
    auto esp = under(root, unescape(f[4]));
    ABUP_CHECK(check_writable(esp, ro));
    return esp;
  }
  return make_error(Errc::not_found, "the ESP (PARTUUID " + uuid + " on " + disk +
                                         ") is not mounted (" + info_path.string() +
                                         "); mount it, or set [Boot] ESP= to its mount point");
}

Status check_root_hash_binding(const protocol::Manifest& m, const protocol::CosiMetadata& md,
                               const std::string& name, std::span<const std::uint8_t> bytes) {
  return boot::check_usrhash_binding(bytes, m.arch, usr_roothash(md), name);
}

Status check_boot_files(const BootFilesConfig& c, protocol::Source& source,
                        const protocol::VerifiedImage& image, char target) {
  const auto& m = image.manifest;
  if (m.boot_files.empty()) {
    if (c.require.value_or(boot::requires_boot_files(to_string(c.backend))))
      return no_boot_files(c, m.version);
    return {};
  }
  const auto ctx = placement_context(c);
  std::vector<std::string> names;
  for (const auto& b : m.boot_files) names.push_back(b.name);
  ABUP_TRY(auto places,
           boot::place_boot_files(to_string(c.backend), lower(target), ctx, names, c.placement));
  (void)places;
  for (const auto& b : m.boot_files) {
    ABUP_TRY(auto f, fetch_boot_file(c, source, image, b));
    (void)f;
  }
  return {};
}

Result<std::vector<BootFileRecord>> stage_boot_files(const fs::path& root, const std::string& disk,
                                                     const BootFilesConfig& c,
                                                     protocol::Source& source,
                                                     const protocol::VerifiedImage& image,
                                                     char target, std::optional<char> booted) {
  const auto& m = image.manifest;
  const bool required = c.require.value_or(boot::requires_boot_files(to_string(c.backend)));
  if (m.boot_files.empty()) {
    if (required) return no_boot_files(c, m.version);
    return std::vector<BootFileRecord>{};
  }
  const auto ctx = placement_context(c);
  std::vector<std::string> names;
  for (const auto& b : m.boot_files) names.push_back(b.name);
  ABUP_TRY(auto places,
           boot::place_boot_files(to_string(c.backend), lower(target), ctx, names, c.placement));
  if (places.empty()) return std::vector<BootFileRecord>{};

  // Invariant 1: none of the target's paths may be one the booted slot boots from.
  if (booted) {
    auto mine = boot::slot_paths(to_string(c.backend), lower(*booted), ctx, c.placement);
    for (const auto& p : places)
      if (std::find(mine.begin(), mine.end(), p.esp_path) != mine.end())
        return make_error(Errc::refused, "boot file '" + p.name + "' would overwrite " +
                                             p.esp_path + ", which the booted slot " +
                                             std::string(1, *booted) + " boots from");
  }

  // Read and check everything before touching the ESP.
  std::vector<Staged> data;
  std::uint64_t need = 0;
  for (const auto& p : places) {
    ABUP_TRY(auto f, fetch_boot_file(c, source, image, *m.find_boot_file(p.name)));
    need += f.size;
    data.push_back(std::move(f));
  }

  ABUP_TRY(auto esp, find_esp(root, disk, c));
  std::uint64_t reclaim = 0;
  for (const auto& p : places) {
    std::error_code ec;
    auto sz = fs::file_size(esp / p.esp_path, ec);
    if (!ec) reclaim += sz;
    // A temporary copy left by an interrupted stage is overwritten before anything else grows.
    sz = fs::file_size(temp_name(esp / p.esp_path), ec);
    if (!ec) reclaim += sz;
  }
  const std::uint64_t avail = free_bytes(esp, c);
  // Each file is written beside the old one before the rename: the largest needs room twice.
  std::uint64_t largest = 0;
  for (const auto& d : data) largest = std::max<std::uint64_t>(largest, d.size);
  if (avail + reclaim < need + largest)
    return make_error(Errc::refused,
                      "ESP at " + esp.string() + " has " + std::to_string(avail) +
                          " bytes free; the boot files of slot " + std::string(1, target) +
                          " need " + std::to_string(need) +
                          " (plus room for one temporary copy): both slots' files must fit; free "
                          "space on the ESP");

  if (c.backend == BootBackend::systemd_boot)
    for (const auto& p : places)
      if (p.name == "uki") ABUP_CHECK(remove_old_uki(esp, p.esp_path));

  std::vector<BootFileRecord> out;
  for (std::size_t i = 0; i < places.size(); ++i) {
    const auto& p = places[i];
    const auto path = esp / p.esp_path;
    std::error_code ec;
    fs::create_directories(path.parent_path(), ec);
    if (ec)
      return make_error(Errc::io, "create " + path.parent_path().string() + ": " + ec.message());
    ABUP_CHECK_CTX(write_boot_file(path, data[i]), "boot file '" + p.name + "'");
    fault_point("boot-file-written");
    out.push_back({p.name, p.esp_path, data[i].size, to_hex(m.find_boot_file(p.name)->sha256)});
  }
  // Invariant 3: every file proven as read back from the ESP before the slot is recorded staged.
  for (const auto& r : out)
    if (auto ck = check_boot_file(esp, r); ck != BootFileCheck::ok)
      return make_error(Errc::io, "boot file '" + r.name + "' read back from " +
                                      (esp / r.path).string() + ": " + std::string(to_string(ck)) +
                                      " (the ESP did not keep it)");
  return out;
}

BootFileCheck check_boot_file(const fs::path& esp, const BootFileRecord& r) {
  auto d = digest_uncached(esp / r.path);
  if (!d) return BootFileCheck::missing;
  if (d->size != r.size || to_hex(d->sha256) != r.sha256) return BootFileCheck::mismatch;
  return BootFileCheck::ok;
}

Status verify_boot_files(const fs::path& root, const std::string& disk, const BootFilesConfig& c,
                         const std::vector<BootFileRecord>& records) {
  if (records.empty()) return {};
  ABUP_TRY(auto esp, find_esp(root, disk, c));
  for (const auto& r : records)
    if (auto ck = check_boot_file(esp, r); ck != BootFileCheck::ok)
      return make_error(Errc::refused, "boot file '" + r.name + "' (" + (esp / r.path).string() +
                                           ") is " + std::string(to_string(ck)) +
                                           " on the ESP; not arming: run `abup stage` again");
  return {};
}

}  // namespace abup::agent
