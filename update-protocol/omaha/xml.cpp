// expat behind a small element walker, and XML escaping for the documents we write.
#include <expat.h>

#include <cstdio>
#include <optional>

#include "update-protocol/omaha/omaha_internal.hpp"

namespace abup::protocol::omaha {
namespace {

constexpr std::size_t kMaxDocument = 1 << 20;

struct Walker {
  XML_Parser xml = nullptr;
  const ElementHandler* on_element = nullptr;
  std::vector<std::string> path;
  Attributes attributes;
  std::optional<Error> error;  // first failure; parsing stops there

  void fail(Error e) {
    if (!error) error = std::move(e);
    XML_StopParser(xml, XML_FALSE);
  }
  static Walker& of(void* self) { return *static_cast<Walker*>(self); }

  static void on_start(void* self, const XML_Char* name, const XML_Char** atts) {
    Walker& w = of(self);
    w.path.emplace_back(name);
    w.attributes.clear();
    for (int i = 0; atts[i] != nullptr; i += 2) w.attributes.emplace_back(atts[i], atts[i + 1]);
    if (auto st = (*w.on_element)(w.path, w.attributes); !st) w.fail(std::move(st).error());
  }
  static void on_end(void* self, const XML_Char*) { of(self).path.pop_back(); }
  static void on_doctype(void* self, const XML_Char*, const XML_Char*, const XML_Char*, int) {
    of(self).fail(make_error(Errc::invalid_input, "a DOCTYPE declaration is not accepted"));
  }
  static void on_entity(void* self, const XML_Char* name, int, const XML_Char*, int,
                        const XML_Char*, const XML_Char*, const XML_Char*, const XML_Char*) {
    of(self).fail(make_error(Errc::invalid_input,
                             std::string("entity declaration '") + name + "' is not accepted"));
  }
};

}  // namespace

const std::string* attribute(const Attributes& attributes, std::string_view key) {
  for (const auto& [k, v] : attributes)
    if (k == key) return &v;
  return nullptr;
}

Status walk_xml(std::string_view xml, std::string_view what, const ElementHandler& on_element) {
  const std::string prefix(what);
  if (xml.size() > kMaxDocument)
    return make_error(Errc::invalid_input, prefix + ": " + std::to_string(xml.size()) +
                                               " bytes, more than the " +
                                               std::to_string(kMaxDocument) + " accepted");
  Walker w;
  w.on_element = &on_element;
  w.xml = XML_ParserCreate("UTF-8");
  if (w.xml == nullptr) return make_error(Errc::failed, prefix + ": XML_ParserCreate failed");
  XML_SetUserData(w.xml, &w);
  XML_SetElementHandler(w.xml, &Walker::on_start, &Walker::on_end);
  XML_SetStartDoctypeDeclHandler(w.xml, &Walker::on_doctype);
  XML_SetEntityDeclHandler(w.xml, &Walker::on_entity);
  XML_SetParamEntityParsing(w.xml, XML_PARAM_ENTITY_PARSING_NEVER);
  const auto status = XML_Parse(w.xml, xml.data(), static_cast<int>(xml.size()), XML_TRUE);
  std::string expat_error;
  if (status != XML_STATUS_OK && !w.error)
    expat_error = "not well-formed XML at line " + std::to_string(XML_GetCurrentLineNumber(w.xml)) +
                  ", column " + std::to_string(XML_GetCurrentColumnNumber(w.xml)) + ": " +
                  XML_ErrorString(XML_GetErrorCode(w.xml));
  XML_ParserFree(w.xml);
  if (w.error) return std::move(*w.error).with_context(prefix);
  if (!expat_error.empty()) return make_error(Errc::invalid_input, prefix + ": " + expat_error);
  return {};
}

std::string xml_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          // Tab, newline and CR survive attribute normalization only as character references;
          // other control characters cannot be written in XML 1.0 at all.
          if (c == '\t' || c == '\n' || c == '\r') {
            char ref[8];
            std::snprintf(ref, sizeof ref, "&#%d;", c);
            out += ref;
          } else {
            out += "&#xFFFD;";
          }
        } else {
          out += c;
        }
    }
  }
  return out;
}

}  // namespace abup::protocol::omaha
