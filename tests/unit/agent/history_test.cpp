// history.jsonl: every reader (rollback, append_history's de-duplication, the AKS commit report,
// `abup history`) looks its fields up as strings, so a line where one is not is skipped like a
// torn line, with the reason, instead of throwing out of the reader.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "abup/fs.hpp"
#include "agent/lifecycle.hpp"
#include "support/util.hpp"

using namespace abup;
using namespace abup::agent;
using abup::test::TempDir;

TEST_CASE("history.jsonl: lines with a field of the wrong type are skipped and named") {
  TempDir dir;
  const std::string good =
      R"({"time":"t","operationId":"op-1","kind":"commit","outcome":"Committed","fromSlot":"A",)"
      R"("toSlot":"B","fromPartuuid":"a","toPartuuid":"b","fromVersion":"1","toVersion":"2"})";
  REQUIRE(atomic_write_file(dir.path() / "history.jsonl",
                            good + "\n" +  // 1
                                R"({"operationId":"op-2","toPartuuid":7})"
                                "\n"  // 2
                                R"({"kind":"commit","toSlot":null})"
                                "\n"  // 3
                                R"({"kind":"commit","toSlot":2})"
                                "\n"                        // 4
                                "[1]\n"                     // 5
                                "\n"                        // 6
                                R"({"time":"t","outco)"));  // 7: torn
  std::vector<std::string> skipped;
  auto lines = read_history(dir.path(), &skipped);
  REQUIRE(lines);
  REQUIRE(lines->size() == 2);
  CHECK((*lines)[0].operation_id == "op-1");
  CHECK((*lines)[0].outcome == "Committed");
  CHECK((*lines)[0].to_slot == "B");
  CHECK((*lines)[1].kind == "commit");
  CHECK((*lines)[1].to_slot.empty());  // null reads as empty
  const auto file = (dir.path() / "history.jsonl").string();
  REQUIRE(skipped.size() == 4);
  CHECK(skipped[0] == file + ":2: toPartuuid: expected a string, got number");
  CHECK(skipped[1] == file + ":4: toSlot: expected a string, got number");
  CHECK(skipped[2] == file + ":5: not a JSON object");
  CHECK(skipped[3] == file + ":7: not JSON");

  // Appending de-duplicates against the readable lines, without tripping over the others.
  Outcome o;
  o.kind = OutcomeKind::commit;
  o.code = OutcomeCode::committed;
  o.operation_id = "op-1";
  REQUIRE(append_history(dir.path(), o));
  o.operation_id = "op-2";
  REQUIRE(append_history(dir.path(), o));
  lines = read_history(dir.path());
  REQUIRE(lines);
  CHECK(lines->size() == 3);
}

TEST_CASE(
    "history.jsonl is capped: at kHistoryMaxLines the oldest half goes, the newest lines stay") {
  TempDir dir;
  Outcome o;
  o.kind = OutcomeKind::commit;
  o.code = OutcomeCode::committed;
  // The first kHistoryMaxLines lines are written at once, as append_history writes them (each
  // append re-reads the file, so a thousand appends would cost seconds, minutes under ASan).
  o.operation_id = "op-0";
  REQUIRE(append_history(dir.path(), o));
  const auto first = read_file(dir.path() / "history.jsonl");
  REQUIRE(first);
  const auto at = first->find("\"op-0\"");
  REQUIRE(at != std::string::npos);
  std::string text;
  for (std::size_t i = 0; i < kHistoryMaxLines; ++i)
    text += first->substr(0, at) + "\"op-" + std::to_string(i) + "\"" + first->substr(at + 6);
  REQUIRE(atomic_write_file(dir.path() / "history.jsonl", text, 0600));
  REQUIRE(read_history(dir.path())->size() == kHistoryMaxLines);
  for (std::size_t i = kHistoryMaxLines; i < kHistoryMaxLines + 10; ++i) {
    o.operation_id = "op-" + std::to_string(i);
    REQUIRE(append_history(dir.path(), o));
  }
  auto lines = read_history(dir.path());
  REQUIRE(lines);
  CHECK(lines->size() == kHistoryMaxLines / 2 + 10);
  CHECK(lines->back().operation_id == "op-" + std::to_string(kHistoryMaxLines + 9));
  CHECK(lines->front().operation_id == "op-" + std::to_string(kHistoryMaxLines / 2));
  // Still de-duplicated after the rewrite: a re-run of the last step adds nothing.
  REQUIRE(append_history(dir.path(), o));
  CHECK(read_history(dir.path())->size() == kHistoryMaxLines / 2 + 10);
}
