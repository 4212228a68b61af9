"""The e2e suite's machinery: the Debian kernel, the guest initramfs and slot images, the GPT
disk image, QEMU runs on OVMF, and reading the results back from the serial log, the disk image
and the OVMF variable store. Everything is built from directories into plain files (no loop
mounts, no root needed)."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

MiB = 1 << 20
HERE = Path(__file__).resolve().parent
SOURCE_DIR = HERE.parent.parent

# Flatcar layout (docs/architecture.md §2), numbered as the project's grub.cfg expects (USR-A gpt3, USR-B
# gpt4) and with a shared writable partition (ROOT, gpt9) for /etc and /var.
USR_TYPE = "5dfbf5f4-2848-4bac-aa5e-0d9a20b745a6"
USR_A = "7130c94a-213a-4e5a-8e26-6cce9662f132"
USR_B = "e03dd35c-7c2d-4a47-b3fe-27f15780a57c"
ESP_UUID = "e2e0e2e0-0000-4000-8000-0000000000e5"
ROOT_UUID = "e2e0e2e0-0000-4000-8000-000000000009"
DISK_GUID = "e2e0e2e0-0000-4000-8000-00000000d15c"
ESP_MB, USR_MB, ROOT_MB = 48, 48, 96
# (number, start MiB, size MiB, type, label, partuuid)
PARTS = [
    (1, 1, ESP_MB, "c12a7328-f81f-11d2-ba4b-00a0c93ec93b", "EFI-SYSTEM", ESP_UUID),
    (2, 1 + ESP_MB, 1, "21686148-6449-6e6f-744e-656564454649", "BIOS-BOOT", None),
    (3, 2 + ESP_MB, USR_MB, USR_TYPE, "USR-A", USR_A),
    (4, 2 + ESP_MB + USR_MB, USR_MB, USR_TYPE, "USR-B", USR_B),
    (9, 2 + ESP_MB + 2 * USR_MB, ROOT_MB, "3884dd41-8582-4404-b9a8-e9b84f2df50e", "ROOT", ROOT_UUID),
]
DISK_MB = 2 + ESP_MB + 2 * USR_MB + ROOT_MB + 1
PART_OFFSET = {n: start * MiB for n, start, *_ in PARTS}
PART_SIZE = {n: size * MiB for n, _, size, *_ in PARTS}

# The kernel modules /init loads, in this order after their dependencies (virtio_net for the
# aks scenario's user networking; without a NIC it finds nothing to drive).
WANTED_MODULES = ["crc32c_generic", "virtio_pci", "virtio_blk", "virtio_net", "ext4",
                  "nls_cp437", "nls_utf8", "nls_ascii", "vfat", "efivarfs", "qemu_fw_cfg"]
# What fetch_kernel unpacks from the kernel package (the cache is redone when this changes).
KERNEL_FILES = ["./boot/vmlinuz-*", "./lib/modules/*/kernel/drivers/virtio/*",
                "./lib/modules/*/kernel/drivers/block/virtio_blk.ko",
                "./lib/modules/*/kernel/drivers/net/virtio_net.ko",
                "./lib/modules/*/kernel/drivers/net/net_failover.ko",
                "./lib/modules/*/kernel/net/core/failover.ko",
                "./lib/modules/*/kernel/drivers/firmware/qemu_fw_cfg.ko",
                "./lib/modules/*/kernel/fs/*", "./lib/modules/*/kernel/lib/*",
                "./lib/modules/*/kernel/crypto/crc32c_generic.ko"]

OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
GRUB_MODULES = ("part_gpt fat ext2 normal linux loadenv test echo regexp probe halt reboot "
                "search configfile").split()
EFI_GLOBAL = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
# systemd's Boot Loader Interface (LoaderEntryOneShot, LoaderEntryDefault, LoaderEntrySelected).
LOADER_GUID = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"
# systemd-boot: Debian's systemd-boot-efi (252) and shim-unsigned.
SD_BOOT = Path("/usr/lib/systemd/boot/efi/systemd-bootx64.efi")
SD_STUB = Path("/usr/lib/systemd/boot/efi/linuxx64.efi.stub")
SHIM = Path("/usr/lib/shim/shimx64.efi")

# Backends and, for uefi, the command line each slot's load option carries.
BACKENDS = ("grubenv", "uefi", "systemd-boot")


# Under TCG on a loaded machine the kernel's IO-APIC timer check can fail ("IO-APIC + timer
# doesn't work!", a panic): skip it, as virtual machine images do.
KERNEL_ARGS = "no_timer_check"


def uefi_cmdline(slot):
    """The load option's command line of a slot's EFI-stub kernel: its own initramfs, which
    abup's uefi placement writes as EFI/acl/initrd-a|b (boot file `initrd`)."""
    uuid_ = USR_A if slot == "A" else USR_B
    return (f"initrd=\\EFI\\acl\\initrd-{slot.lower()} console=ttyS0 panic=-1 "
            f"abup.slot={slot} mount.usr=PARTUUID={uuid_} {KERNEL_ARGS}")


def uki_cmdline(slot, payload=None):
    """The .cmdline of a slot's UKI. Debian 12's stub (systemd 252) has no addon support, so what
    ACL puts in the slot's addon (the usr partition) is in the UKI itself: the UKI a release
    brings is built for the slot it is staged into (B in every scenario). `payload` tags the
    UKI's own command line (abup.e2e.payload=), which the guest sees in /proc/cmdline."""
    uuid_ = USR_A if slot == "A" else USR_B
    tag = f" abup.e2e.payload={payload}" if payload else ""
    return (f"console=ttyS0 panic=-1 abup.slot={slot} mount.usr=PARTUUID={uuid_} "
            f"{KERNEL_ARGS}{tag}")


def uki_entry(slot):
    """systemd-boot's entry id of a slot = its UKI's file name in ESP/EFI/Linux/ (the defaults
    of abup's systemd-boot backend)."""
    return f"acl-usr-{slot.lower()}.efi"


def build_uki(vmlinuz, initrd, slot, version, out, work, payload=None):
    """A Type #2 UKI: systemd-boot-efi's stub with .osrel, .cmdline, .linux and .initrd added by
    objcopy at VMAs above the stub's own sections (systemd-stub(7)'s objcopy recipe)."""
    osrel, cmdline = work / f"uki-{slot}-{version}.osrel", work / f"uki-{slot}-{version}.cmdline"
    osrel.write_text(f'NAME="Azure Container Linux"\nPRETTY_NAME="Azure Container Linux {slot}"\n'
                     f"ID=flatcar\nVERSION_ID={version}\nIMAGE_VERSION={version}\n"
                     f"BUILD_ID=e2e-{slot.lower()}\n")
    cmdline.write_text(uki_cmdline(slot, payload) + "\n")
    out.unlink(missing_ok=True)
    sh(["objcopy",
        "--add-section", f".osrel={osrel}", "--change-section-vma", ".osrel=0x20000",
        "--add-section", f".cmdline={cmdline}", "--change-section-vma", ".cmdline=0x30000",
        "--add-section", f".linux={vmlinuz}", "--change-section-vma", ".linux=0x2000000",
        "--add-section", f".initrd={initrd}", "--change-section-vma", ".initrd=0x3000000",
        str(SD_STUB), str(out)])
    check(Path(vmlinuz).stat().st_size < 0x1000000,
          f"{vmlinuz} is larger than the 16 MiB between the .linux and .initrd VMAs")


def abup_conf(backend):
    """/etc/abup/abup.conf of the guests (on the shared partition)."""
    conf = "[Update]\nBootBackend=" + backend + "\n[Boot]\nGrubEnv=/efi/grub/grubenv\n"
    if backend in ("uefi", "systemd-boot"):
        # The guest has no udev (no /dev/disk/by-partuuid): name the ESP's mount point. Every
        # image staged there must bring its slot's loader (proven with the strict setting).
        conf += "ESP=/efi\nRequireBootFiles=yes\n"
    if backend == "uefi":
        conf += "".join(f"UefiLoader{s}=\\EFI\\acl\\usr-{s.lower()}.efi\n"
                        f"UefiCmdline{s}={uefi_cmdline(s)}\n" for s in "AB")
    return conf + "[Reboot]\nCommand=/bin/e2e-reboot\n"


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def sh(cmd, cwd=None, env=None, input=None):
    """Runs a command (list or shell string); returns stdout; raises Fail naming it on error."""
    shell = isinstance(cmd, str)
    e = dict(os.environ, MTOOLS_SKIP_CHECK="1", **(env or {}))
    r = subprocess.run(cmd, shell=shell, cwd=cwd, env=e, input=input, capture_output=True,
                       text=input is None or isinstance(input, str))
    if r.returncode != 0:
        raise Fail(f"command failed ({r.returncode}): {cmd}\n{r.stdout}{r.stderr}")
    return r.stdout


def need_programs():
    """A missing tool is a failure (CI installs them with tools/setup), never a skip."""
    missing = [p for p in ("qemu-system-x86_64", "grub-mkimage", "grub-editenv", "sgdisk",
                           "mkfs.ext4", "mkfs.vfat", "mcopy", "debugfs", "cpio", "apt-get",
                           "dpkg-deb", "strip", "ldd", "mtype", "mdir", "openssl", "gzip",
                           "objcopy")
               if shutil.which(p) is None]
    for f in (OVMF_CODE, OVMF_VARS, Path("/bin/busybox"),
              Path("/usr/lib/grub/x86_64-efi/linux.mod"), SD_BOOT, SD_STUB, SHIM):
        if not f.exists():
            missing.append(str(f))
    if missing:
        raise Fail("missing e2e prerequisites (run tools/setup): " + ", ".join(missing))


# ---- the kernel ------------------------------------------------------------------------------

def fetch_kernel(cache):
    """Debian's kernel package (the one linux-image-amd64 depends on), fetched with apt-get
    download into `cache` and unpacked there with dpkg-deb (never installed). Returns
    (vmlinuz, modules dir)."""
    cache.mkdir(parents=True, exist_ok=True)
    debs = sorted(cache.glob("linux-image-*-amd64_*.deb"))
    if not debs:
        deps = sh(["apt-cache", "depends", "linux-image-amd64"])
        m = re.search(r"Depends: (linux-image-[0-9][^\s]*)", deps)
        check(m, "apt-cache depends linux-image-amd64 names no kernel package "
                 "(run apt-get update):\n" + deps)
        log(f"e2e: apt-get download {m.group(1)}")
        sh(["apt-get", "download", m.group(1)], cwd=cache)
        debs = sorted(cache.glob("linux-image-*-amd64_*.deb"))
        check(debs, f"apt-get download {m.group(1)} left no .deb in {cache}")
    deb = debs[-1]
    x = cache / (deb.stem + ".x")
    done = deb.name + "\n" + "\n".join(KERNEL_FILES) + "\n"
    if not (x / "done").exists() or (x / "done").read_text() != done:
        shutil.rmtree(x, ignore_errors=True)
        x.mkdir()
        sh(f"dpkg-deb --fsys-tarfile '{deb}' | tar -x -C '{x}' --wildcards "
           + " ".join(f"'{f}'" for f in KERNEL_FILES))
        (x / "done").write_text(done)
    vmlinuz = sorted((x / "boot").glob("vmlinuz-*"))[-1]
    moddir = sorted((x / "lib/modules").iterdir())[-1]
    return vmlinuz, moddir


def module_order(moddir, wanted):
    """The .ko files for `wanted` and their dependencies (the `depends=` of each module's
    .modinfo), dependencies first."""
    files = {p.stem: p for p in moddir.rglob("*.ko")}
    order = []

    def visit(name):
        name = name.replace("-", "_")
        key = next((k for k in files if k.replace("-", "_") == name), None)
        check(key, f"kernel module {name} not found under {moddir}")
        if files[key] in order:
            return
        m = re.search(rb"(?:^|\x00)depends=([^\x00]*)\x00", files[key].read_bytes())
        for dep in (m.group(1).decode().split(",") if m and m.group(1) else []):
            visit(dep)
        order.append(files[key])

    for w in wanted:
        visit(w)
    return order


# ---- the guest -------------------------------------------------------------------------------

def build_initramfs(moddir, out, work):
    """busybox-static, the modules, /init: one initramfs for both slots and both backends."""
    d = work / "initramfs"
    shutil.rmtree(d, ignore_errors=True)
    for sub in ("bin", "dev", "proc", "sys", "tmp", "run", "usr", "efi", "sysroot",
                "lib/modules"):
        (d / sub).mkdir(parents=True)
    shutil.copy("/bin/busybox", d / "bin/busybox")
    for applet in sh(["/bin/busybox", "--list"]).split():
        if applet != "busybox":
            (d / "bin" / applet).symlink_to("busybox")
    shutil.copy(HERE / "guest/init", d / "init")
    shutil.copy(HERE / "guest/reboot", d / "bin/e2e-reboot")
    # The slot's /usr holds abup and its libraries; /etc and /var live on the shared partition.
    (d / "lib64").symlink_to("usr/lib64")
    (d / "etc").symlink_to("sysroot/etc")
    (d / "var").symlink_to("sysroot/var")
    names = []
    for ko in module_order(moddir, WANTED_MODULES):
        shutil.copy(ko, d / "lib/modules" / ko.name)
        names.append(ko.name)
    (d / "lib/modules/order").write_text("\n".join(names) + "\n")
    for f in ("init", "bin/e2e-reboot"):
        os.chmod(d / f, 0o755)
    sh(f"cd '{d}' && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 "
       f"| gzip -6n > '{out}'")


def payload_initrd(base, text, out, work):
    """`base` with a marker file /kernel-payload holding `text` (which /init prints as
    E2E-KERNEL-PAYLOAD, and fails the boot on when it says FAIL-BOOT): a second, small cpio
    archive appended to the gzip one, which the kernel unpacks after it."""
    d = work / "payload"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir()
    (d / "kernel-payload").write_text(text + "\n")
    tail = work / "payload.cpio.gz"
    sh(f"cd '{d}' && echo kernel-payload | cpio --quiet -o -H newc -R 0:0 | gzip -6n > '{tail}'")
    out.write_bytes(Path(base).read_bytes() + tail.read_bytes())


def build_slot_tree(d, version, abup, vmlinuz, initrd, pubkey, broken=None):
    """The content of one usr partition (mounted on /usr in the guest): the real abup with the
    shared libraries ldd names, os-release, the trusted key, the slot's boot script, and the
    kernel + initramfs GRUB loads from it."""
    shutil.rmtree(d, ignore_errors=True)
    for sub in ("bin", "lib64", "lib/x86_64-linux-gnu", "lib/e2e", "share/abup/keys.d", "boot"):
        (d / sub).mkdir(parents=True)
    sh(["strip", "-o", str(d / "bin/abup"), str(abup)])
    for line in sh(["ldd", str(abup)]).splitlines():
        m = re.search(r"(/\S+)\s+\(0x", line)
        if not m:
            continue
        lib = Path(m.group(1))
        if lib.name.startswith("ld-linux"):
            shutil.copy(lib, d / "lib64" / lib.name)
        else:
            shutil.copy(lib, d / "lib/x86_64-linux-gnu" / lib.name)
    (d / "lib/os-release").write_text(
        f'NAME="Azure Container Linux"\nID=flatcar\nVERSION={version}\nVERSION_ID={version}\n'
        f"IMAGE_VERSION={version}\nVARIANT_ID=azurecontainerlinux\n")
    shutil.copy(pubkey, d / "share/abup/keys.d/e2e.pem")
    shutil.copy(HERE / "guest/slot-boot", d / "lib/e2e/boot")
    os.chmod(d / "lib/e2e/boot", 0o755)
    if broken:
        (d / "lib/e2e/broken").write_text(broken + "\n")
    shutil.copy(vmlinuz, d / "boot/vmlinuz")
    shutil.copy(initrd, d / "boot/initrd.img")


def mkfs_ext4(out, tree, size_mb, label, journal=False):
    """ext4 from a directory. The read-only usr images go without a journal; the shared
    writable partition has one, as a real ROOT does: without it a power cut can leave its
    metadata broken (the guest then reads EIO), which is not what the power-cut tests probe."""
    out.unlink(missing_ok=True)
    sh(["mkfs.ext4", "-q", "-F", "-L", label, "-d", str(tree), "-E", "root_owner=0:0"]
       + ([] if journal else ["-O", "^has_journal"]) + [str(out), f"{size_mb}M"])


def build_cosi(abup_image, usr_img, version, key, out, boot_files=None):
    """The signed COSI of a slot, built and signed by the project's abup-image; `boot_files`
    ({logical name: file}) are signed with it, and abup's stage writes them to the ESP."""
    out.unlink(missing_ok=True)
    sh([str(abup_image), "build", "--usr", str(usr_img), "--version", version,
        "--frame-size", "1M", "--out", str(out)]
       + [a for n, f in (boot_files or {}).items() for a in ("--boot-file", f"{n}={f}")])
    sh([str(abup_image), "sign", "--key", str(key), str(out)])


def make_disk(img, esp_dir, usr_a_img, root_dir, work):
    """GPT (sgdisk, fixed PARTUUIDs, verified with sgdisk -v), ESP from a directory (mkfs.vfat +
    mcopy), USR-A from an ext4 image, USR-B empty, ROOT from a directory."""
    img.unlink(missing_ok=True)
    with open(img, "wb") as f:
        f.truncate(DISK_MB * MiB)
    cmd = ["sgdisk", "-U", DISK_GUID]
    for n, start, size, typ, label, puuid in PARTS:
        cmd += ["-n", f"{n}:{start * 2048}:{(start + size) * 2048 - 1}", "-t", f"{n}:{typ}",
                "-c", f"{n}:{label}"]
        if puuid:
            cmd += ["-u", f"{n}:{puuid}"]
    sh(cmd + [str(img)])
    out = sh(["sgdisk", "-v", str(img)])
    check("No problems found" in out, f"sgdisk -v {img}:\n{out}")
    printed = sh(["sgdisk", "-p", str(img)])
    check(all(label in printed for *_, label, _ in PARTS), f"sgdisk -p {img}:\n{printed}")
    esp = work / "esp.vfat"
    esp.unlink(missing_ok=True)
    sh(["mkfs.vfat", "-C", "-n", "ESP", "-i", "e2e0e5e5", str(esp), str(ESP_MB * 1024)])
    sh(f"cd '{esp_dir}' && mcopy -Q -s -m -i '{esp}' ./* ::/")
    root = work / "root.ext4"
    mkfs_ext4(root, root_dir, ROOT_MB, "ROOT", journal=True)
    for n, fs in ((1, esp), (3, usr_a_img), (9, root)):
        check(fs.stat().st_size <= PART_SIZE[n], f"{fs} does not fit partition {n}")
        sh(["dd", f"if={fs}", f"of={img}", "bs=1M", f"seek={PART_OFFSET[n] // MiB}",
            "conv=notrunc,sparse", "status=none"])


# ---- reading the disk image back -------------------------------------------------------------

def ext4_cat(img, part, path):
    """A file of an ext4 partition inside the disk image (debugfs, read-only); None if absent."""
    r = subprocess.run(["debugfs", "-R", f"cat {path}", f"{img}?offset={PART_OFFSET[part]}"],
                       capture_output=True)
    err = r.stderr.decode(errors="replace")
    if r.returncode != 0 or "File not found" in err:
        return None
    return r.stdout.decode()


def esp_cat(img, path):
    return sh(["mtype", "-i", f"{img}@@{PART_OFFSET[1]}", "::" + path])


def esp_copy_out(img, path, dest):
    sh(["mcopy", "-n", "-o", "-s", "-i", f"{img}@@{PART_OFFSET[1]}", "::" + path, str(dest)])


def esp_ls(img, directory):
    """The file names in a directory of the image's ESP (mdir -b), relative to it."""
    out = subprocess.run(["mdir", "-b", "-i", f"{img}@@{PART_OFFSET[1]}", "::" + directory],
                         capture_output=True, text=True, env=dict(os.environ,
                                                                  MTOOLS_SKIP_CHECK="1"))
    return sorted(Path(l.strip()).name for l in out.stdout.splitlines() if l.strip())


def esp_sha256(img, path, work):
    """SHA-256 of a file read back from the image's ESP with mtools; None if it is absent."""
    f = work / "esp-readback"
    f.unlink(missing_ok=True)
    r = subprocess.run(["mcopy", "-n", "-o", "-i", f"{img}@@{PART_OFFSET[1]}", "::" + path,
                        str(f)], capture_output=True, env=dict(os.environ, MTOOLS_SKIP_CHECK="1"))
    if r.returncode != 0 or not f.exists():
        return None
    return hashlib.sha256(f.read_bytes()).hexdigest()


def grubenv_vars(img, work):
    """ORDER/A_OK/... as grub-editenv lists the grubenv on the image's ESP."""
    f = work / "grubenv.out"
    esp_copy_out(img, "/grub/grubenv", f)
    check(f.stat().st_size == 1024, f"grubenv on the ESP is {f.stat().st_size} bytes, not 1024")
    return dict(line.split("=", 1) for line in sh(["grub-editenv", str(f), "list"]).splitlines()
                if "=" in line)


# ---- the OVMF variable store -----------------------------------------------------------------

def _guid(b):
    return str(uuid.UUID(bytes_le=bytes(b)))


def ovmf_variables(vars_fd):
    """The live variables of an OVMF VARS file: {(name, guid): (attributes, data)}. The store
    is an EFI firmware volume whose first data is a VARIABLE_STORE_HEADER followed by
    AUTHENTICATED_VARIABLE_HEADERs (StartId 0x55AA). A variable rewritten by the firmware leaves
    deleted copies behind: the live one is in state VAR_ADDED (0x3F), or, when an update was
    cut short, the old copy still in VAR_IN_DELETED_TRANSITION (0x3E) as the firmware reads it."""
    data = Path(vars_fd).read_bytes()
    hdr_len = int.from_bytes(data[48:50], "little")  # EFI_FIRMWARE_VOLUME_HEADER.HeaderLength
    store = hdr_len
    store_size = int.from_bytes(data[store + 16:store + 20], "little")
    p, end = store + 28, store + store_size
    out, transition = {}, {}
    while p + 60 <= end and data[p:p + 2] == b"\xaa\x55":
        state, attrs = data[p + 2], int.from_bytes(data[p + 4:p + 8], "little")
        name_size = int.from_bytes(data[p + 36:p + 40], "little")
        data_size = int.from_bytes(data[p + 40:p + 44], "little")
        guid = _guid(data[p + 44:p + 60])
        name = data[p + 60:p + 60 + name_size].decode("utf-16-le").rstrip("\0")
        value = data[p + 60 + name_size:p + 60 + name_size + data_size]
        if state == 0x3F:
            out[(name, guid)] = (attrs, value)
        elif state == 0x3E:
            transition[(name, guid)] = (attrs, value)
        p += 60 + name_size + data_size
        p = (p + 3) & ~3
    return {**transition, **out}


def parse_load_option(data):
    """EFI_LOAD_OPTION -> (attributes, description, file path (from the device path), command
    line (the optional data as UTF-16))."""
    attrs = int.from_bytes(data[0:4], "little")
    fpl = int.from_bytes(data[4:6], "little")
    end = 6
    while data[end:end + 2] != b"\0\0":
        end += 2
    desc = data[6:end].decode("utf-16-le")
    dp = data[end + 2:end + 2 + fpl]
    path = None
    q = 0
    while q + 4 <= len(dp):
        t, st, ln = dp[q], dp[q + 1], int.from_bytes(dp[q + 2:q + 4], "little")
        if t == 4 and st == 4:
            path = dp[q + 4:q + ln].decode("utf-16-le").rstrip("\0")
        if t == 0x7F or ln < 4:
            break
        q += ln
    opt = data[end + 2 + fpl:]
    cmdline = opt.decode("utf-16-le", errors="replace").rstrip("\0") if opt else ""
    return attrs, desc, path, cmdline


def boot_vars(vars_fd):
    """BootOrder, BootNext and the Boot#### entries of the VARS file, decoded."""
    v = ovmf_variables(vars_fd)
    g = {n: d for (n, guid), (_, d) in v.items() if guid == EFI_GLOBAL}
    order = [int.from_bytes(g["BootOrder"][i:i + 2], "little")
             for i in range(0, len(g.get("BootOrder", b"")), 2)]
    nxt = int.from_bytes(g["BootNext"], "little") if "BootNext" in g else None
    entries = {int(n[4:], 16): parse_load_option(d) for n, d in g.items()
               if re.fullmatch(r"Boot[0-9A-F]{4}", n)}
    return {"order": order, "next": nxt, "entries": entries}


def loader_vars(vars_fd):
    """The Boot Loader Interface variables the VARS file keeps (the non-volatile ones:
    LoaderEntryOneShot, LoaderEntryDefault; LoaderEntrySelected is volatile, the guest prints
    it), decoded from NUL-terminated UTF-16LE."""
    return {n: d.decode("utf-16-le").rstrip("\0")
            for (n, guid), (_, d) in ovmf_variables(vars_fd).items() if guid == LOADER_GUID}


def efivars_dir(vars_fd, dest):
    """The global and Boot Loader Interface variables of the VARS file as efivarfs shows them
    (Name-GUID files holding 4 bytes of attributes + data), for `abup status --root` on the
    host."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for (name, guid), (attrs, value) in ovmf_variables(vars_fd).items():
        if guid in (EFI_GLOBAL, LOADER_GUID):
            (dest / f"{name}-{guid}").write_bytes(attrs.to_bytes(4, "little") + value)


# ---- QEMU ------------------------------------------------------------------------------------

class Boot:
    """One QEMU run = one boot attempt, its serial log parsed."""

    def __init__(self, log_path, text, ended):
        self.log_path, self.text, self.ended = log_path, text, ended
        self.lines = [l for l in text.replace("\r", "").split("\n")]

    def marker(self, prefix):
        for l in self.lines:
            i = l.find(prefix)
            if i >= 0:
                return l[i + len(prefix):].strip()
        return None

    def has(self, marker):
        return any(marker in l for l in self.lines)

    @property
    def slot(self):
        """The slot whose usr partition /init mounted (from the PARTUUID it found)."""
        b = self.marker("E2E-BOOTED:")
        if not b:
            return None
        return "A" if f"partuuid={USR_A}" in b else "B" if f"partuuid={USR_B}" in b else "?"

    @property
    def payload(self):
        """The /kernel-payload of the initramfs this boot's kernel unpacked."""
        return self.marker("E2E-KERNEL-PAYLOAD:")

    @property
    def cmdline(self):
        return self.marker("E2E-CMDLINE:") or ""

    @property
    def version(self):
        return self.marker("E2E-SLOT-VERSION:")

    @property
    def boot_id(self):
        b = self.marker("E2E-BOOTED:")
        m = re.search(r"boot_id=(\S+)", b or "")
        return m.group(1) if m else None

    def output(self, tag):
        """(exit status, output) of a plan step run with `run TAG ...`; None if it never ended."""
        try:
            i = next(k for k, l in enumerate(self.lines) if l.endswith(f"E2E-BEGIN {tag}"))
        except StopIteration:
            return None
        for k in range(i + 1, len(self.lines)):
            m = re.search(rf"E2E-END {re.escape(tag)} rc=(\d+)$", self.lines[k])
            if m:
                return int(m.group(1)), "\n".join(self.lines[i + 1:k])
        return None

    def rebooted_in(self, tag):
        """The plan step TAG ran abup's reboot command (which ends the boot before E2E-END)."""
        seen = False
        for l in self.lines:
            if l.endswith(f"E2E-BEGIN {tag}"):
                seen = True
            elif seen and re.search(rf"E2E-END {re.escape(tag)} rc=", l):
                return False
            elif seen and l.endswith("E2E-REBOOT"):
                return True
        return False

    def json(self, tag, rc=0):
        """The JSON a plan step printed; it must have exited with `rc`."""
        r = self.output(tag)
        check(r is not None, f"{self.log_path}: step {tag} did not finish")
        check(r[0] == rc, f"{self.log_path}: step {tag} exited {r[0]}, not {rc}:\n{r[1]}")
        text = r[1]
        return json.loads(text[text.index("{"):])


def run_qemu(disk, vars_fd, plan, log_path, timeout, kill_on=None, net=False):
    """Boots the disk on OVMF (TCG, one CPU) with `plan` as the fw_cfg file the guest's /init
    runs. Returns when QEMU exits (the guest powered off or rebooted: -no-reboot), or kills it
    at once (SIGKILL: a power cut) when `kill_on` appears in the serial log. A boot that does
    neither within `timeout` seconds fails. With `net`, the guest has a virtio NIC on QEMU's user
    networking (10.0.2.15/24; the host's loopback is 10.0.2.2) and no iPXE option ROM (the
    firmware still boots the disk first)."""
    plan_file = log_path.with_suffix(".plan.sh")
    plan_file.write_text(plan)
    log_path.unlink(missing_ok=True)
    cmd = ["qemu-system-x86_64", "-machine", "q35,accel=tcg", "-m", "512", "-smp", "1",
           "-nographic", "-no-reboot", "-monitor", "none"]
    cmd += (["-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0,romfile="] if net
            else ["-nic", "none"])
    cmd += ["-serial", f"file:{log_path}",
            "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
            "-drive", f"if=pflash,format=raw,unit=1,file={vars_fd}",
            "-drive", f"file={disk},format=raw,if=virtio",
            "-fw_cfg", f"name=opt/abup-e2e/plan,file={plan_file}"]
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=open(log_path.with_suffix(".stderr"), "w"))
    ended = None
    while ended is None:
        try:
            rc = p.wait(timeout=0.2)
            ended = f"exited {rc}"
        except subprocess.TimeoutExpired:
            pass
        if ended is None and kill_on and log_path.exists() and kill_on in log_path.read_bytes(
        ).decode(errors="replace"):
            p.kill()
            p.wait()
            ended = "killed"
        if ended is None and time.monotonic() - t0 > timeout:
            p.kill()
            p.wait()
            text = log_path.read_bytes().decode(errors="replace") if log_path.exists() else ""
            raise Fail(f"boot did not end within {timeout} s; serial log {log_path}:\n"
                       + text[-3000:])
    text = log_path.read_bytes().decode(errors="replace") if log_path.exists() else ""
    b = Boot(log_path, text, ended)
    log(f"  boot {log_path.name}: {ended} after {time.monotonic() - t0:.0f} s, "
        f"slot={b.slot} version={b.version}")
    panic = b.marker("Kernel panic - not syncing:")
    check(panic is None, f"{log_path}: kernel panic: {panic}")
    return b
