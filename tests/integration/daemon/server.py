#!/usr/bin/env python3
"""Loopback test double for the daemon: a canned Omaha endpoint, a Range-capable image server
and a FleetLock server, all recording what they were asked.

  server.py DIR        serves DIR/images/*, reads DIR/control.json on every request, appends
                       every request to DIR/requests.jsonl, writes its port to DIR/port.

control.json (all optional):
  {"omaha": {"status": 200, "appStatus": "ok", "ack": true,
             "offer": {"version": "202607.02.0", "file": "202607.02.0.cosi"}},
   "throttle": 0,          # seconds to sleep per 64 KiB of image data
   "grantOn": 1}           # FleetLock pre-reboot/steady-state granted from the N-th request on
"""
import json
import os
import sys
import threading
import time
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DIR = sys.argv[1]
LOCK = threading.Lock()
COUNTS = {}


def control():
    try:
        with open(os.path.join(DIR, "control.json")) as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def record(entry):
    with LOCK:
        with open(os.path.join(DIR, "requests.jsonl"), "a") as f:
            f.write(json.dumps(entry) + "\n")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, ctype="text/xml", extra=None):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
        entry = {"method": "POST", "path": self.path, "body": body,
                 "headers": {k.lower(): v for k, v in self.headers.items()}}
        if self.path == "/v1/update":
            self.omaha(body, entry)
        elif self.path in ("/v1/pre-reboot", "/v1/steady-state"):
            with LOCK:
                COUNTS[self.path] = COUNTS.get(self.path, 0) + 1
                n = COUNTS[self.path]
            granted = n >= control().get("grantOn", 1)
            entry["granted"] = granted
            record(entry)
            if granted:
                self.reply(200, "{}", "application/json")
            else:
                self.reply(409, json.dumps({"kind": "failed_lock", "value": "slot held by another"}),
                           "application/json")
        else:
            record(entry)
            self.reply(404, "not found", "text/plain")

    def omaha(self, body, entry):
        c = control().get("omaha", {})
        root = ET.fromstring(body)
        app = root.find("app")
        events = [dict(e.attrib) for e in app.findall("event")]
        check = app.find("updatecheck") is not None
        entry.update({"events": events, "updatecheck": check, "app": dict(app.attrib)})
        record(entry)
        status = c.get("status", 200)
        if status != 200:
            self.reply(status, "server trouble", "text/plain")
            return
        acks = "".join('<event status="ok"></event>' for _ in events) if c.get("ack", True) else ""
        inner = acks
        app_status = c.get("appStatus", "ok")
        if check and app_status == "ok":
            inner += '<ping status="ok"></ping>'
            offer = c.get("offer")
            if offer:
                port = self.server.server_address[1]
                inner += (
                    '<updatecheck status="ok"><urls><url codebase="http://127.0.0.1:%d/images/">'
                    '</url></urls><manifest version="%s"><packages><package name="%s" hash="" '
                    'size="0" required="true"></package></packages></manifest></updatecheck>'
                    % (port, offer["version"], offer["file"]))
            else:
                inner += '<updatecheck status="noupdate"></updatecheck>'
        self.reply(200, '<?xml version="1.0" encoding="UTF-8"?><response protocol="3.0" '
                   'server="canned"><daystart elapsed_seconds="0"></daystart><app appid="%s" '
                   'status="%s">%s</app></response>' % (app.get("appid"), app_status, inner))

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        if not self.path.startswith("/images/"):
            self.reply(404, "not found", "text/plain")
            return
        path = os.path.join(DIR, "images", os.path.basename(self.path))
        if not os.path.exists(path):
            self.reply(404, "not found", "text/plain")
            return
        size = os.path.getsize(path)
        rng = self.headers.get("Range")
        record({"method": self.command, "path": self.path, "range": rng})
        start, end, status = 0, size - 1, 200
        if rng and rng.startswith("bytes="):
            a, b = rng[6:].split("-")
            start, end, status = int(a), min(int(b) if b else size - 1, size - 1), 206
        length = end - start + 1
        self.send_response(status)
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end, size))
        self.end_headers()
        if self.command == "HEAD":
            return
        throttle = control().get("throttle", 0)
        with open(path, "rb") as f:
            f.seek(start)
            left = length
            while left > 0:
                chunk = f.read(min(65536, left))
                try:
                    self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    return
                left -= len(chunk)
                if throttle:
                    time.sleep(throttle)


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(os.path.join(DIR, "port.tmp"), "w") as f:
    f.write(str(server.server_address[1]))
os.rename(os.path.join(DIR, "port.tmp"), os.path.join(DIR, "port"))
server.serve_forever()
