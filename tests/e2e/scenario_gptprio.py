"""Scenario 7 (docs/e2e.md): the gptprio backend, Flatcar's layout, in a real guest.

No bootloader in Debian reads the GPT priority/tries/successful bits (Flatcar's GRUB has
`gptprio.next`, Debian's does not), so this scenario proves what abup writes, not what a
firmware then boots: the uefi disk image's factory boot (A, through GRUB on the removable-media
path) runs `abup stage` and `abup finalize` with `[Update] BootBackend=gptprio` against the
guest's /dev/vda and its vfat ESP mounted on /efi. Then, on the host, from the disk image:
  - ESP:/flatcar/vmlinuz-b and /flatcar/initrd-b (mtools) are the release's signed boot files
    (Flatcar's names: its GRUB loads the kernel of the slot it picked), and slot A's factory
    loaders are byte for byte unchanged;
  - USR-B's attributes (cgpt) are priority 2, tries 1, successful 0 (one try, the top priority),
    USR-A's priority 1, successful 1 (the fallback), and `sgdisk -v` finds both GPT copies valid;
  - the OVMF variable store has no BootNext (gptprio touches no firmware variable), and
    state.json holds the pending commit of B with backend gptprio.
"""
import e2elib as e
from e2elib import check
import scenarios as s

CONF = "[Update]\nBootBackend=gptprio\n[Boot]\nESP=/efi\n"


def gptprio(p):
    m = s.Machine(p, "uefi", "gptprio")
    # Flatcar's build sets USR-A P1 S1 and leaves USR-B P0 T0 S0 (docs/reference/gptprio.md).
    e.sh(["cgpt", "add", "-i", "3", "-P", "1", "-T", "0", "-S", "1", str(m.disk)])
    conf = "--config /run/gptprio.conf"
    plan = (f"cat >/run/gptprio.conf <<'E2E_EOF'\n{CONF}E2E_EOF\n"
            + s.step("stage", f"stage {conf} --no-progress --source /sysroot/e2e/images/{s.V2}.cosi")
            + s.step("finalize", f"finalize {conf}")
            + s.step("status", f"status {conf} --json"))
    b = m.boot(plan, f"factory A stages {s.V2} into B and arms it with the gptprio backend")
    s.expect_boot(m, b, "A", s.V1)
    s.expect_payload(m, b, "v1")
    for tag in ("stage", "finalize"):
        r = b.output(tag)
        check(r is not None and r[0] == 0, f"{b.log_path}: {tag} failed: {r and r[1]}")
    b.json("status")  # status runs on the armed disk (exit 0)

    meta = p.meta()
    for path, digest in meta["factory"]["uefi"].items():
        check(e.esp_sha256(m.disk, path, m.dir) == digest, f"ESP:/{path} of the booted slot A changed")
    signed = meta["bootFiles"]["uefi"][s.V2]
    for name, path in (("vmlinuz", "flatcar/vmlinuz-b"), ("initrd", "flatcar/initrd-b")):
        got = e.esp_sha256(m.disk, path, m.dir)
        check(got == signed[name]["sha256"],
              f"ESP:/{path} has SHA-256 {got}, the signed {name} of {s.V2} is {signed[name]['sha256']}")
    left = [n for n in e.esp_ls(m.disk, "/flatcar") if ".abup-new" in n or ".tmp." in n]
    check(not left, f"ESP:/flatcar keeps temporary copies: {left}")

    def attrs(n):
        return tuple(int(e.sh(["cgpt", "show", flag, "-i", str(n), str(m.disk)]).strip())
                     for flag in ("-P", "-T", "-S"))

    check(attrs(4) == (2, 1, 0), f"cgpt: USR-B priority/tries/successful {attrs(4)}, expected (2, 1, 0)")
    check(attrs(3)[0] == 1 and attrs(3)[2] == 1,
          f"cgpt: USR-A priority/tries/successful {attrs(3)}, expected priority 1, successful 1")
    s.expect_gpt_intact(m)
    check(m.uefi()["next"] is None, f"gptprio wrote BootNext: {m.uefi()}")
    pending = m.state().get("pending") or {}
    check(pending.get("targetSlot") == "B" and pending.get("targetPartuuid") == e.USR_B
          and pending.get("targetVersion") == s.V2 and pending.get("kind") == "finalize",
          f"state.json: pending {pending}")
    e.log(f"gptprio: ESP flatcar/vmlinuz-b and initrd-b are the signed ones; USR-B {attrs(4)}, "
          f"USR-A {attrs(3)}")
