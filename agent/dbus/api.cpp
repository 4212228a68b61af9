#include "agent/dbus/api.hpp"

#include <array>
#include <utility>

#include "agent/host.hpp"
#include "agent/state.hpp"

namespace abup::agent::dbus {
namespace {

constexpr std::array<std::pair<ApiErrc, std::string_view>, 10> kNames{{
    {ApiErrc::failed, "Failed"},
    {ApiErrc::busy, "Busy"},
    {ApiErrc::invalid_args, "InvalidArgs"},
    {ApiErrc::not_staged, "NotStaged"},
    {ApiErrc::nothing_to_do, "NothingToDo"},
    {ApiErrc::refused, "Refused"},
    {ApiErrc::untrusted, "Untrusted"},
    {ApiErrc::policy, "Policy"},
    {ApiErrc::network, "Network"},
    {ApiErrc::cancelled, "Cancelled"},
}};

constexpr std::string_view kErrorPrefix = "org.abup.Agent1.Error.";

std::string slot_name(std::optional<char> slot) {
  return slot ? std::string(1, *slot) : std::string();
}

}  // namespace

std::string error_name(ApiErrc code) {
  for (const auto& [c, name] : kNames)
    if (c == code) return std::string(kErrorPrefix) + std::string(name);
  return std::string(kErrorPrefix) + "Failed";
}

std::optional<ApiErrc> parse_error_name(std::string_view name) {
  if (!name.starts_with(kErrorPrefix)) return std::nullopt;
  name.remove_prefix(kErrorPrefix.size());
  for (const auto& [c, n] : kNames)
    if (n == name) return c;
  return std::nullopt;
}

ApiError to_api_error(const Error& e) {
  switch (e.code) {
    // InvalidArgs is the caller's mistake only: malformed data the node holds or fetched (a
    // broken state file, a bad image) is Failed, its message naming what is wrong.
    case Errc::usage:
      return {ApiErrc::invalid_args, e.message};
    case Errc::refused:
      return {ApiErrc::refused, e.message};
    case Errc::untrusted:
      return {ApiErrc::untrusted, e.message};
    case Errc::policy:
      return {ApiErrc::policy, e.message};
    case Errc::network:
      return {ApiErrc::network, e.message};
    case Errc::cancelled:
      return {ApiErrc::cancelled, e.message};
    default:
      return {ApiErrc::failed, e.message};
  }
}

OutcomeMap outcome_map(const Outcome& o) {
  auto slot = [](char c) { return c ? std::string(1, c) : std::string(); };
  return {{"kind", std::string(to_string(o.kind))},
          {"code", std::string(to_string(o.code))},
          {"operationId", o.operation_id},
          {"fromSlot", slot(o.from_slot)},
          {"toSlot", slot(o.to_slot)},
          {"fromVersion", o.from_version},
          {"toVersion", o.to_version},
          {"time", o.time},
          {"message", o.message}};
}

Status read_slot_facts(const LifecycleOptions& where, AgentStatus& st) {
  ABUP_TRY(auto pair, partitions::discover_slots(where.disk));
  ABUP_TRY(auto booted, partitions::booted_slot(pair, where.root));
  ABUP_TRY(auto host, read_host_facts(where.root));
  ABUP_TRY(auto state, StateStore(where.state_dir).load());
  st.booted_slot = slot_name(booted);
  st.booted_version = host.version ? host.version->text : "";
  st.staged_version.clear();
  if (booted) {
    const auto& other = pair.other(*booted);
    // Staged, or staged and armed for the next boot: either way it waits on the other slot.
    if (const auto* rec = state.slot(other.partuuid());
        rec && (rec->state == SlotState::staged || rec->state == SlotState::armed))
      st.staged_version = rec->version;
  }
  // The bootloader's view is best effort, as in `abup status`: unknown slots stay "".
  st.next_slot.clear();
  st.default_slot.clear();
  if (auto backend = open_backend(where, pair); backend) {
    if (auto view = (*backend)->read(); view) {
      st.next_slot = slot_name(view->next);
      st.default_slot = slot_name(view->default_slot);
    }
  }
  return {};
}

}  // namespace abup::agent::dbus
