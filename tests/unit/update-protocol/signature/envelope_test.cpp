// abup/manifest.sig parsing: precise errors, never exceptions.
#include <doctest/doctest.h>

#include "sig_helpers.hpp"

namespace ap = abup::protocol;

namespace {

std::string parse_error(const std::string& json) {
  auto r = ap::parse_signature_envelope(json);
  INFO("input: ", json);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == abup::Errc::invalid_input);
  return r.error().message;
}

}  // namespace

TEST_CASE("envelope round-trips, in spec field order, ignoring unknown fields") {
  std::vector<ap::SignatureEntry> in = {
      {std::string(64, 'a'), "ed25519", {1, 2, 3, 250}},
      {std::string(64, 'b'), "ml-dsa-65", {0}},
  };
  auto text = ap::serialize_signature_envelope(in);
  CHECK(text.find("\"keyid\"") < text.find("\"alg\""));
  CHECK(text.find("\"alg\"") < text.find("\"sig\""));
  auto out = ap::parse_signature_envelope(text);
  REQUIRE(out.has_value());
  REQUIRE(out->size() == 2);
  CHECK((*out)[0].keyid == in[0].keyid);
  CHECK((*out)[0].alg == "ed25519");
  CHECK((*out)[0].sig == in[0].sig);
  CHECK((*out)[1].alg == "ml-dsa-65");

  auto extra = ap::parse_signature_envelope(
      R"({"v":2,"signatures":[{"keyid":"ab","alg":"ed25519","sig":"AQID","note":"hsm-7"}]})");
  REQUIRE(extra.has_value());
  CHECK((*extra)[0].sig == std::vector<std::uint8_t>{1, 2, 3});
  auto empty = ap::parse_signature_envelope(R"({"signatures":[]})");
  REQUIRE(empty.has_value());
  CHECK(empty->empty());
}

TEST_CASE("malformed envelopes give errors naming the field") {
  CHECK(parse_error("{\"signatures\": [").starts_with("abup/manifest.sig: not valid JSON: "));
  CHECK(parse_error("").starts_with("abup/manifest.sig: not valid JSON: "));
  CHECK(parse_error("[1]") == "abup/manifest.sig: expected a JSON object, got array");
  CHECK(parse_error("{}") == "abup/manifest.sig: missing \"signatures\"");
  CHECK(parse_error(R"({"signatures":{}})") ==
        "abup/manifest.sig: signatures: expected an array, got object");
  CHECK(parse_error(R"({"signatures":["x"]})") ==
        "abup/manifest.sig: signatures[0]: expected an object, got string");
  CHECK(parse_error(R"({"signatures":[{"keyid":"a","alg":"ed25519","sig":"AQID"},
                       {"alg":"ed25519","sig":"AQID"}]})") ==
        "abup/manifest.sig: signatures[1]: missing \"keyid\"");
  CHECK(parse_error(R"({"signatures":[{"keyid":"a","sig":"AQID"}]})") ==
        "abup/manifest.sig: signatures[0]: missing \"alg\"");
  CHECK(parse_error(R"({"signatures":[{"keyid":"a","alg":"ed25519"}]})") ==
        "abup/manifest.sig: signatures[0]: missing \"sig\"");
  CHECK(parse_error(R"({"signatures":[{"keyid":7,"alg":"ed25519","sig":"AQID"}]})") ==
        "abup/manifest.sig: signatures[0].keyid: expected a string, got number");
  CHECK(parse_error(R"({"signatures":[{"keyid":"a","alg":"ed25519","sig":null}]})") ==
        "abup/manifest.sig: signatures[0].sig: expected a string, got null");
  CHECK(parse_error(R"({"signatures":[{"keyid":"a","alg":"ed25519","sig":"AQID"},
                       {"keyid":"a","alg":"ed25519","sig":"not base64!"}]})") ==
        "abup/manifest.sig: signatures[1].sig: not valid base64");
  CHECK(parse_error(R"({"signatures":[{"keyid":"a","alg":"ed25519","sig":"AQI"}]})") ==
        "abup/manifest.sig: signatures[0].sig: not valid base64");
  for (std::string bad : {"====", "AQ==AQ==", "=AQI", "AQ=D", "AQ-_"})
    CHECK(parse_error(R"({"signatures":[{"keyid":"a","alg":"ed25519","sig":")" + bad + R"("}]})") ==
          "abup/manifest.sig: signatures[0].sig: not valid base64");
  CHECK(parse_error(R"({"signatures":[{"keyid":"a","alg":"ed25519","sig":""}]})") ==
        "abup/manifest.sig: signatures[0].sig: empty");
  CHECK(parse_error(std::string(2 << 20, ' ')).find("more than the limit") != std::string::npos);
  // Not UTF-8: an error value, not an exception.
  CHECK(parse_error("{\"signatures\":[{\"keyid\":\"\xff\"}]}")
            .starts_with("abup/manifest.sig: not valid JSON"));
}
