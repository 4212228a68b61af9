#!/usr/bin/env python3
"""A misbehaving HTTP/1.1 file server for the transport tests: the faults nginx cannot produce.

Serves files from --root. The URL prefix picks the behaviour for the file named by the rest:
  /extra/<file>        206 with the right Content-Range, then 64 bytes more than asked
                       (no Content-Length; the connection closes after them)
  /wrongrange/<file>   206 naming (and sending) the range one byte further on
  /norange/<file>      HEAD advertises Accept-Ranges, but GET ignores Range and answers 200
  /nohead/<file>       HEAD answers 405 (the client must probe with a 1-byte range GET)
  /corruptonce/N/<file> the first response carrying byte N of the file has that byte flipped
  /corruptalways/N/<file> every response carrying byte N of the file has that byte flipped
  /dupbyte/N/<file>    the first response carrying byte N sends it twice; every later byte of the
                       body comes one place late (its last byte is left out: same length)
  /dropbyte/N/<file>   the first response carrying byte N leaves it out; every later byte comes one
                       place early (a zero byte is added at the end: same length)
  /firstrange/<file>   a multi-range request is answered with a single 206 of its first range
  /straybyte/<file>    the first 206 is followed by one byte past its Content-Length on the kept-
                       alive connection: the next reply on it does not start with a status line
  /multi/F/<file>      multi-range requests answered as multipart/byteranges with fault F:
                       ok, reorder (two parts swapped), missing (last part left out), extra (one
                       more part), short (first part one byte short), long (one byte too many),
                       wrongtotal, noboundary (Content-Type without a boundary), drop (the
                       connection closes in the middle of the second part's data)
  /multidup/N/<file>   multi-range requests answered as multipart/byteranges; in the first reply
                       whose parts hold byte N it is sent twice and every later body byte comes
                       one place late (the body keeps its length)
  /multidrop/N/<file>  likewise, byte N left out and every later byte one place early
  /drop/N/<file>       at most N body bytes per response, then the connection is closed
  /flaky/K/<file>      the first K requests per method and path answer 503, then normal
  /redirect/N/<rest>   302 to /redirect/N-1/<rest>, and /redirect/1/<rest> to /<rest>
  /slow/<file>         the body trickles at about 40 bytes/s
  /hang/<anything>     reads the request and never answers (a dead server behind a live socket)
  /status/C/<file>     answers status C with a short text body (e.g. /status/404/x)
  /echo/<anything>     answers 200 with the method, request headers and body as JSON
Every request is appended to --log as "METHOD PATH RANGE" (RANGE "-" when absent), before the
answer, so a test can assert exactly what was asked.

The server exits when its parent dies (it polls getppid), so a crashed test leaves nothing behind.
"""
import argparse
import json
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ARGS = None
LOG_LOCK = threading.Lock()
COUNTS = {}
COUNTS_LOCK = threading.Lock()


def parse_ranges(header, size):
    """[(first, last), ...] for 'bytes=a-b,c-d,...' (no suffix ranges), or None."""
    if not (header or "").startswith("bytes=") or "," not in header:
        return None
    out = []
    for spec in header[6:].split(","):
        m = re.fullmatch(r"(\d+)-(\d+)", spec.strip())
        if not m:
            return None
        out.append((int(m.group(1)), min(int(m.group(2)), size - 1)))
    return out


def multipart_body(data, size, ranges, fault):
    boundary = "fault-boundary-42"
    parts = []
    for first, last in ranges:
        body = data[first:last + 1]
        if fault == "short" and not parts:
            body = body[:-1]
        if fault == "long" and not parts:
            body = body + b"x"
        total = size + 1 if fault == "wrongtotal" else size
        parts.append(f"\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n"
                     f"Content-Range: bytes {first}-{last}/{total}\r\n\r\n".encode() + body)
    if fault == "reorder":
        parts[0], parts[1] = parts[1], parts[0]
    if fault == "missing":
        parts.pop()
    if fault == "extra":
        parts.append(f"\r\n--{boundary}\r\nContent-Range: bytes 0-0/{size}\r\n\r\n".encode()
                     + data[0:1])
    out = b"".join(parts) + f"\r\n--{boundary}--\r\n".encode()
    ctype = "multipart/byteranges" if fault == "noboundary" else \
        f"multipart/byteranges; boundary={boundary}"
    return out, ctype


def parse_range(header, size):
    """(first, last) for 'bytes=a-b' / 'bytes=a-' / 'bytes=-n', or None."""
    m = re.fullmatch(r"bytes=(\d*)-(\d*)", header or "")
    if not m or (m.group(1) == "" and m.group(2) == ""):
        return None
    if m.group(1) == "":
        n = int(m.group(2))
        return max(0, size - n), size - 1
    first = int(m.group(1))
    last = int(m.group(2)) if m.group(2) else size - 1
    return first, min(last, size - 1)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # the request log below replaces stderr chatter
        pass

    def record(self):
        with LOG_LOCK, open(ARGS.log, "a") as f:
            f.write(f"{self.command} {self.path} {self.headers.get('Range', '-')}\n")

    def do_HEAD(self):
        self.handle_any()

    def do_GET(self):
        self.handle_any()

    def do_POST(self):
        self.handle_any()

    def do_PUT(self):
        self.handle_any()

    def simple(self, code, body=b"", headers=None, close=False):
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        self.record()
        length = int(self.headers.get("Content-Length") or 0)
        request_body = self.rfile.read(length) if length else b""
        parts = self.path.split("?")[0].lstrip("/").split("/")
        mode = parts[0]
        if mode == "echo":
            body = json.dumps({"method": self.command, "path": self.path,
                               "headers": {k.lower(): v for k, v in self.headers.items()},
                               "body": request_body.decode("latin-1")}).encode()
            return self.simple(200, body, {"Content-Type": "application/json"})
        if mode == "redirect":
            n = int(parts[1])
            rest = "/".join(parts[2:])
            target = f"/redirect/{n - 1}/{rest}" if n > 1 else f"/{rest}"
            return self.simple(302, b"", {"Location": target})
        if mode == "hang":
            time.sleep(3600)
            return
        if mode == "status":
            code = int(parts[1])
            return self.simple(code, f"status {code}\n".encode(), {"Content-Type": "text/plain"})
        if mode == "flaky":
            key = (self.command, self.path)
            with COUNTS_LOCK:
                COUNTS[key] = COUNTS.get(key, 0) + 1
                seen = COUNTS[key]
            if seen <= int(parts[1]):
                return self.simple(503, b"try later\n", {"Retry-After": "0"})
            parts = parts[2:]
        elif mode in ("drop",):
            parts = parts[2:]
        elif mode in ("corruptonce", "corruptalways", "dupbyte", "dropbyte"):
            return self.serve_file(mode, "/".join(parts[2:]), corrupt=int(parts[1]))
        elif mode == "multi":
            return self.serve_multi(parts[1], "/".join(parts[2:]))
        elif mode in ("multidup", "multidrop"):
            return self.serve_multi("ok", "/".join(parts[2:]), shift=(mode, int(parts[1])))
        elif mode in ("extra", "wrongrange", "norange", "nohead", "slow", "firstrange", "straybyte"):
            parts = parts[1:]
        else:
            mode = "plain"
        return self.serve_file(mode, "/".join(parts))

    def served_bytes(self, name):
        """The bytes of ROOT/name, or None once a 404 is answered."""
        path = os.path.join(ARGS.root, name)
        if not os.path.isfile(path):
            self.simple(404, b"not found\n")
            return None
        with open(path, "rb") as f:
            return f.read()

    def serve_multi(self, fault, name, shift=None):
        data = self.served_bytes(name)
        if data is None:
            return
        ranges = parse_ranges(self.headers.get("Range"), len(data))
        if self.command == "HEAD" or ranges is None:
            return self.serve_file("plain", name)
        body, ctype = multipart_body(data, len(data), ranges, fault)
        if shift:
            mode, byte = shift
            for first, last in ranges:
                if not first <= byte <= last:
                    continue
                with COUNTS_LOCK:
                    done = COUNTS.setdefault(("shifted", name), 0)
                    COUNTS[("shifted", name)] = done + 1
                if done:
                    break
                head = f"Content-Range: bytes {first}-{last}/{len(data)}\r\n\r\n".encode()
                i = body.index(head) + len(head) + byte - first
                if mode == "multidup":
                    body = (body[:i + 1] + body[i:])[:len(body)]
                else:
                    body = body[:i] + body[i + 1:] + b"\0"
                break
        if fault == "drop":
            first, last = ranges[1]
            cut = body.index(data[first:last + 1]) + (last - first + 1) // 2
            self.send_response(206)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.close_connection = True
            self.end_headers()
            self.wfile.write(body[:cut])
            return
        return self.send_body(206, body, {"Content-Type": ctype}, "plain")

    def serve_file(self, mode, name, corrupt=None):
        data = self.served_bytes(name)
        if data is None:
            return
        size = len(data)
        if self.command == "HEAD":
            if mode == "nohead":
                return self.simple(405, b"", {"Allow": "GET"})
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            return
        header = self.headers.get("Range")
        if mode == "firstrange" and header and "," in header:
            header = header.split(",")[0]
        rng = parse_range(header, size)
        if rng is None or mode == "norange":
            return self.send_body(200, data, {}, mode)
        first, last = rng
        if first >= size or first > last:
            return self.simple(416, b"", {"Content-Range": f"bytes */{size}"})
        if mode == "wrongrange":
            first, last = first + 1, min(last + 1, size - 1)
        headers = {"Content-Range": f"bytes {first}-{last}/{size}"}
        body = data[first:last + 1]
        if corrupt is not None and first <= corrupt <= last:
            with COUNTS_LOCK:
                done = COUNTS.setdefault(("corrupted", name), 0)
                COUNTS[("corrupted", name)] = done + 1
            i = corrupt - first
            if mode == "corruptalways" or done == 0:
                if mode == "dupbyte":
                    body = (body[:i + 1] + body[i:])[:len(body)]
                elif mode == "dropbyte":
                    body = body[:i] + body[i + 1:] + b"\0"
                else:
                    body = body[:i] + bytes([body[i] ^ 0xFF]) + body[i + 1:]
        if mode == "extra":
            extra = data[last + 1:last + 65] or b"x" * 64
            self.send_response(206)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Connection", "close")
            self.close_connection = True
            self.end_headers()
            self.wfile.write(body + extra)
            return
        return self.send_body(206, body, headers, mode)

    def send_body(self, code, body, headers, mode):
        self.send_response(code)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if mode == "drop":
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        try:
            if mode == "drop":
                limit = int(self.path.lstrip("/").split("/")[1])
                self.wfile.write(body[:limit])
            elif mode == "straybyte":
                with COUNTS_LOCK:
                    done = COUNTS.setdefault(("stray", self.path), 0)
                    COUNTS[("stray", self.path)] = done + 1
                self.wfile.write(body + (b"x" if done == 0 and code == 206 else b""))
            elif mode == "slow":
                for i in range(0, len(body), 4):
                    self.wfile.write(body[i:i + 4])
                    self.wfile.flush()
                    time.sleep(0.1)
            else:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def watch_parent(parent):
    while True:
        if os.getppid() != parent:
            os._exit(0)
        time.sleep(0.2)


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--log", required=True)
    ARGS = p.parse_args()
    threading.Thread(target=watch_parent, args=(os.getppid(),), daemon=True).start()
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler)
    sys.stderr.write(f"fault_server listening on 127.0.0.1:{ARGS.port}\n")
    sys.stderr.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
