#!/usr/bin/env python3
"""A canned Omaha server for the AKS tests: every POST body is appended to --log (one request
per line, newlines removed); an update check is answered with the XML in --offer (or noupdate
when the file is empty), events are acknowledged one <event status="ok"/> each."""
import argparse
import http.server
import re

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--offer", required=True)
ap.add_argument("--log", required=True)
args = ap.parse_args()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
        with open(args.log, "a") as f:
            f.write(body.replace("\n", " ") + "\n")
        appid = re.search(r'<app[^>]*appid="([^"]*)"', body)
        appid = appid.group(1) if appid else ""
        events = '<event status="ok"></event>' * body.count("<event ")
        check = ""
        if "<updatecheck" in body:
            offer = open(args.offer).read().strip()
            check = offer or '<updatecheck status="noupdate"></updatecheck>'
        ping = '<ping status="ok"></ping>' if "<ping" in body else ""
        out = ('<?xml version="1.0" encoding="UTF-8"?><response protocol="3.0" server="canned">'
               '<daystart elapsed_seconds="0"></daystart><app appid="%s" status="ok">%s%s%s'
               "</app></response>" % (appid, ping, events, check)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()
