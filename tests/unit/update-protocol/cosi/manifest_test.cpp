#include "update-protocol/manifest/manifest.hpp"

#include <doctest/doctest.h>

using namespace abup;
using namespace abup::protocol;

namespace {

Manifest sample() {
  Manifest m;
  m.version = "202607.02.0";
  m.min_version = "202601.0.0";
  m.arch = "x86_64";
  m.variant = "azurecontainerlinux";
  m.issued_at = 1'790'000'000;
  m.expires_at = 1'800'000'000;
  m.metadata_sha384 = std::string(96, 'c');
  ManifestImage img;
  img.path = "images/usr.img.zst";
  img.mount_point = "/usr";
  img.compressed_size = 300;
  img.uncompressed_size = 8 << 20;
  for (int i = 0; i < 2; ++i) {
    Frame f;
    f.offset = static_cast<std::uint64_t>(i) * 150;
    f.size = 150;
    f.uncompressed_size = 4 << 20;
    f.sha256.fill(static_cast<std::uint8_t>(i));
    img.frames.push_back(f);
  }
  m.images.push_back(img);
  return m;
}

PolicyInput host(const char* running) {
  PolicyInput p;
  p.running = *Version::parse(running);
  p.arch = "x86_64";
  p.variant = "azurecontainerlinux";
  p.now = 1'795'000'000;
  return p;
}

// Why check_policy refuses `m` on `in`, a policy error.
std::string refusal(const Manifest& m, const PolicyInput& in) {
  auto r = check_policy(m, in);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == Errc::policy);
  return r.error().message;
}

}  // namespace

TEST_CASE("manifest round-trips through its JSON") {
  auto text = serialize_manifest(sample());
  auto m = parse_manifest(text);
  REQUIRE_MESSAGE(m.has_value(), m.error().message);
  CHECK(m->version == "202607.02.0");
  CHECK(m->images[0].frames[1].uncompressed_offset == 4 << 20);
  CHECK(serialize_manifest(*m) == text);
}

TEST_CASE("manifest structure errors are precise") {
  auto text = serialize_manifest(sample());
  auto bad = [&](const std::string& from, const std::string& to) {
    auto t = text;
    auto pos = t.find(from);
    REQUIRE(pos != std::string::npos);
    t.replace(pos, from.size(), to);
    auto m = parse_manifest(t);
    REQUIRE_FALSE(m.has_value());
    return m.error().message;
  };
  CHECK(bad("\"offset\": 150", "\"offset\": 151") ==
        "abup/manifest.json: images[0].frames[1].offset: frames must be contiguous");
  CHECK(bad("\"compressedSize\": 300", "\"compressedSize\": 301") ==
        "abup/manifest.json: images[0]: frames do not add up to compressedSize");
  CHECK(bad("\"arch\": \"x86_64\"", "\"arch\": \"sparc\"") ==
        "abup/manifest.json: arch: unknown architecture 'sparc'");
  CHECK(bad("\"schemaVersion\": 1", "\"schemaVersion\": 7") ==
        "abup/manifest.json: schemaVersion: unsupported schema 7 (this abup reads 1 and 2; a "
        "newer abup may be needed)");
  CHECK(bad("2026", "20x6").find("issuedAt") != std::string::npos);
}

TEST_CASE("policy: version, arch, variant, expiry") {
  auto m = sample();
  CHECK(check_policy(m, host("202601.05.0")));
  CHECK(check_policy(m, host("202607.2.0")));  // same version: re-stage is a repair

  CHECK(refusal(m, host("202608.01.0")).find("downgrade from 202608.01.0 to 202607.02.0 refused") !=
        std::string::npos);
  auto flag = host("202608.01.0");
  flag.allow_downgrade = true;
  CHECK(check_policy(m, flag));
  m.allow_downgrade = true;
  CHECK(check_policy(m, host("202608.01.0")));
  m.allow_downgrade = false;

  CHECK(refusal(m, host("202512.01.0")).find("may only replace 202601.0.0 or newer") !=
        std::string::npos);

  auto arm = host("202601.05.0");
  arm.arch = "arm64";
  CHECK(refusal(m, arm) == "image policy: image is for x86_64, this host is arm64");

  auto late = host("202601.05.0");
  late.now = 1'800'000'001;
  CHECK(refusal(m, late).find("manifest expired at") != std::string::npos);

  auto variant = host("202601.05.0");
  variant.variant = "flatcar";
  CHECK_FALSE(check_policy(m, variant));
}

TEST_CASE("policy: the floor is the highest committed version when above the running one (G1)") {
  auto m = sample();  // 202607.02.0, minVersion 202601.0.0
  auto rolled_back = host("202601.05.0");
  rolled_back.highest_committed = *Version::parse("202609.01.0");
  CHECK(refusal(m, rolled_back) ==
        "image policy: downgrade to 202607.02.0 below 202609.01.0, the highest version this node "
        "committed (it runs 202601.05.0; state.json highestCommittedVersion), refused (the signed "
        "manifest does not allow it; an operator may pass --allow-downgrade)");
  auto flag = rolled_back;
  flag.allow_downgrade = true;
  CHECK(check_policy(m, flag));
  // At or above the floor, and the running version itself (a repair): as before.
  rolled_back.highest_committed = *Version::parse("202607.02.0");
  CHECK(check_policy(m, rolled_back));
  auto repair = host("202607.02.0");
  repair.highest_committed = *Version::parse("202609.01.0");
  CHECK(check_policy(m, repair));
  // An unknown running version (the operator allowed it) does not lift the committed floor.
  auto unknown = host("202601.05.0");
  unknown.running.reset();
  unknown.allow_unknown_version = true;
  CHECK(check_policy(m, unknown));
  unknown.highest_committed = *Version::parse("202609.01.0");
  CHECK(refusal(m, unknown) ==
        "image policy: downgrade to 202607.02.0 below 202609.01.0, the highest version this node "
        "committed (its running version is unknown; state.json highestCommittedVersion), "
        "refused (the signed manifest does not allow it; an operator may pass "
        "--allow-downgrade)");
  // A floor below the running version changes nothing: the running one is the floor.
  auto low = host("202608.01.0");
  low.highest_committed = *Version::parse("202602.01.0");
  CHECK(refusal(m, low).find("downgrade from 202608.01.0 to 202607.02.0 refused") !=
        std::string::npos);
}

TEST_CASE("policy: a signed downgrade counts only when it expires and is not superseded (G2)") {
  auto m = sample();  // 202607.02.0, issued 1'790'000'000, expires 1'800'000'000
  m.allow_downgrade = true;
  auto newer = host("202608.01.0");
  CHECK(check_policy(m, newer));  // a recall, as signed

  m.expires_at = 0;
  CHECK(refusal(m, newer) ==
        "image policy: downgrade from 202608.01.0 to 202607.02.0 refused: the signed manifest "
        "allows downgrade but has no expiresAt, so it could be replayed forever (sign recalls "
        "with abup-image --allow-downgrade --expires-in-days N; an operator may pass "
        "--allow-downgrade)");
  m.expires_at = 1'800'000'000;

  newer.running_issued_at = 1'790'000'001;  // the running release was signed after the recall
  CHECK(refusal(m, newer) ==
        "image policy: downgrade from 202608.01.0 to 202607.02.0 refused: the signed manifest "
        "allows downgrade but was issued at 2026-09-21T14:13:20Z, before the running release "
        "202608.01.0 (issued 2026-09-21T14:13:21Z), which supersedes it (an operator may pass "
        "--allow-downgrade)");
  newer.running_issued_at = 1'790'000'000;  // same second: not before
  CHECK(check_policy(m, newer));

  // The operator's flag needs neither; an upgrade never consults them.
  m.expires_at = 0;
  auto op = host("202608.01.0");
  op.allow_downgrade = true;
  op.running_issued_at = 1'790'000'001;
  CHECK(check_policy(m, op));
  auto up = host("202601.05.0");
  up.running_issued_at = 1'790'000'001;
  CHECK(check_policy(m, up));
}

TEST_CASE("policy: RequireExpiry refuses a manifest that never expires, naming the key (G3)") {
  auto m = sample();
  auto strict = host("202601.05.0");
  strict.require_expiry = true;
  CHECK(check_policy(m, strict));
  m.expires_at = 0;
  CHECK(check_policy(m, host("202601.05.0")));
  CHECK(refusal(m, strict) ==
        "image policy: the signed manifest of 202607.02.0 has no expiresAt and [Security] "
        "RequireExpiry=yes refuses one that never expires (sign releases with abup-image "
        "--expires-in-days N, or set RequireExpiry=no)");
}

TEST_CASE(
    "policy: an unknown running version or variant is refused unless the operator allows it") {
  auto m = sample();  // minVersion 202601.0.0, variant azurecontainerlinux
  PolicyInput unknown = host("202601.05.0");
  unknown.running.reset();
  unknown.unknown_version_reason = "/r/etc/os-release has no IMAGE_VERSION or VERSION_ID";
  CHECK(refusal(m, unknown) ==
        "image policy: the running version is unknown (/r/etc/os-release has no IMAGE_VERSION or "
        "VERSION_ID), so 202607.02.0 cannot be shown not to be a downgrade nor the running "
        "version to be 202601.0.0 or newer (minVersion); an operator may pass "
        "--allow-unknown-version");
  unknown.allow_unknown_version = true;
  CHECK(check_policy(m, unknown));

  PolicyInput no_variant = host("202601.05.0");
  no_variant.variant.clear();
  no_variant.unknown_variant_reason = "/r/etc/os-release has no VARIANT_ID";
  CHECK(refusal(m, no_variant)
            .find("image is for variant 'azurecontainerlinux' and this host's "
                  "variant is unknown (/r/etc/os-release has no VARIANT_ID)") != std::string::npos);
  no_variant.allow_unknown_variant = true;
  CHECK(check_policy(m, no_variant));
  m.variant.clear();  // an image for any variant does not care
  no_variant.allow_unknown_variant = false;
  CHECK(check_policy(m, no_variant));
}

TEST_CASE("UTC times") {
  auto t = parse_utc_time("2026-11-24T03:40:00Z");
  REQUIRE(t.has_value());
  CHECK(format_utc_time(*t) == "2026-11-24T03:40:00Z");
  CHECK_FALSE(parse_utc_time("2026-11-24 03:40:00"));
  CHECK_FALSE(parse_utc_time("2026-13-24T03:40:00Z"));
  CHECK_FALSE(parse_utc_time("2026-02-31T00:00:00Z"));
  CHECK_FALSE(parse_utc_time("2026-02-29T00:00:00Z"));
  CHECK_FALSE(parse_utc_time("2100-02-29T00:00:00Z"));
  CHECK(parse_utc_time("2028-02-29T00:00:00Z").has_value());
  CHECK(parse_utc_time("2000-02-29T00:00:00Z").has_value());
  CHECK(parse_utc_time("2026-04-30T00:00:00Z").has_value());
  CHECK_FALSE(parse_utc_time("2026-04-31T00:00:00Z"));
}

TEST_CASE("boot files: listed in a schema-2 manifest that round-trips, none keeps schema 1") {
  auto plain = serialize_manifest(sample());
  CHECK(plain.find("\"schemaVersion\": 1") != std::string::npos);
  CHECK(plain.find("bootFiles") == std::string::npos);

  auto m = sample();
  BootFile b;
  b.name = "vmlinuz";
  b.path = "boot/vmlinuz.zst";
  b.size = 12345;
  b.compressed_size = 999;
  b.sha256.fill(0xab);
  m.boot_files.push_back(b);
  auto text = serialize_manifest(m);
  CHECK(text.find("\"schemaVersion\": 2") != std::string::npos);
  auto back = parse_manifest(text);
  REQUIRE_MESSAGE(back.has_value(), back.error().message);
  REQUIRE(back->boot_files.size() == 1);
  CHECK(back->find_boot_file("vmlinuz")->size == 12345);
  CHECK(back->find_boot_file("vmlinuz")->sha256 == b.sha256);
  CHECK(serialize_manifest(*back) == text);

  // An old-schema manifest that lists boot files is refused: an agent reading schema 1 ignores
  // them.
  auto t = text;
  t.replace(t.find("\"schemaVersion\": 2"), 18, "\"schemaVersion\": 1");
  auto old = parse_manifest(t);
  REQUIRE_FALSE(old.has_value());
  CHECK(old.error().message.find("bootFiles") != std::string::npos);
}

TEST_CASE("boot file names that could be paths are refused, naming the entry") {
  for (const char* name :
       {"../vmlinuz", "/vmlinuz", "EFI/Linux/x.efi", "..", ".", "", "a\tb", "vm\x01linuz"}) {
    CAPTURE(name);
    auto st = check_boot_file_name(name);
    REQUIRE_FALSE(st.has_value());
    CHECK(st.error().code == Errc::invalid_input);
    CHECK(st.error().message.find("boot file name") != std::string::npos);
  }
  CHECK(check_boot_file_name(std::string_view("vm\0linuz", 8)).has_value() == false);
  for (const char* name : {"vmlinuz", "initrd", "uki", "addon-a", "addon-b", "x_1.efi"})
    CHECK(check_boot_file_name(name).has_value());

  auto m = sample();
  BootFile b;
  b.name = "evil";
  b.path = "boot/evil.zst";
  b.size = b.compressed_size = 1;
  m.boot_files.push_back(b);
  auto text = serialize_manifest(m);
  text.replace(text.find("\"name\": \"evil\""), 14, "\"name\": \"../../x\"");
  auto r = parse_manifest(text);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().message.find("bootFiles[0].name") != std::string::npos);
  CHECK(r.error().message.find("'/'") != std::string::npos);
}

TEST_CASE("parse_manifest_release reads version and issuedAt alone, and names what is wrong") {
  const auto m = sample();
  auto r = parse_manifest_release(serialize_manifest(m));
  REQUIRE_MESSAGE(r.has_value(), (r ? "" : r.error().message));
  CHECK(r->version == m.version);
  CHECK(r->issued_at == m.issued_at);
  // Members of the same names deeper down are not the release's.
  r = parse_manifest_release(R"({"images":[{"version":"1.0.0","issuedAt":"2020-01-01T00:00:00Z"}],)"
                             R"("version":"202607.02.0","issuedAt":"2026-11-24T03:40:00Z"})");
  REQUIRE(r.has_value());
  CHECK(r->version == "202607.02.0");
  CHECK(r->issued_at == *parse_utc_time("2026-11-24T03:40:00Z"));

  auto fails = [](std::string_view text, std::string_view why) {
    auto bad = parse_manifest_release(text);
    REQUIRE_FALSE(bad.has_value());
    CHECK(bad.error().code == Errc::invalid_input);
    CHECK_MESSAGE(bad.error().message.find(why) != std::string::npos, bad.error().message);
  };
  fails("[1,2]", "(top): expected an object");
  fails("{\"version\":", "not valid JSON");
  fails(R"({"issuedAt":"2026-11-24T03:40:00Z"})", "version: missing or not a string");
  fails(R"({"version":7,"issuedAt":"2026-11-24T03:40:00Z"})", "version: missing or not a string");
  fails(R"({"version":"1.0.0"})", "issuedAt: missing or not a string");
  fails(R"({"version":"x..","issuedAt":"2026-11-24T03:40:00Z"})", "version: ");
  fails(R"({"version":"1.0.0","issuedAt":"yesterday"})", "issuedAt: ");
}
