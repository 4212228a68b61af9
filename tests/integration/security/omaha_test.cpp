// docs/security.md, a hostile update server: an endless Omaha reply is cut at 1 MiB, whatever
// the reply's XML would have said; an offer's size and hash cannot make abup trust an image.
#include "update-protocol/omaha/omaha.hpp"

#include <doctest/doctest.h>

#include "support/fault_server.hpp"
#include "support/omaha_client.hpp"
#include "support/util.hpp"

namespace omaha = abup::protocol::omaha;
using namespace abup::test;

TEST_CASE("security: an Omaha reply past 1 MiB is refused, not read into memory whole") {
  TempDir dir;
  const std::string app = "{e96281a6-d1af-4bde-9a0a-97b76e56dc57}";
  // A well-formed reply, padded with an XML comment to 2 MiB.
  write_file(dir / "big.xml",
             "<?xml version=\"1.0\"?><response protocol=\"3.0\"><app appid=\"" + app +
                 "\" status=\"ok\"><updatecheck status=\"noupdate\"></updatecheck></app><!-- " +
                 std::string(2 << 20, 'x') + " --></response>");
  FaultServer server(dir.path());
  const auto who = test_identity(server.url("big.xml"), app);
  auto r = omaha::check(who, {}, plain_http());
  REQUIRE_FALSE(r.has_value());
  INFO(r.error().message);
  CHECK(r.error().message.find("Omaha " + who.server) != std::string::npos);
  // Cut by the transport while reading, before any parser holds the whole reply.
  CHECK(r.error().message.find("response body larger than 1048576 bytes") != std::string::npos);
}
