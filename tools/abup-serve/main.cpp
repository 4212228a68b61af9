// abup-serve: a development update server (Omaha endpoint + image downloads) for tests and demos.
#include <cstdio>
#include <string>
#include <vector>

#include "abup/args.hpp"
#include "tools/abup-serve/catalog.hpp"
#include "tools/abup-serve/server.hpp"

namespace {

constexpr const char* kUsage =
    R"(usage: abup-serve --dir DIR [--listen HOST:PORT] [--base-url URL] [--events FILE]
                  [--requests FILE]

A development update server, not a replacement for Nebraska: it answers Omaha update checks at
/v1/update from a directory of signed COSI images, serves those images with Range support, and
logs the events it receives. No authentication, no TLS, no groups or rollout policies.

DIR/tracks.json names the version each track offers, e.g. {"stable": "202607.2.0"}; the image
is the .cosi file under DIR whose abup manifest has that version. Both are re-read when they
change. A client running that version or a newer one gets noupdate; an unknown track gets app
status error-unknownTrack. Every event is acknowledged.

Options:
)";

}  // namespace

int main(int argc, char** argv) {
  using namespace abup;
  const std::vector<OptionSpec> specs = {
      {"dir", true, false, "DIR  signed .cosi images and tracks.json"},
      {"listen", true, false, "HOST:PORT  where to listen (default 127.0.0.1:8080; port 0: any)"},
      {"base-url", true, false, "URL  how clients reach the images (default http://HOST:PORT/)"},
      {"events", true, false, "FILE  append one JSON line per received event"},
      {"requests", true, false, "FILE  append one JSON line per Omaha request"},
      {"help", false, false, "show this help"},
  };
  auto args = Args::parse(std::vector<std::string>(argv + 1, argv + argc), specs);
  if (!args) {
    std::fprintf(stderr, "abup-serve: %s\n", args.error().message.c_str());
    return 2;
  }
  if (args->has("help")) {
    std::printf("%s%s", kUsage, format_options(specs).c_str());
    return 0;
  }
  if (!args->has("dir")) {
    std::fprintf(stderr, "abup-serve: --dir DIR is required\n%s%s", kUsage,
                 format_options(specs).c_str());
    return 2;
  }
  const std::string listen = args->get_or("listen", "127.0.0.1:8080");
  const auto colon = listen.rfind(':');
  unsigned long port = 0;
  try {
    std::size_t used = 0;
    if (colon == std::string::npos) throw std::invalid_argument("no port");
    port = std::stoul(listen.substr(colon + 1), &used);
    if (used != listen.size() - colon - 1 || port > 65535) throw std::out_of_range("port");
  } catch (const std::exception&) {
    std::fprintf(stderr, "abup-serve: --listen '%s': expected HOST:PORT, e.g. 127.0.0.1:8080\n",
                 listen.c_str());
    return 2;
  }
  std::string host = listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  std::error_code ec;
  if (!std::filesystem::is_directory(*args->get("dir"), ec)) {
    std::fprintf(stderr, "abup-serve: --dir %s: not a directory\n", args->get("dir")->c_str());
    return 2;
  }
  std::string base_url = args->get_or("base-url", "");
  serve::Catalog catalog(*args->get("dir"), base_url);
  serve::Server server(catalog, args->get_or("events", ""), args->get_or("requests", ""));
  auto st = server.serve(host, static_cast<std::uint16_t>(port), [&](std::uint16_t bound) {
    const std::string where = (host.find(':') != std::string::npos ? "[" + host + "]" : host) +
                              ":" + std::to_string(bound);
    if (base_url.empty()) catalog.set_base_url("http://" + where + "/");
    std::printf("abup-serve: listening on http://%s/ (Omaha endpoint http://%s/v1/update)\n",
                where.c_str(), where.c_str());
    std::fflush(stdout);
  });
  std::fprintf(stderr, "abup-serve: %s\n", st.error().message.c_str());
  return 1;
}
