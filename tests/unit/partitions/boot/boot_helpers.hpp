// Helpers for the boot backend tests: a SectorWriter and a VarStore that record every write (and
// pass them through to the real file or efivars directory), replay of any prefix of a recording
// onto a copy, and the checks every backend test makes.
#pragma once

#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "abup/fs.hpp"
#include "partitions/boot/backend.hpp"
#include "support/util.hpp"

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
  auto v = b.read();
  REQUIRE_MESSAGE(v.has_value(), (v ? "" : v.error().message));
  return *v;
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

}  // namespace abup::test
