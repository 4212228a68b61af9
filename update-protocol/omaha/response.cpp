// The Omaha reply parser. What we need is checked strictly; everything else (attribute order,
// unknown elements and attributes, whitespace) is ignored. walk_xml refuses DTDs and entities.
#include <algorithm>
#include <charconv>
#include <cstring>

#include "abup/version.hpp"
#include "update-protocol/omaha/omaha.hpp"
#include "update-protocol/omaha/omaha_internal.hpp"

namespace abup::protocol::omaha {
namespace {

struct Package {
  std::string name, hash, size;
  bool has_size = false;
};

// One <app> element of the reply, as seen.
struct App {
  std::string appid, status;
  bool has_status = false;
  std::size_t events_ok = 0;
  std::size_t events = 0;
  bool has_updatecheck = false;
  std::string updatecheck_status;
  bool has_updatecheck_status = false;
  std::vector<std::string> codebases;
  bool has_manifest = false;
  std::string manifest_version;
  bool has_manifest_version = false;
  std::vector<Package> packages;
  std::string postinstall_sha256;
};

// Collects what the reply says about each <app>; everything else is ignored.
struct Collector {
  std::vector<App> apps;
  std::string root;

  static bool at(const std::vector<std::string>& path, std::initializer_list<const char*> names) {
    return path.size() == names.size() &&
           std::equal(path.begin(), path.end(), names.begin(),
                      [](const std::string& a, const char* b) { return a == b; });
  }

  Status element(const std::vector<std::string>& path, const Attributes& a) {
    auto get = [&](const char* key) { return attribute(a, key); };
    if (path.size() == 1) {
      root = path[0];
      if (root != "response")
        return make_error(Errc::invalid_input, "root element is <" + root +
                                                   ">, expected <response> (is the server an "
                                                   "Omaha endpoint?)");
      return {};
    }
    if (at(path, {"response", "app"})) {
      App app;
      if (const auto* v = get("appid")) app.appid = *v;
      if (const auto* v = get("status")) app.status = *v, app.has_status = true;
      apps.push_back(std::move(app));
      return {};
    }
    if (path.size() < 3 || apps.empty() || path[1] != "app") return {};
    App& app = apps.back();
    if (at(path, {"response", "app", "event"})) {
      ++app.events;
      if (const auto* v = get("status"); v && *v == "ok") ++app.events_ok;
    } else if (at(path, {"response", "app", "updatecheck"})) {
      if (app.has_updatecheck)
        return make_error(Errc::invalid_input, "<app> holds more than one <updatecheck>");
      app.has_updatecheck = true;
      if (const auto* v = get("status"))
        app.updatecheck_status = *v, app.has_updatecheck_status = true;
    } else if (at(path, {"response", "app", "updatecheck", "urls", "url"})) {
      const auto* v = get("codebase");
      if (!v) return make_error(Errc::invalid_input, "<url> has no codebase attribute");
      app.codebases.push_back(*v);
    } else if (at(path, {"response", "app", "updatecheck", "manifest"})) {
      app.has_manifest = true;
      if (const auto* v = get("version"))
        app.manifest_version = *v, app.has_manifest_version = true;
    } else if (at(path, {"response", "app", "updatecheck", "manifest", "packages", "package"})) {
      Package p;
      if (const auto* v = get("name")) p.name = *v;
      if (const auto* v = get("hash")) p.hash = *v;
      if (const auto* v = get("size")) p.size = *v, p.has_size = true;
      app.packages.push_back(std::move(p));
    } else if (at(path, {"response", "app", "updatecheck", "manifest", "actions", "action"})) {
      const auto* event = get("event");
      const auto* sha = get("sha256");
      if (event && *event == "postinstall" && sha) app.postinstall_sha256 = *sha;
    }
    return {};
  }
};

bool iequal(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

Error bad(std::string message) {
  return make_error(Errc::invalid_input, "Omaha response: " + std::move(message));
}

Result<std::uint64_t> parse_size(const std::string& text) {
  std::uint64_t n = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (text.empty() || ec != std::errc() || p != text.data() + text.size())
    return bad("<package size=\"" + text + "\">: expected a number of bytes");
  return n;
}

Result<Offer> make_offer(const App& app) {
  if (app.codebases.empty())
    return bad("<updatecheck status=\"ok\"> without <urls><url codebase=...>");
  if (!app.has_manifest) return bad("<updatecheck status=\"ok\"> without <manifest>");
  if (!app.has_manifest_version || app.manifest_version.empty())
    return bad("<manifest> has no version attribute");
  if (auto v = Version::parse(app.manifest_version); !v)
    return std::move(v).error().with_context("Omaha response: <manifest version>");
  if (app.packages.empty()) return bad("<manifest> lists no <packages><package>");
  const Package& p = app.packages.front();
  if (p.name.empty()) return bad("<package> has no name attribute");
  if (!p.has_size) return bad("<package name=\"" + p.name + "\"> has no size attribute");
  Offer offer;
  offer.version = app.manifest_version;
  ABUP_TRY(offer.size, parse_size(p.size));
  offer.url = resolve_url(app.codebases.front(), p.name);
  offer.package_hash = p.hash;
  offer.sha256 = app.postinstall_sha256;
  return offer;
}

}  // namespace

std::string resolve_url(std::string_view codebase, std::string_view name) {
  if (name.find("://") != std::string_view::npos) return std::string(name);
  std::string url(codebase);
  if (url.empty() || url.back() != '/') url += '/';
  while (!name.empty() && name.front() == '/') name.remove_prefix(1);
  return url + std::string(name);
}

Result<CheckResult> parse_reply(std::string_view xml, std::string_view app_id,
                                bool need_updatecheck) {
  Collector c;
  ABUP_CHECK(walk_xml(xml, "Omaha response", [&](const auto& path, const auto& attributes) {
    return c.element(path, attributes);
  }));
  if (c.root.empty()) return bad("empty document");

  auto it = std::find_if(c.apps.begin(), c.apps.end(),
                         [&](const App& a) { return iequal(a.appid, app_id); });
  if (it == c.apps.end()) {
    std::string seen;
    for (const auto& a : c.apps) seen += (seen.empty() ? "" : ", ") + ("'" + a.appid + "'");
    return bad("no <app appid=\"" + std::string(app_id) + "\">" +
               (seen.empty() ? " (no <app> at all)" : " (the reply names " + seen + ")"));
  }
  const App& app = *it;
  CheckResult r;
  r.events_acknowledged = app.events_ok;
  if (!app.has_status) return bad("<app> has no status attribute");
  r.app_status = app.status;
  if (app.status != "ok") {
    r.kind = CheckResult::Kind::not_now;
    return r;
  }
  if (!app.has_updatecheck) {
    if (need_updatecheck) return bad("<app> has no <updatecheck>");
    r.kind = CheckResult::Kind::no_update;
    return r;
  }
  if (!app.has_updatecheck_status) return bad("<updatecheck> has no status attribute");
  if (app.updatecheck_status == "noupdate") {
    r.kind = CheckResult::Kind::no_update;
    return r;
  }
  if (app.updatecheck_status != "ok")
    return make_error(Errc::failed, "Omaha response: the server answered <updatecheck status=\"" +
                                        app.updatecheck_status + "\">");
  ABUP_TRY(Offer offer, make_offer(app));
  r.kind = CheckResult::Kind::update;
  r.offer = std::move(offer);
  return r;
}

Result<CheckResult> parse_response(std::string_view xml, std::string_view app_id) {
  return parse_reply(xml, app_id, true);
}

}  // namespace abup::protocol::omaha
