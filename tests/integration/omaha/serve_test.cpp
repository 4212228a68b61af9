// abup check and the Omaha client against a real abup-serve process serving real signed images.
#include "serve.hpp"

#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "abup/bytes.hpp"
#include "abup/digest.hpp"
#include "abup/hex.hpp"
#include "support/world.hpp"
#include "update-protocol/omaha/omaha.hpp"

namespace omaha = abup::protocol::omaha;
using namespace abup::test;

namespace {

nlohmann::json check_json(const World& w, const std::string& extra = "") {
  auto r = abup_check(w.root(), "--json " + extra);
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  REQUIRE(!j.is_discarded());
  return j;
}

std::string trimmed_file(const std::filesystem::path& p) {
  auto s = read_file(p);
  while (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

}  // namespace

TEST_CASE("abup check: no update when the track offers the running version") {
  World w;  // runs 202601.01.0
  w.build_signed("v1", "202601.01.0");
  write_tracks(w.path("images"), {{"stable", "202601.1.0"}});  // the same release, spelled apart
  Serve serve(w.path("images"));
  write_omaha_config(w.root(), serve.endpoint(), "MachineID=raw");

  auto j = check_json(w);
  CHECK(j["result"] == "no-update");
  CHECK(j["version"] == "202601.1.0");
  CHECK_FALSE(j.contains("offer"));
  auto text = abup_check(w.root());
  CHECK(text.exit_code == 0);
  CHECK(text.out.find("no update: 202601.1.0 is current on track stable") != std::string::npos);

  // What abup check sent: the host's facts, normalized; and no events at all.
  auto requests = serve.requests();
  REQUIRE(requests.size() == 2);
  const auto& q = requests[0];
  CHECK(q["appid"] == kAppId);
  CHECK(q["version"] == "202601.1.0");
  CHECK(q["track"] == "stable");
  CHECK(q["arch"] == "amd64");
  CHECK(q["board"] == "amd64-usr");
  CHECK(q["installsource"] == "ondemandupdate");
  CHECK(q["machineid"] == trimmed_file(w.root() / "etc/machine-id"));
  CHECK(q["bootid"] == "{" + trimmed_file(w.root() / "proc/sys/kernel/random/boot_id") + "}");
  CHECK(q["updatecheck"] == true);
  CHECK(q["events"] == 0);
  CHECK(serve.events().empty());
}

TEST_CASE("abup check: an update offered with URL, size and both hashes, and it downloads") {
  World w;
  auto image = w.build_signed("acl-202607.02.0", "202607.02.0");
  w.build_signed("older", "202605.1.0");
  write_tracks(w.path("images"), {{"stable", "202607.2.0"}});
  Serve serve(w.path("images"));
  write_omaha_config(w.root(), serve.endpoint());  // MachineID= default: hashed

  auto j = check_json(w);
  CHECK(j["result"] == "update");
  CHECK(j["appStatus"] == "ok");
  REQUIRE(j.contains("offer"));
  const auto& offer = j["offer"];
  CHECK(offer["version"] == "202607.02.0");
  CHECK(offer["url"] == serve.url("acl-202607.02.0.cosi"));
  CHECK(offer["size"] == std::filesystem::file_size(image));
  const std::string bytes = read_file(image);
  CHECK(offer["sha256"] == abup::base64_encode(abup::sha256(abup::as_bytes(bytes))));
  const std::string metadata = run_ok("tar -xOf " + shell_quote(image.string()) + " metadata.json");
  CHECK(offer["packageHash"] == abup::base64_encode(abup::sha384(abup::as_bytes(metadata))));

  auto text = abup_check(w.root());
  CHECK(text.out.find("update: 202601.1.0 -> 202607.02.0 (track stable)") != std::string::npos);
  CHECK(text.out.find(serve.url("acl-202607.02.0.cosi")) != std::string::npos);

  // The machine id went out hashed as Microsoft's agent does.
  auto requests = serve.requests();
  REQUIRE(!requests.empty());
  CHECK(requests[0]["machineid"] ==
        omaha::machine_id_for(trimmed_file(w.root() / "etc/machine-id"), true));

  // The offered URL is what abup stage downloads (Range reads end to end).
  auto staged = w.stage(offer["url"].get<std::string>(), "--allow-http --json");
  INFO(staged.out);
  REQUIRE(staged.exit_code == 0);
  CHECK(json_field(staged.out, "version") == "202607.02.0");
  CHECK(std::stoull(json_field(staged.out, "rangeRequests")) >= 1);
  auto status = nlohmann::json::parse(w.slot_state_json());
  bool found = false;
  for (const auto& s : status["slots"])
    if (s["version"] == "202607.02.0" && s["state"] == "staged") found = true;
  CHECK_MESSAGE(found, status.dump());
}

TEST_CASE("abup check: switching tracks, by option and by rewriting tracks.json") {
  World w;
  w.build_signed("v1", "202601.01.0");
  w.build_signed("v2", "202607.02.0");
  write_tracks(w.path("images"), {{"stable", "202601.01.0"}, {"beta", "202607.2.0"}});
  Serve serve(w.path("images"));
  write_omaha_config(w.root(), serve.endpoint());

  CHECK(check_json(w)["result"] == "no-update");
  auto beta = check_json(w, "--track beta");
  CHECK(beta["result"] == "update");
  CHECK(beta["offer"]["url"] == serve.url("v2.cosi"));
  CHECK(beta["track"] == "beta");

  write_tracks(w.path("images"), {{"stable", "202607.02.0"}});
  auto stable = check_json(w);
  CHECK(stable["result"] == "update");
  CHECK(stable["offer"]["version"] == "202607.02.0");

  auto gone = check_json(w, "--track beta");
  CHECK(gone["result"] == "not-now");
  CHECK(gone["appStatus"] == "error-unknownTrack");

  // --server and --app-id override the configuration.
  auto other = abup_check(w.root(), "--app-id {00000000-0000-0000-0000-000000000001}");
  CHECK(other.exit_code == 0);
  CHECK(other.out.find("update: ") != std::string::npos);
  CHECK(serve.requests().back()["appid"] == "{00000000-0000-0000-0000-000000000001}");
  auto wrong = abup_check(w.root(), "--server " + serve.url("nothing/here"));
  CHECK(wrong.exit_code == 1);
  CHECK(wrong.out.find("HTTP 405") != std::string::npos);
}

TEST_CASE("the Omaha client's events reach abup-serve's log, each acknowledged") {
  World w;
  w.build_signed("v2", "202607.02.0");
  write_tracks(w.path("images"), {{"stable", "202607.2.0"}});
  Serve serve(w.path("images"));
  auto who = test_identity(serve.endpoint());

  REQUIRE(
      omaha::send_events(who, {{13, 1, {}, {}}, {14, 1, {}, {}}, {800, 1, {}, {}}}, plain_http()));
  who.version = "202607.02.0";
  auto r = omaha::check(who, {{3, 2, {}, "202601.01.0"}}, plain_http());
  REQUIRE_MESSAGE(r.has_value(), (r ? "" : r.error().message));
  CHECK(r->kind == omaha::CheckResult::Kind::no_update);
  CHECK(r->events_acknowledged == 1);
  who.version = "202601.01.0";
  REQUIRE(omaha::send_events(who, {{3, 0, omaha::kErrorFellBack, {}}}, plain_http()));

  auto events = serve.events();
  REQUIRE(events.size() == 5);
  const int expected[][2] = {{13, 1}, {14, 1}, {800, 1}, {3, 2}, {3, 0}};
  for (std::size_t i = 0; i < events.size(); ++i) {
    CAPTURE(i);
    CHECK(events[i]["eventtype"] == expected[i][0]);
    CHECK(events[i]["eventresult"] == expected[i][1]);
    CHECK(events[i]["appid"] == kAppId);
    CHECK(events[i]["track"] == "stable");
    CHECK(events[i]["machineid"] == "m-1");
  }
  CHECK(events[0]["version"] == "202601.1.0");
  CHECK(events[3]["version"] == "202607.2.0");
  CHECK(events[3]["previousversion"] == "202601.1.0");
  CHECK(events[4]["errorcode"] == 44);
  CHECK_FALSE(events[0].contains("errorcode"));
}

TEST_CASE(
    "abup-serve: ranges (also several per request), HEAD, 416, and a stalled connection does not "
    "block Omaha") {
  World w;
  auto image = w.build_signed("v2", "202607.02.0");
  write_tracks(w.path("images"), {{"stable", "202607.2.0"}});
  Serve serve(w.path("images"));
  const auto size = std::filesystem::file_size(image);
  const std::string bytes = read_file(image);
  const std::string url = serve.url("v2.cosi");

  // A connection that sends half a request and then nothing: a one-connection server would
  // wait on it forever.
  int stalled = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(stalled >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(serve.port());
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(stalled, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  const std::string half = "GET /v2.cosi HTTP/1.1\r\nHost: x\r\n";
  REQUIRE(::write(stalled, half.data(), half.size()) == static_cast<ssize_t>(half.size()));

  auto r = omaha::check(test_identity(serve.endpoint()), {}, plain_http());
  REQUIRE_MESSAGE(r.has_value(), (r ? "" : r.error().message));
  CHECK(r->kind == omaha::CheckResult::Kind::update);

  auto head = abup::protocol::http_request("HEAD", url, {}, "", plain_http());
  REQUIRE(head.has_value());
  CHECK(head->status == 200);
  CHECK(head->headers["content-length"] == std::to_string(size));
  CHECK(head->headers["accept-ranges"] == "bytes");

  auto part =
      abup::protocol::http_request("GET", url, {{"Range", "bytes=100-1123"}}, "", plain_http());
  REQUIRE(part.has_value());
  CHECK(part->status == 206);
  CHECK(part->headers["content-range"] == "bytes 100-1123/" + std::to_string(size));
  CHECK(part->body == bytes.substr(100, 1024));

  auto tail = abup::protocol::http_request("GET", url, {{"Range", "bytes=-10"}}, "", plain_http());
  REQUIRE(tail.has_value());
  CHECK(tail->status == 206);
  CHECK(tail->body == bytes.substr(size - 10));

  auto beyond = abup::protocol::http_request(
      "GET", url, {{"Range", "bytes=" + std::to_string(size) + "-"}}, "", plain_http());
  REQUIRE(beyond.has_value());
  CHECK(beyond->status == 416);
  CHECK(beyond->headers["content-range"] == "bytes */" + std::to_string(size));

  // The library's strict range source reads through several requests.
  auto source = abup::protocol::open_http_source(url, plain_http());
  REQUIRE(source.has_value());
  CHECK((*source)->size() == size);
  std::vector<std::uint8_t> buf(4096);
  REQUIRE((*source)->read_at(size / 2, buf));
  CHECK(std::string(abup::as_chars(buf)) == bytes.substr(size / 2, 4096));

  // Several ranges: a multipart/byteranges body the strict client parses, in one request.
  std::vector<abup::protocol::Range> ranges{{0, 10}, {size / 3, 4096}, {size - 7, 7}};
  std::vector<std::string> got(ranges.size());
  auto requests = (*source)->read_ranges(ranges, [&](std::size_t i, auto piece) {
    got[i] += std::string(abup::as_chars(piece));
    return abup::Status{};
  });
  REQUIRE_MESSAGE(requests.has_value(), (requests ? "" : requests.error().message));
  CHECK(*requests == 1);
  for (std::size_t i = 0; i < ranges.size(); ++i)
    CHECK(got[i] == bytes.substr(ranges[i].offset, ranges[i].length));
  auto multi =
      abup::protocol::http_request("GET", url, {{"Range", "bytes=0-1,5-6,-2"}}, "", plain_http());
  REQUIRE(multi.has_value());
  CHECK(multi->status == 206);
  CHECK(multi->headers["content-type"].starts_with("multipart/byteranges; boundary="));
  CHECK(multi->headers.count("content-range") == 0);
  CHECK(multi->body.find("Content-Range: bytes 5-6/" + std::to_string(size) + "\r\n\r\n" +
                         bytes.substr(5, 2) + "\r\n--") != std::string::npos);
  // Ranges past the end are left out; none satisfiable is a 416.
  auto past = abup::protocol::http_request(
      "GET", url, {{"Range", "bytes=0-0," + std::to_string(size + 5) + "-"}}, "", plain_http());
  REQUIRE(past.has_value());
  CHECK(past->status == 206);
  CHECK(past->body == bytes.substr(0, 1));

  for (const char* bad : {"/../etc/passwd", "/tracks.json.missing", "/%2e%2e/x", "/.hidden"}) {
    auto nf = abup::protocol::http_request("GET", serve.url(bad), {}, "", plain_http());
    REQUIRE(nf.has_value());
    CHECK(nf->status == 404);
  }
  ::close(stalled);
}
