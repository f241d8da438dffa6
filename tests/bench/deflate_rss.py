#!/usr/bin/python3
"""permessage-deflate benchmark (not a test): memory per idle compressed
connection and echo throughput with compression on and off.

    /usr/bin/python3 tests/bench/deflate_rss.py [--conns 500] [--seconds 2] [--clients 8]

Server: $WSPUSH_BIN or build/wspush (use a Release build; ASan RSS means
nothing), route /echo of tests/integration/scripts/deflate_app.lua.

RSS: a server is started per mode; 20 warm-up connections, then VmRSS is read,
--conns more connections are opened, each exchanges one 16 KB compressed
message each way (so zlib state has been used in both directions) and stays
open and idle; VmRSS is read again. (after - before) / conns is the figure.
Each mode runs 3 times (a fresh server each) and the median is printed.

Throughput: --clients python `websockets` clients, each sending a 4 KB JSON-like
text and awaiting its echo in a loop for --seconds. Messages per second and
payload MB/s over all clients; median of 3 runs. The python clients do their
own (de)compression, so the figures compare modes on one machine; they are
not the server's limit. The server's CPU time per echoed message
(utime+stime from /proc/PID/stat) is printed too: it does not depend on how
busy the client or the machine is.
"""
import argparse
import asyncio
import os
import statistics
import sys
import time
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))

import rawws  # noqa: E402
import websockets  # noqa: E402
from conftest import BIN, SCRIPTS, Server  # noqa: E402

APP = SCRIPTS / "deflate_app.lua"
TAIL = b"\x00\x00\xff\xff"


def rss(pid):
    with open("/proc/%d/status" % pid) as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def payload_16k(i):
    words = b"event user_id timestamp payload status ok error retry channel message "
    return (words * 240)[:16000] + str(i).encode()


def one_conn(port, offer, msg):
    c = rawws.Conn(port, timeout=10)
    r = c.handshake("/echo", headers={"Sec-WebSocket-Extensions": offer} if offer else None)
    assert r.status == 101, r
    ext = r.header("Sec-WebSocket-Extensions")
    if ext:
        co = zlib.compressobj(6, zlib.DEFLATED, -15)
        z = co.compress(msg) + co.flush(zlib.Z_SYNC_FLUSH)
        c.send_binary(z[:-4], rsv=4)
    else:
        c.send_binary(msg)
    f = c.recv_frame(10)
    data = zlib.decompressobj(-15).decompress(f.payload + TAIL) if f.rsv & 4 else f.payload
    assert data == msg, "bad echo"
    return c, ext


def rss_per_conn(args, offer, conns):
    s = Server(APP, list(args))
    held = []
    try:
        for i in range(20):
            held.append(one_conn(s.port, offer, payload_16k(i))[0])
        before = rss(s.proc.pid)
        ext = None
        for i in range(conns):
            c, ext = one_conn(s.port, offer, payload_16k(i))
            held.append(c)
        after = rss(s.proc.pid)
        return (after - before) / conns, ext
    finally:
        for c in held:
            c.close()
        s.stop()


async def echo_client(url, compression, seconds, msg):
    n = 0
    async with websockets.connect(url, compression=compression, max_size=None,
                                  ping_interval=None, open_timeout=10) as ws:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await ws.send(msg)
            got = await asyncio.wait_for(ws.recv(), 10)
            assert len(got) == len(msg)
            n += 1
    return n


def cpu_seconds(pid):
    """utime + stime of a process, from /proc/PID/stat."""
    with open("/proc/%d/stat" % pid) as fh:
        f = fh.read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def throughput(args, compression, clients, seconds):
    s = Server(APP, list(args))
    try:
        msg = "".join('{"type":"tick","symbol":"ABC%d","price":%d.25,"size":100,"venue":"X",'
                      '"flags":["a","b"]}' % (i % 7, 100 + i) for i in range(60))[:4096]

        async def run():
            return await asyncio.gather(*[echo_client(s.url + "/echo", compression, seconds,
                                                      msg.replace("ABC", "A%02d" % k))
                                          for k in range(clients)])
        cpu0 = cpu_seconds(s.proc.pid)
        counts = asyncio.run(asyncio.wait_for(run(), seconds + 30))
        cpu = cpu_seconds(s.proc.pid) - cpu0
        total = sum(counts)
        return total / seconds, total * len(msg) / seconds / 1e6, cpu / max(total, 1) * 1e6
    finally:
        s.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--conns", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    print("server: %s" % BIN)
    if "asan" in str(BIN):
        print("warning: a sanitizer build; RSS figures are not meaningful")

    print("\n== RSS per idle connection (%d connections, one 16 KB compressed message each way; "
          "median of %d runs) ==" % (a.conns, a.runs))
    modes = [
        ("no compression (baseline)", ["--no-compression"], "permessage-deflate"),
        ("defaults (no context takeover)", [], "permessage-deflate; client_max_window_bits"),
        ("--compression-window 10", ["--compression-window", "10"], "permessage-deflate"),
        ("--compression-context", ["--compression-context"], "permessage-deflate; client_max_window_bits"),
        ("--compression-context --compression-window 10 --compression-memlevel 4",
         ["--compression-context", "--compression-window", "10", "--compression-memlevel", "4"],
         "permessage-deflate; client_max_window_bits"),
    ]
    base = None
    for name, args, offer in modes:
        vals, ext = [], None
        for _ in range(a.runs):
            v, ext = rss_per_conn(args, offer, a.conns)
            vals.append(v)
        med = statistics.median(vals)
        if base is None:
            base = med
        print("  %-72s %8.1f KiB/conn  (+%.1f KiB over baseline; runs: %s)\n      negotiated: %s"
              % (name, med / 1024, (med - base) / 1024, ", ".join("%.1f" % (v / 1024) for v in vals), ext))

    print("\n== echo throughput: %d python websockets clients, 4 KB JSON text, %.0f s; median of %d runs =="
          % (a.clients, a.seconds, a.runs))
    for name, args, comp in [("compression off (client offers nothing)", [], None),
                             ("compression on, defaults", [], "deflate"),
                             ("compression on, --compression-context", ["--compression-context"], "deflate")]:
        res = [throughput(args, comp, a.clients, a.seconds) for _ in range(a.runs)]
        mps = statistics.median(r[0] for r in res)
        mbs = statistics.median(r[1] for r in res)
        us = statistics.median(r[2] for r in res)
        print("  %-44s %9.0f msg/s %7.1f MB/s  server CPU %6.1f us/msg  (runs: %s msg/s)"
              % (name, mps, mbs, us, ", ".join("%.0f" % r[0] for r in res)))


if __name__ == "__main__":
    main()
