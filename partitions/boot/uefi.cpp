// uefi: Microsoft Trident's scheme. One Boot#### load option per slot (description "Azure
// Container Linux A"/"B", HD(ESP) + the slot's loader), BootNext = the armed slot (one-shot in
// the firmware), BootOrder's first slot entry = the committed default. Variables are written
// through efivarfs, where each write() of a whole variable is one atomic SetVariable().
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <sys/ioctl.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <string>
#include <vector>

#include "abup/fault.hpp"
#include "abup/fs.hpp"
#include "partitions/boot/backend.hpp"
#include "partitions/little_endian.hpp"

#ifndef EFIVARFS_MAGIC
#define EFIVARFS_MAGIC 0xde5e81e4
#endif

namespace abup::partitions::boot {
namespace {

constexpr std::uint32_t kLoadOptionActive = 0x1;
constexpr std::string_view kEspTypeGuid = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
constexpr std::string_view kDescriptionPrefix = "Azure Container Linux ";
// Device path node types (UEFI spec 10.3).
constexpr std::uint8_t kMediaType = 0x04, kHdSubtype = 0x01, kFilePathSubtype = 0x04;
constexpr std::uint8_t kEndType = 0x7f, kEndEntireSubtype = 0xff;
constexpr std::uint16_t kHdNodeLength = 42;

using Bytes = std::vector<std::uint8_t>;

void put16(Bytes& b, std::uint16_t v) {
  b.push_back(static_cast<std::uint8_t>(v));
  b.push_back(static_cast<std::uint8_t>(v >> 8));
}
void put32(Bytes& b, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
void put64(Bytes& b, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) b.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
// EFI_LOAD_OPTION (UEFI spec 3.1.3).
struct LoadOption {
  std::uint32_t attributes = 0;
  std::string description;
  Bytes file_path_list;
  Bytes optional_data;
};

Bytes encode(const LoadOption& o) {
  Bytes b;
  put32(b, o.attributes);
  put16(b, static_cast<std::uint16_t>(o.file_path_list.size()));
  Bytes d = to_utf16(o.description);
  b.insert(b.end(), d.begin(), d.end());
  b.insert(b.end(), o.file_path_list.begin(), o.file_path_list.end());
  b.insert(b.end(), o.optional_data.begin(), o.optional_data.end());
  return b;
}

Result<LoadOption> parse_load_option(const Bytes& b, const std::string& var) {
  auto bad = [&](const std::string& why) {
    return make_error(Errc::invalid_input,
                      "EFI variable " + var + ": malformed EFI_LOAD_OPTION: " + why +
                          " (inspect with efibootmgr -v; delete it with efibootmgr -B -b ####)");
  };
  if (b.size() < 8) return bad(std::to_string(b.size()) + " bytes, shorter than its fixed part");
  LoadOption o;
  o.attributes = static_cast<std::uint32_t>(get_le(b.data(), 4));
  std::size_t fpl = get_le(b.data() + 4, 2);
  std::size_t p = 6, units = 0;
  for (;; ++units) {
    if (p + 2 * units + 2 > b.size()) return bad("description is not NUL-terminated");
    if (get_le(b.data() + p + 2 * units, 2) == 0) break;
  }
  o.description = from_utf16(b.data() + p, units);
  p += 2 * units + 2;
  if (fpl < 4 || p + fpl > b.size())
    return bad("device path list of " + std::to_string(fpl) + " bytes does not fit in " +
               std::to_string(b.size() - p) + " bytes");
  // Walk the nodes: each at least 4 bytes, inside the list, the first instance ending with End.
  for (std::size_t q = p;;) {
    if (q + 4 > p + fpl) return bad("device path has no End node");
    std::size_t len = get_le(b.data() + q + 2, 2);
    if (len < 4 || q + len > p + fpl)
      return bad("device path node at byte " + std::to_string(q) + " has length " +
                 std::to_string(len));
    if (b[q] == kEndType && b[q + 1] == kEndEntireSubtype) break;
    q += len;
  }
  o.file_path_list.assign(b.begin() + static_cast<long>(p), b.begin() + static_cast<long>(p + fpl));
  o.optional_data.assign(b.begin() + static_cast<long>(p + fpl), b.end());
  return o;
}

bool valid_attributes(std::uint32_t a) {
  // BOOTSERVICE_ACCESS | RUNTIME_ACCESS required; nothing beyond the defined low bits.
  return (a & 0x6) == 0x6 && a <= 0x7f;
}

std::string hex4(std::uint16_t n) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04X", n);
  return buf;
}

std::optional<std::uint16_t> boot_number(std::string_view name) {
  if (name.size() != 8 || name.substr(0, 4) != "Boot") return std::nullopt;
  std::uint16_t n = 0;
  for (char c : name.substr(4)) {
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0) return std::nullopt;
    n = static_cast<std::uint16_t>(n * 16 + d);
  }
  return n;
}

// ---- efivarfs ------------------------------------------------------------------------------

class EfivarfsStore final : public VarStore {
 public:
  EfivarfsStore(std::filesystem::path dir, std::string_view guid)
      : dir_(std::move(dir)), guid_(guid) {}

  Result<std::vector<std::string>> list() const override {
    std::error_code ec;
    std::vector<std::string> out;
    const std::string suffix = "-" + guid_;
    std::filesystem::directory_iterator it(dir_, ec), end;
    if (ec)
      return make_error(Errc::not_found, "efivars " + dir_.string() + ": " + ec.message() +
                                             " (not booted with UEFI, or efivarfs not mounted)");
    for (; it != end; it.increment(ec)) {
      if (ec) return make_error(Errc::io, "efivars " + dir_.string() + ": " + ec.message());
      std::string f = it->path().filename().string();
      if (f.size() > suffix.size() &&
          f.compare(f.size() - suffix.size(), suffix.size(), suffix) == 0)
        out.push_back(f.substr(0, f.size() - suffix.size()));
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  Result<std::optional<EfiVariable>> get(std::string_view name) const override {
    auto path = file(name);
    if (::access(path.c_str(), F_OK) != 0 && errno == ENOENT) return std::optional<EfiVariable>{};
    ABUP_TRY(std::string content, abup::read_file(path));
    if (content.size() < 4)
      return make_error(Errc::invalid_input, "EFI variable " + std::string(name) + " (" +
                                                 path.string() +
                                                 "): " + std::to_string(content.size()) +
                                                 " bytes, shorter than its 4-byte attributes");
    EfiVariable v;
    v.attributes = static_cast<std::uint32_t>(
        get_le(reinterpret_cast<const std::uint8_t*>(content.data()), 4));
    v.data.assign(content.begin() + 4, content.end());
    return std::optional<EfiVariable>(std::move(v));
  }

  Status set(std::string_view name, const EfiVariable& value) override {
    auto path = file(name);
    ABUP_CHECK(clear_immutable(path));
    Bytes content;
    put32(content, value.attributes);
    content.insert(content.end(), value.data.begin(), value.data.end());
    // efivarfs replaces the variable on each write(); O_TRUNC only for a plain directory.
    int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (on_efivarfs() ? 0 : O_TRUNC);
    ABUP_TRY(Fd fd, open_file(path, flags, 0644));
    ssize_t n = ::write(fd.get(), content.data(), content.size());
    if (n != static_cast<ssize_t>(content.size()))
      return make_error(Errc::io, "write EFI variable " + std::string(name) + " (" + path.string() +
                                      "): " + (n < 0 ? errno_text(errno) : "short write"));
    fault_point("boot-write");  // crash tests: a power cut after the n-th write of boot state
    return {};
  }

  Status remove(std::string_view name) override {
    auto path = file(name);
    ABUP_CHECK(clear_immutable(path));
    if (::unlink(path.c_str()) != 0 && errno != ENOENT)
      return make_error(Errc::io, "delete EFI variable " + std::string(name) + " (" +
                                      path.string() + "): " + errno_text(errno));
    fault_point("boot-write");
    return {};
  }

 private:
  std::filesystem::path file(std::string_view name) const {
    return dir_ / (std::string(name) + "-" + guid_);
  }

  bool on_efivarfs() const {
    struct statfs s {};
    return ::statfs(dir_.c_str(), &s) == 0 &&
           static_cast<unsigned long>(s.f_type) == EFIVARFS_MAGIC;
  }

  // efivarfs marks most variable files immutable; plain directories may not support the ioctl.
  static Status clear_immutable(const std::filesystem::path& path) {
    Fd fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
    if (!fd.valid()) return {};  // absent: nothing to clear
    int flags = 0;
    if (::ioctl(fd.get(), FS_IOC_GETFLAGS, &flags) != 0) {
      if (errno == ENOTTY || errno == EOPNOTSUPP || errno == EINVAL) return {};
      return make_error(Errc::io, "FS_IOC_GETFLAGS " + path.string() + ": " + errno_text(errno));
    }
    if (!(flags & FS_IMMUTABLE_FL)) return {};
    flags &= ~FS_IMMUTABLE_FL;
    if (::ioctl(fd.get(), FS_IOC_SETFLAGS, &flags) != 0)
      return make_error(Errc::io, "clear the immutable flag of " + path.string() + ": " +
                                      errno_text(errno) + " (needs CAP_LINUX_IMMUTABLE)");
    return {};
  }

  std::filesystem::path dir_;
  std::string guid_;
};

// ---- the backend ---------------------------------------------------------------------------

struct UefiState {
  std::map<std::uint16_t, LoadOption> entries;  // every Boot#### present
  std::map<char, std::uint16_t> ours;           // slot -> its entry
  std::vector<std::uint16_t> order;             // BootOrder
  std::optional<std::uint16_t> next;            // BootNext
};

std::string description_of(char slot) {
  return std::string(kDescriptionPrefix) + slot;
}

std::optional<char> slot_of(const UefiState& st, std::uint16_t n) {
  for (const auto& [s, num] : st.ours)
    if (num == n) return s;
  return std::nullopt;
}

std::optional<char> first_in_order(const UefiState& st) {
  for (std::uint16_t n : st.order)
    if (auto s = slot_of(st, n)) return s;
  return std::nullopt;
}

class UefiBackend final : public Backend {
 public:
  UefiBackend(const BackendContext& ctx, VarStore& vars, std::unique_ptr<VarStore> owned)
      : pair_(ctx.pair),
        loaders_(ctx.uefi_loader),
        cmdlines_(ctx.uefi_cmdline),
        vars_(vars),
        owned_(std::move(owned)) {}

  std::string_view name() const override { return "uefi"; }

  Status arm(char slot) override {
    ABUP_CHECK(check_slot_name(slot, "uefi"));
    const std::string what = "uefi arm " + std::string(1, slot);
    auto loaded = load();
    if (!loaded) return std::move(loaded).error().with_context(what);
    UefiState st = std::move(*loaded);
    const char other = slot == 'A' ? 'B' : 'A';
    // The slot that falls back must be bootable from BootOrder: create its entry if missing.
    std::vector<std::uint16_t> order = st.order;
    if (!st.ours.count(other)) ABUP_CHECK_CTX(ensure_entry(st, other), what);
    // The slot's own entry is rewritten in place when it names another loader or command line
    // (one SetVariable: old or new, never torn). BootNext may already point at it (an earlier
    // arming of an older stage): it goes first, so that a power cut between the writes never
    // leaves a one-shot boot of a load option that is neither the old nor the new one abup
    // verified the files of; the running slot's entry is never rewritten here.
    auto wanted = wanted_option(slot);
    if (!wanted) return std::move(wanted).error().with_context(what);
    if (auto it = st.ours.find(slot); it != st.ours.end() && st.next == it->second &&
                                      encode(st.entries[it->second]) != encode(*wanted)) {
      ABUP_CHECK_CTX(vars_.remove("BootNext"), what);
      st.next.reset();
    }
    ABUP_CHECK_CTX(ensure_entry(st, slot), what);
    // The other slot is the running one, the one to fall back to: when its entry is not in
    // BootOrder it goes first, else the firmware would fall back to whatever entry comes first
    // (a removable-media path, PXE, a shell) instead of to it.
    if (std::find(order.begin(), order.end(), st.ours[other]) == order.end())
      order.insert(order.begin(), st.ours[other]);
    if (std::find(order.begin(), order.end(), st.ours[slot]) == order.end())
      order.push_back(st.ours[slot]);
    // Invariant 4: the armed slot must not be the default before commit, so it may not precede
    // the other slot's entry (only then is it moved, to just after it).
    auto pos_new = std::find(order.begin(), order.end(), st.ours[slot]);
    auto pos_old = std::find(order.begin(), order.end(), st.ours[other]);
    if (pos_new < pos_old) {
      order.erase(pos_new);
      order.insert(std::find(order.begin(), order.end(), st.ours[other]) + 1, st.ours[slot]);
    }
    // BootNext before BootOrder: a crash in between leaves the old default behind the one try.
    if (st.next != st.ours[slot]) {
      Bytes data;
      put16(data, st.ours[slot]);
      ABUP_CHECK_CTX(vars_.set("BootNext", {kEfiVarNvBsRt, data}), what);
    }
    if (order != st.order) ABUP_CHECK_CTX(write_order(order), what);
    return {};
  }

  Status commit(char slot) override {
    ABUP_CHECK(check_slot_name(slot, "uefi"));
    const std::string what = "uefi commit " + std::string(1, slot);
    auto loaded = load();
    if (!loaded) return std::move(loaded).error().with_context(what);
    UefiState st = std::move(*loaded);
    if (!st.ours.count(slot)) ABUP_CHECK_CTX(ensure_entry(st, slot), what);
    std::vector<std::uint16_t> order = st.order;
    order.erase(std::remove(order.begin(), order.end(), st.ours[slot]), order.end());
    order.insert(order.begin(), st.ours[slot]);
    if (order != st.order) ABUP_CHECK_CTX(write_order(order), what);
    if (st.next == st.ours[slot]) ABUP_CHECK_CTX(vars_.remove("BootNext"), what);
    return {};
  }

  Status mark_bad(char slot) override {
    ABUP_CHECK(check_slot_name(slot, "uefi"));
    const std::string what = "uefi mark_bad " + std::string(1, slot);
    auto loaded = load();
    if (!loaded) return std::move(loaded).error().with_context(what);
    UefiState st = std::move(*loaded);
    if (!st.ours.count(slot)) return {};
    if (st.next == st.ours[slot]) ABUP_CHECK_CTX(vars_.remove("BootNext"), what);
    std::vector<std::uint16_t> order = st.order;
    order.erase(std::remove(order.begin(), order.end(), st.ours[slot]), order.end());
    if (order != st.order) ABUP_CHECK_CTX(write_order(order), what);
    return {};
  }

  Result<BootView> read() const override {
    ABUP_TRY(UefiState st, load());
    BootView v;
    v.default_slot = first_in_order(st);
    v.next = st.next ? slot_of(st, *st.next) : v.default_slot;
    int ours_in_order = 0;
    for (char s : {'A', 'B'})
      if (st.ours.count(s) &&
          std::find(st.order.begin(), st.order.end(), st.ours.at(s)) != st.order.end())
        ++ours_in_order;
    int rank = ours_in_order;
    for (std::uint16_t n : st.order) {
      if (auto s = slot_of(st, n); s && !v.slots.count(*s)) v.slots[*s] = {true, 0, rank--};
    }
    for (const auto& [s, n] : st.ours) {
      v.slots.try_emplace(s, SlotBootState{false, 0, 0});
      if (st.next == n) v.slots[s].tries = 1;
      v.detail += (v.detail.empty() ? "" : "; ") + description_of(s) + " = Boot" + hex4(n);
    }
    v.detail += "; BootOrder=";
    for (std::size_t i = 0; i < st.order.size(); ++i)
      v.detail += (i ? "," : "") + hex4(st.order[i]);
    if (st.next) {
      v.detail += "; BootNext=" + hex4(*st.next);
      if (!slot_of(st, *st.next)) v.detail += " (not a slot entry: the firmware boots it next)";
    }
    return v;
  }

 private:
  Result<UefiState> load() const {
    UefiState st;
    ABUP_TRY(auto names, vars_.list());
    for (const auto& name : names) {
      auto n = boot_number(name);
      if (!n) continue;
      ABUP_TRY(auto var, get_checked(name));
      if (!var) continue;
      ABUP_TRY(LoadOption o, parse_load_option(var->data, name));
      for (char s : {'A', 'B'})
        if (o.description == description_of(s) && !st.ours.count(s)) st.ours[s] = *n;
      st.entries[*n] = std::move(o);
    }
    ABUP_TRY(auto order, get_checked("BootOrder"));
    if (order) {
      if (order->data.size() % 2 != 0)
        return make_error(Errc::invalid_input, "EFI variable BootOrder: odd length " +
                                                   std::to_string(order->data.size()) +
                                                   " (a list of 16-bit entry numbers)");
      for (std::size_t i = 0; i < order->data.size(); i += 2)
        st.order.push_back(static_cast<std::uint16_t>(get_le(order->data.data() + i, 2)));
    }
    // An entry listed in BootOrder is the one the firmware uses: prefer it over a duplicate.
    for (std::uint16_t n : st.order) {
      auto it = st.entries.find(n);
      if (it == st.entries.end()) continue;
      for (char s : {'A', 'B'}) {
        if (it->second.description != description_of(s)) continue;
        auto cur = st.ours.find(s);
        if (cur == st.ours.end() ||
            std::find(st.order.begin(), st.order.end(), cur->second) == st.order.end())
          st.ours[s] = n;
      }
    }
    ABUP_TRY(auto next, get_checked("BootNext"));
    if (next) {
      if (next->data.size() != 2)
        return make_error(
            Errc::invalid_input,
            "EFI variable BootNext: " + std::to_string(next->data.size()) + " bytes, expected 2");
      st.next = static_cast<std::uint16_t>(get_le(next->data.data(), 2));
    }
    return st;
  }

  Result<std::optional<EfiVariable>> get_checked(const std::string& name) const {
    auto v = vars_.get(name);
    if (!v) return std::move(v).error();
    if (*v && !valid_attributes((*v)->attributes)) {
      char buf[16];
      std::snprintf(buf, sizeof buf, "0x%08x", (*v)->attributes);
      return make_error(Errc::invalid_input,
                        "EFI variable " + name + ": bad attributes " + buf +
                            " (expected NON_VOLATILE|BOOTSERVICE_ACCESS|RUNTIME_ACCESS = 0x7)");
    }
    return v;
  }

  Status write_order(const std::vector<std::uint16_t>& order) {
    Bytes data;
    for (std::uint16_t n : order) put16(data, n);
    return vars_.set("BootOrder", {kEfiVarNvBsRt, data});
  }

  Result<Bytes> device_path(char slot) const {
    if (!pair_) return make_error(Errc::invalid_input, "no slot pair: cannot locate the ESP");
    const GptEntry* esp = nullptr;
    for (const auto& e : pair_->gpt.entries) {
      std::string n = e.name;
      std::transform(n.begin(), n.end(), n.begin(),
                     [](unsigned char c) { return std::tolower(c); });
      if (n == "efi-system" || n == "esp" || e.type.str() == kEspTypeGuid) {
        esp = &e;
        break;
      }
    }
    if (!esp)
      return make_error(Errc::not_found,
                        pair_->disk + ": no EFI system partition (label EFI-SYSTEM/esp or type " +
                            std::string(kEspTypeGuid) + ")");
    Bytes b;
    b.push_back(kMediaType);
    b.push_back(kHdSubtype);
    put16(b, kHdNodeLength);
    put32(b, esp->number);
    put64(b, esp->first_lba);
    put64(b, esp->last_lba - esp->first_lba + 1);
    b.insert(b.end(), esp->unique.bytes.begin(), esp->unique.bytes.end());
    b.push_back(0x02);  // partition format: GPT
    b.push_back(0x02);  // signature type: GUID
    auto it = loaders_.find(slot);
    std::string loader = it != loaders_.end() && !it->second.empty()
                             ? it->second
                             : std::string("\\EFI\\acl\\usr-") + char(std::tolower(slot)) + ".efi";
    Bytes path = to_utf16(loader);
    b.push_back(kMediaType);
    b.push_back(kFilePathSubtype);
    put16(b, static_cast<std::uint16_t>(4 + path.size()));
    b.insert(b.end(), path.begin(), path.end());
    b.push_back(kEndType);
    b.push_back(kEndEntireSubtype);
    put16(b, 4);
    return b;
  }

  // Creates or rewrites the slot's Boot#### (a free number when it has none) so that it holds
  // the wanted load option; st is updated.
  Result<LoadOption> wanted_option(char slot) const {
    LoadOption o;
    o.attributes = kLoadOptionActive;
    o.description = description_of(slot);
    ABUP_TRY(o.file_path_list, device_path(slot));
    if (auto it = cmdlines_.find(slot); it != cmdlines_.end() && !it->second.empty())
      o.optional_data = to_utf16(it->second);
    return o;
  }

  Status ensure_entry(UefiState& st, char slot) {
    ABUP_TRY(LoadOption o, wanted_option(slot));
    std::uint16_t n = 0;
    if (auto it = st.ours.find(slot); it != st.ours.end()) {
      n = it->second;
      if (encode(st.entries[n]) == encode(o)) return {};
    } else {
      while (st.entries.count(n) ||
             std::find(st.order.begin(), st.order.end(), n) != st.order.end()) {
        if (n == 0xFFFF) return make_error(Errc::failed, "no free Boot#### number");
        ++n;
      }
    }
    ABUP_CHECK(vars_.set("Boot" + hex4(n), {kEfiVarNvBsRt, encode(o)}));
    st.ours[slot] = n;
    st.entries[n] = std::move(o);
    return {};
  }

  const SlotPair* pair_;
  std::map<char, std::string> loaders_, cmdlines_;
  VarStore& vars_;
  std::unique_ptr<VarStore> owned_;
};

}  // namespace

std::unique_ptr<VarStore> make_efivarfs_store(const std::filesystem::path& dir,
                                              std::string_view vendor_guid) {
  return std::make_unique<EfivarfsStore>(dir, vendor_guid);
}

Result<std::unique_ptr<Backend>> make_uefi_backend(const BackendContext& context, BackendIo io) {
  std::unique_ptr<VarStore> owned;
  VarStore* vars = io.vars;
  if (!vars) {
    owned = make_efivarfs_store(context.efivars.empty() ? context.root / "sys/firmware/efi/efivars"
                                                        : context.efivars);
    vars = owned.get();
  }
  return std::unique_ptr<Backend>(std::make_unique<UefiBackend>(context, *vars, std::move(owned)));
}

}  // namespace abup::partitions::boot
