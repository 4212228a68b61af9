// Pieces of the Omaha client shared by its source files (and its unit tests).
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "update-protocol/omaha/omaha.hpp"

namespace abup::protocol::omaha {

using Attributes = std::vector<std::pair<std::string, std::string>>;
// The value of attribute `key`, or nullptr.
[[nodiscard]] const std::string* attribute(const Attributes& attributes, std::string_view key);

// Parses `xml` with expat, calling on_element for every start tag with the element names from the
// root (the element itself last) and its attributes. A DOCTYPE or entity declaration is refused
// (Omaha documents have none: no external entities, no expansion bombs), as is any document
// over 1 MiB. An error from on_element stops parsing and is returned; `what` names the document
// in messages ("Omaha response").
using ElementHandler =
    std::function<Status(const std::vector<std::string>& path, const Attributes& attributes)>;
[[nodiscard]] Status walk_xml(std::string_view xml, std::string_view what,
                              const ElementHandler& on_element);

// codebase (with '/' added when missing) + name; an absolute name (scheme://...) as is.
[[nodiscard]] std::string resolve_url(std::string_view codebase, std::string_view name);
// parse_response(), and for event-only replies (need_updatecheck = false) an <app> without
// <updatecheck> is accepted.
[[nodiscard]] Result<CheckResult> parse_reply(std::string_view xml, std::string_view app_id,
                                              bool need_updatecheck);

}  // namespace abup::protocol::omaha
