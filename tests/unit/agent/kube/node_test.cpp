// parse_node reads what the API server (or anything answering in its place) sends: a field of an
// unexpected type is an error value, never an exception out of the watch callback.
#include <doctest/doctest.h>

#include "agent/kube/client.hpp"

using namespace abup;
using namespace abup::agent::kube;

TEST_CASE("parse_node: a non-string kind is refused, not thrown") {
  for (const char* text :
       {R"({"kind":42,"metadata":{"name":"n"}})", R"({"kind":["Node"],"metadata":{"name":"n"}})",
        R"({"kind":"Pod","metadata":{"name":"n"}})"}) {
    INFO(text);
    auto n = parse_node(text);
    REQUIRE_FALSE(n);
    CHECK(n.error().code == Errc::invalid_input);
    CHECK(n.error().message == "Node object: not a v1 Node");
  }
  auto n = parse_node(R"({"metadata":{"name":"n","annotations":{"a":"b"}}})");
  REQUIRE(n);
  CHECK(n->annotations.at("a") == "b");
}
