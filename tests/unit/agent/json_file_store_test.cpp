// JsonFileStore<T> on a tiny record type: what every persisted file (state.json, daemon.json,
// aks.json) gets from the store rather than from its own field mapping.
#include "agent/json_file_store.hpp"

#include <doctest/doctest.h>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "abup/fs.hpp"
#include "support/util.hpp"

using namespace abup;
using namespace abup::agent;
using abup::test::TempDir;
using nlohmann::json;

namespace {

struct Note : PersistedFile {
  static constexpr std::string_view kFileName = "note.json";
  static constexpr std::string_view kMembers[] = {"text", "count"};
  static constexpr std::string_view kAside = "to forget the note";

  std::string text;
  std::uint64_t count = 0;

  static Result<Note> from_json(const JsonFields& top) {
    Note n;
    ABUP_TRY(n.text, top.string("text"));
    ABUP_TRY(n.count, top.count("count", 0));
    return n;
  }
  [[nodiscard]] json to_json() const { return {{"text", text}, {"count", count}}; }
};

using NoteStore = JsonFileStore<Note>;

std::string text_of(const NoteStore& store) {
  return abup::test::read_file(store.path());
}

void write_text(const NoteStore& store, const std::string& text) {
  REQUIRE(atomic_write_file(store.path(), text));
}

}  // namespace

TEST_CASE("JsonFileStore: a missing file is the empty record, and reading creates nothing") {
  TempDir dir;
  NoteStore store(dir.path() / "state");
  CHECK(store.path() == dir.path() / "state" / "note.json");
  for (bool for_status : {false, true}) {
    auto n = for_status ? store.load_for_status() : store.load();
    REQUIRE(n);
    CHECK(n->text.empty());
    CHECK(n->count == 0);
    CHECK(n->schema_version == kStateSchemaVersion);
    CHECK(n->unknown.empty());
  }
  CHECK_FALSE(std::filesystem::exists(dir.path() / "state"));
}

TEST_CASE("JsonFileStore: a record round-trips, written as sorted JSON with schemaVersion, 0600") {
  TempDir dir;
  NoteStore store(dir.path() / "state");  // the directory is created by the first save
  Note n;
  n.text = "hello";
  n.count = 3;
  REQUIRE(store.save(n));
  CHECK(text_of(store) ==
        "{\n  \"count\": 3,\n  \"schemaVersion\": 1,\n  \"text\": \"hello\"\n}\n");
  struct stat st {};
  REQUIRE(::stat(store.path().c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  auto back = store.load();
  REQUIRE(back);
  CHECK(back->text == "hello");
  CHECK(back->count == 3);
  CHECK(back->unknown.empty());  // schemaVersion is the store's, not an unknown member
}

TEST_CASE("JsonFileStore: a field of the wrong type, or no JSON object, names the file") {
  struct Bad {
    std::string text;
    std::string why;
  };
  const std::vector<Bad> cases = {
      {R"({"text": 5})", "text: expected a string, got number"},
      {R"({"count": -1})", "count: expected a non-negative integer, got number"},
      {R"({"schemaVersion": "2"})", "schemaVersion: expected an integer, got string"},
      {"{\"text\": ", "not valid JSON"},
      {"[]", "expected a JSON object, got array"},
  };
  for (const auto& c : cases) {
    TempDir dir;
    NoteStore store(dir.path());
    write_text(store, c.text);
    INFO(c.text);
    for (bool for_status : {false, true}) {
      auto n = for_status ? store.load_for_status() : store.load();
      REQUIRE_FALSE(n);
      INFO(n.error().message);
      CHECK(n.error().code == Errc::invalid_input);
      CHECK(n.error().message.find(store.path().string() + ": " + c.why) == 0);
      CHECK(n.error().message.find("(correct it, or move it aside to forget the note)") !=
            std::string::npos);
    }
    CHECK(text_of(store) == c.text);
  }
}

TEST_CASE("JsonFileStore: a newer schema is read for status only, and never written") {
  TempDir dir;
  NoteStore store(dir.path());
  const std::string before = R"({"schemaVersion": 2, "text": "new", "shape": "round"})";
  write_text(store, before);

  auto acting = store.load();
  REQUIRE_FALSE(acting);
  CHECK(acting.error().code == Errc::refused);
  INFO(acting.error().message);
  CHECK(acting.error().message.find(store.path().string() +
                                    ": schemaVersion 2, written by a newer abup") == 0);
  CHECK(acting.error().message.find("move the file aside to forget the note") != std::string::npos);

  auto shown = store.load_for_status();
  REQUIRE(shown);
  CHECK(shown->schema_version == 2);
  CHECK(shown->text == "new");
  shown->text = "changed";
  auto saved = store.save(*shown);
  REQUIRE_FALSE(saved);
  CHECK(saved.error().code == Errc::refused);
  CHECK(text_of(store) == before);
}

TEST_CASE("JsonFileStore: members this abup does not know survive a rewrite") {
  TempDir dir;
  NoteStore store(dir.path());
  write_text(store, R"({"text": "a", "shape": {"sides": 3}, "count": 1})");
  auto n = store.load();
  REQUIRE(n);
  n->count = 2;
  REQUIRE(store.save(*n));
  auto out = json::parse(text_of(store));
  CHECK(out["shape"] == json{{"sides", 3}});
  CHECK(out["count"] == 2);
  CHECK(out["schemaVersion"] == 1);
  // A member the record maps is the record's: an unknown one never overrides it.
  n->unknown["text"] = "\"stale\"";
  REQUIRE(store.save(*n));
  CHECK(json::parse(text_of(store))["text"] == "a");
}

TEST_CASE("JsonFileStore: a kill between the temp write and the rename leaves the old file") {
  TempDir dir;
  NoteStore store(dir.path());
  Note n;
  n.text = "old";
  REQUIRE(store.save(n));
  const auto before = text_of(store);
  // What a writer killed before its rename leaves: a partial temp file beside the real one.
  auto tmp = store.path();
  tmp += ".tmp.99999";
  REQUIRE(atomic_write_file(tmp, "{\"text\": \"ne"));
  auto back = store.load();
  REQUIRE(back);
  CHECK(back->text == "old");
  CHECK(text_of(store) == before);
  // The next save replaces the file whole; the stale temp file never becomes it.
  n.text = "new";
  REQUIRE(store.save(n));
  back = store.load();
  REQUIRE(back);
  CHECK(back->text == "new");
}
