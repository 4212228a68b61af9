#!/usr/bin/env python3
"""Seeded stages through the chaos proxy (tests/support/chaos_proxy.py) in front of abup-serve.

One node (tools/soak's GPT disk image, booted from USR-A); each seed stages one of two releases,
in turn, onto USR-B through a proxy started with that seed, so every stage rewrites the slot.
Each seed must end either
  - staged: `abup stage` exit 0, USR-B byte-exact the target, status says B staged with its
    version; or
  - a clear error: non-zero exit with a message on stderr, USR-B not recorded as staged with that
    version unless its bytes are exact; then a rerun without the proxy must finish byte-exact.
Never a hang (--stage-timeout), never a slot recorded as staged with a wrong byte. Bytes fetched
per seed (what the proxy forwarded plus the rerun's downloadedBytes) must stay within
--max-fetch-ratio of the COSI size; except (counted and printed, fatal with --strict-fetch) a
seed whose duplicated byte shifted the rest of a response: abup stops that response two frames
after the damage and asks again from there, but what the proxy had already forwarded is spent,
and loopback socket buffers hold megabytes (all of this small image): up to about 2x. Prints the outcome counts and, for a failure, the seed and
the proxy's per-connection log (replay: --first-seed S --seeds 1).
Usage: chaos_run.py [--seeds N] [--first-seed S] [--build-dir DIR] [--workdir DIR] [--keep]
"""
import argparse
import collections
import importlib.machinery
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
PROXY = os.path.join(TOP, "tests/support/chaos_proxy.py")


def load_soak():
    loader = importlib.machinery.SourceFileLoader("abup_soak", os.path.join(TOP, "tools/soak"))
    spec = importlib.util.spec_from_loader("abup_soak", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def start_proxy(upstream_port, seed, log, args, max_offset=None):
    """The chaos proxy in front of 127.0.0.1:upstream_port; returns (process, its port)."""
    max_offset = args.max_offset if max_offset is None else max_offset
    p = subprocess.Popen([sys.executable, PROXY, "--upstream", f"127.0.0.1:{upstream_port}", "--seed", str(seed),
                          "--log", log, "--fault-rate", str(args.fault_rate), "--max-offset", str(max_offset),
                          "--stall-max", str(args.stall_max)], stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline().split()
    if len(line) != 2 or line[0] != "listening":
        raise SystemExit("chaos: the proxy did not start")
    return p, int(line[1])


def proxy_bytes(log):
    total = 0
    faults = collections.Counter()
    if os.path.exists(log):
        with open(log) as f:
            for line in f:
                j = json.loads(line)
                total += j["sentBytes"]
                if j["fired"]:
                    faults[j["fault"]] += 1
    return total, faults


def add_common_args(ap):
    """The options both chaos runs take: where abup is, the work dir, the image and the faults."""
    ap.add_argument("--build-dir", default=os.path.join(TOP, "build"))
    ap.add_argument("--workdir")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--image-mib", type=int, default=8)
    ap.add_argument("--fault-rate", type=float, default=0.5)
    ap.add_argument("--max-offset", type=int, default=0, help="default: the COSI size")
    ap.add_argument("--stall-max", type=float, default=2.0)


def main():
    ap = argparse.ArgumentParser(description="abup stages through a seeded chaos proxy")
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--first-seed", type=int, default=1)
    add_common_args(ap)
    ap.add_argument("--stage-timeout", type=float, default=120)
    ap.add_argument("--max-fetch-ratio", type=float, default=1.5)
    ap.add_argument("--strict-fetch", action="store_true",
                    help="also fail a seed over the fetch bound after a corrupt byte")
    args = ap.parse_args()
    args.build_dir = os.path.abspath(args.build_dir)
    soak = load_soak()
    work = args.workdir or tempfile.mkdtemp(prefix="abup-chaos.")
    os.makedirs(work, exist_ok=True)
    serve = None
    counts = collections.Counter()
    fired = collections.Counter()
    worst_ratio, worst_seed = 0.0, ""
    failures = []
    t_all = time.monotonic()
    try:
        node, rel = soak.setup(work, args.build_dir, args.image_mib)
        targets = rel[1:3]
        port = soak.free_port()
        serve = subprocess.Popen([os.path.join(args.build_dir, "abup-serve"), "--dir", os.path.join(work, "srv"),
                                  "--listen", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                                 stderr=open(os.path.join(work, "serve.log"), "w"))
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/{targets[0]['file']}", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            r = targets[seed % 2]
            cosi_size = os.path.getsize(os.path.join(work, "srv", r["file"]))
            if args.max_offset <= 0:
                args.max_offset = cosi_size
            log = os.path.join(work, f"proxy-{seed}.jsonl")
            proxy, pport = start_proxy(port, seed, log, args)
            stage = [node.abup, "stage", "--disk", node.disk, "--root", node.root, "--allow-http",
                     "--allow-downgrade", "--json", "--no-progress"]
            try:
                p = subprocess.run(stage + ["--source", f"http://127.0.0.1:{pport}/{r['file']}"],
                                   capture_output=True, text=True, timeout=args.stage_timeout)
                rc, err = p.returncode, p.stderr.strip()
            except subprocess.TimeoutExpired:
                rc, err = "hang", ""
            proxy.terminate()
            proxy.wait()
            fetched, faults = proxy_bytes(log)
            fired.update(faults)
            problems = []
            exact = node.slot_sha("B", r["size"]) == r["sha"]
            slots = {s.get("name"): s for s in node.status().get("slots", [])}
            b = slots.get("B", {})
            recorded = b.get("state") == "staged" and b.get("version") == r["version"]
            if recorded and not exact:
                problems.append("USR-B recorded as staged but not byte-exact")
            if rc == 0:
                outcome = "staged"
                if not exact or not recorded:
                    problems.append(f"stage exited 0 but USR-B exact={exact} recorded={recorded}")
            elif rc == "hang":
                outcome = "hang"
                problems.append(f"stage did not end within {args.stage_timeout}s")
            else:
                outcome = "error+resumed"
                print(f"chaos: seed {seed}: stage failed ({dict(faults)}): {err.splitlines()[-1] if err else ''}",
                      file=sys.stderr, flush=True)
                if not err:
                    problems.append(f"stage exited {rc} with nothing on stderr")
                rerun = subprocess.run(stage + ["--source", f"http://127.0.0.1:{port}/{r['file']}"],
                                       capture_output=True, text=True, timeout=args.stage_timeout)
                if rerun.returncode != 0:
                    problems.append(f"rerun without chaos exited {rerun.returncode}: {rerun.stderr.strip()}")
                else:
                    fetched += json.loads(rerun.stdout).get("downloadedBytes", 0)
                    if node.slot_sha("B", r["size"]) != r["sha"]:
                        problems.append("rerun exited 0 but USR-B is not byte-exact")
            ratio = fetched / cosi_size
            if ratio > worst_ratio:
                worst_ratio, worst_seed = ratio, f"seed {seed}, {outcome}, faults {dict(faults)}"
            if ratio > args.max_fetch_ratio:
                over = f"fetched {fetched} bytes, {ratio:.2f}x the {cosi_size}-byte image"
                # Bytes in flight when a shifted response is stopped (see the docstring).
                if set(faults) & {"flip", "duplicate"} and not args.strict_fetch:
                    counts["over-budget after a corrupt byte"] += 1
                    print(f"chaos: seed {seed}: {over} (corrupt byte, {outcome})", file=sys.stderr, flush=True)
                else:
                    problems.append(over)
            counts[outcome] += 1
            if problems:
                counts["wrong"] += 1
                with open(log) as f:
                    conns = f.read()
                failures.append(f"seed {seed} ({outcome}, exit {rc}): " + "; ".join(problems)
                                + (f"\n  abup: {err}" if err else "") + "\n  proxy log:\n" + conns)
                print("chaos: FAILED " + failures[-1], file=sys.stderr, flush=True)
    finally:
        if serve:
            serve.terminate()
            serve.wait()
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    print(f"chaos: {args.seeds} seeds ({args.first_seed}..{args.first_seed + args.seeds - 1}) "
          f"in {time.monotonic() - t_all:.1f}s")
    print("chaos: outcomes " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    print("chaos: faults fired " + ", ".join(f"{k} {v}" for k, v in sorted(fired.items())))
    print(f"chaos: worst bytes fetched per stage {worst_ratio:.2f}x the image ({worst_seed})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
