// Helpers for the boot backend tests: a SectorWriter and a VarStore that record every write (and
// pass them through to the real file or efivars directory), replay of any prefix of a recording
// onto a copy, and the checks every backend test makes.
#pragma once

#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "abup/fs.hpp"
#include "partitions/boot/backend.hpp"
#include "support/util.hpp"
#include "unit/partitions/disk_helpers.hpp"

namespace abup::test {

struct WriteOp {
  bool sync = false;
  std::uint64_t offset = 0;
  std::string bytes;
};

class RecordingWriter final : public partitions::SectorWriter {
 public:
  explicit RecordingWriter(const std::filesystem::path& target)
      : fd_(::open(target.c_str(), O_RDWR | O_CLOEXEC)) {
    REQUIRE_MESSAGE(fd_.valid(), "open ", target.string());
  }
  Status write(std::uint64_t offset, std::span<const std::uint8_t> data) override {
    ops.push_back({false, offset, std::string(data.begin(), data.end())});
    return pwrite_full(fd_.get(), data, offset, "recorded target");
  }
  Status sync() override {
    ops.push_back({true, 0, {}});
    return {};
  }
  std::vector<WriteOp> ops;

 private:
  Fd fd_;
};

// The same sequence with every write cut into `sector`-sized writes (the unit a disk persists
// atomically).
inline std::vector<WriteOp> split_sectors(const std::vector<WriteOp>& ops, std::size_t sector) {
  std::vector<WriteOp> out;
  for (const auto& op : ops) {
    if (op.sync) {
      out.push_back(op);
      continue;
    }
    REQUIRE(op.offset % sector == 0);
    for (std::size_t i = 0; i < op.bytes.size(); i += sector)
      out.push_back({false, op.offset + i, op.bytes.substr(i, sector)});
  }
  return out;
}

// Applies the first n ops (syncs are no-ops on a copy) to `file`.
inline void apply_ops(const std::filesystem::path& file, const std::vector<WriteOp>& ops,
                      std::size_t n) {
  int fd = ::open(file.c_str(), O_RDWR | O_CLOEXEC);
  REQUIRE(fd >= 0);
  for (std::size_t i = 0; i < n && i < ops.size(); ++i) {
    if (ops[i].sync) continue;
    REQUIRE(
        ::pwrite(fd, ops[i].bytes.data(), ops[i].bytes.size(), static_cast<off_t>(ops[i].offset)) ==
        static_cast<ssize_t>(ops[i].bytes.size()));
  }
  ::close(fd);
}

inline std::string trimmed(const std::string& s) {
  auto b = s.find_first_not_of(" \t\r\n");
  auto e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

inline std::string view_text(const partitions::boot::BootView& v) {
  auto c = [](const std::optional<char>& s) { return s ? std::string(1, *s) : std::string("-"); };
  return "next=" + c(v.next) + " default=" + c(v.default_slot);
}

// A backend call that must succeed (its error message, when not).
inline void ok(const Status& st) {
  REQUIRE_MESSAGE(st.has_value(), (st ? "" : st.error().message));
}

inline partitions::boot::BootView read_view(const partitions::boot::Backend& b) {
  return value_of(b.read());
}

struct VarOp {
  bool remove = false;
  std::string name;
  partitions::boot::EfiVariable value;
};

// Records every set/remove and passes it through to an efivarfs directory (the variables of
// `vendor_guid`).
class RecordingVars final : public partitions::boot::VarStore {
 public:
  explicit RecordingVars(const std::filesystem::path& dir,
                         std::string_view vendor_guid = partitions::boot::kEfiGlobalGuid)
      : real_(partitions::boot::make_efivarfs_store(dir, vendor_guid)) {}
  Result<std::vector<std::string>> list() const override { return real_->list(); }
  Result<std::optional<partitions::boot::EfiVariable>> get(std::string_view n) const override {
    return real_->get(n);
  }
  Status set(std::string_view n, const partitions::boot::EfiVariable& v) override {
    ops.push_back({false, std::string(n), v});
    return real_->set(n, v);
  }
  Status remove(std::string_view n) override {
    ops.push_back({true, std::string(n), {}});
    return real_->remove(n);
  }
  std::vector<VarOp> ops;

 private:
  std::unique_ptr<partitions::boot::VarStore> real_;
};

// name -> content of every file of an efivars directory, to prove nothing was written.
inline std::map<std::string, std::string> dir_snapshot(const std::filesystem::path& dir) {
  std::map<std::string, std::string> m;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    m[e.path().filename().string()] = test::read_file(e.path());
  return m;
}

inline void copy_dir(const std::filesystem::path& from, const std::filesystem::path& to) {
  std::filesystem::remove_all(to);
  std::filesystem::copy(from, to);
}

// `work` made a copy of the efivars directory `orig` with the first n of `ops` applied: the
// variables a power cut after the nth write leaves.
inline void replay_var_ops(const std::filesystem::path& orig, const std::filesystem::path& work,
                           const std::vector<VarOp>& ops, std::size_t n,
                           std::string_view vendor_guid = partitions::boot::kEfiGlobalGuid) {
  copy_dir(orig, work);
  auto store = partitions::boot::make_efivarfs_store(work, vendor_guid);
  for (std::size_t i = 0; i < n; ++i)
    ok(ops[i].remove ? store->remove(ops[i].name) : store->set(ops[i].name, ops[i].value));
}

// An efivarfs directory in a fresh temporary directory and a backend over it. Variable `name` is
// the file dir/name`suffix`: "-" and the vendor GUID, spelled out by each test rather than taken
// from the code under test.
struct EfivarsFixture {
  TempDir tmp;
  std::filesystem::path dir = tmp / "efivars";
  std::string suffix;
  partitions::boot::BootBackend kind;
  partitions::boot::BackendContext context;  // its efivars is filled in by backend()

  EfivarsFixture(partitions::boot::BootBackend backend_kind, std::string guid_suffix)
      : suffix(std::move(guid_suffix)), kind(backend_kind) {
    std::filesystem::create_directories(dir);
  }
  std::string_view vendor_guid() const { return std::string_view(suffix).substr(1); }
  std::filesystem::path file(const std::string& name) const { return dir / (name + suffix); }
  bool has(const std::string& name) const { return std::filesystem::exists(file(name)); }
  std::string get(const std::string& name) const {
    REQUIRE_MESSAGE(has(name), name);
    return test::read_file(file(name));
  }
  std::map<std::string, std::string> snapshot() const { return dir_snapshot(dir); }
  // Over `efivars` (default: dir), reading and writing through `vars` when not null.
  std::unique_ptr<partitions::boot::Backend> backend(
      partitions::boot::VarStore* vars = nullptr, const std::filesystem::path& efivars = {}) const {
    partitions::boot::BackendContext ctx = context;
    ctx.efivars = efivars.empty() ? dir : efivars;
    return value_of(partitions::boot::make_backend(kind, ctx, {.vars = vars}));
  }
};

// The crash test of one operation of an efivars backend: `op` runs on the variables of `f`,
// recording its writes, and every prefix of them is replayed onto a copy of the directory as it
// was. Each prefix reads back, next the slot that the state before or after `op` boots (or
// `running`, the slot booted while it runs), the default that of one of them. Returns how many
// variable writes `op` made.
inline std::size_t crash_step(const EfivarsFixture& f, const std::string& step_name,
                              std::optional<char> running,
                              const std::function<Status(partitions::boot::Backend&)>& op) {
  CAPTURE(step_name);
  const auto orig = f.tmp / ("orig-" + step_name), work = f.tmp / "work";
  copy_dir(f.dir, orig);
  auto old_view = read_view(*f.backend());
  RecordingVars rec(f.dir, f.vendor_guid());
  ok(op(*f.backend(&rec)));
  REQUIRE_FALSE(rec.ops.empty());
  auto new_view = read_view(*f.backend());
  for (std::size_t n = 0; n <= rec.ops.size(); ++n) {
    CAPTURE(n);
    replay_var_ops(orig, work, rec.ops, n, f.vendor_guid());
    auto v = read_view(*f.backend(nullptr, work));  // every variable parses
    CHECK_MESSAGE(
        (v.next == old_view.next || v.next == new_view.next || (running && v.next == running)),
        view_text(v));
    CHECK_MESSAGE(
        (v.default_slot == old_view.default_slot || v.default_slot == new_view.default_slot),
        view_text(v));
  }
  return rec.ops.size();
}

}  // namespace abup::test
