#include "update-protocol/manifest/manifest_json.hpp"

#include <algorithm>
#include <utility>

namespace abup::protocol::manifest_json {
namespace {

// Schema 1: {"offset", "size", "uncompressedSize", "sha256", "chunkSha256", "chunkXxh3"}.
Result<Frame> decode_fixed(const json& f, const std::string& fp) {
  if (!f.is_object()) return bad(fp, "expected an object");
  Frame fr;
  ABUP_TRY(fr.offset, get<std::uint64_t>(f, fp, "offset"));
  ABUP_TRY(fr.size, get<std::uint64_t>(f, fp, "size"));
  ABUP_TRY(fr.uncompressed_size, get<std::uint64_t>(f, fp, "uncompressedSize"));
  ABUP_TRY(fr.sha256, get_digest<32>(f, fp, "sha256"));
  ABUP_TRY(fr.chunk_sha256, get_digest<32>(f, fp, "chunkSha256"));
  ABUP_TRY(fr.chunk_xxh3, get_digest<16>(f, fp, "chunkXxh3"));
  return fr;
}

Result<std::uint64_t> frame_number(const json& v, const std::string& fp, const char* what) {
  if (!v.is_number_unsigned())
    return bad(fp, std::string(what) + ": expected a non-negative integer");
  return v.get<std::uint64_t>();
}

template <std::size_t N>
Result<std::array<std::uint8_t, N>> frame_digest(const json& v, const std::string& fp,
                                                 const char* what) {
  auto raw = v.is_string() ? from_hex(v.get_ref<const std::string&>()) : std::nullopt;
  if (!raw || raw->size() != N)
    return bad(fp, std::string(what) + ": expected " + std::to_string(2 * N) + " hex digits");
  std::array<std::uint8_t, N> out;
  std::copy(raw->begin(), raw->end(), out.begin());
  return out;
}

// Schema 2: [uncompressedOffset, uncompressedSize, compressedSize, sha256, chunkSha256,
// chunkXxh3].
Result<Frame> decode_cdc(const json& f, const std::string& fp) {
  if (!f.is_array() || f.size() != kFrameFields)
    return bad(fp,
               "expected [uncompressedOffset, uncompressedSize, compressedSize, sha256, "
               "chunkSha256, chunkXxh3]");
  Frame fr;
  ABUP_TRY(fr.uncompressed_offset, frame_number(f[0], fp, "uncompressedOffset"));
  ABUP_TRY(fr.uncompressed_size, frame_number(f[1], fp, "uncompressedSize"));
  ABUP_TRY(fr.size, frame_number(f[2], fp, "compressedSize"));
  ABUP_TRY(fr.sha256, frame_digest<32>(f[3], fp, "sha256"));
  ABUP_TRY(fr.chunk_sha256, frame_digest<32>(f[4], fp, "chunkSha256"));
  ABUP_TRY(fr.chunk_xxh3, frame_digest<16>(f[5], fp, "chunkXxh3"));
  return fr;
}

// nlohmann's SAX interface. Builds the DOM as json::parse would, except that the elements of
// images[i].frames go to a FrameTable: each element is built as a small DOM of its own, decoded
// and dropped.
// The shortest text of a frame that decodes: [0,1,1,"<64 hex>","<64 hex>","<32 hex>"] and a
// comma; schema 1's objects are longer.
constexpr std::size_t kMinFrameText = 177;

class Reader {
 public:
  explicit Reader(std::size_t text_size) : text_size_(text_size) {}

  bool null() { return value(json(nullptr)); }
  bool boolean(bool v) { return value(json(v)); }
  bool number_integer(json::number_integer_t v) { return value(json(v)); }
  bool number_unsigned(json::number_unsigned_t v) { return value(json(v)); }
  bool number_float(json::number_float_t v, const std::string& /*text*/) { return value(json(v)); }
  bool string(json::string_t& v) { return value(json(std::move(v))); }
  bool binary(json::binary_t& /*v*/) { return false; }  // binary formats only, never JSON
  bool start_object(std::size_t /*elements*/) { return open(json::object()); }
  bool start_array(std::size_t /*elements*/) { return open(json::array()); }
  bool end_object() { return close(); }
  bool end_array() { return close(); }
  bool key(json::string_t& k) {
    Level& l = levels_.back();
    if (l.node->contains(k) && !duplicate_)
      duplicate_ = bad(l.path, "key '" + k.substr(0, 80) + "' appears twice");
    l.key = std::move(k);
    return true;
  }
  bool parse_error(std::size_t /*position*/, const std::string& /*last_token*/,
                   const nlohmann::detail::exception& /*error*/) {
    return false;
  }

  ManifestJson result;
  std::optional<Error> duplicate_;

 private:
  enum class Role { other, images, image, frames, frame };
  struct Level {
    Role role;
    json* node;  // nullptr for frames: its elements are not kept
    std::string path;
    std::string key;              // the current key, in an object
    std::size_t index = 0;        // elements so far, in an array
    FrameTable* table = nullptr;  // frames
  };

  // Where a new value goes, and the path of a container opened there.
  json* slot(Level& parent) {
    if (parent.node->is_object()) return &(*parent.node)[parent.key];
    parent.node->push_back(nullptr);
    return &parent.node->back();
  }
  std::string child_path(const Level& parent) const {
    const bool object = parent.node && parent.node->is_object();
    if (object && levels_.size() == 1) return parent.key;
    if (object) return parent.path + "." + parent.key;
    return parent.path + "[" + std::to_string(parent.index) + "]";
  }

  bool value(json&& v) {
    if (levels_.empty()) {
      result.top = std::move(v);
      return true;
    }
    Level& parent = levels_.back();
    if (parent.role == Role::frames) {
      add_frame(parent, v);
    } else {
      *slot(parent) = std::move(v);
    }
    ++parent.index;
    return true;
  }

  bool open(json&& empty) {
    const bool array = empty.is_array();
    if (levels_.empty()) {
      result.top = std::move(empty);
      levels_.push_back({Role::other, &result.top, "(top)", {}});
      return true;
    }
    Level& parent = levels_.back();
    std::string path = child_path(parent);
    Role role = Role::other;
    if (parent.role == Role::frames) {
      frame_ = std::move(empty);
      levels_.push_back({Role::frame, &frame_, std::move(path), {}});
      return true;
    }
    if (levels_.size() == 1 && parent.node->is_object() && parent.key == "images" && array)
      role = Role::images;
    else if (parent.role == Role::images && !array)
      role = Role::image;
    json* node = slot(parent);
    *node = std::move(empty);
    if (parent.role == Role::image && parent.key == "frames" && array) {
      // The key stays, as an empty array: what the image's FrameTable stands for.
      FrameTable* table = &result.frames[image_];
      // Reserved at once, so the table never exists twice while it grows: no frame takes fewer
      // than kMinFrameText bytes of text. Pages reserved beyond the last frame are never touched.
      if (table->frames.capacity() == 0)
        table->frames.reserve(std::min(kMaxFrames, text_size_ / kMinFrameText + 1) -
                              std::min(kept_, kMaxFrames));
      levels_.push_back({Role::frames, nullptr, std::move(path), {}, 0, table});
      return true;
    }
    if (role == Role::image) image_ = parent.index;
    levels_.push_back({role, node, std::move(path), {}});
    return true;
  }

  bool close() {
    const Role role = levels_.back().role;
    levels_.pop_back();
    if (levels_.empty()) return true;
    Level& parent = levels_.back();
    if (role == Role::frame) {
      add_frame(parent, frame_);
      frame_ = json();
    }
    ++parent.index;
    return true;
  }

  void add_frame(const Level& frames, const json& f) {
    FrameTable& t = *frames.table;
    const std::size_t j = t.count++;
    // Past the limit parse_manifest refuses the manifest on the count alone.
    if ((t.fixed_error && t.cdc_error) || kept_ >= kMaxFrames) return;
    const std::string fp = frames.path + "[" + std::to_string(j) + "]";
    bool kept = false;
    if (!t.fixed_error) {
      if (auto fr = decode_fixed(f, fp)) {
        t.frames.push_back(*fr);
        ++t.fixed_ok;
        kept = true;
      } else {
        t.fixed_error = std::move(fr).error();
      }
    }
    if (!t.cdc_error) {
      if (auto fr = decode_cdc(f, fp)) {
        t.frames.push_back(*fr);
        ++t.cdc_ok;
        kept = true;
      } else {
        t.cdc_error = std::move(fr).error();
      }
    }
    if (kept) ++kept_;
  }

  std::size_t text_size_;
  std::vector<Level> levels_;
  json frame_;             // the frame element being read
  std::size_t image_ = 0;  // index in images of the image being read
  std::size_t kept_ = 0;   // frames kept, all images
};

// A SAX pass that keeps only some top-level string members.
class TopStrings {
 public:
  explicit TopStrings(const std::vector<std::string>& keys) : keys_(keys) {}
  bool null() { return scalar(); }
  bool boolean(bool /*v*/) { return scalar(); }
  bool number_integer(json::number_integer_t /*v*/) { return scalar(); }
  bool number_unsigned(json::number_unsigned_t /*v*/) { return scalar(); }
  bool number_float(json::number_float_t /*v*/, const std::string& /*text*/) { return scalar(); }
  bool string(json::string_t& v) {
    if (depth_ == 1 && std::find(keys_.begin(), keys_.end(), key_) != keys_.end())
      found[key_] = std::move(v);
    return scalar();
  }
  bool binary(json::binary_t& /*v*/) { return false; }
  bool start_object(std::size_t /*elements*/) {
    if (depth_ == 0) object = true;
    return open();
  }
  bool start_array(std::size_t /*elements*/) { return open(); }
  bool end_object() { return close(); }
  bool end_array() { return close(); }
  bool key(json::string_t& k) {
    if (depth_ == 1) key_ = std::move(k);
    return true;
  }
  bool parse_error(std::size_t /*position*/, const std::string& /*last_token*/,
                   const nlohmann::detail::exception& /*error*/) {
    return false;
  }

  bool object = false;
  std::map<std::string, std::string> found;

 private:
  bool scalar() {
    if (depth_ == 1) key_.clear();
    return true;
  }
  bool open() {
    if (depth_ == 1) key_.clear();
    ++depth_;
    return true;
  }
  bool close() {
    --depth_;
    return true;
  }
  const std::vector<std::string>& keys_;
  std::size_t depth_ = 0;
  std::string key_;
};

}  // namespace

Result<std::map<std::string, std::string>> read_top_strings(std::string_view text,
                                                            const std::vector<std::string>& keys) {
  TopStrings reader(keys);
  if (!json::sax_parse(text.begin(), text.end(), &reader))
    return make_error(Errc::invalid_input, "abup/manifest.json: not valid JSON");
  if (!reader.object) return bad("(top)", "expected an object");
  return std::move(reader.found);
}

Result<ManifestJson> read(std::string_view text) {
  Reader reader(text.size());
  if (!json::sax_parse(text.begin(), text.end(), &reader))
    return make_error(Errc::invalid_input, "abup/manifest.json: not valid JSON");
  if (reader.duplicate_) return std::move(*reader.duplicate_);
  return std::move(reader.result);
}

}  // namespace abup::protocol::manifest_json
