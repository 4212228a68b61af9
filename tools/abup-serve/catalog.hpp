// What abup-serve offers: the signed COSI images of one directory, and per track the version
// named in DIR/tracks.json ({"stable": "202607.2.0", "beta": "202608.1.0"}). Both are read again
// whenever they change, so a test (or a person) switches a track by rewriting the file.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>

#include "abup/result.hpp"
#include "update-protocol/omaha/omaha.hpp"

namespace abup::serve {

struct Image {
  std::filesystem::path path;
  std::string name;     // path relative to the directory, '/'-separated
  std::string version;  // from the abup manifest
  std::uint64_t size = 0;
  std::string metadata_sha384;  // base64 SHA-384 of metadata.json (Microsoft's package hash)
  std::string file_sha256;      // base64 SHA-256 of the whole file (Flatcar's postinstall sha256)
};

class Catalog {
 public:
  Catalog(std::filesystem::path dir, std::string base_url);
  // The Omaha reply for a parsed request: every event acknowledged; with an update check, the
  // track's image when it is newer than the client's version (compared numerically), else
  // noupdate. An unknown track gets app status "error-unknownTrack".
  [[nodiscard]] std::string reply(const protocol::omaha::Request& request);
  // The image a track offers now (for the request log and --help's listing).
  [[nodiscard]] Result<Image> offer(const std::string& track);
  [[nodiscard]] const std::filesystem::path& dir() const { return dir_; }
  // Before serving starts (the default names the bound port).
  void set_base_url(std::string url);

 private:
  [[nodiscard]] Result<std::map<std::string, std::string>> tracks();
  [[nodiscard]] Result<Image> describe(const std::filesystem::path& path);

  std::filesystem::path dir_;
  std::string base_url_;
  std::mutex mutex_;
  // Images already described, by path; redone when size or mtime change.
  struct Cached {
    std::uintmax_t size;
    std::filesystem::file_time_type mtime;
    Image image;
  };
  std::map<std::filesystem::path, Cached> cache_;
};

}  // namespace abup::serve
