#include "update-protocol/cosi/tar.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>

#include "abup/bytes.hpp"
#include "support/util.hpp"

using namespace abup;
using namespace abup::protocol;
using abup::test::TempDir;

namespace {

Result<TarIndex> index_of(const std::filesystem::path& p) {
  auto src = open_file_source(p.string());
  REQUIRE(src.has_value());
  return read_tar_index(**src);
}

}  // namespace

TEST_CASE("tar index of an archive made by GNU tar, with pax and long names") {
  TempDir t;
  std::string long_name(150, 'x');
  test::run_ok("mkdir -p " + (t / "in/images").string());
  test::write_file(t / "in/cosi-marker", "");
  test::write_file(t / "in/metadata.json", "{}");
  test::write_file(t / "in/images" / long_name, std::string(1000, 'a'));
  test::run_ok("cd " + (t / "in").string() +
               " && tar --format=pax -cf ../a.tar cosi-marker metadata.json images/" + long_name);
  test::run_ok("cd " + (t / "in").string() +
               " && tar --format=gnu -cf ../g.tar cosi-marker metadata.json images/" + long_name);
  for (const char* name : {"a.tar", "g.tar"}) {
    auto idx = index_of(t / name);
    REQUIRE_MESSAGE(idx.has_value(), idx.error().message);
    REQUIRE(idx->entries.size() == 3);
    CHECK(idx->entries[0].name == "cosi-marker");
    CHECK(idx->entries[1].name == "metadata.json");
    CHECK(idx->entries[2].name == "images/" + long_name);
    CHECK(idx->entries[2].size == 1000);
    auto content = test::read_file(t / name).substr(idx->entries[2].data_offset, 1000);
    CHECK(content == std::string(1000, 'a'));
  }
}

TEST_CASE("our tar writer is read back by GNU tar") {
  TempDir t;
  auto path = t / "w.tar";
  {
    auto fd = open_file(path, O_RDWR | O_CREAT | O_TRUNC);
    REQUIRE(fd.has_value());
    TarAppender tar(fd->get(), 0, path.string());
    REQUIRE(tar.add("cosi-marker", ""));
    REQUIRE(tar.add("images/" + std::string(120, 'n'), "hello"));
    REQUIRE(tar.finish());
  }
  auto listing = test::run_ok("tar tf " + path.string());
  CHECK(listing == "cosi-marker\nimages/" + std::string(120, 'n') + "\n");
  CHECK(test::run_ok("tar xOf " + path.string() + " images/" + std::string(120, 'n')) == "hello");
  auto idx = index_of(path);
  REQUIRE(idx.has_value());
  CHECK(idx->end_offset + 1024 == std::filesystem::file_size(path));
}

TEST_CASE("malformed tar archives are refused with the reason") {
  TempDir t;
  test::write_file(t / "f", "data");
  test::run_ok("cd " + t.path().string() + " && tar cf ok.tar f");
  auto good = test::read_file(t / "ok.tar");

  SUBCASE("checksum") {
    auto bad = good;
    bad[0] = 'g';
    test::write_file(t / "bad.tar", bad);
    auto idx = index_of(t / "bad.tar");
    REQUIRE_FALSE(idx.has_value());
    CHECK(idx.error().message.find("checksum") != std::string::npos);
  }
  SUBCASE("truncated before the end marker") {
    test::write_file(t / "bad.tar", good.substr(0, 1024));
    auto idx = index_of(t / "bad.tar");
    REQUIRE_FALSE(idx.has_value());
    CHECK(idx.error().message.find("truncated") != std::string::npos);
  }
  SUBCASE("entry running past the end") {
    test::write_file(t / "bad.tar", good.substr(0, 514));
    auto idx = index_of(t / "bad.tar");
    REQUIRE_FALSE(idx.has_value());
    CHECK(idx.error().message.find("past the end") != std::string::npos);
  }
  SUBCASE("not a tar file") {
    test::write_file(t / "bad.tar", std::string(2048, 'z'));
    auto idx = index_of(t / "bad.tar");
    REQUIRE_FALSE(idx.has_value());
    CHECK(idx.error().message.find("ustar") != std::string::npos);
  }
}
