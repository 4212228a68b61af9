#!/usr/bin/env python3
"""Helper of tools/bench/stage (not meant to be run by hand).

Subcommands:
  free-port                        print a free TCP port on 127.0.0.1
  pick-tree DEST MIB SRC...        copy a seeded random sample of the regular files under SRC
                                   (files <= 32 MiB) into DEST until they take MIB MiB of 4 KiB
                                   blocks; prints how many files and bytes
  mutate-tree DIR PERCENT SEED [LIST]
                                   replace the content of PERCENT % of DIR's files (seeded choice)
                                   by their bytes reversed: same size, same compressibility,
                                   different content; the new files get a fixed later mtime;
                                   the changed paths go to LIST
  grow-tree DIR PERCENT SEED [LIST]
                                   PERCENT % of DIR's files (seeded choice) grow by a tenth (their
                                   first tenth, reversed, appended), so mkfs places every later
                                   file elsewhere: the layout-shift delta
  store-delta STORE1 STORE2        bytes of STORE2's casync chunk files (.cacnk) that STORE1 lacks
  phases OUT_JSON OUT_STDOUT -- CMD...
                                   run CMD with stderr on a pseudo-terminal (so `abup stage`
                                   draws its progress), record when each phase first shows up
  summarize JSONL OUT_JSON         medians and ratios of the runs in JSONL; prints the table
"""
import json
import os
import pty
import random
import re
import select
import shutil
import socket
import statistics
import subprocess
import sys
import time

MAX_FILE = 32 << 20
FIXED_MTIME = 1767225600  # 2026-01-01T00:00:00Z
NEW_MTIME = 1782864000  # 2026-07-01T00:00:00Z


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    print(port)


def pick_tree(dest, mib, srcs):
    budget = int(mib) << 20
    candidates = []
    for src in srcs:
        for d, dirs, files in os.walk(src):
            dirs.sort()
            for f in sorted(files):
                p = os.path.join(d, f)
                try:
                    st = os.lstat(p)
                except OSError:
                    continue
                if not os.path.isfile(p) or os.path.islink(p):
                    continue
                if 0 < st.st_size <= MAX_FILE:
                    candidates.append((p, st.st_size))
    random.Random(1).shuffle(candidates)
    total = used = count = 0  # bytes of the files, and of the 4 KiB blocks they take
    for p, size in candidates:
        if used >= budget:
            break
        blocks = (size + 4095) // 4096 * 4096
        if used + blocks > budget + (1 << 20):
            continue
        rel = os.path.relpath(p, "/usr") if p.startswith("/usr/") else p.lstrip("/")
        out = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        try:
            shutil.copyfile(p, out)
        except OSError:
            continue
        os.chmod(out, 0o644)
        os.utime(out, (FIXED_MTIME, FIXED_MTIME))
        total += size
        used += blocks
        count += 1
    # Directories get fixed times too: the image then depends only on the file list.
    for d, dirs, _ in os.walk(dest):
        os.utime(d, (FIXED_MTIME, FIXED_MTIME))
    print(f"{count} files, {total / 1048576:.0f} MiB")


def tree_files(root):
    files = []
    for d, dirs, fs in os.walk(root):
        dirs.sort()
        for f in sorted(fs):
            files.append(os.path.join(d, f))
    return files


def write_list(path, chosen):
    if path:
        with open(path, "w") as f:
            f.write("".join(p + "\n" for p in chosen))


def rewrite_files(root, percent, seed, list_path, new_bytes):
    """Rewrites `percent` % of the tree's files (picked by `seed`) with new_bytes(old bytes),
    with fixed times; returns (chosen, all files, bytes written, bytes added)."""
    files = tree_files(root)
    rng = random.Random(int(seed))
    n = max(1, round(len(files) * float(percent) / 100))
    chosen = rng.sample(files, n)
    written = added = 0
    for p in chosen:
        with open(p, "rb") as f:
            data = f.read()
        os.unlink(p)  # the tree may share inodes with the v1 tree (cp -al)
        new = new_bytes(data)
        with open(p, "wb") as f:
            f.write(new)
        os.chmod(p, 0o644)
        os.utime(p, (NEW_MTIME, NEW_MTIME))
        written += len(new)
        added += len(new) - len(data)
    for d, dirs, _ in os.walk(root):
        os.utime(d, (FIXED_MTIME, FIXED_MTIME))
    write_list(list_path, chosen)
    return chosen, files, written, added


def grow_tree(root, percent, seed, list_path=None):
    """~`percent` % of the files grow by a tenth (their first tenth reversed, appended)."""
    chosen, files, _, grown = rewrite_files(
        root, percent, seed, list_path, lambda d: d + d[: max(1, len(d) // 10)][::-1])
    print(f"{len(chosen)} of {len(files)} files grew by {grown / 1048576:.1f} MiB")


def mutate_tree(root, percent, seed, list_path=None):
    """~`percent` % of the files get new content of the same size (their bytes reversed)."""
    chosen, files, written, _ = rewrite_files(root, percent, seed, list_path, lambda d: d[::-1])
    print(f"{len(chosen)} of {len(files)} files, {written / 1048576:.1f} MiB")


def phases(out_json, out_stdout, cmd):
    """Timestamps of the phase names `abup stage` draws on a terminal."""
    master, slave = pty.openpty()
    with open(out_stdout, "wb") as so:
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, stdout=so, stderr=slave, stdin=subprocess.DEVNULL)
        os.close(slave)
        seen = {}
        buf = b""
        while True:
            r, _, _ = select.select([master], [], [], 0.05)
            if r:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    break
                now = time.monotonic() - t0
                buf = (buf + chunk)[-4096:]
                for m in re.finditer(
                        rb"(?:^|[\r\n])(verify|plan|write|read-back)\s+\[[#.]*\]\s+(\d+)%", buf):
                    seen.setdefault(m.group(1).decode(), now)
                    if m.group(1) == b"write" and m.group(2) == b"100":
                        seen.setdefault("write-100%", now)
            elif p.poll() is not None:
                break
        rc = p.wait()
        end = time.monotonic() - t0
    os.close(master)
    order = [k for k in ("verify", "plan", "write", "read-back") if k in seen]
    res = {"exit": rc, "total": round(end, 3), "phases": {}}
    for i, k in enumerate(order):
        stop = seen[order[i + 1]] if i + 1 < len(order) else end
        if k == "write" and "write-100%" in seen:
            # The bar reaches 100 % when the last frame is queued; then the workers drain and
            # the target is fsynced before the read-back starts.
            res["phases"]["write"] = round(seen["write-100%"] - seen[k], 3)
            res["phases"]["drain+fsync"] = round(stop - seen["write-100%"], 3)
            continue
        # The read-back runs beside the write; its phase is what is left of it after the fsync.
        res["phases"]["read-back rest" if k == "read-back" else k] = round(stop - seen[k], 3)
    if order:
        res["startup"] = round(seen[order[0]], 3)
    with open(out_json, "w") as f:
        json.dump(res, f, indent=2)
    if rc != 0:
        sys.exit(rc)


def store_delta(s1, s2):
    def chunks(store):
        out = {}
        for d, _, fs in os.walk(store):
            for f in fs:
                if f.endswith(".cacnk"):
                    out[f] = os.path.getsize(os.path.join(d, f))
        return out
    a, b = chunks(s1), chunks(s2)
    print(sum(size for name, size in b.items() if name not in a))


def med(xs):
    return statistics.median(xs) if xs else None


def fmt_mib(n):
    return f"{n / 1048576:.1f} MiB" if n is not None else "-"


def summarize(jsonl, out_json):
    runs = [json.loads(l) for l in open(jsonl) if l.strip()]
    meta = next((r for r in runs if r.get("kind") == "meta"), {})
    cmp = next((r for r in runs if r.get("kind") == "compare"), {})
    meta["load_end"] = next((r["load"] for r in runs if r.get("kind") == "load_end"), None)
    groups = {}
    for r in runs:
        if r.get("kind") in ("abup", "baseline", "delta"):
            groups.setdefault((r["kind"], r.get("variant", "")), []).append(r)

    def stats(rs, key="outer"):
        return {
            "runs": len(rs),
            "wall_s": med([r[key]["wall"] for r in rs]),
            "cpu_s": med([r[key]["user"] + r[key]["sys"] for r in rs]),
            "user_s": med([r[key]["user"] for r in rs]),
            "sys_s": med([r[key]["sys"] for r in rs]),
            "max_rss_kib": med([r[key]["rss_kib"] for r in rs]),
            "wall_all_s": [r[key]["wall"] for r in rs],
        }

    out = {"meta": meta, "compare": cmp, "full": {}, "delta": {}}
    a = groups.get(("abup", ""), [])
    b = groups.get(("baseline", ""), [])
    if a:
        out["full"]["abup"] = stats(a)
        out["full"]["abup_process"] = stats(a, "inner")
        s = a[-1]["summary"]
        out["full"]["abup_summary"] = {
            k: med([r["summary"][k] for r in a])
            for k in ("downloadedBytes", "zeroBytes", "writtenBytes", "reusedBytes",
                      "skippedBytes", "rangeRequests", "seconds", "imageBytes", "frames")
            if k in s
        }
    if b:
        out["full"]["baseline"] = stats(b)
    if a and b:
        fa, fb = out["full"]["abup"], out["full"]["baseline"]
        out["full"]["ratio_wall"] = fa["wall_s"] / fb["wall_s"]
        out["full"]["ratio_cpu"] = fa["cpu_s"] / fb["cpu_s"] if fb["cpu_s"] else None
    for (kind, variant), rs in groups.items():
        if kind != "delta":
            continue
        out["delta"][variant] = dict(stats(rs), summary={
            k: med([r["summary"][k] for r in rs])
            for k in ("downloadedBytes", "reusedBytes", "zeroBytes", "writtenBytes",
                      "rangeRequests", "seconds", "imageBytes")
        })
    ph = [r for r in runs if r.get("kind") == "phases"]
    if ph:
        out["phases"] = ph[-1]["result"]
    with open(out_json, "w") as f:
        json.dump(out, f, indent=2)

    # ---- table
    p = print
    p("")
    p(f"abup stage benchmark   {meta.get('date', '')}   host {meta.get('host', '')}, "
      f"{meta.get('cpus', '?')} CPUs")
    p(f"image: {meta.get('image_mib', '?')} MiB ext4 ({meta.get('files', '?')}), "
      f"COSI {fmt_mib(meta.get('cosi_bytes'))}, zstd stream {fmt_mib(meta.get('zst_bytes'))}, "
      f"{meta.get('frames', '?')} frames")
    p(f"load average (1/5/15 min) at start {meta.get('load_start', '?')}, at end "
      f"{meta.get('load_end', '?')}" + (
          "  -- other processes share the CPUs: expect noise"
          if float(str(meta.get('load_start', '0')).split()[0]) > 0.5 else ""))
    p("")
    if a or b:
        p(f"Full stage of v1 onto USR-B (median of {len(a)} abup / {len(b)} baseline runs)")
        hdr = f"  {'':<26}{'wall s':>9}{'CPU s':>9}{'user s':>9}{'sys s':>9}{'peak RSS':>12}"
        p(hdr)
        p("  " + "-" * (len(hdr) - 2))
        rows = [("abup (bash -c, total)", out["full"].get("abup")),
                ("abup process alone", out["full"].get("abup_process")),
                ("baseline curl|zstd|tee|dd", out["full"].get("baseline"))]
        for name, s in rows:
            if not s:
                continue
            p(f"  {name:<26}{s['wall_s']:>9.2f}{s['cpu_s']:>9.2f}{s['user_s']:>9.2f}"
              f"{s['sys_s']:>9.2f}{s['max_rss_kib'] / 1024:>9.1f} MiB")
        if a and b:
            p(f"  {'abup / baseline':<26}{out['full']['ratio_wall']:>8.2f}x"
              f"{out['full']['ratio_cpu']:>8.2f}x")
        if a:
            p("  wall per run: abup " + " ".join(f"{x:.2f}" for x in out["full"]["abup"]["wall_all_s"])
              + (("   baseline " + " ".join(f"{x:.2f}" for x in out["full"]["baseline"]["wall_all_s"]))
                 if b else ""))
            s = out["full"]["abup_summary"]
            p(f"  abup summary: downloaded {fmt_mib(s.get('downloadedBytes'))}, zero "
              f"{fmt_mib(s.get('zeroBytes'))}, written {fmt_mib(s.get('writtenBytes'))}, reused "
              f"{fmt_mib(s.get('reusedBytes'))}, {s.get('rangeRequests')} range request(s), "
              f"own time {s.get('seconds', 0):.2f} s")
        p("")
    if "phases" in out:
        ph = out["phases"]
        parts = [f"startup {ph.get('startup', 0):.2f}"] + [
            f"{k} {v:.2f}" for k, v in ph["phases"].items()]
        p("abup phases (one extra run, progress on a pty, s): " + ", ".join(parts)
          + f"; total {ph['total']:.2f}")
        p("")
    if out["delta"]:
        p(f"Delta: stage v2 ({meta.get('changed', '?')} changed) onto USR-B, "
          f"v1 on the booted USR-A (median)")
        hdr = (f"  {'state dir':<28}{'wall s':>8}{'CPU s':>8}{'RSS MiB':>9}{'downloaded':>14}"
               f"{'reused':>14}{'written':>14}{'zero':>12}{'reqs':>6}")
        p(hdr)
        p("  " + "-" * (len(hdr) - 2))
        for variant, s in out["delta"].items():
            m = s["summary"]
            p(f"  {variant:<28}{s['wall_s']:>8.2f}{s['cpu_s']:>8.2f}{s['max_rss_kib'] / 1024:>9.1f}"
              f"{fmt_mib(m['downloadedBytes']):>14}{fmt_mib(m['reusedBytes']):>14}"
              f"{fmt_mib(m['writtenBytes']):>14}{fmt_mib(m['zeroBytes']):>12}"
              f"{int(m['rangeRequests']):>6}")
        if meta.get("zst2_bytes"):
            p(f"  (a full download of v2 is {fmt_mib(meta['zst2_bytes'])} of zstd; "
              f"reused/image = " + ", ".join(
                  f"{v}: {s['summary']['reusedBytes'] / s['summary']['imageBytes']:.1%}"
                  for v, s in out["delta"].items()) + ")")
        p("")
        p(f"Delta bytes against casync and the floor (layout shift: {cmp.get('changed3', '?')})")
        hdr = (f"  {'scenario':<14}{'abup fresh':>14}{'abup recorded':>15}{'casync':>12}"
               f"{'floor':>12}{'abup/casync':>13}")
        p(hdr)
        p("  " + "-" * (len(hdr) - 2))
        for scenario, v in (("in place", "v2"), ("layout shift", "v3")):
            fresh = out["delta"].get(f"{scenario}: fresh (index booted slot)")
            rec = out["delta"].get(f"{scenario}: recorded v1 manifest")
            if not fresh and not rec:
                continue
            cas, floor = cmp.get(f"casync_{v}"), cmp.get(f"floor_{v}")
            worst = max(s["summary"]["downloadedBytes"] for s in (fresh, rec) if s)
            p(f"  {scenario:<14}"
              f"{fmt_mib(fresh and fresh['summary']['downloadedBytes']):>14}"
              f"{fmt_mib(rec and rec['summary']['downloadedBytes']):>15}"
              f"{fmt_mib(cas):>12}{fmt_mib(floor):>12}"
              f"{(f'{worst / cas:.2f}x' if cas else '-'):>13}")
        p("")
    if cmp.get("cosi_fixed4m_bytes") and meta.get("cosi_bytes"):
        p(f"COSI of v1: {fmt_mib(meta['cosi_bytes'])} in content-defined frames, "
          f"{fmt_mib(cmp['cosi_fixed4m_bytes'])} in fixed 4 MiB frames: "
          f"{meta['cosi_bytes'] / cmp['cosi_fixed4m_bytes']:.3f}x")
        p("")
    p(f"JSON summary: {out_json}")


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    a = sys.argv[2:]
    if cmd == "free-port":
        free_port()
    elif cmd == "pick-tree":
        pick_tree(a[0], a[1], a[2:])
    elif cmd == "mutate-tree":
        mutate_tree(*a[:4])
    elif cmd == "store-delta":
        store_delta(a[0], a[1])
    elif cmd == "grow-tree":
        grow_tree(*a[:4])
    elif cmd == "phases":
        i = a.index("--")
        phases(a[0], a[1], a[i + 1:])
    elif cmd == "summarize":
        summarize(a[0], a[1])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
