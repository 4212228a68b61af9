#!/usr/bin/env python3
"""Checks Butane sources against their rendered Ignition configs.

For each FILE.bu (with FILE.ign beside it): the .ign validates against the Ignition JSON schema
(draft-04) and has no key the schema does not define (the schema itself allows any, Ignition
warns); the spec version is the one the Butane variant/version renders to; every file,
directory and unit (with drop-ins) of the .bu is in the .ign with the same path, mode and
decoded contents, and nothing else is. With --extract DIR, writes each config's files under
DIR/<config name>/<path> so that abup's own loader can read them.
Exit status 0 when all agree; otherwise every difference is printed, one per line.
"""
import argparse
import base64
import json
import pathlib
import sys
import urllib.parse

import jsonschema
import yaml

SPEC = {("flatcar", "1.0.0"): "3.3.0", ("flatcar", "1.1.0"): "3.4.0",
        ("fcos", "1.5.0"): "3.4.0", ("fcos", "1.6.0"): "3.5.0"}


def decode_data_url(url, where):
    if not url.startswith("data:"):
        raise ValueError(f"{where}: source is not a data URL: {url[:40]}")
    meta, sep, data = url[5:].partition(",")
    if not sep:
        raise ValueError(f"{where}: data URL without ','")
    if meta.endswith(";base64"):
        return base64.b64decode(data).decode()
    return urllib.parse.unquote(data)


def resolve(schema, root):
    while "$ref" in schema:
        node = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def properties(schema, root):
    """The properties an object may have: its own and those of every allOf part."""
    schema = resolve(schema, root)
    props = dict(schema.get("properties", {}))
    for part in schema.get("allOf", []):
        props.update(properties(part, root))
    return props


def unknown_keys(inst, schema, root, path, errors):
    schema = resolve(schema, root)
    if isinstance(inst, dict):
        props = properties(schema, root)
        if not props:
            return
        for k, v in inst.items():
            if k not in props:
                errors.append(f"{path}: key '{k}' is not in the Ignition schema")
            else:
                unknown_keys(v, props[k], root, f"{path}.{k}", errors)
    elif isinstance(inst, list) and "items" in schema:
        for i, v in enumerate(inst):
            unknown_keys(v, schema["items"], root, f"{path}[{i}]", errors)


def check(bu_path, schema, extract):
    errors = []
    name = bu_path.stem
    ign_path = bu_path.with_suffix(".ign")
    try:
        bu = yaml.safe_load(bu_path.read_text())
        ign = json.loads(ign_path.read_text())
    except (OSError, yaml.YAMLError, json.JSONDecodeError) as e:
        return [f"{name}: {e}"]
    v = jsonschema.Draft4Validator(schema)
    errors += [f"{ign_path.name}: schema: {'/'.join(map(str, e.path))}: {e.message}"
               for e in v.iter_errors(ign)]
    unknown_keys(ign, schema, schema, ign_path.name, errors)
    want = SPEC.get((bu.get("variant"), bu.get("version")))
    got = ign.get("ignition", {}).get("version")
    if want is None:
        errors.append(f"{bu_path.name}: unknown variant/version {bu.get('variant')} {bu.get('version')}")
    elif got != want:
        errors.append(f"{name}: Butane {bu['variant']} {bu['version']} renders to spec {want}, .ign says {got}")

    def files_of_bu():
        out = {}
        for f in bu.get("storage", {}).get("files", []):
            out[f["path"]] = (f.get("mode"), f.get("contents", {}).get("inline"))
        return out

    def files_of_ign():
        out = {}
        for f in ign.get("storage", {}).get("files", []):
            try:
                text = decode_data_url(f.get("contents", {}).get("source", ""), f["path"])
            except ValueError as e:
                errors.append(f"{ign_path.name}: {e}")
                text = None
            if f.get("contents", {}).get("compression"):
                errors.append(f"{ign_path.name}: {f['path']}: compressed contents not expected")
            out[f["path"]] = (f.get("mode"), text)
        return out

    fb, fi = files_of_bu(), files_of_ign()
    for p in sorted(set(fb) | set(fi)):
        if p not in fi:
            errors.append(f"{name}: {p} is in the .bu, not in the .ign")
        elif p not in fb:
            errors.append(f"{name}: {p} is in the .ign, not in the .bu")
        elif fb[p] != fi[p]:
            errors.append(f"{name}: {p} differs: .bu mode {fb[p][0]} {fb[p][1]!r} vs .ign mode {fi[p][0]} {fi[p][1]!r}")
    db = {d["path"]: d.get("mode") for d in bu.get("storage", {}).get("directories", [])}
    di = {d["path"]: d.get("mode") for d in ign.get("storage", {}).get("directories", [])}
    if db != di:
        errors.append(f"{name}: directories differ: .bu {db} vs .ign {di}")

    def units(cfg):
        out = {}
        for u in cfg.get("systemd", {}).get("units", []):
            out[u["name"]] = {k: u[k] for k in ("enabled", "mask", "contents") if k in u}
            out[u["name"]]["dropins"] = {d["name"]: d.get("contents") for d in u.get("dropins", [])}
        return out

    ub, ui = units(bu), units(ign)
    if ub != ui:
        errors.append(f"{name}: systemd units differ: .bu {ub} vs .ign {ui}")
    for section in ("passwd", "kernel_arguments", "kernelArguments"):
        if section in bu or section in ign:
            errors.append(f"{name}: '{section}' is not compared by this check; extend it")

    if extract and not errors:
        for p, (mode, text) in fi.items():
            dest = extract / name / p.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(text)
    return errors


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--schema", required=True, type=pathlib.Path)
    ap.add_argument("--extract", type=pathlib.Path)
    ap.add_argument("butane", nargs="+", type=pathlib.Path)
    a = ap.parse_args()
    schema = json.loads(a.schema.read_text())
    errors = []
    for bu in a.butane:
        errors += check(bu, schema, a.extract)
    for e in errors:
        print(e)
    print(f"check_ignition: {len(a.butane)} configs, {len(errors)} problems")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
