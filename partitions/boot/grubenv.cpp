// grubenv: ORDER / <S>_OK / <S>_TRY in GRUB's 1024-byte environment block, read by the project's
// grub.cfg (partitions/boot/grub.cfg). GRUB rewrites the block in place (save_env), so do we:
// one pwrite of the whole block and an fsync. Every variable stays inside the first 512-byte
// sector and the second sector is all '#', so a torn write of the two sectors reads as the old
// or the new block.
#include <fcntl.h>

#include <algorithm>
#include <string>
#include <vector>

#include "abup/fs.hpp"
#include "partitions/boot/backend.hpp"

namespace abup::partitions::boot {
namespace {

constexpr std::size_t kBlockSize = 1024;
constexpr std::size_t kSectorSize = 512;
constexpr std::string_view kHeader = "# GRUB Environment Block\n";
constexpr int kMaxTries = 9;  // grub.cfg decrements through a 0..9 lookup

struct Env {
  std::vector<char> order{'A', 'B'};
  std::map<char, bool> ok{{'A', false}, {'B', false}};
  std::map<char, int> tries{{'A', 0}, {'B', 0}};
  std::vector<std::pair<std::string, std::string>> others;  // preserved, in file order
  std::size_t used_bytes = 0;  // end of the last variable line in the block
};

bool is_ours(const std::string& key) {
  return key == "ORDER" || key == "A_OK" || key == "A_TRY" || key == "B_OK" || key == "B_TRY";
}

Result<std::vector<std::pair<std::string, std::string>>> parse_lines(const std::string& b,
                                                                     const std::string& what,
                                                                     std::size_t& used) {
  std::vector<std::pair<std::string, std::string>> out;
  std::size_t p = kHeader.size();
  int line = 1;
  auto bad = [&](const std::string& why) {
    return make_error(Errc::invalid_input, what + ": not a GRUB environment block: line " +
                                               std::to_string(line) + ": " + why +
                                               " (recreate it with grub-editenv FILE create)");
  };
  while (p < b.size()) {
    ++line;
    if (b[p] == '#') {  // comment, or the '#' padding up to the end of the block
      while (p < b.size() && b[p] != '\n') {
        if (b[p] == '\0') return bad("NUL byte");
        ++p;
      }
      ++p;
      continue;
    }
    std::size_t eq = p;
    while (eq < b.size() && b[eq] != '=' && b[eq] != '\n' && b[eq] != '\0') ++eq;
    if (eq >= b.size() || b[eq] != '=') return bad("no '=' in a variable line");
    if (eq == p) return bad("empty variable name");
    std::string key = b.substr(p, eq - p), value;
    std::size_t q = eq + 1;
    for (; q < b.size() && b[q] != '\n'; ++q) {
      if (b[q] == '\0') return bad("NUL byte in the value of " + key);
      if (b[q] == '\\' && q + 1 < b.size()) ++q;  // GRUB escapes '\\' and newline
      value += b[q];
    }
    if (q >= b.size()) return bad("unterminated value of " + key);
    p = q + 1;
    used = p;
    out.emplace_back(std::move(key), std::move(value));
  }
  return out;
}

Result<Env> parse_env(const std::string& b, const std::string& what) {
  if (b.size() != kBlockSize)
    return make_error(Errc::invalid_input,
                      what + ": a GRUB environment block is exactly 1024 bytes, this file has " +
                          std::to_string(b.size()) +
                          " (recreate it with grub-editenv FILE create)");
  if (b.compare(0, kHeader.size(), kHeader) != 0)
    return make_error(Errc::invalid_input,
                      what + ": missing the \"# GRUB Environment Block\" header (not a grubenv)");
  Env env;
  ABUP_TRY(auto lines, parse_lines(b, what, env.used_bytes));
  std::map<std::string, std::string> ours;
  for (auto& [k, v] : lines) {
    if (is_ours(k)) {
      ours[k] = v;
    } else {
      auto it = std::find_if(env.others.begin(), env.others.end(),
                             [&](const auto& kv) { return kv.first == k; });
      if (it != env.others.end())
        it->second = v;  // GRUB: the last assignment wins
      else
        env.others.emplace_back(k, v);
    }
  }
  auto bad = [&](const std::string& key, const std::string& v, const std::string& expected) {
    return make_error(Errc::invalid_input, what + ": " + key + "=\"" + v + "\": expected " +
                                               expected + " (fix it with grub-editenv FILE set " +
                                               key + "=...)");
  };
  if (auto it = ours.find("ORDER"); it != ours.end()) {
    env.order.clear();
    for (std::size_t i = 0; i < it->second.size(); ++i) {
      char c = it->second[i];
      if (c == ' ') continue;
      bool token_end = i + 1 == it->second.size() || it->second[i + 1] == ' ';
      if ((c != 'A' && c != 'B') || !token_end ||
          std::count(env.order.begin(), env.order.end(), c) != 0)
        return bad("ORDER", it->second, "slot names A and B separated by spaces, each once");
      env.order.push_back(c);
    }
  }
  for (char s : {'A', 'B'}) {
    const std::string ok_key = std::string(1, s) + "_OK", try_key = std::string(1, s) + "_TRY";
    if (auto it = ours.find(ok_key); it != ours.end()) {
      if (it->second != "0" && it->second != "1") return bad(ok_key, it->second, "0 or 1");
      env.ok[s] = it->second == "1";
    }
    if (auto it = ours.find(try_key); it != ours.end()) {
      if (it->second.size() != 1 || it->second[0] < '0' || it->second[0] - '0' > kMaxTries)
        return bad(try_key, it->second, "a count of tries 0..9");
      env.tries[s] = it->second[0] - '0';
    }
  }
  return env;
}

std::string escape(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '\n') out += '\\';
    out += c;
  }
  return out;
}

Result<std::string> serialize(const Env& env, const std::string& what) {
  std::string s(kHeader);
  s += "ORDER=";
  for (std::size_t i = 0; i < env.order.size(); ++i)
    s += (i ? " " : "") + std::string(1, env.order[i]);
  s += "\n";
  for (char slot : {'A', 'B'}) {
    s += std::string(1, slot) + "_OK=" + (env.ok.at(slot) ? "1" : "0") + "\n";
    s += std::string(1, slot) + "_TRY=" + std::to_string(env.tries.at(slot)) + "\n";
  }
  for (const auto& [k, v] : env.others) s += k + "=" + escape(v) + "\n";
  if (s.size() > kSectorSize)
    return make_error(Errc::invalid_input,
                      what + ": the variables need " + std::to_string(s.size()) +
                          " bytes, more than the first 512-byte sector that a torn write keeps "
                          "consistent; remove unused variables with grub-editenv FILE unset");
  s.append(kBlockSize - s.size(), '#');
  return s;
}

std::optional<char> first_bootable(const Env& env, bool need_ok) {
  for (char s : env.order)
    if (env.ok.at(s) || (!need_ok && env.tries.at(s) > 0)) return s;
  return std::nullopt;
}

class GrubenvBackend final : public Backend {
 public:
  GrubenvBackend(std::filesystem::path path, SectorWriter* writer)
      : path_(std::move(path)), writer_(writer) {}

  std::string_view name() const override { return "grubenv"; }

  Status arm(char slot) override {
    return update(slot, "arm", [slot](Env& env) {
      env.order.erase(std::remove(env.order.begin(), env.order.end(), slot), env.order.end());
      env.order.insert(env.order.begin(), slot);
      env.ok[slot] = false;
      env.tries[slot] = 1;
    });
  }

  Status commit(char slot) override {
    return update(slot, "commit", [slot](Env& env) {
      env.order.erase(std::remove(env.order.begin(), env.order.end(), slot), env.order.end());
      env.order.insert(env.order.begin(), slot);
      env.ok[slot] = true;
      env.tries[slot] = 0;
    });
  }

  Status mark_bad(char slot) override {
    return update(slot, "mark_bad", [slot](Env& env) {
      env.ok[slot] = false;
      env.tries[slot] = 0;
    });
  }

  Result<BootView> read() const override {
    ABUP_TRY(Env env, load());
    BootView v;
    v.next = first_bootable(env, false);
    v.default_slot = first_bootable(env, true);
    for (char s : {'A', 'B'}) {
      auto pos = std::find(env.order.begin(), env.order.end(), s);
      int priority = pos == env.order.end()
                         ? 0
                         : static_cast<int>(env.order.end() - pos);  // first in ORDER = highest
      v.slots[s] = SlotBootState{env.ok.at(s), env.tries.at(s), priority};
    }
    v.detail = path_.string() + ": ORDER=\"";
    for (std::size_t i = 0; i < env.order.size(); ++i)
      v.detail += (i ? " " : "") + std::string(1, env.order[i]);
    v.detail += "\"";
    for (char s : {'A', 'B'})
      v.detail += std::string(" ") + s + "_OK=" + (env.ok.at(s) ? "1" : "0") + " " + s +
                  "_TRY=" + std::to_string(env.tries.at(s));
    if (!v.next) v.detail += "; no bootable slot: GRUB halts";
    return v;
  }

 private:
  Result<Env> load() const {
    ABUP_TRY(std::string block, abup::read_file(path_));
    return parse_env(block, "grubenv " + path_.string());
  }

  template <typename F>
  Status update(char slot, const std::string& verb, F change) {
    ABUP_CHECK(check_slot_name(slot, "grubenv"));
    const std::string what = "grubenv " + verb + " " + std::string(1, slot);
    auto current = abup::read_file(path_);
    if (!current) return std::move(current).error().with_context(what);
    auto loaded = parse_env(*current, "grubenv " + path_.string());
    if (!loaded) return std::move(loaded).error().with_context(what);
    Env env = std::move(*loaded);
    if (env.used_bytes > kSectorSize)
      return make_error(Errc::refused,
                        what + ": " + path_.string() +
                            " has variables beyond its first 512-byte sector, so an in-place "
                            "rewrite could tear; remove unused variables with grub-editenv");
    change(env);
    auto serialized = serialize(env, path_.string());
    if (!serialized) return std::move(serialized).error().with_context(what);
    const std::string after = std::move(*serialized);
    if (after == *current) return {};

    Fd fd;
    FdSectorWriter fd_writer(-1, path_.string());
    SectorWriter* w = writer_;
    if (!w) {
      auto opened = open_file(path_, O_RDWR | O_CLOEXEC);
      if (!opened) return std::move(opened).error().with_context(what);
      fd = std::move(*opened);
      fd_writer = FdSectorWriter(fd.get(), path_.string());
      w = &fd_writer;
    }
    std::span<const std::uint8_t> bytes(reinterpret_cast<const std::uint8_t*>(after.data()),
                                        after.size());
    ABUP_CHECK_CTX(w->write(0, bytes), what);
    ABUP_CHECK_CTX(w->sync(), what);
    return {};
  }

  std::filesystem::path path_;
  SectorWriter* writer_;
};

}  // namespace

Result<std::unique_ptr<Backend>> make_grubenv_backend(const BackendContext& context, BackendIo io) {
  std::filesystem::path path =
      context.grubenv.empty() ? context.root / "boot/grub/grubenv" : context.grubenv;
  return std::unique_ptr<Backend>(std::make_unique<GrubenvBackend>(path, io.writer));
}

}  // namespace abup::partitions::boot
