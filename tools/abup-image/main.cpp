// abup-image: build, sign and check signed COSI images for abup.
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "abup/args.hpp"
#include "abup/chunker.hpp"
#include "abup/cli.hpp"
#include "abup/fs.hpp"
#include "abup/hex.hpp"
#include "tools/abup-image/builder.hpp"
#include "tools/abup-image/esp.hpp"
#include "tools/abup-image/signer.hpp"
#include "update-protocol/cosi/cosi.hpp"
#include "update-protocol/image.hpp"
#include "update-protocol/manifest/signature.hpp"

namespace {

using namespace abup;
using namespace abup::protocol;

int fail(const Error& e) {
  return cli::report("abup-image", e);
}

std::int64_t now() {
  return static_cast<std::int64_t>(std::time(nullptr));
}

Result<std::int64_t> time_option(const Args& a, const std::string& name, std::int64_t fallback) {
  auto text = a.get(name);
  if (!text) return fallback;
  auto t = parse_utc_time(*text);
  if (!t) return make_error(Errc::usage, "--" + name + ": " + t.error().message);
  return *t;
}

// The expiry the options ask for (0: none). One not after the issue time is refused here: abup
// would reject the image as malformed, or as expired, without saying which option made it so.
Result<std::int64_t> expiry(const Args& a, std::int64_t issued, const char* issued_from) {
  std::int64_t exp = 0;
  if (a.has("expires-at")) {
    ABUP_TRY(exp, time_option(a, "expires-at", 0));
  } else {
    ABUP_TRY(auto days, a.get_int("expires-in-days", 0, 0, 36500));
    if (days > 0) exp = now() + days * 86400;
  }
  if (exp == 0 && a.has("allow-downgrade"))
    return make_error(Errc::usage,
                      "--allow-downgrade needs --expires-in-days or --expires-at: abup refuses a "
                      "downgrade manifest that never expires, since anyone holding a copy could "
                      "replay it to roll nodes back for ever");
  if (exp != 0 && exp <= issued)
    return make_error(Errc::usage, "--expires-at " + format_utc_time(exp) +
                                       " is not after the issue time " + format_utc_time(issued) +
                                       " (" + issued_from +
                                       "): abup would refuse the image; pass a later expiry");
  return exp;
}

const std::vector<OptionSpec> kManifestOpts = {
    {"version", true, false,
     "VERSION  release version (default: os-release IMAGE_VERSION/VERSION_ID)"},
    {"min-version", true, false, "VERSION  oldest running version this image may replace"},
    {"variant", true, false, "ID  os-release VARIANT_ID the image is for"},
    {"expires-in-days", true, false, "N  manifest expiry, days from now"},
    {"expires-at", true, false, "TIME  manifest expiry, YYYY-MM-DDTHH:MM:SSZ"},
    {"allow-downgrade", false, false,
     "may replace a newer running version (a recall; needs --expires-*)"},
};

std::vector<OptionSpec> build_options() {
  auto specs = std::vector<OptionSpec>({
      {"usr", true, false, "PATH  raw /usr filesystem image"},
      {"usr-hash", true, false, "PATH  dm-verity hash image of --usr"},
      {"roothash", true, false, "HEX  dm-verity root hash of --usr"},
      {"image", true, true, "MOUNT=PATH  another partition image (repeatable)"},
      {"boot-file", true, true,
       "NAME=PATH  a boot file of the release: vmlinuz, initrd, uki, addon-a, addon-b "
       "(repeatable)"},
      {"esp-image", true, false,
       "PATH  raw vfat ESP image whose EFI/Linux/ UKI and addons become boot files (uki, "
       "addon-a, addon-b, addon.NAME; first-boot addons left out)"},
      {"os-release", true, false, "PATH  os-release to embed (default: minimal, from --version)"},
      {"arch", true, false, "ARCH  x86_64 (default) or arm64"},
      {"chunker", true, false,
       "KIND  where frames are cut: cdc (default; content-defined, cdc/16K/128K/512K), "
       "cdc/MINK/AVGK/MAXK, or fixed (every --frame-size bytes, the schema-1 manifest)"},
      {"frame-size", true, false, "SIZE  uncompressed bytes per frame with --chunker fixed (4M)"},
      {"level", true, false, "N  zstd level (default 3)"},
      {"threads", true, false, "N  compression threads (default: all cores)"},
      {"no-usrhash-check", false, false,
       "pack boot files whose usrhash= differs from --roothash (nodes refuse such an image; "
       "for testing that refusal)"},
      {"out", true, false, "PATH  output .cosi file"},
      {"issued-at", true, false, "TIME  manifest issue time (default now), YYYY-MM-DDTHH:MM:SSZ"},
  });
  specs.insert(specs.end(), kManifestOpts.begin(), kManifestOpts.end());
  return specs;
}

int run_build(const Args& args) {
  image::BuildOptions o;
  if (auto usr = args.get("usr")) {
    image::BuildInput in{"/usr", *usr, "", args.get_or("usr-hash", ""),
                         args.get_or("roothash", "")};
    o.images.push_back(in);
  } else if (args.has("usr-hash")) {
    return fail(make_error(Errc::usage, "--usr-hash needs --usr"));
  }
  for (const auto& spec : args.all("image")) {
    auto eq = spec.find('=');
    if (eq == std::string::npos)
      return fail(make_error(Errc::usage, "--image '" + spec + "': expected MOUNT=PATH"));
    o.images.push_back({spec.substr(0, eq), spec.substr(eq + 1), "", "", ""});
  }
  for (const auto& spec : args.all("boot-file")) {
    auto eq = spec.find('=');
    if (eq == std::string::npos)
      return fail(make_error(Errc::usage, "--boot-file '" + spec + "': expected NAME=PATH"));
    o.boot_files.push_back({spec.substr(0, eq), spec.substr(eq + 1)});
  }
  image::TempWork esp_work;  // holds the files extracted from --esp-image until build_cosi
  if (auto esp = args.get("esp-image")) {
    if (esp_work.empty())
      return fail(
          make_error(Errc::io, "--esp-image: no temporary directory: " + errno_text(errno)));
    auto found = image::extract_esp(*esp, *esp, esp_work.path());
    if (!found) return fail(std::move(found).error().with_context("--esp-image"));
    if (!*found)
      return fail(make_error(Errc::usage, "--esp-image " + *esp + ": no UKI in EFI/Linux/"));
    for (const auto& s : (*found)->skipped)
      std::fprintf(stderr, "abup-image: %s: left out the first-boot addon %s\n", esp->c_str(),
                   s.c_str());
    for (const auto& f : (*found)->files) o.boot_files.push_back(f);
  }
  o.version = args.get_or("version", "");
  if (auto osr = args.get("os-release")) {
    auto text = read_file(*osr);
    if (!text) return fail(text.error());
    o.os_release = *text;
  } else if (!o.version.empty()) {
    o.os_release =
        "NAME=\"Azure Container Linux\"\nID=azurecontainerlinux\nVERSION_ID=" + o.version +
        "\nIMAGE_VERSION=" + o.version + "\n";
  }
  o.arch = args.get_or("arch", "x86_64");
  o.variant = args.get_or("variant", "");
  o.min_version = args.get_or("min-version", "");
  o.allow_downgrade = args.has("allow-downgrade");
  auto issued = time_option(args, "issued-at", now());
  if (!issued) return fail(issued.error());
  o.issued_at = *issued;
  auto exp = expiry(args, *issued, args.has("issued-at") ? "--issued-at" : "now");
  if (!exp) return fail(exp.error());
  o.expires_at = *exp;
  auto fs = args.get_size("frame-size", 4 << 20);
  auto level = args.get_int("level", 3, 1, 22);
  auto threads = args.get_int("threads", 0, 0, 256);
  if (!fs) return fail(fs.error());
  if (!level) return fail(level.error());
  if (!threads) return fail(threads.error());
  o.frame_size = *fs;
  // --frame-size alone keeps meaning what it meant before content-defined frames: fixed frames.
  const std::string chunker = args.get_or("chunker", args.has("frame-size") ? "fixed" : "cdc");
  if (chunker == "fixed") {
    o.chunker.reset();
  } else if (args.has("frame-size")) {
    return fail(make_error(Errc::usage, "--frame-size only applies to --chunker fixed"));
  } else if (chunker != "cdc") {
    auto params = ChunkerParams::parse(chunker);
    if (!params)
      return fail(make_error(Errc::usage, "--chunker '" + chunker +
                                              "': expected cdc, fixed or cdc/MINK/AVGK/MAXK "
                                              "(multiples of 4K, min <= avg <= max <= 16384K, "
                                              "avg/4K a power of two)"));
    o.chunker = *params;
  }
  o.level = static_cast<int>(*level);
  o.threads = static_cast<int>(*threads);
  o.check_usrhash = !args.has("no-usrhash-check");
  o.out = args.get_or("out", "");
  auto m = image::build_cosi(o);
  if (!m) return fail(m.error());
  std::uint64_t u = 0, c = 0, frames = 0;
  for (const auto& i : m->images) {
    u += i.uncompressed_size;
    c += i.compressed_size;
    frames += i.frames.size();
  }
  std::printf(
      "built %s: version %s, %zu image(s), %s -> %s in %llu frames (unsigned: run "
      "`abup-image sign`)\n",
      o.out.c_str(), m->version.c_str(), m->images.size(), human_bytes(u).c_str(),
      human_bytes(c).c_str(), static_cast<unsigned long long>(frames));
  return 0;
}
image::ManifestDefaults defaults(const Args& a, std::int64_t expires) {
  return {a.get_or("version", ""), a.get_or("min-version", ""), a.get_or("variant", ""), expires,
          a.has("allow-downgrade")};
}

std::vector<OptionSpec> sign_options() {
  auto specs = std::vector<OptionSpec>(
      {{"key", true, true, "PEM  private key (repeatable for several signers)"}});
  specs.insert(specs.end(), kManifestOpts.begin(), kManifestOpts.end());
  return specs;
}

int run_sign(const Args& args) {
  const std::string path = args.positionals().front();
  if (!args.has("key")) return fail(make_error(Errc::usage, "--key PEM is required"));
  auto exp = expiry(args, now(), "now");
  if (!exp) return fail(exp.error());
  auto manifest = image::ensure_manifest(path, defaults(args, *exp));
  if (!manifest) return fail(manifest.error());
  std::vector<SignatureEntry> sigs;
  for (const auto& key : args.all("key")) {
    auto s = sign_manifest(*manifest, key);
    if (!s) return fail(s.error());
    std::printf("signed %s with %s key %s\n", path.c_str(), s->alg.c_str(), s->keyid.c_str());
    sigs.push_back(std::move(*s));
  }
  if (auto st = image::add_signatures(path, sigs); !st) return fail(st.error());
  return 0;
}
std::vector<OptionSpec> digest_options() {
  auto specs = std::vector<OptionSpec>({
      {"alg", true, false, "ALG  ed25519 | ecdsa-p256-sha256 | ecdsa-p384-sha384 | rsa-pss-sha256"},
      {"public-key", true, false, "PEM  take the algorithm from the signer's public key"},
      {"out", true, false, "PATH  write the bytes to sign (digest, or the manifest for ed25519)"},
  });
  specs.insert(specs.end(), kManifestOpts.begin(), kManifestOpts.end());
  return specs;
}

int run_digest(const Args& args) {
  const std::string path = args.positionals().front();
  SigAlg alg;
  if (auto pk = args.get("public-key")) {
    auto key = PublicKey::load(*pk);
    if (!key) return fail(key.error());
    alg = key->alg();
  } else if (auto name = args.get("alg")) {
    auto a = parse_sig_alg(*name);
    if (!a) return fail(make_error(Errc::usage, "--alg: " + a.error().message));
    alg = *a;
  } else {
    return fail(make_error(Errc::usage, "--alg or --public-key is required"));
  }
  auto exp = expiry(args, now(), "now");
  if (!exp) return fail(exp.error());
  auto manifest = image::ensure_manifest(path, defaults(args, *exp));
  if (!manifest) return fail(manifest.error());
  auto tbs = to_be_signed(*manifest, alg);
  if (auto out = args.get("out")) {
    if (auto st = atomic_write_file(*out, as_chars(tbs)); !st) return fail(st.error());
  }
  if (alg == SigAlg::ed25519)
    std::printf(
        "%s  (SHA-256 of abup/manifest.json; Ed25519 signs the manifest bytes themselves: "
        "use --out)\n",
        to_hex(sha256(as_bytes(*manifest))).c_str());
  else
    std::printf("%s\n", to_hex(tbs).c_str());
  return 0;
}
std::vector<OptionSpec> attach_options() {
  auto specs = std::vector<OptionSpec>({
      {"public-key", true, false, "PEM  the signer's public key"},
      {"signature", true, false, "FILE  the signature (binary; DER or raw r||s for ECDSA)"},
  });
  return specs;
}

int run_attach(const Args& args) {
  const std::string path = args.positionals().front();
  if (!args.has("public-key") || !args.has("signature"))
    return fail(make_error(Errc::usage, "--public-key and --signature are required"));
  auto key = PublicKey::load(*args.get("public-key"));
  if (!key) return fail(key.error());
  auto sig = read_file(*args.get("signature"));
  if (!sig) return fail(sig.error());
  auto manifest = image::ensure_manifest(path, {});
  if (!manifest) return fail(manifest.error());
  auto entry = external_signature(*manifest, *key, as_bytes(*sig));
  if (!entry) return fail(entry.error());
  if (auto st = image::add_signatures(path, {*entry}); !st) return fail(st.error());
  std::printf("attached %s signature by key %s to %s\n", entry->alg.c_str(), entry->keyid.c_str(),
              path.c_str());
  return 0;
}
std::vector<OptionSpec> inspect_options() {
  auto specs = std::vector<OptionSpec>({{"json", false, false, "machine-readable output"}});
  return specs;
}

int run_inspect(const Args& args) {
  const std::string path = args.positionals().front();
  auto src = open_file_source(path);
  if (!src) return fail(src.error());
  auto a = read_cosi(**src);
  if (!a) return fail(a.error());
  std::optional<Manifest> m;
  std::vector<SignatureEntry> sigs;
  if (a->manifest) {
    auto text = read_entry(**src, *a->manifest, kMaxManifestSize);
    if (!text) return fail(text.error());
    auto parsed = parse_manifest(*text);
    if (!parsed) return fail(parsed.error());
    m = std::move(*parsed);
  }
  if (a->signature) {
    auto text = read_entry(**src, *a->signature, 1 << 20);
    if (!text) return fail(text.error());
    auto parsed = parse_signature_envelope(*text);
    if (!parsed) return fail(parsed.error());
    sigs = std::move(*parsed);
  }
  const auto& md = a->metadata;
  if (args.has("json")) {
    nlohmann::json j;
    j["cosiVersion"] = md.version;
    j["osArch"] = md.os_arch;
    j["images"] = nlohmann::json::array();
    for (const auto& i : md.images)
      j["images"].push_back({{"path", i.image.path},
                             {"mountPoint", i.mount_point},
                             {"fsType", i.fs_type},
                             {"fsUuid", i.fs_uuid},
                             {"compressedSize", i.image.compressed_size},
                             {"uncompressedSize", i.image.uncompressed_size},
                             {"verity", i.verity.has_value()}});
    if (m) {
      j["manifest"] = {{"version", m->version},
                       {"minVersion", m->min_version},
                       {"variant", m->variant},
                       {"arch", m->arch},
                       {"issuedAt", format_utc_time(m->issued_at)},
                       {"expiresAt", m->expires_at ? format_utc_time(m->expires_at) : ""},
                       {"allowDowngrade", m->allow_downgrade},
                       {"frames", nlohmann::json::array()}};
      for (const auto& i : m->images)
        j["manifest"]["frames"].push_back({{"path", i.path}, {"count", i.frames.size()}});
      j["manifest"]["bootFiles"] = nlohmann::json::array();
      for (const auto& b : m->boot_files)
        j["manifest"]["bootFiles"].push_back(
            {{"name", b.name}, {"size", b.size}, {"sha256", to_hex(b.sha256)}});
    } else {
      j["manifest"] = nullptr;
    }
    j["signatures"] = nlohmann::json::array();
    for (const auto& s : sigs) j["signatures"].push_back({{"keyid", s.keyid}, {"alg", s.alg}});
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("%s: COSI %s, %s\n", path.c_str(), md.version.c_str(), md.os_arch.c_str());
  for (const auto& i : md.images)
    std::printf("  %-8s %-30s %-6s %10s -> %10s%s\n", i.mount_point.c_str(), i.image.path.c_str(),
                i.fs_type.c_str(), human_bytes(i.image.uncompressed_size).c_str(),
                human_bytes(i.image.compressed_size).c_str(), i.verity ? "  (+verity)" : "");
  if (m) {
    std::printf("manifest: version %s, arch %s%s%s, issued %s%s\n", m->version.c_str(),
                m->arch.c_str(), m->variant.empty() ? "" : ", variant ", m->variant.c_str(),
                format_utc_time(m->issued_at).c_str(),
                m->expires_at ? (", expires " + format_utc_time(m->expires_at)).c_str() : "");
    if (!m->min_version.empty()) std::printf("  replaces %s or newer\n", m->min_version.c_str());
    if (m->allow_downgrade) std::printf("  allows downgrade: may replace a newer version\n");
    for (const auto& i : m->images)
      std::printf("  %s: %zu frames\n", i.path.c_str(), i.frames.size());
    if (m->boot_files.empty()) std::printf("boot files: none\n");
    for (const auto& b : m->boot_files)
      std::printf("boot file: %-10s %10s  sha256 %s\n", b.name.c_str(), human_bytes(b.size).c_str(),
                  to_hex(b.sha256).c_str());
  } else {
    std::printf("manifest: none (not prepared for abup; run `abup-image sign`)\n");
  }
  if (sigs.empty()) std::printf("signatures: none\n");
  for (const auto& s : sigs) std::printf("signature: %s key %s\n", s.alg.c_str(), s.keyid.c_str());
  return 0;
}
std::vector<OptionSpec> verify_options() {
  auto specs = std::vector<OptionSpec>({
      {"keyring", true, true, "DIR  directory of trusted PEM public keys (repeatable)"},
      {"threshold", true, false, "N  valid signatures required (default 1)"},
      {"shallow", false, false, "check signatures and structure only, not every frame"},
      {"at", true, false,
       "TIME  judge the expiry at TIME instead of now, YYYY-MM-DDTHH:MM:SSZ (e.g. a rollout date)"},
  });
  return specs;
}

int run_verify(const Args& args) {
  const std::string path = args.positionals().front();
  std::vector<std::filesystem::path> dirs;
  for (const auto& d : args.all("keyring")) dirs.emplace_back(d);
  if (dirs.empty()) return fail(make_error(Errc::usage, "--keyring DIR is required"));
  auto keyring = Keyring::load(dirs);
  if (!keyring) return fail(keyring.error());
  auto threshold = args.get_int("threshold", 1, 1, 64);
  if (!threshold) return fail(threshold.error());
  auto src = open_file_source(path);
  if (!src) return fail(src.error());
  VerifyOptions vo;
  vo.keyring = &*keyring;
  vo.threshold = static_cast<int>(*threshold);
  vo.check_policy = false;
  auto v = open_verified_image(**src, vo);
  if (!v) return fail(v.error());
  auto at = time_option(args, "at", now());
  if (!at) return fail(at.error());
  // abup refuses an expired image (update-protocol/manifest: now >= expiresAt); so does verify.
  if (const auto exp = v->manifest.expires_at; exp && *at >= exp)
    return fail(make_error(Errc::policy, path + ": EXPIRED: the signed manifest expired at " +
                                             format_utc_time(exp) + " (checked at " +
                                             format_utc_time(*at) +
                                             "); abup refuses it: rebuild or re-sign the image "
                                             "with a later --expires-at"));
  std::uint64_t frames = 0;
  if (!args.has("shallow")) {
    const int window = window_log_limit(v->archive.metadata);
    auto dec = FrameDecoder::open(window);
    if (!dec) return fail(dec.error());
    std::vector<std::uint8_t> in, out;
    for (const auto& img : v->manifest.images) {
      auto base = v->data_offset(img);
      for (std::size_t i = 0; i < img.frames.size(); ++i) {
        const auto& f = img.frames[i];
        const std::string what = img.path + " frame " + std::to_string(i);
        Status st;
        if (f.size <= kMaxBufferedFrame && f.uncompressed_size <= kMaxBufferedFrame) {
          in.resize(f.size);
          out.resize(f.uncompressed_size);
          st = (*src)->read_at(base + f.offset, in);
          if (st) st = dec->decode(in, f, out, what);
        } else {
          // Large frames (images from other tools): streamed, memory bounded.
          auto stream = FrameStream::open(
              f, what, window,
              [](std::uint64_t, std::span<const std::uint8_t>) { return Status{}; });
          if (!stream) return fail(stream.error());
          st = (*src)->read_range(base + f.offset, f.size, [&](std::span<const std::uint8_t> p) {
            return (*stream)->feed(p);
          });
          if (st) st = (*stream)->finish();
        }
        if (!st) return fail(st.error());
        ++frames;
      }
    }
    for (const auto& b : v->manifest.boot_files)
      if (auto bytes = read_boot_file(**src, *v, b); !bytes) return fail(bytes.error());
  }
  std::printf(
      "%s: OK: version %s, signed by %zu trusted key(s) (%s)%s\n", path.c_str(),
      v->manifest.version.c_str(), v->signers.size(),
      v->signers.empty() ? "" : v->signers.front().substr(0, 16).c_str(),
      args.has("shallow") ? "" : (", " + std::to_string(frames) + " frames verified").c_str());
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  const cli::Program program{
      .name = "abup-image",
      .summary = "abup-image: build, sign and check signed COSI images for abup.",
      .commands =
          {{.name = "build",
            .summary =
                "raw partition images -> COSI 1.2 with framed zstd images and an abup manifest",
            .synopsis = "--usr PATH --out PATH [OPTIONS]",
            .options = build_options(),
            .run = run_build},
           {.name = "sign",
            .summary = "add the abup manifest (if missing) and a signature made with a private key",
            .synopsis = "--key PEM [OPTIONS] IMAGE",
            .options = sign_options(),
            .run = run_sign,
            .min_positionals = 1,
            .max_positionals = 1,
            .positional_name = "IMAGE"},
           {.name = "digest",
            .summary = "add the abup manifest (if missing) and print what an external signer signs",
            .synopsis = "(--alg ALG | --public-key PEM) [--out FILE] IMAGE",
            .options = digest_options(),
            .run = run_digest,
            .min_positionals = 1,
            .max_positionals = 1,
            .positional_name = "IMAGE"},
           {.name = "attach-signature",
            .summary = "check an externally made signature and add it",
            .synopsis = "--public-key PEM --signature FILE IMAGE",
            .options = attach_options(),
            .run = run_attach,
            .min_positionals = 1,
            .max_positionals = 1,
            .positional_name = "IMAGE"},
           {.name = "inspect",
            .summary = "show what an image holds (--json for machines)",
            .synopsis = "[--json] IMAGE",
            .options = inspect_options(),
            .run = run_inspect,
            .min_positionals = 1,
            .max_positionals = 1,
            .positional_name = "IMAGE"},
           {.name = "verify",
            .summary = "check signatures against a keyring, and every frame of every image",
            .synopsis = "--keyring DIR [OPTIONS] IMAGE",
            .options = verify_options(),
            .run = run_verify,
            .min_positionals = 1,
            .max_positionals = 1,
            .positional_name = "IMAGE"}},
  };
  return cli::run(program, std::vector<std::string>(argv + 1, argv + argc));
}
