"""The e2e scenarios (docs/e2e.md): each boot is one QEMU run; the host asserts on the serial
log, the disk image and the OVMF variable store."""

import json
import shutil
from pathlib import Path

import e2elib as e
from e2elib import check, log

V1, V2, V3 = "2026.1.0", "2026.2.0", "2026.3.0"  # factory, update, broken update
BOOT_TIMEOUT = 420  # seconds per boot: TCG on a loaded 2-core machine, staging included


class Paths:
    def __init__(self, build_dir):
        self.build = Path(build_dir).resolve()
        self.work = self.build / "e2e"
        self.cache = self.work / "cache"
        self.base = self.work / "base"
        self.abup = self.build / "abup"
        self.abup_image = self.build / "abup-image"
        self.abup_serve = self.build / "abup-serve"
        self.fake_apiserver = self.build / "abup-fake-apiserver"

    def images(self, backend):
        """The signed images `build` made for `backend` (on its shared partition as
        /e2e/images/VERSION.cosi)."""
        return self.work / "build/images" / backend

    def meta(self):
        """What `build` recorded: the kernel payload markers, the boot files each backend's
        releases carry (ESP path, SHA-256) and the factory ESP's loaders."""
        return json.loads((self.work / "build/e2e.json").read_text())

    def disk(self, backend):
        return self.base / f"{backend}.img"


# ---- a machine: one disk image and its OVMF variable store -----------------------------------

ABUP = "abup {cmd} --disk /dev/vda"


def step(tag, cmd):
    """A plan line: run abup CMD, framed by markers."""
    return f"run {tag} {ABUP.format(cmd=cmd)}\n"


COMMIT = step("commit", "commit --json")  # what the boot-time unit does on every boot
STATUS = step("status", "status --json")


class Machine:
    def __init__(self, p, backend, name):
        self.p, self.backend = p, backend
        self.dir = p.work / "runs" / f"{name}-{backend}"
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.disk = self.dir / "disk.img"
        self.vars = self.dir / "OVMF_VARS.fd"
        check(p.disk(backend).exists(), f"{p.disk(backend)} is missing: run `run build` first")
        e.sh(["cp", "--sparse=always", str(p.disk(backend)), str(self.disk)])
        shutil.copy(e.OVMF_VARS, self.vars)
        self.n = 0

    def snapshot(self, name):
        for f in (self.disk, self.vars):
            e.sh(["cp", "--sparse=always", str(f), str(f) + "." + name])

    def restore(self, name):
        for f in (self.disk, self.vars):
            e.sh(["cp", "--sparse=always", str(f) + "." + name, str(f)])

    def boot(self, plan, what, kill_on=None, net=False):
        self.n += 1
        log(f"{self.backend} boot {self.n}: {what}")
        return e.run_qemu(self.disk, self.vars, plan, self.dir / f"boot-{self.n:02d}.log",
                          BOOT_TIMEOUT, kill_on, net)

    # -- the host's view of the disk image and the variable store
    def state(self):
        text = e.ext4_cat(self.disk, 9, "/var/lib/abup/state.json")
        return json.loads(text) if text else {}

    def history(self):
        text = e.ext4_cat(self.disk, 9, "/var/lib/abup/history.jsonl") or ""
        return [json.loads(l) for l in text.splitlines() if l.strip()]

    def grubenv(self):
        return e.grubenv_vars(self.disk, self.dir)

    def uefi(self):
        return e.boot_vars(self.vars)

    def loader(self):
        return e.loader_vars(self.vars)

    def host_status(self, booted):
        """`abup status --json` run on the host against the disk image file, with the state
        directory, the grubenv and the efivars read back from the image and the VARS file."""
        root = self.dir / "host-root"
        shutil.rmtree(root, ignore_errors=True)
        (root / "proc/sys/kernel/random").mkdir(parents=True)
        (root / "etc/abup").mkdir(parents=True)
        (root / "proc/cmdline").write_text(
            f"mount.usr=PARTUUID={e.USR_A if booted == 'A' else e.USR_B}\n")
        (root / "proc/sys/kernel/random/boot_id").write_text("host\n")
        (root / "etc/abup/abup.conf").write_text(e.abup_conf(self.backend).replace(
            "/efi/grub/grubenv", str(root / "grubenv")))
        state = root / "var/lib/abup"
        state.mkdir(parents=True)
        for f in ("state.json", "history.jsonl"):
            text = e.ext4_cat(self.disk, 9, f"/var/lib/abup/{f}")
            if text is not None:
                (state / f).write_text(text)
        if self.backend == "grubenv":
            e.esp_copy_out(self.disk, "/grub/grubenv", root / "grubenv")
        else:
            e.efivars_dir(self.vars, root / "sys/firmware/efi/efivars")
            # The ESP's loaders, for the boot files abup status reads back ([Boot] ESP=/efi).
            (root / "efi").mkdir()
            e.esp_copy_out(self.disk, "/EFI", root / "efi")
        out = e.sh([str(self.p.abup), "status", "--json", "--disk", str(self.disk), "--root",
                    str(root)])
        return json.loads(out)



# ---- assertions shared by the scenarios ------------------------------------------------------

def expect_boot(m, b, slot, version):
    check(b.slot == slot and b.version == version,
          f"{b.log_path}: expected slot {slot} with {version}, booted slot {b.slot} with "
          f"{b.version}")


def expect_payload(m, b, key):
    """The boot ran the kernel payload `key` (v1 the factory's, v2 the update's, ...): the marker
    of the initramfs it unpacked, and for systemd-boot the UKI's own .cmdline token in
    /proc/cmdline."""
    want = m.p.meta()["payloads"][key]
    check(b.payload == want,
          f"{b.log_path}: expected kernel payload {want!r}, the guest ran {b.payload!r}")
    if m.backend == "systemd-boot":
        check(f"abup.e2e.payload={key}" in b.cmdline.split(),
              f"{b.log_path}: /proc/cmdline lacks abup.e2e.payload={key}: {b.cmdline!r}")


def expect_esp(m, staged=None, temp_ok=False):
    """Read back from the ESP with mtools: the factory loaders of A are byte for byte what they
    were (the booted slot's files are never written); the boot files of the release `staged`
    into B are the signed ones; no temporary copy is left behind (unless `temp_ok`: a stage was
    cut short)."""
    meta = m.p.meta()
    for path, digest in meta["factory"][m.backend].items():
        check(e.esp_sha256(m.disk, path, m.dir) == digest,
              f"ESP:/{path} of the booted slot A changed (or is gone)")
    if staged:
        for name, f in meta["bootFiles"][m.backend][staged].items():
            got = e.esp_sha256(m.disk, f["path"], m.dir)
            check(got == f["sha256"],
                  f"ESP:/{f['path']} (boot file {name} of {staged}) has SHA-256 {got}, the "
                  f"signed one is {f['sha256']}")
    for d in ({str(Path(x).parent) for x in meta["factory"][m.backend]} if not temp_ok else []):
        left = [n for n in e.esp_ls(m.disk, "/" + d) if ".abup-new" in n or ".tmp." in n]
        check(not left, f"ESP:/{d} keeps temporary copies: {left}")


def expect_boot_files_ok(m, st, version):
    """`abup status --json` on the host lists slot B's boot files of `version`, each read back
    from the ESP as ok."""
    want = m.p.meta()["bootFiles"][m.backend][version]
    slot_b = next(s for s in st["slots"] if s["name"] == "B")
    got = {f["name"]: f for f in slot_b.get("bootFiles", [])}
    check(set(got) == set(want),
          f"abup status on the image: slot B's boot files {sorted(got)}, expected {sorted(want)}")
    for name, f in want.items():
        check(got[name]["path"] == f["path"] and got[name]["sha256"] == f["sha256"]
              and got[name]["check"] == "ok",
              f"abup status on the image: boot file {name}: {got[name]}, expected {f} and ok")


def expect_code(b, tag, code):
    # abup commit exits 3 for TargetBootFailed (agent/cli/commit_cmd.cpp), 0 otherwise.
    out = b.json(tag, 3 if code == "TargetBootFailed" else 0)
    check(out.get("outcome") == code,
          f"{b.log_path}: abup {tag}: expected outcome {code}, got {out.get('outcome')}: {out}")
    return out


def expect_firmware_entry(m, b, slot):
    """uefi: OVMF's boot manager started the slot's own Boot#### (not a fallback path).
    systemd-boot: it booted the slot's UKI (LoaderEntrySelected, which it sets, volatile, for
    the OS), and it was itself started by shim (LoaderImageIdentifier: the grubx64.efi that
    shim loads from its own directory)."""
    if m.backend == "systemd-boot":
        selected, image = b.marker("E2E-LoaderEntrySelected:"), b.marker(
            "E2E-LoaderImageIdentifier:")
        check(selected == e.uki_entry(slot),
              f"{b.log_path}: systemd-boot booted entry {selected!r}, not {e.uki_entry(slot)}")
        check(image and image.lower() == "\\efi\\boot\\grubx64.efi",
              f"{b.log_path}: systemd-boot was started as {image!r}, not by shim as "
              "\\EFI\\BOOT\\grubx64.efi")
        return
    if m.backend != "uefi":
        return
    want = f'"Azure Container Linux {slot}"'
    started = [l for l in b.lines if "BdsDxe: starting Boot" in l]
    check(started and want in started[-1],
          f"{b.log_path}: expected OVMF to start {want}, it started: {started}")


def expect_boot_config(m, next_slot, default_slot, tries=None):
    """The bootloader's state read back from the image (grub-editenv on the ESP's grubenv, or
    the OVMF VARS file) and `abup status` on the host agreeing with it."""
    if m.backend == "systemd-boot":
        v = m.loader()
        by_id = {e.uki_entry(s): s for s in "AB"}
        default = by_id.get(v.get("LoaderEntryDefault"))
        one_shot = v.get("LoaderEntryOneShot")
        nxt = by_id.get(one_shot) if one_shot else default
        check(nxt == next_slot and default == default_slot,
              f"Boot Loader Interface variables in the VARS file {v}: expected "
              f"next={next_slot} default={default_slot}")
        if tries:
            for s, t in tries.items():
                check((one_shot == e.uki_entry(s)) == (t == 1),
                      f"Boot Loader Interface variables {v}: expected {s} to have {t} tries")
    elif m.backend == "grubenv":
        env = m.grubenv()
        order = env["ORDER"].split()
        first_ok = next((s for s in order if env[f"{s}_OK"] == "1"), None)
        first = next((s for s in order if env[f"{s}_OK"] == "1" or int(env[f"{s}_TRY"]) > 0),
                     None)
        check(first == next_slot and first_ok == default_slot,
              f"grubenv {env}: expected next={next_slot} default={default_slot}")
        if tries:
            for s, t in tries.items():
                check(env[f"{s}_TRY"] == str(t), f"grubenv {env}: expected {s}_TRY={t}")
    else:
        v = m.uefi()
        ours = {ent[1][-1]: n for n, ent in v["entries"].items()
                if ent[1].startswith("Azure Container Linux ")}
        for s, n in ours.items():
            _, desc, path, cmdline = v["entries"][n]
            check(path == f"\\EFI\\acl\\usr-{s.lower()}.efi" and cmdline == e.uefi_cmdline(s),
                  f"Boot{n:04X} ({desc}): loader {path!r} command line {cmdline!r}")
        default = next((ours_s for n in v["order"] for ours_s, on in ours.items() if on == n),
                       None)
        nxt = next((s for s, n in ours.items() if n == v["next"]), None) if v["next"] else default
        check(nxt == next_slot and default == default_slot,
              f"OVMF variables BootOrder={v['order']} BootNext={v['next']} entries={ours}: "
              f"expected next={next_slot} default={default_slot}")


def expect_host_status(m, booted, next_slot, default_slot, pending):
    st = m.host_status(booted)
    check("backendError" not in st, f"abup status on the image: {st.get('backendError')}")
    check(st.get("next") == next_slot and st.get("default") == default_slot,
          f"abup status on the image: next={st.get('next')} default={st.get('default')}, "
          f"expected {next_slot}/{default_slot}: {st}")
    check(bool(st.get("pending")) == pending,
          f"abup status on the image: pending={st.get('pending')}, expected "
          f"{'one' if pending else 'none'}")
    return st


def expect_gpt_intact(m):
    """Nothing abup did in the guest touched the partition table (sgdisk -v, the PARTUUIDs)."""
    out = e.sh(["sgdisk", "-v", str(m.disk)])
    check("No problems found" in out, f"sgdisk -v {m.disk}:\n{out}")
    for n, uuid_ in ((3, e.USR_A), (4, e.USR_B)):
        info = e.sh(["sgdisk", "-i", str(n), str(m.disk)]).lower()
        check(uuid_ in info, f"sgdisk -i {n} {m.disk}: PARTUUID is not {uuid_}:\n{info}")


def stage_finalize(version):
    return (COMMIT + step("stage", f"stage --no-progress --source /sysroot/e2e/images/{version}.cosi")
            + step("finalize", "finalize --reboot"))


# ---- scenarios 1-4 ---------------------------------------------------------------------------

def cycle(p, backend):
    m = Machine(p, backend, "cycle")

    # 1. Factory state boots A; abup in A stages B from the image on the shared partition,
    #    finalizes and reboots.
    b = m.boot(stage_finalize(V2), "factory state: A stages and finalizes " + V2)
    expect_boot(m, b, "A", V1)
    expect_payload(m, b, "v1")
    if backend == "systemd-boot":
        expect_firmware_entry(m, b, "A")  # loader.conf's default: no variable of ours yet
    expect_code(b, "commit", "NothingPending")
    check(b.output("stage") and b.output("stage")[0] == 0, f"{b.log_path}: stage failed")
    check(b.rebooted_in("finalize"), f"{b.log_path}: finalize --reboot did not arm and reboot")
    expect_boot_config(m, "B", "A", {"B": 1})
    st = m.state()
    check(st.get("pending", {}).get("targetSlot") in ("B", None) and st.get("pending"),
          f"state.json on the image has no pending commit: {st}")
    st = expect_host_status(m, "A", "B", "A", True)
    expect_esp(m, V2)  # stage wrote B's loader (uefi, systemd-boot): the release's, signed
    expect_boot_files_ok(m, st, V2)

    # 2. B boots; abup commits; the next boot is B again, without counting.
    b = m.boot(COMMIT + STATUS, "B boots and commits")
    expect_boot(m, b, "B", V2)
    expect_payload(m, b, "v2")  # the new kernel payload and the new /usr
    expect_firmware_entry(m, b, "B")
    if backend == "grubenv":
        check(b.has("B_TRY=0 -> slot=B"), f"{b.log_path}: GRUB did not count B's one try")
    expect_code(b, "commit", "Committed")
    expect_boot_config(m, "B", "B", {"B": 0})
    expect_boot_files_ok(m, expect_host_status(m, "B", "B", "B", False), V2)
    before = m.grubenv() if backend == "grubenv" else m.uefi()

    # 4. Operator rollback from the good new slot: the old slot boots and commits.
    b = m.boot(COMMIT + STATUS + step("rollback", "rollback --reboot"),
               "B again (no counting), then abup rollback --reboot")
    expect_boot(m, b, "B", V2)
    expect_payload(m, b, "v2")
    expect_firmware_entry(m, b, "B")
    expect_code(b, "commit", "NothingPending")
    if backend == "grubenv":
        check(b.has("B_TRY=0 -> slot=B"), f"{b.log_path}: GRUB counted a committed slot")
    check(b.rebooted_in("rollback"), f"{b.log_path}: rollback --reboot failed")
    expect_boot_config(m, "A", "B", {"A": 1})
    b = m.boot(COMMIT + STATUS, "A boots after the rollback and commits")
    expect_boot(m, b, "A", V1)
    expect_payload(m, b, "v1")
    expect_firmware_entry(m, b, "A")
    out = expect_code(b, "commit", "Committed")
    check(out.get("toSlot") == "A", f"{b.log_path}: commit after rollback: {out}")
    expect_boot_config(m, "A", "A")
    rollback_ops = [h for h in m.history() if h.get("kind") == "rollback"]
    check(rollback_ops, f"history.jsonl on the image has no rollback line: {m.history()}")

    # 3. A broken release: for uefi and systemd-boot its kernel (the initramfs it brings as a
    #    boot file fails before commit), for grubenv its /usr (the kernel is inside the slot).
    #    The bootloader falls back to the previous slot and its old kernel, and abup commit
    #    there records TargetBootFailed.
    b = m.boot(stage_finalize(V3), "A stages and finalizes the broken " + V3)
    expect_boot(m, b, "A", V1)
    check(b.rebooted_in("finalize"), f"{b.log_path}: finalize of {V3} failed")
    expect_boot_config(m, "B", "A", {"B": 1})
    expect_esp(m, V3)
    b = m.boot(COMMIT, "B with the broken release fails before commit")
    expect_firmware_entry(m, b, "B")
    check(b.has("E2E-UNHEALTHY") and b.output("commit") is None,
          f"{b.log_path}: the broken release's boot went on to commit")
    if backend == "grubenv":
        expect_boot(m, b, "B", V3)
        expect_payload(m, b, "v3")
        check(b.has("E2E-HEALTH-CHECK-FAILED"), f"{b.log_path}: /usr's own check did not fail")
    else:
        check(b.slot == "B", f"{b.log_path}: expected slot B, booted {b.slot}")
        expect_payload(m, b, "v3-broken")
        check(b.has("E2E-KERNEL-BROKEN") and b.version is None,
              f"{b.log_path}: the broken kernel did not fail the boot before /usr's own check")
    b = m.boot(COMMIT + STATUS, "the firmware/bootloader falls back to A")
    expect_boot(m, b, "A", V1)
    expect_payload(m, b, "v1")  # the old kernel
    expect_firmware_entry(m, b, "A")
    out = expect_code(b, "commit", "TargetBootFailed")
    check(out.get("toVersion") == V3, f"{b.log_path}: {out}")
    status = b.json("status")
    failed = [f.get("version") for f in status.get("failedVersions", [])]
    check(V3 in failed, f"{b.log_path}: abup status does not list {V3} as failed: {status}")
    expect_boot_config(m, "A", "A")
    st = expect_host_status(m, "A", "A", "A", False)
    expect_gpt_intact(m)
    log(f"{backend}: cycle done; history: "
        + ", ".join(f"{h['kind']}:{h['outcome']}" for h in m.history()))


# ---- scenario 5 ------------------------------------------------------------------------------

# Where abup is killed (ABUP_FAULT=<point>:<n>, common/abup/fault.hpp): after its n-th write of
# boot configuration (a grubenv pwrite before its fsync; one efivarfs SetVariable), or after a
# lifecycle step. QEMU is killed at once after that: a power cut.
FAULTS = {
    # finalize does one grubenv write (pwrite + fsync), then saves state.json.
    "grubenv": ["boot-write:1", "finalize-armed:1", "finalize-saved:1"],
    # the first finalize writes Boot#### of A, of B, BootNext, BootOrder, then state.json.
    "uefi": ["boot-write:1", "boot-write:3", "boot-write:4", "finalize-saved:1"],
    # the first finalize writes LoaderEntryDefault (the running A), LoaderEntryOneShot (B), then
    # state.json.
    "systemd-boot": ["boot-write:1", "boot-write:2", "finalize-saved:1"],
}
PLUG = "E2E-PULL-THE-PLUG"


# systemd-boot: power cuts inside stage's write of B's UKI (agent/boot_files.cpp): after the
# new bytes are synced under their temporary name, before the rename; then after the rename,
# before the slot is recorded staged.
STAGE_FAULTS = {"systemd-boot": ["boot-file-synced:1", "boot-file-written:1"]}
STAGE_V2 = f"stage --no-progress --source /sysroot/e2e/images/{V2}.cosi"


def cut_plan(fault, cmd):
    return (f"echo \"E2E-FAULT: ABUP_FAULT={fault}\"\n"
            f"ABUP_FAULT={fault} {ABUP.format(cmd=cmd)}\n"
            f"echo \"E2E-ABUP-EXIT: $?\"\necho {PLUG}\nsleep 600\n")


def expect_cut(b, fault):
    check(b.ended == "killed" and b.marker("E2E-ABUP-EXIT:") == "137",
          f"{b.log_path}: abup was not killed at {fault} "
          f"(exit {b.marker('E2E-ABUP-EXIT:')}, qemu {b.ended})")


def stage_with_cuts(m):
    """A stages V2 into B; on systemd-boot first cut short by power cuts while it writes B's
    UKI. Each next boot is A on its old kernel with B not staged, and the next stage rewrites
    and re-verifies the UKI. Ends with B staged, from a boot on A."""
    plan = COMMIT
    for fault in STAGE_FAULTS.get(m.backend, []):
        b = m.boot(plan + cut_plan(fault, STAGE_V2), f"stage killed at {fault}, then QEMU killed",
                   kill_on=PLUG)
        expect_boot(m, b, "A", V1)
        expect_payload(m, b, "v1")
        expect_firmware_entry(m, b, "A")  # systemd-boot only here (uefi's first boot is GRUB)
        expect_cut(b, fault)
        expect_esp(m, temp_ok=True)  # A's UKI untouched
        uki_b = m.p.meta()["bootFiles"][m.backend][V2]["uki"]
        got = e.esp_sha256(m.disk, uki_b["path"], m.dir)
        if fault.startswith("boot-file-synced"):
            check(got is None, f"ESP:/{uki_b['path']} exists though the cut came before its "
                               "rename (the inactive slot's old UKI is removed first)")
        else:
            check(got == uki_b["sha256"], f"ESP:/{uki_b['path']} is not whole after its rename "
                                          "and directory fsync")
        plan = COMMIT + STATUS
    b = m.boot(plan + step("stage", STAGE_V2), "A stages " + V2)
    expect_boot(m, b, "A", V1)
    expect_payload(m, b, "v1")
    if m.backend == "systemd-boot":
        expect_firmware_entry(m, b, "A")
    if plan != COMMIT:
        expect_code(b, "commit", "NothingPending")
        slot_b = next(s for s in b.json("status")["slots"] if s["name"] == "B")
        check(slot_b["state"] not in ("staged", "armed"),
              f"{b.log_path}: B is {slot_b['state']} after a power cut inside its stage")
    check(b.output("stage") and b.output("stage")[0] == 0, f"{b.log_path}: stage failed")
    expect_esp(m, V2)
    expect_boot_files_ok(m, m.host_status("A"), V2)


# The boot after a cut: commit and status as every boot, then, only when the boot came up on A,
# finalize again (B's one try is armed again and the boot ends in its reboot).
AFTER_CUT = (COMMIT + STATUS + f'[ "$usr_uuid" = "{e.USR_A}" ] && ' +
             step("finalize", "finalize --reboot"))


def powercut(p, backend):
    m = Machine(p, backend, "powercut")
    stage_with_cuts(m)
    m.snapshot("staged")
    for fault in FAULTS[backend]:
        log(f"{backend}: power cut at {fault}")
        m.restore("staged")
        b = m.boot(cut_plan(fault, "finalize --reboot"),
                   f"finalize killed at {fault}, then QEMU killed", kill_on=PLUG)
        expect_boot(m, b, "A", V1)
        expect_cut(b, fault)
        # The next boot comes up on a slot, and abup reports a consistent state there; on A the
        # same boot runs finalize again (one QEMU boot less per cut).
        b = m.boot(AFTER_CUT, f"first boot after the power cut at {fault}")
        check(b.slot in ("A", "B") and b.has("E2E-HEALTHY"),
              f"{b.log_path}: no slot came up after the power cut at {fault}")
        commit = b.output("commit")
        check(commit is not None and commit[0] in (0, 3),
              f"{b.log_path}: abup commit after the power cut failed: {commit}")
        code = b.json("commit", commit[0]).get("outcome")
        status = b.json("status")
        check(not status.get("pending") and status.get("booted") == b.slot,
              f"{b.log_path}: after commit, abup status is not settled: {status}")
        expect_payload(m, b, "v1" if b.slot == "A" else "v2")
        if b.slot == "B":
            # The one try of B was armed before the cut.
            check(code in ("Committed", "NothingPending"),
                  f"{b.log_path}: B booted, abup commit said {code}")
            if code == "Committed":
                expect_boot_config(m, "B", "B")
                expect_host_status(m, "B", "B", "B", False)
                expect_gpt_intact(m)
                continue
            # Armed but the state was not saved: nothing promotes B, so the following boot
            # falls back to A without any agent.
            st = m.host_status("B")
            check(st.get("next") != "B" and st.get("default") != "B",
                  f"abup status on the image: B would boot again uncommitted: {st}")
            b = m.boot(AFTER_CUT, "the un-committed B falls back to A")
            expect_boot(m, b, "A", V1)
            expect_code(b, "commit", "NothingPending")
        else:
            expect_boot(m, b, "A", V1)
            check(code == "NothingPending", f"{b.log_path}: A booted, abup commit said {code}")
        # On A: abup resumes (status, before finalize ran in that boot); finalize again armed B,
        # which boots and commits.
        status = b.json("status")
        slot_b = next(s for s in status["slots"] if s["name"] == "B")
        check(slot_b["state"] in ("staged", "armed"),
              f"{b.log_path}: B is {slot_b['state']} after the power cut: {status}")
        check(b.rebooted_in("finalize"),
              f"{b.log_path}: finalize after the power cut at {fault} failed")
        b = m.boot(COMMIT, "B boots and commits")
        expect_boot(m, b, "B", V2)
        expect_payload(m, b, "v2")
        expect_firmware_entry(m, b, "B")
        expect_code(b, "commit", "Committed")
        expect_boot_config(m, "B", "B")
        expect_host_status(m, "B", "B", "B", False)
        expect_gpt_intact(m)
