#!/usr/bin/python3
"""permessage-deflate benchmark (not a test): memory per idle compressed
connection and echo throughput with compression on and off.

    /usr/bin/python3 tests/bench/deflate_rss.py [--conns 500] [--seconds 2] [--clients 8]
    /usr/bin/python3 tests/bench/deflate_rss.py --row wspush|node|tornado [--conns 1000] [--bin B]

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

--row SERVER is the mode tests/bench/run.sh uses for its "RSS per compressed
connection" rows: the same RSS measurement, but on the echo demo of the
benchmark (route /ws: "Welcome", then "new message :" + message), so that the
peers run the same application: wspush handlers/echo.lua (--bin, default
$WSPUSH_BIN or build/wspush), node tests/bench/peers/node_echo.js, Tornado
tests/bench/peers/tornado_demo.py (the peers with WS_DEFLATE=1 for the
compressed modes). Modes: wspush off (the client offers nothing), defaults,
--compression-context (with --compression-max-memory 0); peers off and on (their defaults when enabled: context
takeover both ways). One run per mode (run.sh repeats); --server-cpu pins the
server. It prints one line:

    RESULT server=wspush conns=N plain_b=.. deflate_b=.. context_b=..
"""
import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import time
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))

import rawws  # noqa: E402
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


# --- --row: the benchmark's echo demo, on wspush and its peers -----------------------------

ROOT = HERE.parents[1]
OFFER = "permessage-deflate; client_max_window_bits"
LISTEN_RE = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")


class DemoServer:
    """wspush (handlers/echo.lua), node_echo.js or tornado_demo.py, with stderr to a file."""

    def __init__(self, kind, args, deflate, binary, cpu, logdir):
        env = dict(os.environ, WS_DEFLATE="1" if deflate else "0",
                   NODE_PATH=os.environ.get("NODE_PATH", "/usr/share/nodejs"))
        if kind == "wspush":
            cmd = [str(binary), "--host", "127.0.0.1", "--port", "0", *args,
                   str(ROOT / "handlers" / "echo.lua")]
        elif kind == "node":
            cmd = ["node", str(HERE / "peers" / "node_echo.js"), "0"]
        elif kind == "tornado":
            cmd = ["/usr/bin/python3", str(HERE / "peers" / "tornado_demo.py"), "0"]
        else:
            raise SystemExit("unknown server %r" % kind)
        self.logf = open(os.path.join(logdir, "%s.log" % kind), "w+")
        pre = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self.logf, env=env, preexec_fn=pre)
        deadline = time.monotonic() + 15
        self.port = None
        while time.monotonic() < deadline and self.proc.poll() is None:
            self.logf.seek(0)
            m = LISTEN_RE.search(self.logf.read())
            if m:
                self.port = int(m.group(1))
                break
            time.sleep(0.05)
        if self.port is None:
            self.stop()
            self.logf.seek(0)
            raise SystemExit("%s did not start: %s" % (kind, self.logf.read()[-2000:]))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.logf.close()


def demo_conn(port, offer, msg):
    """Upgrade on /ws, read the greeting, exchange msg (compressed if negotiated)."""
    c = rawws.Conn(port, timeout=10)
    r = c.handshake("/ws", headers={"Sec-WebSocket-Extensions": offer} if offer else None)
    assert r.status == 101, r
    ext = r.header("Sec-WebSocket-Extensions")
    # One inflater for the connection: peers keep their context (and compress even "Welcome").
    inflater = zlib.decompressobj(-15)

    def read():
        f = c.recv_frame(10)
        return (inflater.decompress(f.payload + TAIL) if f.rsv & 4 else f.payload), f
    greeting, _ = read()
    assert greeting == b"Welcome", greeting
    if ext:
        m = re.search(r"client_max_window_bits=(\d+)", ext)
        co = zlib.compressobj(6, zlib.DEFLATED, -int(m.group(1)) if m else -15)
        z = co.compress(msg) + co.flush(zlib.Z_SYNC_FLUSH)
        c.send_frame(rawws.OP_TEXT, z[:-4], rsv=4)
    else:
        c.send_frame(rawws.OP_TEXT, msg)
    data, f = read()
    assert data == b"new message :" + msg, "bad echo"
    return c, ext, bool(f.rsv & 4)


def row(a):
    """One run of each mode for one server; prints the RESULT line for run.sh."""
    import tempfile
    if a.row == "wspush":
        modes = [("plain", [], False, None), ("deflate", [], True, OFFER),
                 # No cap on zlib memory: at the default 256m cap, ~870 context connections
                 # fill the budget and the next compressed message is answered with close 1013.
                 ("context", ["--compression-context", "--compression-max-memory", "0"], True, OFFER)]
    else:
        modes = [("plain", [], False, None), ("deflate", [], True, OFFER)]
    out = {"server": a.row, "conns": a.conns}
    with tempfile.TemporaryDirectory(prefix="wsrss.") as logdir:
        for key, args, deflate, offer in modes:
            s = DemoServer(a.row, args, deflate, a.bin, a.server_cpu, logdir)
            held = []
            try:
                for i in range(20):
                    held.append(demo_conn(s.port, offer, payload_16k(i))[0])
                time.sleep(0.5)
                before = rss(s.proc.pid)
                ext = compressed = None
                for i in range(a.conns):
                    c, ext, compressed = demo_conn(s.port, offer, payload_16k(i))
                    held.append(c)
                time.sleep(0.5)
                after = rss(s.proc.pid)
            finally:
                for c in held:
                    c.close()
                s.stop()
            if offer and not (ext and compressed):
                raise SystemExit("%s %s: compression was not used (negotiated: %r)" % (a.row, key, ext))
            per = (after - before) / a.conns
            out["%s_b" % key] = "%.0f" % per
            print("%s %-8s %8.0f bytes/conn  (negotiated: %s)" % (a.row, key, per, ext), flush=True)
    print("RESULT " + " ".join("%s=%s" % kv for kv in out.items()), flush=True)


async def echo_client(url, compression, seconds, msg):
    import websockets
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
    ap.add_argument("--row", choices=["wspush", "node", "tornado"],
                    help="run.sh mode: RSS per connection on the echo demo of this server")
    ap.add_argument("--bin", default=str(BIN), help="wspush binary for --row wspush")
    ap.add_argument("--server-cpu", type=int, default=None, help="pin the server (--row)")
    ap.add_argument("--client-cpu", type=int, default=None, help="pin this client (--row)")
    a = ap.parse_args()
    if a.row:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if a.conns + 100 > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, a.conns + 200), hard))
        if a.client_cpu is not None:
            os.sched_setaffinity(0, {a.client_cpu})
        return row(a)
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
