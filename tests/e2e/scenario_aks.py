"""Scenario 6 (docs/e2e.md): the real `abup daemon` with `[Update] Mode=aks` in the guest,
driven through its Node's annotations by the host, which plays the control plane against the
tests' strict fake Kubernetes API server (abup-fake-apiserver: TLS, the kubelet's client
certificate) and serves the update with abup-serve (Omaha + the image over HTTP). The guest
reaches both through QEMU's user networking at 10.0.2.2."""

import json
import shutil
import socket
import subprocess
import threading
import time

import e2elib as e
import scenarios as s
from e2elib import check, log

NODE = "e2e-node"
PREFIX = "acl.azure.com"
REQUEST, STATUS_KEY, COMMIT_KEY = (f"{PREFIX}/update-request", f"{PREFIX}/update-status",
                                   f"{PREFIX}/update-commit-status")
APP_ID = "{e96281a6-d1af-4bde-9a0a-97b76e56dc57}"
NODE_UPDATE_ID = "8a0f3c1e-5b6d-4e2f-9a7b-1c2d3e4f5a6b"
STAGE_OP = "0b1c2d3e-4f50-6172-8394-000000000001"
FINALIZE_OP = "0b1c2d3e-4f50-6172-8394-000000000002"
HOST = "10.0.2.2"  # the host's loopback as the guest sees it (QEMU user networking)


def free_port():
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        return sk.getsockname()[1]


class FakeApi:
    """abup-fake-apiserver, driven over its stdin/stdout JSON-lines protocol."""

    def __init__(self, exe, run_dir):
        check(exe.exists(), f"{exe} is missing: build the project first")
        self.proc = subprocess.Popen([str(exe), "--node", NODE, "--san", f"IP:{HOST}"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=open(run_dir / "fake-apiserver.stderr", "w"),
                                     text=True)
        self.lock = threading.Lock()
        hello = self._read()
        self.port = hello["port"]

    def _read(self):
        line = self.proc.stdout.readline()
        check(line, f"abup-fake-apiserver ended (exit {self.proc.poll()})")
        reply = json.loads(line)
        check(reply.get("ok") is True, f"abup-fake-apiserver: {reply.get('error', reply)}")
        return reply

    def call(self, op, **kw):
        with self.lock:
            self.proc.stdin.write(json.dumps({"op": op, **kw}) + "\n")
            self.proc.stdin.flush()
            return self._read()

    def annotations(self):
        return self.call("node")["node"]["metadata"].get("annotations", {})

    def close(self):
        self.proc.stdin.close()
        rc = self.proc.wait(timeout=30)
        check(rc == 0, f"abup-fake-apiserver exited {rc}")


class Serve:
    """abup-serve on the host's loopback, its image URLs in the guest's terms."""

    def __init__(self, exe, run_dir, image):
        check(exe.exists(), f"{exe} is missing: build the project first")
        check(image.exists(), f"{image} is missing: run `run build` first")
        self.dir = run_dir / "serve"
        self.dir.mkdir()
        shutil.copy(image, self.dir / image.name)
        (self.dir / "tracks.json").write_text(json.dumps({"stable": s.V2}) + "\n")
        self.port = free_port()
        self.events_log = run_dir / "omaha-events.jsonl"
        self.out = run_dir / "abup-serve.out"
        self.proc = subprocess.Popen(
            [str(exe), "--dir", str(self.dir), "--listen", f"127.0.0.1:{self.port}",
             "--base-url", f"http://{HOST}:{self.port}/", "--events", str(self.events_log),
             "--requests", str(run_dir / "omaha-requests.jsonl")],
            stdin=subprocess.DEVNULL, stdout=open(self.out, "w"), stderr=subprocess.STDOUT)
        for _ in range(100):
            if "listening on" in self.out.read_text():
                break
            check(self.proc.poll() is None, f"abup-serve ended: {self.out.read_text()}")
            time.sleep(0.1)
        else:
            raise e.Fail(f"abup-serve did not start: {self.out.read_text()}")
        self.url = f"http://{HOST}:{self.port}/v1/update"

    def release(self, name):
        """The guest's plan polls for this file (busybox wget) before it stops the daemon."""
        (self.dir / name).write_text("go\n")

    def events(self):
        if not self.events_log.exists():
            return []
        return [json.loads(l) for l in self.events_log.read_text().splitlines() if l.strip()]

    def close(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def guest_conf(backend):
    return (f"[Update]\nMode=aks\nBootBackend={backend}\n[Network]\nAllowHTTP=yes\n"
            "[Boot]\nGrubEnv=/efi/grub/grubenv\n"
            f"[Kubernetes]\nKubeconfig=/run/e2e/kubeconfig\nNodeName={NODE}\nHeartbeat=5s\n"
            "[Reboot]\nCommand=/bin/e2e-reboot\n")


def daemon_plan(backend, kubeconfig, serve, release):
    """The guest's network (QEMU user networking), the daemon's configuration in /run, then
    `abup daemon` until the host releases the boot (or the daemon reboots the machine)."""
    return f"""i=0
while [ ! -e /sys/class/net/eth0 ]; do
    i=$((i + 1)); [ $i -gt 100 ] && fail "no eth0"; sleep 0.1
done
ip link set lo up && ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 &&
    ip route add default via {HOST} || fail "guest network"
echo "E2E-NET: $(ip -4 -o addr show dev eth0)"
mkdir -p /run/e2e
cat >/run/e2e/kubeconfig <<'E2E_EOF'
{kubeconfig}E2E_EOF
cat >/run/e2e/abup.conf <<'E2E_EOF'
{guest_conf(backend)}E2E_EOF
echo "E2E-BEGIN daemon"
abup daemon --config /run/e2e/abup.conf --disk /dev/vda 2>&1 &
pid=$!
until wget -q -O /dev/null http://{HOST}:{serve.port}/{release} 2>/dev/null; do
    kill -0 $pid 2>/dev/null || break
    sleep 2
done
kill -TERM $pid 2>/dev/null
wait $pid
echo "E2E-END daemon rc=$?"
""" + s.STATUS


class Background:
    """One boot in a thread, while the host plays the control plane."""

    current = None  # the boot to end when the scenario fails

    def __init__(self, m, plan, what, release):
        Background.current = self
        self.release = release
        self.result, self.error = None, None
        self.thread = threading.Thread(target=self._run, args=(m, plan, what), daemon=True)
        self.thread.start()

    def _run(self, m, plan, what):
        try:
            self.result = m.boot(plan, what, net=True)
        except e.Fail as f:
            self.error = f

    def running(self):
        return self.thread.is_alive()

    def join(self):
        self.thread.join(s.BOOT_TIMEOUT + 60)
        check(not self.thread.is_alive(), "the boot thread did not end")
        if self.error:
            raise self.error
        return self.result


def wait_for(what, boot, cond, timeout=s.BOOT_TIMEOUT):
    """Polls cond() until it returns something; fails when the boot ended first."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        v = cond()
        if v:
            return v
        if not boot.running():
            v = cond()  # written just before the guest went down
            if v:
                return v
            b = boot.join()
            raise e.Fail(f"{b.log_path}: the boot ended before {what}")
        time.sleep(0.5)
    raise e.Fail(f"no {what} within {timeout} s")


def status_of(api, key, op):
    """The annotation's status for operationId `op` when it is terminal (not InProgress)."""
    text = api.annotations().get(key)
    if not text:
        return None
    st = json.loads(text)
    return st if st.get("operationId") == op and st.get("code") != "InProgress" else None


def request(op, op_id, serve):
    return json.dumps({"schemaVersion": "1.0", "nodeUpdateId": NODE_UPDATE_ID,
                       "operationId": op_id, "operation": op, "targetVersion": s.V2,
                       "server": serve.url, "appId": APP_ID, "track": "stable"})


def history(api, key):
    return [json.loads(v) for v in api.call("annotation-history", key=key)["values"]]


def aks(p, backend):
    m = s.Machine(p, backend, "aks")
    api = FakeApi(p.fake_apiserver, m.dir)
    serve = Serve(p.abup_serve, m.dir, p.images("grubenv") / f"{s.V2}.cosi")
    try:
        run(p, m, api, serve, backend)
    finally:
        # A failed check while a boot runs: let the guest stop its daemon and power off (or
        # QEMU is killed at the boot's timeout), so no QEMU outlives the test.
        boot, Background.current = Background.current, None
        if boot and boot.running():
            serve.release(boot.release)
            boot.thread.join(s.BOOT_TIMEOUT + 60)
        (m.dir / "apiserver-requests.json").write_text(
            json.dumps(api.call("requests")["requests"], indent=1) + "\n")
        api.close()
        serve.close()


def run(p, m, api, serve, backend):
    with open(api.call("kubeconfig", server=f"https://{HOST}:{api.port}")["path"]) as f:
        kubeconfig = f.read()

    # Boot 1, factory A: the daemon watches its Node; the control plane asks for a stage once
    # the watch is open, then, after Success, for the finalize (a new operationId). The daemon
    # arms B and reboots through [Reboot] Command=, which ends this QEMU run.
    boot = Background(m, daemon_plan(backend, kubeconfig, serve, "release-1"),
                      "A: abup daemon (aks) stages and finalizes on request", "release-1")
    wait_for("a watch of the Node", boot, lambda: api.call("watch-count")["watches"] > 0)
    api.call("set-annotation", key=REQUEST, value=request("stage", STAGE_OP, serve))
    st = wait_for("the stage's terminal status", boot,
                  lambda: status_of(api, STATUS_KEY, STAGE_OP))
    check(st["code"] == "Success" and st["operation"] == "stage"
          and st["fromVersion"] == s.V1 and st["toVersion"] == s.V2,
          f"update-status of the stage: {st}")
    api.call("set-annotation", key=REQUEST, value=request("finalize", FINALIZE_OP, serve))
    st = wait_for("the finalize's terminal status", boot,
                  lambda: status_of(api, STATUS_KEY, FINALIZE_OP))
    check(st["code"] == "Success" and st["operation"] == "finalize",
          f"update-status of the finalize: {st}")
    b = boot.join()
    s.expect_boot(m, b, "A", s.V1)
    check(b.rebooted_in("daemon"), f"{b.log_path}: the daemon did not reboot after finalize")
    s.expect_boot_config(m, "B", "A", {"B": 1})
    s.expect_host_status(m, "A", "B", "A", True)
    check(api.annotations().get(COMMIT_KEY) is None, "a commit status before the reboot")

    # Boot 2, B: the daemon commits and says so in update-commit-status under the finalize's
    # operationId; the finalize request still on the Node is answered again, not redone.
    boot = Background(m, daemon_plan(backend, kubeconfig, serve, "release-2"),
                      "B: abup daemon (aks) commits", "release-2")
    c = wait_for("the commit status", boot, lambda: status_of(api, COMMIT_KEY, FINALIZE_OP))
    # Omaha hears of the commit (3/2) after the Node does: then the guest may stop.
    wait_for("the Omaha commit event", boot,
             lambda: any((x["eventtype"], x["eventresult"]) == (3, 2) for x in serve.events()))
    serve.release("release-2")
    b = boot.join()
    check(c["code"] == "Success" and c["operation"] == "commit"
          and c["fromVersion"] == s.V1 and c["toVersion"] == s.V2,
          f"update-commit-status: {c}")
    s.expect_boot(m, b, "B", s.V2)
    if backend == "grubenv":
        check(b.has("B_TRY=0 -> slot=B"), f"{b.log_path}: GRUB did not count B's one try")
    check(not b.rebooted_in("daemon"), f"{b.log_path}: the daemon rebooted B again")
    out = b.output("daemon")
    check(out is not None and out[0] == 0, f"{b.log_path}: abup daemon did not stop cleanly "
                                           f"on SIGTERM: {out and out[0]}")
    status = b.json("status")
    check(status.get("booted") == "B" and not status.get("pending"),
          f"{b.log_path}: abup status after the commit: {status}")
    s.expect_boot_config(m, "B", "B", {"B": 0})
    s.expect_host_status(m, "B", "B", "B", False)
    s.expect_gpt_intact(m)
    check_records(api, serve)


def check_records(api, serve):
    """What the API server and the Omaha server saw, over both boots."""
    codes = {}
    for st in history(api, STATUS_KEY):
        codes.setdefault(st["operationId"], []).append(st["code"])
    check(set(codes) == {STAGE_OP, FINALIZE_OP}, f"update-status operationIds: {codes}")
    stage = codes[STAGE_OP]
    check(stage[0] == "InProgress" and stage[-1] == "Success"
          and set(stage[:-1]) == {"InProgress"}, f"update-status history of the stage: {stage}")
    # The finalize ran once, in A; after the reboot the request still on the Node is answered
    # again from aks.json (Success with a fresh lastUpdatedUtc), not redone (no InProgress).
    fin = codes[FINALIZE_OP]
    done = fin.index("Success") if "Success" in fin else len(fin)
    check(done > 0 and set(fin[:done]) == {"InProgress"} and len(fin) > done + 1
          and set(fin[done:]) == {"Success"},
          f"update-status history of the finalize (ran in A, re-served in B): {fin}")
    commits = [(c["operationId"], c["code"]) for c in history(api, COMMIT_KEY)]
    check(commits and set(commits) == {(FINALIZE_OP, "Success")},
          f"update-commit-status history: {commits}")

    reqs = api.call("requests")["requests"]
    who = {r["identity"] for r in reqs}
    check(who == {f"system:node:{NODE}"}, f"API server identities: {who}")
    patches = [r for r in reqs if r["method"] == "PATCH"]
    check(patches and all(r["contentType"] == "application/merge-patch+json"
                          and r["target"] == f"/api/v1/nodes/{NODE}" for r in patches),
          "PATCHes: " + json.dumps([(r["target"], r["contentType"]) for r in patches]))
    for r in patches:
        body = json.loads(r["body"])
        check(set(body) == {"metadata"} and set(body["metadata"]) == {"annotations"}
              and set(body["metadata"]["annotations"]) <= {STATUS_KEY, COMMIT_KEY},
              f"a PATCH wrote more than the status annotations: {r['body']}")
    watches = [r for r in reqs if r["method"] == "GET" and "watch=true" in r["target"]]
    check(len(watches) >= 2 and all(
        f"fieldSelector=metadata.name%3D{NODE}" in r["target"]
        or f"fieldSelector=metadata.name={NODE}" in r["target"] for r in watches),
          "watches: " + json.dumps([r["target"] for r in watches]))
    reasons = [ev["reason"] for ev in api.call("events")["events"]]
    for want in ("UpdateStageSuccess", "UpdateFinalizeSuccess", "UpdateCommitSuccess"):
        check(want in reasons, f"no Event {want} on the Node: {reasons}")

    ev = [(x["eventtype"], x["eventresult"]) for x in serve.events()]
    for want in ((13, 1), (14, 1), (800, 1), (3, 2)):
        check(want in ev, f"abup-serve got no Omaha event {want[0]}/{want[1]}: {ev}")
    log(f"aks: update-status {codes}, commit {commits}, {len(reqs)} API requests "
        f"({len(watches)} watches), Omaha events {ev}")
