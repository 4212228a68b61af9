// Helpers for the partitions tests that start from a Flatcar disk image: the image in a fresh
// temporary directory, sparse copies of it, and the reads a test cannot go on without.
#pragma once

#include <doctest/doctest.h>

#include <filesystem>
#include <string>
#include <utility>

#include "abup/result.hpp"
#include "partitions/gpt.hpp"
#include "partitions/slots.hpp"
#include "support/disk.hpp"
#include "support/util.hpp"

namespace abup::test {

// The value of a call the rest of the test needs; its error message when it failed.
template <typename T>
T value_of(Result<T> r) {
  REQUIRE_MESSAGE(r.has_value(), (r ? "" : r.error().message));
  return std::move(*r);
}

inline partitions::SlotPair discover_ok(const std::filesystem::path& disk) {
  return value_of(partitions::discover_slots(disk.string()));
}

inline partitions::GptTable read_ok(const std::filesystem::path& disk) {
  return value_of(partitions::read_gpt_path(disk.string()));
}

// A copy that keeps the image sparse (the partitions read as zeros and take no space).
inline void copy_sparse(const std::filesystem::path& from, const std::filesystem::path& to) {
  run_ok("cp --sparse=always " + shell_quote(from.string()) + " " + shell_quote(to.string()));
}

// A Flatcar disk image made by sgdisk/cgpt in its own temporary directory.
struct FlatcarDisk {
  TempDir tmp;
  std::filesystem::path disk = tmp / "disk.img";
  explicit FlatcarDisk(const DiskLayout& layout = {.usr_mib = 16}) {
    make_flatcar_disk(disk, layout);
  }
};

// A copy of the layout {.usr_mib = 8}, made once per test binary: for fixtures that want a
// fresh disk in every test without running sgdisk and cgpt each time.
inline void copy_small_flatcar_disk(const std::filesystem::path& to) {
  static TempDir base;
  static const auto tmpl = [] {
    auto p = base / "template.img";
    make_flatcar_disk(p, {.usr_mib = 8});
    return p;
  }();
  copy_sparse(tmpl, to);
}

}  // namespace abup::test
