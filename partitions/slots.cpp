#include "partitions/slots.hpp"

#include <blkid/blkid.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <memory>
#include <vector>

#include "abup/fs.hpp"

namespace abup::partitions {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  return lower(a) == lower(b);
}

std::string trim(std::string s) {
  auto ws = [](unsigned char c) { return std::isspace(c) != 0; };
  while (!s.empty() && ws(static_cast<unsigned char>(s.back()))) s.pop_back();
  std::size_t i = 0;
  while (i < s.size() && ws(static_cast<unsigned char>(s[i]))) ++i;
  return s.substr(i);
}

bool is_usr_type(const Guid& type) {
  for (auto t : {kUsrTypeGuid, kUsrTypeGuidX86_64, kUsrTypeGuidArm64})
    if (type.str() == t) return true;
  return false;
}

std::string entry_desc(const GptEntry& e) {
  return "partition " + std::to_string(e.number) + " (" + (e.name.empty() ? "unnamed" : e.name) +
         ")";
}

// The single entry labelled `label` (case-insensitively); nullptr when none.
Result<const GptEntry*> find_label(const GptTable& gpt, std::string_view label,
                                   const std::string& disk) {
  std::vector<const GptEntry*> hits;
  for (const auto& e : gpt.entries)
    if (iequals(e.name, label)) hits.push_back(&e);
  if (hits.size() > 1) {
    std::string nums;
    for (auto* e : hits) nums += (nums.empty() ? "" : ", ") + std::to_string(e->number);
    return make_error(Errc::invalid_input, disk + ": " + std::to_string(hits.size()) +
                                               " partitions labelled " + lower(label) +
                                               " (case-insensitively): " + nums +
                                               "; the slot is ambiguous, relabel all but one");
  }
  return hits.empty() ? nullptr : hits.front();
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

Result<Slot> find_slot(const GptTable& gpt, char name, const std::string& disk) {
  std::string usr = std::string("usr-") + static_cast<char>(std::tolower(name));
  std::string hash = std::string("hash-") + static_cast<char>(std::tolower(name));
  ABUP_TRY(const GptEntry* e, find_label(gpt, usr, disk));
  if (!e) {
    std::string found;
    for (const auto& x : gpt.entries)
      found +=
          (found.empty() ? "" : ", ") + (x.name.empty() ? "#" + std::to_string(x.number) : x.name);
    return make_error(Errc::not_found, disk + ": no partition labelled " + upper(usr) + "/" + usr +
                                           " (found: " + found + ")");
  }
  if (!is_usr_type(e->type))
    return make_error(Errc::invalid_input, disk + ": " + entry_desc(*e) + " has type GUID " +
                                               e->type.str() + ", not the usr type " +
                                               std::string(kUsrTypeGuid) +
                                               " (nor a Discoverable Partitions usr type)");
  ABUP_TRY(const GptEntry* h, find_label(gpt, hash, disk));
  Slot s;
  s.name = name;
  s.entry = *e;
  if (h) s.hash = *h;
  s.offset = e->first_lba * gpt.sector_size;
  s.size = (e->last_lba - e->first_lba + 1) * gpt.sector_size;
  return s;
}

// libblkid's view of the partition table must agree with ours: the kernel and udev see the disk
// through the same eyes, so a disagreement means we would write something else than they use.
Status blkid_cross_check(const SlotPair& pair) {
  struct ProbeFree {
    void operator()(blkid_struct_probe* p) const { blkid_free_probe(p); }
  };
  std::unique_ptr<blkid_struct_probe, ProbeFree> pr(
      blkid_new_probe_from_filename(pair.disk.c_str()));
  if (!pr) return make_error(Errc::io, pair.disk + ": libblkid cannot open it");
  blkid_probe_enable_partitions(pr.get(), 1);
  blkid_probe_set_partitions_flags(pr.get(), BLKID_PARTS_ENTRY_DETAILS);
  blkid_partlist ls = blkid_probe_get_partitions(pr.get());
  blkid_parttable tab = ls ? blkid_partlist_get_table(ls) : nullptr;
  const char* type = tab ? blkid_parttable_get_type(tab) : nullptr;
  if (!type || std::string_view(type) != "gpt")
    return make_error(
        Errc::invalid_input,
        pair.disk + ": libblkid finds " +
            (type ? std::string("a ") + type + " partition table" : "no partition table") +
            " where abup reads a GPT (is the protective MBR missing or a hybrid "
            "MBR present?)");
  const std::uint64_t ss = pair.gpt.sector_size;
  std::vector<const GptEntry*> parts = {&pair.a.entry, &pair.b.entry};
  if (pair.a.hash) parts.push_back(&*pair.a.hash);
  if (pair.b.hash) parts.push_back(&*pair.b.hash);
  for (const GptEntry* e : parts) {
    blkid_partition p = blkid_partlist_get_partition_by_partno(ls, static_cast<int>(e->number));
    auto mismatch = [&](const std::string& what) {
      return make_error(Errc::invalid_input, pair.disk + ": libblkid and the GPT disagree on " +
                                                 entry_desc(*e) + ": " + what);
    };
    if (!p) return mismatch("libblkid does not see it");
    const char* uuid = blkid_partition_get_uuid(p);
    if (!uuid || !iequals(uuid, e->unique.str()))
      return mismatch(std::string("PARTUUID ") + (uuid ? uuid : "(none)") + " vs " +
                      e->unique.str());
    auto start = static_cast<std::uint64_t>(blkid_partition_get_start(p));
    auto size = static_cast<std::uint64_t>(blkid_partition_get_size(p));
    std::uint64_t want_start = e->first_lba * ss / 512;
    std::uint64_t want_size = (e->last_lba - e->first_lba + 1) * ss / 512;
    if (start != want_start || size != want_size)
      return mismatch("extent " + std::to_string(start) + "+" + std::to_string(size) + " vs " +
                      std::to_string(want_start) + "+" + std::to_string(want_size) +
                      " 512-byte sectors");
  }
  return {};
}

// The device node (under /dev) of the block device MAJ:MIN, from its sysfs uevent.
std::string device_node_of(const std::filesystem::path& sys_dir, const std::string& devnum) {
  std::vector<std::string> candidates;
  if (auto ue = read_file(sys_dir / "uevent")) {
    std::size_t pos = ue->find("DEVNAME=");
    if (pos != std::string::npos) {
      std::size_t end = ue->find('\n', pos);
      candidates.push_back("/dev/" + ue->substr(pos + 8, end - pos - 8));
    }
  }
  candidates.push_back("/dev/" + sys_dir.filename().string());
  candidates.push_back("/dev/block/" + devnum);
  for (const auto& c : candidates) {
    struct stat st {};
    if (::stat(c.c_str(), &st) == 0 && S_ISBLK(st.st_mode) &&
        std::to_string(major(st.st_rdev)) + ":" + std::to_string(minor(st.st_rdev)) == devnum)
      return c;
  }
  return {};
}

// The kernel's device node for partition `number` of the whole-disk device `disk_rdev`, from
// /sys/dev/block/MAJ:MIN/<child>/{partition,dev,uevent}; empty when the kernel has none.
std::string partition_node(dev_t disk_rdev, std::uint32_t number) {
  namespace fs = std::filesystem;
  fs::path sys =
      "/sys/dev/block/" + std::to_string(major(disk_rdev)) + ":" + std::to_string(minor(disk_rdev));
  std::error_code ec;
  for (const auto& child : fs::directory_iterator(sys, ec)) {
    auto part = read_file(child.path() / "partition");
    if (!part || trim(*part) != std::to_string(number)) continue;
    auto dev = read_file(child.path() / "dev");
    if (!dev) continue;
    return device_node_of(child.path(), trim(*dev));
  }
  return {};
}

// Kernel command line parameters, honouring double quotes (key="a b").
std::vector<std::pair<std::string, std::string>> parse_cmdline(std::string_view text) {
  std::vector<std::pair<std::string, std::string>> out;
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    if (i >= text.size()) break;
    std::string tok;
    bool quoted = false;
    for (; i < text.size(); ++i) {
      char c = text[i];
      if (c == '"') {
        quoted = !quoted;
        continue;
      }
      if (!quoted && std::isspace(static_cast<unsigned char>(c))) break;
      tok += c;
    }
    std::size_t eq = tok.find('=');
    if (eq == std::string::npos)
      out.emplace_back(tok, "");
    else
      out.emplace_back(tok.substr(0, eq), tok.substr(eq + 1));
  }
  return out;
}

struct Named {
  bool recognized = false;          // the value names a GPT partition at all
  std::optional<char> slot;         // ... and it is (part of) this slot
  const GptEntry* entry = nullptr;  // the partition on this disk it names, if any
};

// Which partition a kernel device specification names.
Named resolve(const SlotPair& pair, const std::string& value) {
  Named n;
  auto starts = [&](std::string_view p) { return lower(value).rfind(lower(p), 0) == 0; };
  std::string uuid, label;
  if (starts("PARTUUID=")) {
    uuid = value.substr(9);
  } else if (starts("/dev/disk/by-partuuid/")) {
    uuid = value.substr(22);
  } else if (starts("PARTLABEL=")) {
    label = value.substr(10);
  } else if (starts("/dev/disk/by-partlabel/")) {
    label = value.substr(23);
  } else {
    for (const Slot* s : {&pair.a, &pair.b}) {
      if (!s->device.empty() && value == s->device) return {true, s->name, &s->entry};
      if (!s->hash_device.empty() && value == s->hash_device) return {true, s->name, &*s->hash};
    }
    return n;
  }
  n.recognized = true;
  long offset = 0;
  if (std::size_t off = lower(uuid).find("/partnroff="); off != std::string::npos) {
    offset = std::strtol(uuid.c_str() + off + 11, nullptr, 10);
    uuid.resize(off);
  }
  for (const auto& e : pair.gpt.entries) {
    if ((!uuid.empty() && iequals(e.unique.str(), uuid)) ||
        (!label.empty() && iequals(e.name, label))) {
      n.entry = &e;
      break;
    }
  }
  if (n.entry && offset != 0) {
    n.entry = pair.gpt.find_by_number(static_cast<std::uint32_t>(n.entry->number + offset));
  }
  if (!n.entry) return n;
  for (const Slot* s : {&pair.a, &pair.b})
    if (n.entry->number == s->entry.number || (s->hash && n.entry->number == s->hash->number))
      n.slot = s->name;
  return n;
}

std::string slot_desc(const Slot& s) {
  return s.label() + " (PARTUUID " + s.partuuid() + ")";
}

}  // namespace

Result<SlotPair> discover_slots(const std::string& disk) {
  ABUP_TRY(Fd fd, open_file(disk, O_RDONLY));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0)
    return make_error(Errc::io, "stat " + disk + ": " + errno_text(errno));
  SlotPair pair;
  pair.disk = disk;
  pair.block_device = S_ISBLK(st.st_mode);
  ABUP_TRY(pair.gpt, read_gpt(fd.get(), 0, 0, disk));
  ABUP_TRY(pair.a, find_slot(pair.gpt, 'A', disk));
  ABUP_TRY(pair.b, find_slot(pair.gpt, 'B', disk));
  ABUP_CHECK(blkid_cross_check(pair));
  if (pair.block_device) {
    for (Slot* s : {&pair.a, &pair.b}) {
      s->device = partition_node(st.st_rdev, s->entry.number);
      if (s->hash) s->hash_device = partition_node(st.st_rdev, s->hash->number);
    }
  }
  return pair;
}

Result<std::optional<char>> booted_slot(const SlotPair& pair, const std::filesystem::path& root) {
  auto text = read_file(root / "proc/cmdline");
  if (!text) return std::move(text).error().with_context("finding the booted slot");
  auto params = parse_cmdline(*text);
  static constexpr std::string_view kUsrKeys[] = {
      "usr", "mount.usr", "verity.usr", "systemd.verity_usr_data", "systemd.verity_usr_hash"};
  std::optional<char> found;
  std::string found_param;
  for (const auto& [key, value] : params) {
    if (std::find(std::begin(kUsrKeys), std::end(kUsrKeys), key) == std::end(kUsrKeys)) continue;
    Named n = resolve(pair, value);
    if (!n.recognized) continue;
    std::string param = key + "=" + value;
    if (!n.slot)
      return make_error(Errc::invalid_input,
                        "kernel command line names " + param +
                            (n.entry ? " (" + entry_desc(*n.entry) + " of " + pair.disk + ")"
                                     : " (not on " + pair.disk + ")") +
                            ", which is neither " + slot_desc(pair.a) + " nor " +
                            slot_desc(pair.b));
    if (found && *found != *n.slot)
      return make_error(Errc::invalid_input,
                        "kernel command line names both slots: " + found_param + " and " + param);
    found = n.slot;
    found_param = param;
  }
  if (found) return found;
  for (const auto& [key, value] : params) {
    if (key != "root") continue;
    Named n = resolve(pair, value);
    if (n.slot) return std::optional<char>(n.slot);
  }
  return std::optional<char>();
}

namespace {

// The partition device with this PARTUUID (lowercase), or "" when none.
std::string partition_by_partuuid(const std::string& uuid) {
  std::string by = "/dev/disk/by-partuuid/" + uuid;
  if (std::error_code ec; std::filesystem::exists(by, ec)) return by;
  char* dev = blkid_evaluate_tag("PARTUUID", uuid.c_str(), nullptr);
  if (!dev) return {};
  std::string out(dev);
  std::free(dev);
  return out;
}

}  // namespace

Result<std::string> find_boot_disk(const std::filesystem::path& root) {
  namespace fs = std::filesystem;
  const auto cmdline_path = root / "proc/cmdline";
  auto text = read_file(cmdline_path);
  if (!text) return std::move(text).error().with_context("finding the boot disk");
  auto params = parse_cmdline(*text);
  static constexpr std::string_view kKeys[] = {
      "usr", "mount.usr", "verity.usr", "systemd.verity_usr_data", "systemd.verity_usr_hash",
      "root"};
  std::string param, uuid, node;
  for (auto key : kKeys) {
    for (const auto& [k, value] : params) {
      if (k != key) continue;
      const std::string v = lower(value);
      if (v.rfind("partuuid=", 0) == 0)
        uuid = v.substr(9);
      else if (v.rfind("/dev/disk/by-partuuid/", 0) == 0)
        uuid = v.substr(22);
      else if (v.rfind("/dev/", 0) == 0 && v.rfind("/dev/mapper/", 0) != 0 &&
               v.rfind("/dev/dm-", 0) != 0)
        node = value;
      else
        continue;
      if (auto off = uuid.find("/partnroff="); off != std::string::npos) uuid.resize(off);
      param = k + "=" + value;
      break;
    }
    if (!param.empty()) break;
  }
  const std::string give = "; give the disk with --disk";
  if (param.empty())
    return make_error(Errc::not_found,
                      "cannot find the boot disk: " + cmdline_path.string() +
                          " names no /usr partition by PARTUUID (usr=, mount.usr=, verity.usr=, "
                          "systemd.verity_usr_data=, root=)" +
                          give);
  if (!uuid.empty()) {
    node = partition_by_partuuid(uuid);
    if (node.empty())
      return make_error(Errc::not_found,
                        "cannot find the boot disk: no block device has PARTUUID " + uuid +
                            " (named by " + param + " in " + cmdline_path.string() + ")" + give);
  }
  struct stat st {};
  if (::stat(node.c_str(), &st) != 0 || !S_ISBLK(st.st_mode))
    return make_error(Errc::not_found, "cannot find the boot disk: " + node + " (named by " +
                                           param + ") is not a block device" + give);
  const std::string devnum =
      std::to_string(major(st.st_rdev)) + ":" + std::to_string(minor(st.st_rdev));
  std::error_code ec;
  fs::path sys = fs::canonical("/sys/dev/block/" + devnum, ec);
  if (ec || !fs::exists(sys / "partition"))
    return make_error(Errc::not_found, "cannot find the boot disk: " + node + " (" + devnum +
                                           ", named by " + param +
                                           ") is not a partition the kernel knows" + give);
  fs::path disk_sys = sys.parent_path();
  auto disk_dev = read_file(disk_sys / "dev");
  std::string disk = disk_dev ? device_node_of(disk_sys, trim(*disk_dev)) : "";
  if (disk.empty())
    return make_error(Errc::not_found, "cannot find the boot disk: no device node for " +
                                           disk_sys.string() + ", the disk of " + node + give);
  return disk;
}

}  // namespace abup::partitions
