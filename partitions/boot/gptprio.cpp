// gptprio: Flatcar/ChromeOS GPT attribute bits (docs/reference/gptprio.md). The choice lives in the
// usr partitions' entries; GRUB's gptprio.next reads it, decrements tries and writes both copies.
#include <fcntl.h>

#include <algorithm>
#include <functional>
#include <set>
#include <string>

#include "abup/fs.hpp"
#include "partitions/boot/backend.hpp"
#include "partitions/gpt.hpp"

namespace abup::partitions::boot {
namespace {

constexpr int kPriorityShift = 48, kTriesShift = 52, kSuccessfulShift = 56;
constexpr std::uint64_t kPrioBitsMask =
    (0xFull << kPriorityShift) | (0xFull << kTriesShift) | (1ull << kSuccessfulShift);
constexpr int kMaxPriority = 15;

struct Prio {
  int priority = 0, tries = 0;
  bool successful = false;
};

Prio decode(std::uint64_t attrs) {
  return {static_cast<int>((attrs >> kPriorityShift) & 0xF),
          static_cast<int>((attrs >> kTriesShift) & 0xF), ((attrs >> kSuccessfulShift) & 1) != 0};
}

std::uint64_t encode(std::uint64_t attrs, const Prio& p) {
  return (attrs & ~kPrioBitsMask) | (std::uint64_t(p.priority & 0xF) << kPriorityShift) |
         (std::uint64_t(p.tries & 0xF) << kTriesShift) |
         (std::uint64_t(p.successful ? 1 : 0) << kSuccessfulShift);
}

// What cgpt prioritize does: the target gets the top priority (the number of distinct non-zero
// priorities of the others, plus its own, capped at 15); the others keep their relative order
// below it, squeezed to 1 when there are more groups than levels; priority 0 stays 0.
void prioritize(std::vector<GptEntry>& entries, const Guid& type, std::uint32_t target) {
  std::set<int, std::greater<>> groups;
  for (const auto& e : entries)
    if (e.type == type && e.number != target && decode(e.attributes).priority > 0)
      groups.insert(decode(e.attributes).priority);
  const int top = std::min<int>(static_cast<int>(groups.size()) + 1, kMaxPriority);
  std::map<int, int> renumber;
  int level = top - 1;
  for (int g : groups) renumber[g] = std::max(level--, 1);
  for (auto& e : entries) {
    if (e.type != type) continue;
    Prio p = decode(e.attributes);
    if (e.number == target) {
      p.priority = top;
    } else if (p.priority > 0) {
      p.priority = renumber[p.priority];
    }
    e.attributes = encode(e.attributes, p);
  }
}

// GRUB gptprio.next: strictly highest priority among usable candidates, ties to the lower
// partition number, priority 0 never.
const GptEntry* pick(const std::vector<GptEntry>& entries, const Guid& type, bool need_successful) {
  const GptEntry* best = nullptr;
  for (const auto& e : entries) {
    if (e.type != type) continue;
    Prio p = decode(e.attributes);
    bool usable = need_successful ? p.successful : (p.successful || p.tries > 0);
    if (!usable || p.priority == 0) continue;
    if (!best || p.priority > decode(best->attributes).priority) best = &e;
  }
  return best;
}

class GptprioBackend final : public Backend {
 public:
  GptprioBackend(const SlotPair& pair, SectorWriter* writer) : pair_(pair), writer_(writer) {}

  std::string_view name() const override { return "gptprio"; }

  // arm: one try, not yet good; commit: good, no tries needed. Either way first in priority.
  Status arm(char slot) override { return promote(slot, "arm", false, 1); }
  Status commit(char slot) override { return promote(slot, "commit", true, 0); }

  Status mark_bad(char slot) override {
    return update(slot, "mark_bad", [](GptEntry& e, std::vector<GptEntry>&, const Guid&) {
      e.attributes = encode(e.attributes, Prio{});
    });
  }

  Result<BootView> read() const override {
    ABUP_TRY(GptTable t, load());
    const Guid& type = pair_.a.entry.type;
    BootView v;
    auto slot_of = [&](const GptEntry* e) -> std::optional<char> {
      if (!e) return std::nullopt;
      if (e->number == pair_.a.entry.number) return 'A';
      if (e->number == pair_.b.entry.number) return 'B';
      return std::nullopt;
    };
    const GptEntry* next = pick(t.entries, type, false);
    const GptEntry* def = pick(t.entries, type, true);
    v.next = slot_of(next);
    v.default_slot = slot_of(def);
    for (char s : {'A', 'B'}) {
      const GptEntry* e = t.find_by_number(pair_.get(s).entry.number);
      if (!e) continue;
      Prio p = decode(e->attributes);
      v.slots[s] = SlotBootState{p.successful, p.tries, p.priority};
      v.detail += (v.detail.empty() ? "" : "; ") + e->name + " (partition " +
                  std::to_string(e->number) + "): priority=" + std::to_string(p.priority) +
                  " tries=" + std::to_string(p.tries) +
                  " successful=" + std::to_string(p.successful ? 1 : 0);
    }
    if (next && !v.next)
      v.detail += "; gptprio.next picks partition " + std::to_string(next->number) +
                  ", outside the slot pair";
    if (!next) v.detail += "; no bootable usr partition: GRUB stops at a prompt";
    if (!t.problems.empty()) v.detail += "; GPT: " + t.problems;
    if (t.copies_differ) v.detail += "; GPT: primary and backup copies differ";
    return v;
  }

 private:
  Status promote(char slot, const char* what, bool successful, int tries) {
    return update(slot, what, [&](GptEntry& e, std::vector<GptEntry>& all, const Guid& type) {
      Prio p = decode(e.attributes);
      p.successful = successful;
      p.tries = tries;
      e.attributes = encode(e.attributes, p);
      prioritize(all, type, e.number);
    });
  }

  using Change = std::function<void(GptEntry&, std::vector<GptEntry>&, const Guid&)>;

  Result<GptTable> load() const {
    ABUP_TRY(Fd fd, open_file(pair_.disk, O_RDONLY | O_CLOEXEC));
    return read_gpt(fd.get(), 0, pair_.gpt.sector_size, pair_.disk);
  }

  Status update(char slot, const std::string& verb, const Change& change) {
    ABUP_CHECK(check_slot_name(slot, "gptprio"));
    const std::string what = "gptprio " + verb + " " + std::string(1, slot);
    auto loaded = load();
    if (!loaded) return std::move(loaded).error().with_context(what);
    const GptTable old = std::move(*loaded);
    const Slot& s = pair_.get(slot);
    GptTable table = old;
    auto it = std::find_if(table.entries.begin(), table.entries.end(),
                           [&](const GptEntry& e) { return e.number == s.entry.number; });
    if (it == table.entries.end() || it->unique != s.entry.unique)
      return make_error(Errc::not_found, what + ": partition " + std::to_string(s.entry.number) +
                                             " of " + pair_.disk + " is no longer " + s.label() +
                                             " (PARTUUID " + s.partuuid() +
                                             "); rediscover the slots");
    change(*it, table.entries, pair_.a.entry.type);
    const bool damaged = !old.primary_valid || !old.backup_valid || old.copies_differ;
    bool same = true;
    for (std::size_t i = 0; i < old.entries.size(); ++i)
      same = same && old.entries[i].attributes == table.entries[i].attributes;
    if (same && !damaged) return {};

    Fd fd;
    FdSectorWriter fd_writer(-1, pair_.disk);
    SectorWriter* w = writer_;
    if (!w) {
      auto opened = open_file(pair_.disk, O_RDWR | O_CLOEXEC);
      if (!opened) return std::move(opened).error().with_context(what);
      fd = std::move(*opened);
      fd_writer = FdSectorWriter(fd.get(), pair_.disk);
      w = &fd_writer;
    }
    // A damaged (or stale) copy is first made whole from the copy readers use, so that while
    // the new table is written one copy always holds a complete old or new table.
    if (damaged) ABUP_CHECK_CTX(write_gpt(*w, old, pair_.disk), what + ": repair GPT");
    ABUP_CHECK_CTX(write_gpt(*w, table, pair_.disk), what);
    return {};
  }

  const SlotPair& pair_;
  SectorWriter* writer_;
};

}  // namespace

Result<std::unique_ptr<Backend>> make_gptprio_backend(const BackendContext& context, BackendIo io) {
  if (!context.pair)
    return make_error(Errc::invalid_input, "gptprio: no slot pair (discover the slots first)");
  return std::unique_ptr<Backend>(std::make_unique<GptprioBackend>(*context.pair, io.writer));
}

}  // namespace abup::partitions::boot
