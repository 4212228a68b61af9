#include "partitions/gpt.hpp"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>

#include "abup/fault.hpp"
#include "abup/fs.hpp"
#include "partitions/little_endian.hpp"

namespace abup::partitions {
namespace {

constexpr std::uint32_t kGptRevision = 0x00010000;
constexpr std::uint32_t kHeaderSize = 92;
constexpr std::uint32_t kEntrySize = 128;
constexpr std::uint32_t kDefaultEntries = 128;
constexpr std::size_t kNameUnits = 36;  // 72 bytes of UTF-16LE
// Bigger arrays than this are not a real table (sgdisk allows up to a few thousand entries).
constexpr std::uint64_t kMaxEntryArrayBytes = 4u << 20;
constexpr char kSignature[8] = {'E', 'F', 'I', ' ', 'P', 'A', 'R', 'T'};

constexpr std::array<std::uint32_t, 256> make_crc_table() {
  std::array<std::uint32_t, 256> t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    t[i] = c;
  }
  return t;
}
constexpr auto kCrcTable = make_crc_table();

std::string hex32(std::uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

struct Copy {
  GptHeader header;
  std::vector<std::uint8_t> entry_bytes;
  std::string problem;  // empty when valid
};

Status read_at(int fd, std::vector<std::uint8_t>& buf, std::uint64_t offset,
               const std::string& what) {
  return pread_full(fd, buf, offset, what);
}

// Reads and validates the copy whose header is at `lba`. `primary` selects which side of the
// usable area the entry array must lie on.
Copy read_copy(int fd, std::uint64_t disk_size, std::uint32_t ss, std::uint64_t lba, bool primary,
               const std::string& what) {
  Copy c;
  const std::uint64_t lbas = disk_size / ss;
  auto fail = [&](std::string why) {
    c.problem = (primary ? "primary" : "backup") + std::string(" GPT header (LBA ") +
                std::to_string(lba) + "): " + std::move(why);
    return c;
  };
  if (lba >= lbas) return fail("beyond the end of the disk (" + std::to_string(lbas) + " sectors)");
  std::vector<std::uint8_t> sec(ss);
  if (auto st = read_at(fd, sec, lba * ss, what); !st) return fail(st.error().message);
  const std::uint8_t* p = sec.data();
  if (std::memcmp(p, kSignature, 8) != 0) return fail("no \"EFI PART\" signature");
  std::uint32_t rev = le32(p + 8);
  if ((rev >> 16) != 1) return fail("unsupported revision " + hex32(rev));
  std::uint32_t hsize = le32(p + 12);
  if (hsize < kHeaderSize || hsize > ss)
    return fail("header size " + std::to_string(hsize) + " outside 92.." + std::to_string(ss));
  std::uint32_t stored = le32(p + 16);
  constexpr std::uint8_t kZeroCrc[4] = {};
  std::uint32_t computed = crc32({p, 16});
  computed = crc32(kZeroCrc, computed);
  computed = crc32({p + 20, hsize - 20}, computed);
  if (stored != computed)
    return fail("header CRC32 mismatch (stored " + hex32(stored) + ", computed " + hex32(computed) +
                ")");
  GptHeader& h = c.header;
  h.my_lba = le64(p + 24);
  h.alternate_lba = le64(p + 32);
  h.first_usable = le64(p + 40);
  h.last_usable = le64(p + 48);
  std::copy_n(p + 56, 16, h.disk_guid.bytes.begin());
  h.entries_lba = le64(p + 72);
  h.num_entries = le32(p + 80);
  h.entry_size = le32(p + 84);
  std::uint32_t entries_crc = le32(p + 88);
  if (h.my_lba != lba)
    return fail("my_lba is " + std::to_string(h.my_lba) + ", expected " + std::to_string(lba));
  if (h.entry_size < kEntrySize || h.entry_size % kEntrySize != 0)
    return fail("entry size " + std::to_string(h.entry_size) + " is not a multiple of 128");
  std::uint64_t array_bytes = std::uint64_t{h.num_entries} * h.entry_size;
  if (h.num_entries == 0 || array_bytes > kMaxEntryArrayBytes)
    return fail("implausible entry count " + std::to_string(h.num_entries));
  std::uint64_t array_lbas = (array_bytes + ss - 1) / ss;
  if (h.first_usable > h.last_usable + 1 || h.last_usable >= lbas)
    return fail("usable LBAs " + std::to_string(h.first_usable) + ".." +
                std::to_string(h.last_usable) + " do not fit a disk of " + std::to_string(lbas) +
                " sectors");
  bool array_ok = h.entries_lba >= 2 && h.entries_lba + array_lbas <= lbas &&
                  (primary ? h.entries_lba + array_lbas <= h.first_usable
                           : h.entries_lba > h.last_usable && h.entries_lba + array_lbas <= lba);
  bool header_outside = primary ? lba < h.first_usable : lba > h.last_usable;
  if (!array_ok || !header_outside)
    return fail("entry array at LBA " + std::to_string(h.entries_lba) + " (" +
                std::to_string(array_lbas) + " sectors) overlaps the usable area " +
                std::to_string(h.first_usable) + ".." + std::to_string(h.last_usable) +
                " or the disk's end");
  c.entry_bytes.resize(array_bytes);
  if (auto st = read_at(fd, c.entry_bytes, h.entries_lba * ss, what); !st)
    return fail(st.error().message);
  std::uint32_t ecrc = crc32(c.entry_bytes);
  if (ecrc != entries_crc)
    return fail("partition entry array CRC32 mismatch (stored " + hex32(entries_crc) +
                ", computed " + hex32(ecrc) + ")");
  for (std::uint32_t i = 0; i < h.num_entries; ++i) {
    const std::uint8_t* e = c.entry_bytes.data() + std::size_t{i} * h.entry_size;
    if (std::all_of(e, e + 16, [](std::uint8_t b) { return b == 0; })) continue;
    std::uint64_t first = le64(e + 32), last = le64(e + 40);
    if (first > last || first < h.first_usable || last > h.last_usable)
      return fail("partition " + std::to_string(i + 1) + " (LBA " + std::to_string(first) + ".." +
                  std::to_string(last) + ") lies outside the usable area " +
                  std::to_string(h.first_usable) + ".." + std::to_string(h.last_usable));
  }
  return c;
}

std::vector<GptEntry> parse_entries(const Copy& c) {
  std::vector<GptEntry> out;
  for (std::uint32_t i = 0; i < c.header.num_entries; ++i) {
    const std::uint8_t* e = c.entry_bytes.data() + std::size_t{i} * c.header.entry_size;
    GptEntry g;
    std::copy_n(e, 16, g.type.bytes.begin());
    if (g.type.is_zero()) continue;
    g.number = i + 1;
    std::copy_n(e + 16, 16, g.unique.bytes.begin());
    g.first_lba = le64(e + 32);
    g.last_lba = le64(e + 40);
    g.attributes = le64(e + 48);
    g.name = from_utf16(e + 56, kNameUnits);
    out.push_back(std::move(g));
  }
  return out;
}

bool same_table(const Copy& a, const Copy& b) {
  return a.header.first_usable == b.header.first_usable &&
         a.header.last_usable == b.header.last_usable && a.header.disk_guid == b.header.disk_guid &&
         a.header.num_entries == b.header.num_entries &&
         a.header.entry_size == b.header.entry_size && a.entry_bytes == b.entry_bytes;
}

bool has_protective_mbr(int fd, const std::string& what) {
  std::vector<std::uint8_t> mbr(512);
  if (!read_at(fd, mbr, 0, what)) return false;
  if (mbr[510] != 0x55 || mbr[511] != 0xAA) return false;
  for (int i = 0; i < 4; ++i)
    if (mbr[446 + 16 * i + 4] == 0xEE) return true;
  return false;
}

Result<GptTable> read_with_sector_size(int fd, std::uint64_t disk_size, std::uint32_t ss,
                                       const std::string& what) {
  GptTable t;
  t.sector_size = ss;
  t.disk_size = disk_size;
  if (disk_size / ss < 3)
    return make_error(Errc::invalid_input,
                      what + ": " + std::to_string(disk_size) + " bytes is too small for a GPT");
  std::uint64_t last = disk_size / ss - 1;
  Copy primary = read_copy(fd, disk_size, ss, 1, true, what);
  Copy backup = read_copy(fd, disk_size, ss, last, false, what);
  if (!backup.problem.empty() && primary.problem.empty() && primary.header.alternate_lba != last &&
      primary.header.alternate_lba > 1 && primary.header.alternate_lba < last) {
    Copy alt = read_copy(fd, disk_size, ss, primary.header.alternate_lba, false, what);
    if (alt.problem.empty()) backup = std::move(alt);
  }
  t.primary_valid = primary.problem.empty();
  t.backup_valid = backup.problem.empty();
  t.protective_mbr = has_protective_mbr(fd, what);
  if (!t.primary_valid && !t.backup_valid)
    return make_error(Errc::invalid_input, what + ": no valid GPT (" + std::to_string(ss) +
                                               "-byte sectors): " + primary.problem + "; " +
                                               backup.problem);
  std::vector<std::string> problems;
  if (!t.primary_valid) problems.push_back(primary.problem);
  if (!t.backup_valid) problems.push_back(backup.problem);
  for (std::size_t i = 0; i < problems.size(); ++i) t.problems += (i ? "; " : "") + problems[i];
  if (t.primary_valid) t.primary_header = primary.header;
  if (t.backup_valid) t.backup_header = backup.header;
  t.copies_differ = t.primary_valid && t.backup_valid && !same_table(primary, backup);
  const Copy& used = t.primary_valid ? primary : backup;
  t.header = used.header;
  t.entries = parse_entries(used);
  return t;
}

void encode_entries(std::uint8_t* out, std::uint32_t entry_size,
                    const std::vector<GptEntry>& entries) {
  for (const auto& e : entries) {
    std::uint8_t* p = out + std::size_t{e.number - 1} * entry_size;
    std::copy(e.type.bytes.begin(), e.type.bytes.end(), p);
    std::copy(e.unique.bytes.begin(), e.unique.bytes.end(), p + 16);
    put_le(p + 32, e.first_lba, 8);
    put_le(p + 40, e.last_lba, 8);
    put_le(p + 48, e.attributes, 8);
    auto units = utf16_units(e.name, kNameUnits);
    for (std::size_t i = 0; i < units.size(); ++i) put_le(p + 56 + 2 * i, units[i], 2);
  }
}

// One copy: the entry array bytes (padded to whole sectors) and its header sector.
struct EncodedCopy {
  std::vector<std::uint8_t> entries, header;
};

EncodedCopy encode_copy(const GptHeader& h, std::uint32_t ss,
                        const std::vector<GptEntry>& entries) {
  EncodedCopy c;
  std::uint64_t array_bytes = std::uint64_t{h.num_entries} * h.entry_size;
  c.entries.assign((array_bytes + ss - 1) / ss * ss, 0);
  encode_entries(c.entries.data(), h.entry_size, entries);
  c.header.assign(ss, 0);
  std::uint8_t* p = c.header.data();
  std::memcpy(p, kSignature, 8);
  put_le(p + 8, kGptRevision, 4);
  put_le(p + 12, kHeaderSize, 4);
  put_le(p + 24, h.my_lba, 8);
  put_le(p + 32, h.alternate_lba, 8);
  put_le(p + 40, h.first_usable, 8);
  put_le(p + 48, h.last_usable, 8);
  std::copy(h.disk_guid.bytes.begin(), h.disk_guid.bytes.end(), p + 56);
  put_le(p + 72, h.entries_lba, 8);
  put_le(p + 80, h.num_entries, 4);
  put_le(p + 84, h.entry_size, 4);
  put_le(p + 88, crc32({c.entries.data(), array_bytes}), 4);
  put_le(p + 16, crc32({p, kHeaderSize}), 4);
  return c;
}

// sgdisk's LBA -> CHS for the protective MBR (255 heads, 63 sectors; 0xFFFFFF past 1024
// cylinders).
void put_chs(std::uint8_t* p, std::uint64_t lba) {
  constexpr std::uint64_t kHeads = 255, kSectors = 63;
  std::uint64_t cyl = lba / (kHeads * kSectors);
  if (cyl > 1023) {
    p[0] = p[1] = p[2] = 0xFF;
    return;
  }
  std::uint64_t rem = lba % (kHeads * kSectors);
  p[0] = static_cast<std::uint8_t>(rem / kSectors);
  p[1] = static_cast<std::uint8_t>(((rem % kSectors) + 1) | ((cyl >> 2) & 0xC0));
  p[2] = static_cast<std::uint8_t>(cyl & 0xFF);
}

std::vector<std::uint8_t> protective_mbr(std::uint64_t disk_size, std::uint32_t ss) {
  std::vector<std::uint8_t> mbr(ss, 0);
  std::uint8_t* e = mbr.data() + 446;
  std::uint64_t last = disk_size / ss - 1;
  put_chs(e + 1, 1);
  e[4] = 0xEE;
  put_chs(e + 5, last);
  put_le(e + 8, 1, 4);
  put_le(e + 12, std::min<std::uint64_t>(last, 0xFFFFFFFFu), 4);
  mbr[510] = 0x55;
  mbr[511] = 0xAA;
  return mbr;
}

struct DefaultGeometry {
  GptHeader primary, backup;
};

DefaultGeometry default_geometry(std::uint64_t disk_size, std::uint32_t ss, const Guid& guid) {
  std::uint64_t array_lbas = (std::uint64_t{kDefaultEntries} * kEntrySize + ss - 1) / ss;
  std::uint64_t last = disk_size / ss - 1;
  GptHeader h;
  h.my_lba = 1;
  h.alternate_lba = last;
  h.first_usable = 2 + array_lbas;
  h.last_usable = last - array_lbas - 1;
  h.entries_lba = 2;
  h.num_entries = kDefaultEntries;
  h.entry_size = kEntrySize;
  h.disk_guid = guid;
  GptHeader b = h;
  b.my_lba = last;
  b.alternate_lba = 1;
  b.entries_lba = last - array_lbas;
  return {h, b};
}

Status check_entries_fit(const GptHeader& h, const std::vector<GptEntry>& entries,
                         const std::string& what) {
  for (const auto& e : entries) {
    if (e.number == 0 || e.number > h.num_entries)
      return make_error(Errc::invalid_input, what + ": partition number " +
                                                 std::to_string(e.number) + " outside 1.." +
                                                 std::to_string(h.num_entries));
    if (e.first_lba > e.last_lba || e.first_lba < h.first_usable || e.last_lba > h.last_usable)
      return make_error(Errc::invalid_input,
                        what + ": partition " + std::to_string(e.number) + " (LBA " +
                            std::to_string(e.first_lba) + ".." + std::to_string(e.last_lba) +
                            ") outside the usable area " + std::to_string(h.first_usable) + ".." +
                            std::to_string(h.last_usable));
  }
  return {};
}

Status sync_fd(int fd, const std::string& what) {
  if (::fsync(fd) != 0) return make_error(Errc::io, "fsync " + what + ": " + errno_text(errno));
  return {};
}

}  // namespace

Result<Guid> Guid::parse(std::string_view text) {
  auto bad = [&] {
    return make_error(Errc::invalid_input,
                      "malformed GUID \"" + std::string(text) +
                          "\" (expected xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)");
  };
  if (text.size() != 36) return bad();
  std::array<std::uint8_t, 16> be{};
  std::size_t n = 0;
  for (std::size_t i = 0; i < 36;) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (text[i] != '-') return bad();
      ++i;
      continue;
    }
    int v = 0;
    for (int k = 0; k < 2; ++k) {
      char ch = text[i + k];
      int d = ch >= '0' && ch <= '9'   ? ch - '0'
              : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
              : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                       : -1;
      if (d < 0) return bad();
      v = v * 16 + d;
    }
    be[n++] = static_cast<std::uint8_t>(v);
    i += 2;
  }
  // The first three fields are little-endian on disk.
  Guid g;
  constexpr int kOrder[16] = {3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15};
  for (int i = 0; i < 16; ++i) g.bytes[i] = be[kOrder[i]];
  return g;
}

Guid Guid::random() {
  std::random_device rd;
  Guid g;
  for (std::size_t i = 0; i < 16; i += 4) put_le(g.bytes.data() + i, rd(), 4);
  g.bytes[7] = static_cast<std::uint8_t>((g.bytes[7] & 0x0F) | 0x40);  // version 4
  g.bytes[8] = static_cast<std::uint8_t>((g.bytes[8] & 0x3F) | 0x80);  // RFC 4122 variant
  return g;
}

std::string Guid::str() const {
  constexpr int kOrder[16] = {3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s;
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) s += '-';
    s += kHex[bytes[kOrder[i]] >> 4];
    s += kHex[bytes[kOrder[i]] & 0xF];
  }
  return s;
}

bool Guid::is_zero() const {
  return std::all_of(bytes.begin(), bytes.end(), [](std::uint8_t b) { return b == 0; });
}

const GptEntry* GptTable::find_by_number(std::uint32_t number) const {
  for (const auto& e : entries)
    if (e.number == number) return &e;
  return nullptr;
}

std::uint32_t crc32(std::span<const std::uint8_t> data, std::uint32_t crc) {
  crc = ~crc;
  for (std::uint8_t b : data) crc = kCrcTable[(crc ^ b) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

Result<std::uint64_t> disk_size_of(int fd, const std::string& what) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return make_error(Errc::io, "stat " + what + ": " + errno_text(errno));
  if (S_ISREG(st.st_mode)) return static_cast<std::uint64_t>(st.st_size);
  if (!S_ISBLK(st.st_mode))
    return make_error(Errc::invalid_input, what + ": neither a regular file nor a block device");
  std::uint64_t size = 0;
  if (::ioctl(fd, BLKGETSIZE64, &size) != 0)
    return make_error(Errc::io, "BLKGETSIZE64 " + what + ": " + errno_text(errno));
  return size;
}

Result<GptTable> read_gpt(int fd, std::uint64_t disk_size, std::uint32_t sector_size,
                          const std::string& what) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return make_error(Errc::io, "stat " + what + ": " + errno_text(errno));
  if (disk_size == 0) {
    ABUP_TRY(disk_size, disk_size_of(fd, what));
  }
  if (sector_size != 0) return read_with_sector_size(fd, disk_size, sector_size, what);
  if (S_ISBLK(st.st_mode)) {
    int ss = 0;
    if (::ioctl(fd, BLKSSZGET, &ss) != 0 || ss < 512)
      return make_error(Errc::io, "BLKSSZGET " + what + ": " + errno_text(errno));
    return read_with_sector_size(fd, disk_size, static_cast<std::uint32_t>(ss), what);
  }
  auto r512 = read_with_sector_size(fd, disk_size, 512, what);
  if (r512) return r512;
  auto r4k = read_with_sector_size(fd, disk_size, 4096, what);
  if (r4k) return r4k;
  return r512;  // the 512-byte explanation is the one most readers expect
}

Result<GptTable> read_gpt_path(const std::string& path) {
  ABUP_TRY(Fd fd, open_file(path, O_RDONLY));
  return read_gpt(fd.get(), 0, 0, path);
}

std::vector<std::uint8_t> build_primary_region(std::uint64_t disk_size, std::uint32_t sector_size,
                                               const Guid& disk_guid,
                                               const std::vector<GptEntry>& entries) {
  auto geo = default_geometry(disk_size, sector_size, disk_guid);
  auto copy = encode_copy(geo.primary, sector_size, entries);
  auto out = protective_mbr(disk_size, sector_size);
  out.insert(out.end(), copy.header.begin(), copy.header.end());
  out.insert(out.end(), copy.entries.begin(), copy.entries.end());
  return out;
}

GptRegion build_backup_region(std::uint64_t disk_size, std::uint32_t sector_size,
                              const Guid& disk_guid, const std::vector<GptEntry>& entries) {
  auto geo = default_geometry(disk_size, sector_size, disk_guid);
  auto copy = encode_copy(geo.backup, sector_size, entries);
  GptRegion r;
  r.offset = geo.backup.entries_lba * sector_size;
  r.bytes = std::move(copy.entries);
  r.bytes.insert(r.bytes.end(), copy.header.begin(), copy.header.end());
  return r;
}

Status FdSectorWriter::write(std::uint64_t offset, std::span<const std::uint8_t> data) {
  ABUP_CHECK(pwrite_full(fd_, data, offset, what_));
  fault_point("boot-write");  // crash tests: a power cut after the n-th write of boot state
  return {};
}

Status FdSectorWriter::sync() {
  return sync_fd(fd_, what_);
}

Status write_gpt(int fd, const GptTable& table, const std::string& what) {
  FdSectorWriter writer(fd, what);
  return write_gpt(writer, table, what);
}

Status write_gpt(SectorWriter& writer, const GptTable& table, const std::string& what) {
  const std::uint32_t ss = table.sector_size;
  const std::uint64_t last = table.last_lba();
  GptHeader p = table.header;
  std::uint64_t array_lbas = (std::uint64_t{p.num_entries} * p.entry_size + ss - 1) / ss;
  p.my_lba = 1;
  p.alternate_lba = last;
  p.entries_lba = table.primary_valid ? table.primary_header.entries_lba : 2;
  GptHeader b = p;
  b.my_lba = last;
  b.alternate_lba = 1;
  b.entries_lba = last - array_lbas;
  if (p.entries_lba < 2 || p.entries_lba + array_lbas > p.first_usable ||
      b.entries_lba <= p.last_usable)
    return make_error(Errc::invalid_input,
                      what + ": GPT entry arrays (" + std::to_string(array_lbas) +
                          " sectors) do not fit around the usable area " +
                          std::to_string(p.first_usable) + ".." + std::to_string(p.last_usable));
  ABUP_CHECK(check_entries_fit(p, table.entries, what));
  auto pc = encode_copy(p, ss, table.entries);
  auto bc = encode_copy(b, ss, table.entries);
  ABUP_CHECK_CTX(writer.write(p.entries_lba * ss, pc.entries), what + " (primary GPT entries)");
  ABUP_CHECK_CTX(writer.write(ss, pc.header), what + " (primary GPT header)");
  ABUP_CHECK_CTX(writer.sync(), what);
  ABUP_CHECK_CTX(writer.write(b.entries_lba * ss, bc.entries), what + " (backup GPT entries)");
  ABUP_CHECK_CTX(writer.write(last * ss, bc.header), what + " (backup GPT header)");
  ABUP_CHECK_CTX(writer.sync(), what);
  return {};
}

}  // namespace abup::partitions
