#!/usr/bin/env python3
"""The aks mode's annotation contract through the chaos proxy (tests/support/chaos_proxy.py).

One `abup daemon` with `[Update] Mode=aks` on tools/soak's disk-image node (booted from USR-A).
Its kubeconfig names a chaos proxy in front of the tests' strict fake API server
(abup-fake-apiserver: TLS, client certificates; the proxy breaks the TLS streams, so every
watch, PATCH and Event call meets resets, stalls, truncation and flipped bytes), and every stage
request names an Omaha server (abup-serve) whose image URLs lead through a second chaos proxy.
The host plays the control plane on the fake's control channel, which is not proxied.

Each operation writes a `stage` request under a new operationId, in turn for two releases, and
waits for its terminal status. Per operationId, from every value the daemon PATCHed:
  - InProgress values, then one terminal code; a later value for the same operationId (re-served
    after a relist) repeats that code, and `startedUtc` never changes (the operation was not run
    twice);
  - Success: USR-B is byte-exact that release and `abup status` says B staged with its version;
  - OperationFailed: a message says why; the control plane asks again under a new operationId
    with the Omaha server that is not proxied (the API server stays behind chaos), which must
    succeed byte-exact. No status may be lost: each request ends terminal within --op-timeout.
Last, under the same chaos: finalize, the daemon's [Reboot] Command, a simulated reboot into B,
and the post-reboot commit status Success under the finalize's operationId.
Usage: aks_chaos_run.py [--ops N] [--seed S] [--build-dir DIR] [--workdir DIR] [--keep]
"""
import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from chaos_run import add_common_args, load_soak, start_proxy  # noqa: E402
NODE = "chaos-node"
APP_ID = "{e96281a6-d1af-4bde-9a0a-97b76e56dc57}"
STATUS = "acl.azure.com/update-status"
COMMIT = "acl.azure.com/update-commit-status"
REQUEST = "acl.azure.com/update-request"


class FakeApi:
    """abup-fake-apiserver over its stdin/stdout JSON-lines control protocol."""

    def __init__(self, exe, log):
        self.proc = subprocess.Popen([exe, "--node", NODE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=open(log, "w"), text=True)
        self.port = self._read()["port"]

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"aks chaos: abup-fake-apiserver ended (exit {self.proc.poll()})")
        reply = json.loads(line)
        if reply.get("ok") is not True:
            raise SystemExit(f"aks chaos: abup-fake-apiserver: {reply.get('error', reply)}")
        return reply

    def call(self, op, **kw):
        self.proc.stdin.write(json.dumps({"op": op, **kw}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def annotation(self, key):
        text = self.call("node")["node"]["metadata"].get("annotations", {}).get(key)
        return json.loads(text) if text else None

    def history(self, key):
        return [json.loads(v) for v in self.call("annotation-history", key=key)["values"]]

    def close(self):
        self.proc.stdin.close()
        return self.proc.wait(timeout=30)


def start_serve(build, srv, port, base_url, log):
    p = subprocess.Popen([os.path.join(build, "abup-serve"), "--dir", srv, "--listen", f"127.0.0.1:{port}",
                          "--base-url", base_url], stdout=open(log, "w"), stderr=subprocess.STDOUT)
    for _ in range(100):
        with open(log) as f:
            if "listening on" in f.read():
                return p
        if p.poll() is not None:
            break
        time.sleep(0.1)
    raise SystemExit("aks chaos: abup-serve did not start: " + open(log).read())


def request(op, op_id, nuid, version, server, track):
    return json.dumps({"schemaVersion": "1.0", "nodeUpdateId": nuid, "operationId": op_id,
                       "operation": op, "targetVersion": version, "server": server, "appId": APP_ID,
                       "track": track})


def wait_terminal(api, key, op_id, timeout, daemon):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        st = api.annotation(key)
        if st and st.get("operationId") == op_id and st.get("code") != "InProgress":
            return st
        if daemon.poll() is not None:
            return {"code": f"(daemon exited {daemon.returncode})"}
        time.sleep(0.1)
    return None


def contract_problems(values, op_id):
    """What the PATCHed values of one operationId break: InProgress*, then one terminal code,
    repeated only as is; one startedUtc."""
    mine = [v for v in values if v.get("operationId") == op_id]
    problems = []
    terminal = None
    for v in mine:
        code = v.get("code")
        if terminal is None:
            if code != "InProgress":
                terminal = code
        elif code != terminal:
            problems.append(f"{op_id}: {code} after terminal {terminal}")
    if len({v.get("startedUtc") for v in mine}) > 1:
        problems.append(f"{op_id}: startedUtc changed: {sorted({v.get('startedUtc') for v in mine})}")
    if terminal is None:
        problems.append(f"{op_id}: no terminal status was PATCHed")
    return problems


def main():
    ap = argparse.ArgumentParser(description="abup's aks mode through a seeded chaos proxy")
    ap.add_argument("--ops", type=int, default=20)
    ap.add_argument("--seed", default="1")
    add_common_args(ap)
    ap.add_argument("--api-max-offset", type=int, default=16384,
                    help="API server connections: faults within their first bytes (TLS handshake, a PATCH, watch events)")
    ap.add_argument("--op-timeout", type=float, default=180)
    args = ap.parse_args()
    build = os.path.abspath(args.build_dir)
    soak = load_soak()
    work = args.workdir or tempfile.mkdtemp(prefix="abup-aks-chaos.")
    os.makedirs(work, exist_ok=True)
    procs = []
    counts = collections.Counter()
    failures = []
    t_all = time.monotonic()
    daemon = None
    try:
        node, rel = soak.setup(work, build, args.image_mib)
        targets = rel[1:3]
        srv = os.path.join(work, "srv")
        with open(os.path.join(srv, "tracks.json"), "w") as f:
            json.dump({"t0": targets[0]["version"], "t1": targets[1]["version"]}, f)
        if args.max_offset <= 0:
            args.max_offset = os.path.getsize(os.path.join(srv, targets[0]["file"]))
        # Images through chaos: abup-serve's offers point at the proxy in front of itself.
        chaos_port = soak.free_port()
        proxy, pport = start_proxy(chaos_port, f"{args.seed}:serve", os.path.join(work, "proxy-serve.jsonl"), args,
                                   args.max_offset)
        procs.append(proxy)
        procs.append(start_serve(build, srv, chaos_port, f"http://127.0.0.1:{pport}/",
                                 os.path.join(work, "serve-chaos.log")))
        clean_port = soak.free_port()
        procs.append(start_serve(build, srv, clean_port, f"http://127.0.0.1:{clean_port}/",
                                 os.path.join(work, "serve-clean.log")))
        chaos_server = f"http://127.0.0.1:{pport}/v1/update"
        clean_server = f"http://127.0.0.1:{clean_port}/v1/update"

        api = FakeApi(os.path.join(build, "abup-fake-apiserver"), os.path.join(work, "fake-apiserver.log"))
        procs.append(api.proc)
        # The API server's TLS streams through chaos (the proxy sees ciphertext: a flipped byte
        # is a TLS record error, a stall a stalled watch or PATCH).
        aproxy, aport = start_proxy(api.port, f"{args.seed}:api", os.path.join(work, "proxy-api.jsonl"), args,
                                   args.api_max_offset)
        procs.append(aproxy)
        kubeconfig = api.call("kubeconfig", server=f"https://127.0.0.1:{aport}")["path"]

        sock = os.path.join(work, "bus.sock")
        with open(os.path.join(work, "bus.conf"), "w") as f:
            f.write(soak.BUS_CONF.format(sock=sock))
        procs.append(subprocess.Popen(["dbus-daemon", "--nofork", "--nopidfile",
                                       "--config-file=" + os.path.join(work, "bus.conf")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for _ in range(100):
            if os.path.exists(sock):
                break
            time.sleep(0.05)
        marker = os.path.join(work, "rebooted")
        with open(os.path.join(node.root, "etc/abup/abup.conf"), "w") as f:
            f.write(f"[Update]\nMode=aks\n[Network]\nAllowHTTP=yes\nLowSpeedTimeSec=5\n"
                    f"[Kubernetes]\nKubeconfig={kubeconfig}\nNodeName={NODE}\nHeartbeat=1s\n"
                    f"[Reboot]\nCommand=touch {marker}\n")
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS="unix:path=" + sock)
        daemon_log = os.path.join(work, "daemon.log")

        def start_daemon():
            return subprocess.Popen([node.abup, "daemon", "--disk", node.disk, "--root", node.root], env=env,
                                    stdout=subprocess.DEVNULL, stderr=open(daemon_log, "a"))

        daemon = start_daemon()
        op_ids = []

        nuid = [""]

        def ask(op, version, server, track):
            """One request; a stage starts a new node update, a finalize continues the last."""
            op_id = str(uuid.uuid4())
            op_ids.append(op_id)
            if op == "stage":
                nuid[0] = str(uuid.uuid4())
            api.call("set-annotation", key=REQUEST, value=request(op, op_id, nuid[0], version, server, track))
            return op_id, wait_terminal(api, STATUS, op_id, args.op_timeout, daemon)

        def fail(msg):
            failures.append(msg)
            print("aks chaos: FAILED " + msg, file=sys.stderr, flush=True)

        for n in range(args.ops):
            r = targets[n % 2]
            track = f"t{n % 2}"
            op_id, st = ask("stage", r["version"], chaos_server, track)
            if st is None:
                fail(f"op {n}: stage {op_id} not terminal within {args.op_timeout}s (a lost status)")
                break
            code = st.get("code")
            counts[f"stage {code}"] += 1
            if code == "OperationFailed":
                if not st.get("message"):
                    fail(f"op {n}: OperationFailed without a message")
                op_id, st = ask("stage", r["version"], clean_server, track)
                if st is None:
                    fail(f"op {n}: retried stage {op_id} not terminal within {args.op_timeout}s")
                    break
                code = st.get("code")
                counts[f"retry {code}"] += 1
            if code != "Success":
                fail(f"op {n}: stage of {r['version']} ended {code}: {st.get('message')}")
                continue
            exact = node.slot_sha("B", r["size"]) == r["sha"]
            slots = {s.get("name"): s for s in node.status().get("slots", [])}
            b = slots.get("B", {})
            if not exact or (b.get("state"), b.get("version")) != ("staged", r["version"]):
                fail(f"op {n}: Success but USR-B exact={exact}, status {b.get('state')} {b.get('version')}")

        # finalize, the reboot, and the commit status after it, under the same chaos.
        last = targets[(args.ops - 1) % 2]
        if not failures:
            fin_id, st = ask("finalize", last["version"], chaos_server, f"t{(args.ops - 1) % 2}")
            if not st or st.get("code") != "Success":
                fail(f"finalize ended {st and st.get('code')}: {st and st.get('message')}")
            else:
                for _ in range(300):
                    if os.path.exists(marker):
                        break
                    time.sleep(0.1)
                if not os.path.exists(marker):
                    fail("finalize Success but [Reboot] Command did not run")
                daemon.terminate()
                daemon.wait(timeout=30)
                node.reboot_into("B", last["version"])
                daemon = start_daemon()
                st = wait_terminal(api, COMMIT, fin_id, args.op_timeout, daemon)
                counts[f"commit {st and st.get('code')}"] += 1
                if not st or st.get("code") != "Success":
                    fail(f"commit status after the reboot: {st}")
                else:
                    for p in contract_problems(api.history(COMMIT), fin_id):
                        fail("commit status: " + p)
        values = api.history(STATUS)
        for op_id in op_ids:
            for p in contract_problems(values, op_id):
                fail(p)
        faults = collections.Counter()
        for log in ("proxy-serve.jsonl", "proxy-api.jsonl"):
            path = os.path.join(work, log)
            if os.path.exists(path):
                for line in open(path):
                    j = json.loads(line)
                    if j["fired"]:
                        faults[f"{log.split('-')[1].split('.')[0]}:{j['fault']}"] += 1
        print(f"aks chaos: {args.ops} stage requests (seed {args.seed}) in {time.monotonic() - t_all:.1f}s")
        print("aks chaos: outcomes " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        print("aks chaos: faults fired " + ", ".join(f"{k} {v}" for k, v in sorted(faults.items())))
        if failures:
            print("aks chaos: daemon log tail:\n" + open(daemon_log).read()[-4000:], file=sys.stderr)
        return 1 if failures else 0
    finally:
        if daemon:
            daemon.terminate()
            try:
                daemon.wait(timeout=10)
            except subprocess.TimeoutExpired:
                daemon.kill()
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
