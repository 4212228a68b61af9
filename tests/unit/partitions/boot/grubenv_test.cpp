#include <doctest/doctest.h>

#include <algorithm>
#include <set>
#include <string>

#include "partitions/boot/backend.hpp"
#include "support/util.hpp"
#include "unit/partitions/boot/boot_helpers.hpp"

using namespace abup;
using namespace abup::partitions::boot;
using namespace abup::test;

namespace {

constexpr std::size_t kHalf = 512;

std::unique_ptr<Backend> backend(const std::filesystem::path& env, SectorWriter* writer = nullptr) {
  BackendContext ctx;
  ctx.grubenv = env;
  auto b = make_backend(BootBackend::grubenv, ctx, {.writer = writer});
  REQUIRE_MESSAGE(b.has_value(), (b ? "" : b.error().message));
  return std::move(*b);
}

// The variables as GRUB's own tool reads the block, one KEY=value per entry.
std::set<std::string> editenv_list(const std::filesystem::path& env) {
  auto r = run("grub-editenv " + shell_quote(env.string()) + " list 2>&1");
  REQUIRE_MESSAGE(r.exit_code == 0, r.out);
  std::set<std::string> out;
  std::size_t p = 0;
  while (p < r.out.size()) {
    auto e = r.out.find('\n', p);
    if (e == std::string::npos) e = r.out.size();
    if (e > p) out.insert(r.out.substr(p, e - p));
    p = e + 1;
  }
  return out;
}

void editenv(const std::filesystem::path& env, const std::string& args) {
  run_ok("grub-editenv " + shell_quote(env.string()) + " " + args);
}

// Factory state: A booted and good, B empty, as the image builder would leave it.
std::filesystem::path factory_env(const TempDir& tmp) {
  auto env = tmp / "grubenv";
  editenv(env, "create");
  editenv(env, "set 'ORDER=A B' A_OK=1 A_TRY=0 B_OK=0 B_TRY=0");
  return env;
}

std::string join(const std::set<std::string>& s) {
  std::string out;
  for (const auto& x : s) out += x + "; ";
  return out;
}

// Emulates one boot through partitions/boot/grub.cfg: the first slot in ORDER with OK=1 boots,
// else one with TRY>0 has it decremented and saved; returns the slot, or 0.
char grub_boot(const std::filesystem::path& env) {
  auto vars = editenv_list(env);
  auto get = [&](const std::string& k, const std::string& dflt) {
    for (const auto& kv : vars)
      if (kv.rfind(k + "=", 0) == 0) return kv.substr(k.size() + 1);
    return dflt;
  };
  for (char s : get("ORDER", "A B")) {
    if (s == ' ') continue;
    const std::string ss(1, s);
    if (get(ss + "_OK", "0") == "1") return s;
    int tries = std::stoi(get(ss + "_TRY", "0"));
    if (tries > 0) {
      editenv(env, "set " + ss + "_TRY=" + std::to_string(tries - 1));
      return s;
    }
  }
  return 0;
}

void expect_error_no_write(const std::filesystem::path& env, const std::string& content,
                           const std::string& needle) {
  write_file(env, content);
  RecordingWriter rec(env);
  auto b = backend(env, &rec);
  for (int op = 0; op < 3; ++op) {
    Status st = op == 0 ? b->arm('B') : op == 1 ? b->commit('A') : b->mark_bad('B');
    REQUIRE_FALSE(st.has_value());
    CHECK_MESSAGE(st.error().message.find(needle) != std::string::npos, st.error().message);
  }
  auto v = b->read();
  REQUIRE_FALSE(v.has_value());
  CHECK_MESSAGE(v.error().message.find(env.string()) != std::string::npos, v.error().message);
  CHECK(rec.ops.empty());
  CHECK(test::read_file(env) == content);
}

}  // namespace

TEST_CASE("grubenv arm puts the new slot first with one try, commit makes it good") {
  TempDir tmp;
  auto env = factory_env(tmp);
  auto b = backend(env);
  CHECK(b->name() == "grubenv");
  CHECK(view_text(read_view(*b)) == "next=A default=A");
  ok(b->arm('B'));
  CHECK_MESSAGE(editenv_list(env) ==
                    (std::set<std::string>{"ORDER=B A", "A_OK=1", "A_TRY=0", "B_OK=0", "B_TRY=1"}),
                join(editenv_list(env)));
  CHECK(test::read_file(env).size() == 1024);
  auto v = read_view(*b);
  CHECK(view_text(v) == "next=B default=A");
  CHECK(v.slots['B'].tries == 1);
  CHECK(v.slots['B'].priority > v.slots['A'].priority);
  CHECK_FALSE(v.slots['B'].good);
  CHECK(v.slots['A'].good);
  ok(b->commit('B'));
  CHECK_MESSAGE(editenv_list(env) ==
                    (std::set<std::string>{"ORDER=B A", "A_OK=1", "A_TRY=0", "B_OK=1", "B_TRY=0"}),
                join(editenv_list(env)));
  CHECK(view_text(read_view(*b)) == "next=B default=B");
  // Rolling back to A by committing it.
  ok(b->commit('A'));
  CHECK(editenv_list(env).count("ORDER=A B") == 1);
  CHECK(view_text(read_view(*b)) == "next=A default=A");
}

TEST_CASE("grubenv: an armed slot that never commits falls back without any agent") {
  TempDir tmp;
  auto env = factory_env(tmp);
  auto b = backend(env);
  ok(b->arm('B'));
  CHECK(grub_boot(env) == 'B');  // the one try
  CHECK(view_text(read_view(*b)) == "next=A default=A");
  CHECK(grub_boot(env) == 'A');
  CHECK(grub_boot(env) == 'A');
  // mark_bad after a failed health check on B, then re-arm and commit.
  ok(b->mark_bad('B'));
  CHECK(editenv_list(env).count("B_TRY=0") == 1);
  CHECK(editenv_list(env).count("B_OK=0") == 1);
  ok(b->arm('B'));
  CHECK(grub_boot(env) == 'B');
  ok(b->commit('B'));
  CHECK(grub_boot(env) == 'B');
  CHECK(grub_boot(env) == 'B');
}

TEST_CASE("grubenv read follows the grub.cfg rule") {
  TempDir tmp;
  auto env = tmp / "grubenv";
  auto b = backend(env);
  editenv(env, "create");  // no variables: grub.cfg's defaults, nothing bootable
  auto v = read_view(*b);
  CHECK(view_text(v) == "next=- default=-");
  CHECK(v.detail.find("no bootable slot") != std::string::npos);
  editenv(env, "set 'ORDER=B A' B_OK=0 B_TRY=2 A_OK=0 A_TRY=1");
  CHECK(view_text(read_view(*b)) == "next=B default=-");
  editenv(env, "set B_TRY=0");
  CHECK(view_text(read_view(*b)) == "next=A default=-");
  editenv(env, "set A_OK=1 B_OK=1");
  CHECK(view_text(read_view(*b)) == "next=B default=B");
  editenv(env, "set ORDER=A");  // B not in ORDER: never booted
  CHECK(view_text(read_view(*b)) == "next=A default=A");
  CHECK(read_view(*b).slots['B'].priority == 0);
}

TEST_CASE("grubenv keeps other variables and writes every variable inside the first sector") {
  TempDir tmp;
  auto env = factory_env(tmp);
  editenv(env, "set saved_entry=flatcar next_entry=");
  auto b = backend(env);
  ok(b->arm('A'));
  ok(b->arm('B'));
  auto vars = editenv_list(env);
  CHECK(vars.count("saved_entry=flatcar") == 1);
  CHECK(vars.count("next_entry=") == 1);
  std::string block = test::read_file(env);
  REQUIRE(block.size() == 1024);
  CHECK(block.rfind("# GRUB Environment Block\n", 0) == 0);
  CHECK(block.substr(kHalf) == std::string(kHalf, '#'));
  // The in-place rewrite: one write of the whole block at offset 0, then a sync.
  RecordingWriter rec(env);
  ok(backend(env, &rec)->commit('B'));
  REQUIRE(rec.ops.size() == 2);
  CHECK(rec.ops[0].offset == 0);
  CHECK(rec.ops[0].bytes.size() == 1024);
  CHECK(rec.ops[1].sync);
  // Nothing to change: nothing written.
  RecordingWriter again(env);
  ok(backend(env, &again)->commit('B'));
  CHECK(again.ops.empty());
}

TEST_CASE("grubenv arm and commit are crash-safe: every prefix and every torn mix of sectors") {
  TempDir tmp;
  auto env = factory_env(tmp);
  editenv(env, "set saved_entry=flatcar");
  auto work = tmp / "work";
  for (int op = 0; op < 2; ++op) {
    CAPTURE(op);
    const std::string old_block = test::read_file(env);
    const auto old_vars = editenv_list(env);
    const auto old_view = view_text(read_view(*backend(env)));
    RecordingWriter rec(env);
    ok(op == 0 ? backend(env, &rec)->arm('B') : backend(env, &rec)->commit('B'));
    const std::string new_block = test::read_file(env);
    const auto new_vars = editenv_list(env);
    const auto new_view = view_text(read_view(*backend(env)));
    REQUIRE(old_vars != new_vars);
    std::vector<std::string> states;
    for (std::size_t n = 0; n <= rec.ops.size(); ++n) {
      write_file(work, old_block);
      apply_ops(work, rec.ops, n);
      states.push_back(test::read_file(work));
    }
    // A torn write persists either sector without the other.
    states.push_back(new_block.substr(0, kHalf) + old_block.substr(kHalf));
    states.push_back(old_block.substr(0, kHalf) + new_block.substr(kHalf));
    for (const auto& s : states) {
      write_file(work, s);
      auto vars = editenv_list(work);
      CHECK_MESSAGE((vars == old_vars || vars == new_vars), join(vars));
      auto view = view_text(read_view(*backend(work)));
      CHECK_MESSAGE((view == old_view || view == new_view), view);
    }
    // GRUB's own rewrite of the block (save_env of a tries decrement) between the two.
    if (op == 0) CHECK(grub_boot(env) == 'B');
  }
}

TEST_CASE("grubenv refuses a file of the wrong size, without a header, or with garbage") {
  TempDir tmp;
  auto env = tmp / "grubenv";
  const std::string header = "# GRUB Environment Block\n";
  auto pad = [](std::string s) {
    s.resize(1024, '#');
    return s;
  };
  SUBCASE("too short") {
    expect_error_no_write(env, pad(header).substr(0, 1000), "1024 bytes");
  }
  SUBCASE("too long") {
    expect_error_no_write(env, pad(header) + pad(header), "1024 bytes");
  }
  SUBCASE("empty") {
    expect_error_no_write(env, "", "1024 bytes");
  }
  SUBCASE("no header") {
    expect_error_no_write(env, pad("ORDER=A B\n"), "GRUB Environment Block");
  }
  SUBCASE("a line without =") {
    expect_error_no_write(env, pad(header + "ORDER=A B\nhello world\n"), "no '='");
  }
  SUBCASE("binary garbage") {
    std::string g = pad(header);
    for (std::size_t i = header.size(); i < 1024; ++i) g[i] = static_cast<char>(i * 7);
    expect_error_no_write(env, g, "not a GRUB environment block");
  }
  SUBCASE("bad values") {
    expect_error_no_write(env, pad(header + "A_OK=yes\n"), "A_OK");
    expect_error_no_write(env, pad(header + "B_TRY=12\n"), "B_TRY");
    expect_error_no_write(env, pad(header + "ORDER=A C\n"), "ORDER");
    expect_error_no_write(env, pad(header + "ORDER=A A\n"), "ORDER");
  }
  SUBCASE("variables past the first sector") {
    std::string s = header;
    for (int i = 0; s.size() < 600; ++i) s += "filler" + std::to_string(i) + "=xxxxxxxxxxxx\n";
    write_file(env, pad(s));
    REQUIRE(editenv_list(env).size() > 10);  // GRUB itself reads it fine
    RecordingWriter rec(env);
    auto st = backend(env, &rec)->arm('B');
    REQUIRE_FALSE(st.has_value());
    CHECK_MESSAGE(st.error().message.find("512-byte sector") != std::string::npos,
                  st.error().message);
    CHECK(rec.ops.empty());
    CHECK(read_view(*backend(env)).next == std::nullopt);
  }
  SUBCASE("missing file") {
    auto st = backend(tmp / "nope")->arm('B');
    REQUIRE_FALSE(st.has_value());
    CHECK(st.error().message.find("nope") != std::string::npos);
  }
}

TEST_CASE("the shipped grub.cfg is valid GRUB script and uses the backend's variables") {
  auto cfg = source_dir() / "partitions/boot/grub.cfg";
  run_ok("grub-script-check " + shell_quote(cfg.string()));
  std::string text = test::read_file(cfg);
  for (const char* v : {"ORDER", "A_OK", "A_TRY", "B_OK", "B_TRY", "save_env", "load_env"})
    CHECK_MESSAGE(text.find(v) != std::string::npos, v);
}
