#include "support/node.hpp"

#include <doctest/doctest.h>

#include <random>

#include "partitions/little_endian.hpp"

namespace abup::test {
namespace {

std::string q(const std::filesystem::path& p) {
  return shell_quote(p.string());
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

std::string new_boot_id() {
  std::random_device rd;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%08x-%04x-%04x-%04x-%04x%08x\n", rd(), rd() & 0xffff,
                rd() & 0xffff, rd() & 0xffff, rd() & 0xffff, rd());
  return buf;
}

}  // namespace

Node::Node(std::string backend) : backend_(std::move(backend)) {
  run_ok("set -e; cd " + q(tmp_.path()) +
         "; mkdir -p tree/bin keys images; head -c 300000 /dev/urandom > tree/bin/tool;"
         " truncate -s 8M usr.img; mkfs.ext4 -q -F -d tree usr.img;"
         " openssl genpkey -algorithm ed25519 -out signer.pem 2>/dev/null;"
         " openssl pkey -in signer.pem -pubout -out keys/signer.pem");
  make_flatcar_disk(disk(), DiskLayout{16, false, false});
  if (backend_ == "uefi" || backend_ == "systemd-boot")
    std::filesystem::create_directories(efivars());
  make_root(root(), 'A', kRunning);
  std::filesystem::create_directories(esp());
  std::filesystem::create_directories(root() / "etc/abup");
  write_file(root() / "etc/abup/abup.conf", boot_section());
  // An installed system's block: A is the good, first slot.
  std::filesystem::create_directories(grubenv().parent_path());
  run_ok("grub-editenv " + q(grubenv()) + " create && grub-editenv " + q(grubenv()) +
         " set 'ORDER=A B' A_OK=1 A_TRY=0 B_OK=0 B_TRY=0");
}

std::string Node::disk_option() const {
  return disk_option_ ? " --disk " + q(disk()) : "";
}

std::string Node::boot_file_args() const {
  std::vector<std::string> names;
  if (backend_ == "gptprio") names = {"vmlinuz"};
  if (backend_ == "uefi") names = {"uki"};
  if (backend_ == "systemd-boot") names = {"uki", "addon-a", "addon-b"};
  std::string args;
  for (const auto& n : names) {
    auto f = tmp_ / ("boot-" + n);
    if (!std::filesystem::exists(f)) write_file(f, n + " of the release " + new_boot_id());
    args += " --boot-file " + n + "=" + q(f);
  }
  return args;
}

std::filesystem::path Node::build(const std::string& version, bool other_content,
                                  const std::string& extra) {
  auto usr = tmp_ / (other_content ? "usr2.img" : "usr.img");
  if (other_content && !std::filesystem::exists(usr))
    run_ok("set -e; cd " + q(tmp_.path()) +
           "; mkdir -p tree2/bin; head -c 300000 /dev/urandom > tree2/bin/tool;"
           " truncate -s 8M usr2.img; mkfs.ext4 -q -F -d tree2 usr2.img");
  auto img = tmp_ / "images" / (version + ".cosi");
  run_ok(abup_image_bin() + " build --usr " + q(usr) + " --version " + version +
         " --frame-size 1M --out " + q(img) + boot_file_args() + " " + extra + " && " +
         abup_image_bin() + " sign --key " + q(tmp_ / "signer.pem") + " " + q(img));
  return img;
}

void Node::stage(const std::string& version) {
  auto r = stage_image(build(version));
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
}

RunResult Node::stage_image(const std::filesystem::path& image, const std::string& extra,
                            const std::string& env) const {
  return abup("stage",
              "--no-progress --keyring " + q(tmp_ / "keys") + " --source " + q(image) + " " + extra,
              env);
}

std::string Node::slot_digest(char slot) const {
  const int part = slot == 'A' ? kPartUsrA : kPartUsrB;
  return trim(run_ok("set -e; d=" + q(disk()) + "; i=$(sgdisk -i " + std::to_string(part) +
                     " $d); f=$(echo \"$i\" | awk '/First sector/{print $3}');"
                     " l=$(echo \"$i\" | awk '/Last sector/{print $3}');"
                     " dd if=$d bs=512 skip=$f count=$((l - f + 1)) status=none | sha256sum"));
}

RunResult Node::abup(const std::string& cmd, const std::string& extra,
                     const std::string& env) const {
  // Never the machine's own system bus: a --reboot that reaches logind would reboot it.
  const std::string bus = env.find("DBUS_SYSTEM_BUS_ADDRESS=") == std::string::npos
                              ? "DBUS_SYSTEM_BUS_ADDRESS=unix:path=" + q(tmp_ / "no-bus") + " "
                              : "";
  return run(bus + env + (env.empty() ? "" : " ") + abup_bin() + " " + cmd + disk_option() +
             " --root " + q(root()) + " --boot-backend " + backend_ + " " + extra);
}

nlohmann::json Node::status() const {
  auto r = abup("status", "--json");
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  return nlohmann::json::parse(r.out);
}

void Node::reboot_into(char slot, const std::string& version) {
  make_root(root(), slot, version);  // new boot id, cmdline, os-release; keeps var/ and boot/
  write_file(root() / "proc/sys/kernel/random/boot_id", new_boot_id());
}

char Node::uefi_firmware_next(bool boot) const {
  auto var = [&](const std::string& name) -> std::string {
    auto p = efivars() / (name + "-8be4df61-93ca-11d2-aa0d-00e098032b8c");
    return std::filesystem::exists(p) ? read_file(p) : "";
  };
  auto u16 = [](const std::string& d, std::size_t at) {
    return static_cast<unsigned>(
        partitions::get_le(reinterpret_cast<const std::uint8_t*>(d.data()) + at, 2));
  };
  // Files are 4 bytes of attributes, then the variable's data.
  unsigned entry = 0;
  const std::string next = var("BootNext"), order = var("BootOrder");
  if (next.size() == 6) {
    entry = u16(next, 4);
    if (boot) std::filesystem::remove(efivars() / "BootNext-8be4df61-93ca-11d2-aa0d-00e098032b8c");
  } else {
    REQUIRE(order.size() >= 6);
    entry = u16(order, 4);
  }
  char name[9];
  std::snprintf(name, sizeof name, "Boot%04X", entry);
  // EFI_LOAD_OPTION: UINT32 Attributes, UINT16 FilePathListLength, CHAR16 Description[].
  const std::string option = var(name);
  std::string description;
  for (std::size_t i = 10; i + 1 < option.size() && u16(option, i) != 0; i += 2)
    description += static_cast<char>(option[i]);
  INFO(name, " description: ", description);
  if (description.size() < 2 || description[description.size() - 2] != ' ') return 0;
  char slot = description.back();
  return slot == 'A' || slot == 'B' ? slot : 0;
}

char Node::systemd_boot_next(bool boot) const {
  auto path = [&](const std::string& name) {
    return efivars() / (name + "-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f");
  };
  // 4 bytes of attributes, then a NUL-terminated UTF-16LE entry id (ASCII here).
  auto id = [&](const std::string& name) -> std::string {
    if (!std::filesystem::exists(path(name))) return "";
    const std::string d = read_file(path(name));
    std::string out;
    for (std::size_t i = 4; i + 1 < d.size() && (d[i] || d[i + 1]); i += 2) out += d[i];
    return out;
  };
  std::string entry = id("LoaderEntryOneShot");
  if (!entry.empty() && boot) std::filesystem::remove(path("LoaderEntryOneShot"));
  if (entry.empty()) entry = id("LoaderEntryDefault");
  INFO("systemd-boot entry: ", entry);
  if (entry == "acl-usr-a.efi") return 'A';
  if (entry == "acl-usr-b.efi") return 'B';
  return 0;
}

char Node::reboot() {
  auto st = status();
  REQUIRE(st["next"].is_string());
  char next = st["next"].get<std::string>()[0];
  if (backend_ == "uefi") REQUIRE(uefi_firmware_next(true) == next);
  if (backend_ == "systemd-boot") REQUIRE(systemd_boot_next(true) == next);
  // A slot abup never wrote holds the image the node was installed with (A, kRunning): its
  // os-release names that version, as a real slot's would (an empty one now stops stage).
  auto version = st["slots"][next - 'A'].value("version", std::string());
  if (version.empty() && next == 'A') version = kRunning;
  reboot_into(next, version);
  return next;
}

std::string Node::cgpt(int partition, const char* flag) const {
  return trim(run_ok("cgpt show -i " + std::to_string(partition) + " " + flag + " " + q(disk())));
}

std::string Node::grub_list() const {
  return run_ok("grub-editenv " + q(grubenv()) + " list");
}

std::string Node::state_text() const {
  auto p = state_dir() / "state.json";
  return std::filesystem::exists(p) ? read_file(p) : "";
}

std::string Node::history_text() const {
  auto p = state_dir() / "history.jsonl";
  return std::filesystem::exists(p) ? read_file(p) : "";
}

}  // namespace abup::test
