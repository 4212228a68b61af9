#!/usr/bin/env python3
"""Renders the Butane files here to Ignition JSON, for the subset of Butane they use.

Debian ships no `butane`. This renders these files to configs equivalent to `butane --strict` (variant
flatcar 1.1.0 -> Ignition spec 3.4.0): inline file contents become RFC 2397 data URLs
(percent-encoded, uncompressed), YAML octal modes become decimal integers, units and drop-ins
are copied. Anything else in a .bu is refused, so a config that needs real Butane says so.
Usage: ignition-configs/render.py [FILE.bu ...]   (default: every .bu beside this script)
The test tests/integration/ignition/ checks the result independently (schema, and the parsed
YAML against the JSON).
"""
import json
import pathlib
import sys
import urllib.parse

import yaml

SPEC = {("flatcar", "1.1.0"): "3.4.0", ("fcos", "1.5.0"): "3.4.0", ("fcos", "1.6.0"): "3.5.0"}


def refuse(where, what):
    sys.exit(f"render.py: {where}: {what} is not supported here; use butane")


def node(where, d, allowed):
    for k in d:
        if k not in allowed:
            refuse(where, f"key '{k}'")
    return d


def render(bu):
    src = yaml.safe_load(bu.read_text())
    node(bu.name, src, {"variant", "version", "storage", "systemd"})
    key = (src["variant"], src["version"])
    if key not in SPEC:
        refuse(bu.name, f"variant {key}")
    out = {"ignition": {"version": SPEC[key]}}
    storage = node(f"{bu.name} storage", src.get("storage", {}), {"files", "directories"})
    if storage:
        out["storage"] = {}
    for d in storage.get("directories", []):
        node(f"{bu.name} {d['path']}", d, {"path", "mode"})
        out["storage"].setdefault("directories", []).append(dict(d))
    for f in storage.get("files", []):
        node(f"{bu.name} {f['path']}", f, {"path", "mode", "contents"})
        node(f"{bu.name} {f['path']} contents", f["contents"], {"inline"})
        data = "data:," + urllib.parse.quote(f["contents"]["inline"], safe="")
        entry = {"path": f["path"], "contents": {"source": data}}
        if "mode" in f:
            entry["mode"] = f["mode"]  # YAML 0644 is already the integer 420
        out["storage"].setdefault("files", []).append(entry)
    units = node(f"{bu.name} systemd", src.get("systemd", {}), {"units"}).get("units", [])
    if units:
        out["systemd"] = {"units": []}
    for u in units:
        node(f"{bu.name} {u['name']}", u, {"name", "enabled", "mask", "contents", "dropins"})
        entry = {k: u[k] for k in ("name", "enabled", "mask", "contents") if k in u}
        if "dropins" in u:
            entry["dropins"] = [dict(node(u["name"], d, {"name", "contents"})) for d in u["dropins"]]
        out["systemd"]["units"].append(entry)
    return out


def main():
    here = pathlib.Path(__file__).resolve().parent
    files = [pathlib.Path(a) for a in sys.argv[1:]] or sorted(here.glob("*.bu"))
    for bu in files:
        ign = bu.with_suffix(".ign")
        ign.write_text(json.dumps(render(bu), indent=2, sort_keys=True) + "\n")
        print(f"{bu.name} -> {ign.name}")


if __name__ == "__main__":
    main()
