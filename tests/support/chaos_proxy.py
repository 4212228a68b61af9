#!/usr/bin/env python3
"""A seeded, reproducible chaos TCP proxy between abup and its server (abup-serve, nginx, ...).

Listens on --listen and forwards every connection to --upstream. Connection number i (0, 1, ...)
draws its fault from random.Random(f"{seed}:{i}"), so a seed replays the same faults for the
same sequence of connections. Faults act on the server-to-client stream at a random byte offset
in [0, --max-offset):
  reset      the client connection is reset (RST, SO_LINGER 0)
  halfclose  the proxy stops sending to the client (FIN) but keeps its read side open
  stall      nothing is forwarded for a random time up to --stall-max seconds, then it goes on
             (longer than abup's low-speed window only when that window is configured small)
  truncate   the connection is closed cleanly (FIN) at the offset
  delay      the first bytes (the response headers) are held for up to --stall-max seconds
  duplicate  the byte at the offset is sent twice
  flip       the byte at the offset is XORed with a random non-zero value
  none       forwarded untouched (with probability 1 - --fault-rate)
Each connection's fault, offset and the bytes it forwarded are appended as one JSON line to
--log when the connection ends, so a failing run can be read back and replayed from the seed.
Prints "listening PORT" on stdout once ready. Exits when its parent dies.
"""
import argparse
import asyncio
import json
import os
import random
import socket
import struct
import sys

FAULTS = ["reset", "halfclose", "stall", "truncate", "delay", "duplicate", "flip"]


class Conn:
    def __init__(self, args, number):
        self.args = args
        self.number = number
        rng = random.Random(f"{args.seed}:{number}")
        self.rng = rng
        self.fault = rng.choice(FAULTS) if rng.random() < args.fault_rate else "none"
        self.offset = rng.randrange(args.max_offset)
        self.stall = rng.uniform(0.2, args.stall_max)
        self.xor = rng.randrange(1, 256)
        self.sent = 0
        self.done = False
        self.fired = False


async def pump_up(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


async def pump_down(c, reader, writer):
    """Server to client, with the connection's fault applied once at its offset."""
    if c.fault == "delay":
        await asyncio.sleep(c.stall)
        c.fired = True
    while True:
        data = await reader.read(65536)
        if not data:
            break
        if c.fired or c.fault in ("none", "delay") or c.sent + len(data) <= c.offset:
            writer.write(data)
            c.sent += len(data)
            await writer.drain()
            continue
        cut = c.offset - c.sent
        head, tail = data[:cut], data[cut:]
        writer.write(head)
        c.sent += len(head)
        await writer.drain()
        c.fired = True
        if c.fault == "reset":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return
        if c.fault == "truncate":
            writer.close()
            return
        if c.fault == "halfclose":
            if writer.can_write_eof():
                writer.write_eof()
            # Keep reading the client until it gives up; forward nothing more.
            return "halfclosed"
        if c.fault == "stall":
            await asyncio.sleep(c.stall)
        elif c.fault == "duplicate":
            tail = tail[:1] + tail
        elif c.fault == "flip":
            tail = bytes([tail[0] ^ c.xor]) + tail[1:]
        writer.write(tail)
        c.sent += len(tail)
        await writer.drain()
    if writer.can_write_eof():
        writer.write_eof()


async def handle(args, counter, client_reader, client_writer):
    number = counter[0]
    counter[0] += 1
    c = Conn(args, number)
    host, port = args.upstream.rsplit(":", 1)
    try:
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
    except OSError:
        client_writer.close()
        return
    up = asyncio.ensure_future(pump_up(client_reader, up_writer))
    try:
        result = await pump_down(c, up_reader, client_writer)
        if result == "halfclosed":
            await asyncio.wait_for(up, timeout=args.halfclose_hold)
        else:
            await asyncio.wait_for(up, timeout=5)
    except (ConnectionError, OSError, asyncio.TimeoutError):
        pass
    finally:
        up.cancel()
        for w in (up_writer, client_writer):
            try:
                w.close()
            except Exception:  # noqa: BLE001 - closing a reset socket may fail; nothing to do
                pass
        with open(args.log, "a") as f:
            f.write(json.dumps({"seed": args.seed, "conn": number, "fault": c.fault, "offset": c.offset,
                                "fired": c.fired, "sentBytes": c.sent,
                                "stallSeconds": round(c.stall, 2) if c.fault in ("stall", "delay") else None})
                    + "\n")


async def watch_parent():
    parent = os.getppid()
    while os.getppid() == parent:
        await asyncio.sleep(0.5)
    os._exit(0)


async def main_async(args):
    counter = [0]
    host, port = args.listen.rsplit(":", 1)
    server = await asyncio.start_server(lambda r, w: handle(args, counter, r, w), host, int(port))
    print("listening", server.sockets[0].getsockname()[1], flush=True)
    asyncio.ensure_future(watch_parent())
    async with server:
        await server.serve_forever()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--upstream", required=True, help="HOST:PORT")
    ap.add_argument("--seed", required=True)
    ap.add_argument("--fault-rate", type=float, default=0.5)
    ap.add_argument("--max-offset", type=int, default=1 << 20)
    ap.add_argument("--stall-max", type=float, default=2.0)
    ap.add_argument("--halfclose-hold", type=float, default=5.0)
    ap.add_argument("--log", default=os.devnull)
    args = ap.parse_args()
    try:
        asyncio.run(main_async(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
