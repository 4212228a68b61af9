// systemd-boot backend: arm = LoaderEntryOneShot, commit = LoaderEntryDefault. Each call writes
// at most two variables, each one efivarfs write() = one SetVariable, ordered so that a power cut
// between them leaves a state that boots the old slot or the new one, and never makes an
// uncommitted slot the default (docs/architecture.md §3.4, §3.5).
#include "partitions/boot/systemd_boot.hpp"

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "partitions/little_endian.hpp"

namespace abup::partitions::boot {

std::string default_loader_entry(char slot) {
  return std::string("acl-usr-") + char(slot == 'A' ? 'a' : slot == 'B' ? 'b' : '?') + ".efi";
}

std::vector<std::uint8_t> loader_string(std::string_view s) {
  return to_utf16(s);
}

namespace {

// A series of NUL-terminated UTF-16LE strings (LoaderEntries; one string for the others).
std::optional<std::vector<std::string>> parse_strings(const std::vector<std::uint8_t>& d) {
  if (d.size() % 2 != 0 || d.size() < 2 || d[d.size() - 1] != 0 || d[d.size() - 2] != 0)
    return std::nullopt;
  std::vector<std::string> out;
  for (std::size_t start = 0, i = 0; i < d.size(); i += 2) {
    if (get_le(d.data() + i, 2) != 0) continue;
    out.push_back(from_utf16(d.data() + start, (i - start) / 2));
    start = i + 2;
  }
  return out;
}

}  // namespace

std::optional<std::string> parse_loader_string(const std::vector<std::uint8_t>& d) {
  auto all = parse_strings(d);
  if (!all || all->size() != 1) return std::nullopt;
  return std::move(all->front());
}

namespace {

constexpr std::string_view kOneShot = "LoaderEntryOneShot";
constexpr std::string_view kDefault = "LoaderEntryDefault";
constexpr std::string_view kSelected = "LoaderEntrySelected";
constexpr std::string_view kEntries = "LoaderEntries";

struct LoaderState {
  std::optional<std::string> one_shot, default_entry, selected;
  std::optional<std::vector<std::string>> entries;  // what systemd-boot found at the last boot
};

class SystemdBootBackend final : public Backend {
 public:
  SystemdBootBackend(const BackendContext& ctx, VarStore& vars, std::unique_ptr<VarStore> owned)
      : vars_(vars), owned_(std::move(owned)) {
    for (char s : {'A', 'B'}) {
      auto it = ctx.loader_entry.find(s);
      ids_[s] = it != ctx.loader_entry.end() && !it->second.empty() ? it->second
                                                                    : default_loader_entry(s);
    }
  }

  std::string_view name() const override { return "systemd-boot"; }

  Status arm(char slot) override {
    ABUP_CHECK(check_slot_name(slot, "systemd-boot"));
    const std::string what = "systemd-boot arm " + std::string(1, slot);
    auto loaded = load();
    if (!loaded) return std::move(loaded).error().with_context(what);
    const char other = slot == 'A' ? 'B' : 'A';
    // The fallback first: when the one try does not commit, systemd-boot boots the default, so
    // it must name the running slot before the one-shot exists (absent, loader.conf's `default`
    // would decide, which abup cannot read back).
    if (loaded->default_entry != ids_[other]) ABUP_CHECK_CTX(set(kDefault, ids_[other]), what);
    if (loaded->one_shot != ids_[slot]) ABUP_CHECK_CTX(set(kOneShot, ids_[slot]), what);
    return {};
  }

  Status commit(char slot) override {
    ABUP_CHECK(check_slot_name(slot, "systemd-boot"));
    const std::string what = "systemd-boot commit " + std::string(1, slot);
    auto loaded = load();
    if (!loaded) return std::move(loaded).error().with_context(what);
    // Default first: a one-shot of the same slot left behind (systemd-boot normally deleted it
    // when it booted it) then boots the committed slot anyway.
    if (loaded->default_entry != ids_[slot]) ABUP_CHECK_CTX(set(kDefault, ids_[slot]), what);
    if (loaded->one_shot == ids_[slot]) ABUP_CHECK_CTX(vars_.remove(kOneShot), what);
    return {};
  }

  Status mark_bad(char slot) override {
    ABUP_CHECK(check_slot_name(slot, "systemd-boot"));
    const std::string what = "systemd-boot mark_bad " + std::string(1, slot);
    auto loaded = load();
    if (!loaded) return std::move(loaded).error().with_context(what);
    const char other = slot == 'A' ? 'B' : 'A';
    // Default first: the state in between is an ordinary arming of the bad slot, which the
    // one-shot's removal then cancels.
    if (loaded->default_entry == ids_[slot]) ABUP_CHECK_CTX(set(kDefault, ids_[other]), what);
    if (loaded->one_shot == ids_[slot]) ABUP_CHECK_CTX(vars_.remove(kOneShot), what);
    return {};
  }

  Result<BootView> read() const override {
    ABUP_TRY(LoaderState st, load());
    BootView v;
    v.default_slot = slot_of(st.default_entry);
    auto one_shot = slot_of(st.one_shot);
    v.next = st.one_shot ? one_shot : v.default_slot;
    for (char s : {'A', 'B'}) {
      SlotBootState b;
      b.good = v.default_slot == s;
      b.tries = one_shot == s ? 1 : 0;
      b.priority = b.good ? 2 : b.tries;
      v.slots[s] = b;
    }
    auto text = [](const std::optional<std::string>& s) { return s ? *s : std::string("(unset)"); };
    v.detail = "LoaderEntryDefault=" + text(st.default_entry) +
               "; LoaderEntryOneShot=" + text(st.one_shot);
    if (st.one_shot && !one_shot) v.detail += " (not a slot entry: systemd-boot boots it next)";
    if (st.selected) v.detail += "; booted entry (LoaderEntrySelected)=" + *st.selected;
    if (st.entries) {
      for (char s : {'A', 'B'})
        if (std::find(st.entries->begin(), st.entries->end(), ids_.at(s)) == st.entries->end())
          v.detail += "; " + ids_.at(s) + " was not among the entries systemd-boot found at " +
                      "this boot (LoaderEntries)";
    }
    return v;
  }

 private:
  std::optional<char> slot_of(const std::optional<std::string>& id) const {
    if (!id) return std::nullopt;
    for (const auto& [s, sid] : ids_)
      if (sid == *id) return s;
    return std::nullopt;
  }

  Status set(std::string_view name, const std::string& value) {
    return vars_.set(name, {kEfiVarNvBsRt, loader_string(value)});
  }

  Result<std::optional<std::vector<std::string>>> get_strings(std::string_view name) const {
    ABUP_TRY(auto var, vars_.get(name));
    if (!var) return std::optional<std::vector<std::string>>{};
    auto strings = parse_strings(var->data);
    if (!strings)
      return make_error(Errc::invalid_input,
                        "EFI variable " + std::string(name) + "-" +
                            std::string(kLoaderInterfaceGuid) + ": " +
                            std::to_string(var->data.size()) +
                            " bytes that are not NUL-terminated UTF-16 (inspect it with "
                            "`bootctl status`; delete it with `rm` under efivarfs)");
    return strings;
  }

  Result<std::optional<std::string>> get_string(std::string_view name) const {
    ABUP_TRY(auto strings, get_strings(name));
    if (!strings) return std::optional<std::string>{};
    if (strings->size() != 1)
      return make_error(Errc::invalid_input,
                        "EFI variable " + std::string(name) + ": " +
                            std::to_string(strings->size()) +
                            " NUL-terminated strings, expected one boot loader entry id");
    return std::optional<std::string>(strings->front());
  }

  Result<LoaderState> load() const {
    LoaderState st;
    ABUP_TRY(st.one_shot, get_string(kOneShot));
    ABUP_TRY(st.default_entry, get_string(kDefault));
    ABUP_TRY(st.selected, get_string(kSelected));
    ABUP_TRY(st.entries, get_strings(kEntries));
    return st;
  }

  std::map<char, std::string> ids_;
  VarStore& vars_;
  std::unique_ptr<VarStore> owned_;
};

}  // namespace

Result<std::unique_ptr<Backend>> make_systemd_boot_backend(const BackendContext& context,
                                                           BackendIo io) {
  for (const auto& [slot, id] : context.loader_entry) {
    ABUP_CHECK(check_slot_name(slot, "systemd-boot"));
    if (id.find_first_of("/\\") != std::string::npos)
      return make_error(Errc::invalid_input, "systemd-boot: entry id '" + id + "' of slot " +
                                                 std::string(1, slot) +
                                                 " is a path; expected a file name in EFI/Linux/ "
                                                 "such as " +
                                                 default_loader_entry(slot));
  }
  auto id_of = [&](char s) {
    auto it = context.loader_entry.find(s);
    return it != context.loader_entry.end() && !it->second.empty() ? it->second
                                                                   : default_loader_entry(s);
  };
  if (id_of('A') == id_of('B'))
    return make_error(Errc::invalid_input, "systemd-boot: slots A and B have the same entry id '" +
                                               id_of('A') +
                                               "'; each slot needs its own UKI in EFI/Linux/");
  std::unique_ptr<VarStore> owned;
  VarStore* vars = io.vars;
  if (!vars) {
    owned = make_efivarfs_store(
        context.efivars.empty() ? context.root / "sys/firmware/efi/efivars" : context.efivars,
        kLoaderInterfaceGuid);
    vars = owned.get();
  }
  return std::unique_ptr<Backend>(
      std::make_unique<SystemdBootBackend>(context, *vars, std::move(owned)));
}

}  // namespace abup::partitions::boot
