// The daemon's log: journald structured entries (MESSAGE_ID per kind of event, ABUP_OPERATION_ID,
// ABUP_VERSION, ABUP_TARGET_VERSION, ...) when the journal socket answers, else one line per event
// on stderr ("abup: MESSAGE [KEY=value ...]"), which systemd also collects.
#pragma once

#include <map>
#include <string>
#include <string_view>

namespace abup::agent::daemon {

// Stable MESSAGE_IDs (journalctl MESSAGE_ID=...). Never change a value: operators filter on them.
enum class Event {
  started,        // f9fc1446d1677bd7703c4c187f94289f
  stopping,       // 9cb35b5d1d9d794ef23e604eb32803bd
  check,          // 894e28f06dd2907e3f37f90812f61a6d  update check answered
  check_failed,   // bee903cab2a69e30bd4c487c7e2b253a  update check failed (backing off)
  offer_skipped,  // 7a2aeec77e3b34478fb32d51afcbdfeb  offered version not installed (why)
  stage_started,  // c87fa3765101fdd440515186e6d0b715
  staged,         // 840c8da7e99c8c1fcbeb1f66cc228d17
  stage_failed,   // c4143b74941b63be0847a9535e4b38d6
  armed,          // afd172b3ac0e9f9475ffed81d9ef8819  finalize: one try of the new slot armed
  reboot,         // 3322350832a036e2c8e21460fb64ed81  rebooting / reboot needed / waiting
  committed,      // 3b751806ae55bdd7f23894c8d6093bd4
  boot_failed,    // dfd8f76389b21dff42ba064d6a4db471  health failed or the bootloader fell back
  events,         // 61f1e45ef3e16af3a02f803bb1d8b11a  Omaha events delivered or not
  error,          // f07d165f05ed4059c7a126de6535984d  any other failure
};

[[nodiscard]] std::string_view message_id(Event event);

enum class Priority { err = 3, warning = 4, notice = 5, info = 6 };

// Fields are journald field names without the ABUP_ prefix (OPERATION_ID, VERSION, ...).
void log(Event event, Priority priority, const std::string& message,
         const std::map<std::string, std::string>& fields = {});

}  // namespace abup::agent::daemon
