#!/usr/bin/python3
"""Idle memory per connection after use (issue 21), a benchmark, not a test.

For each count of --conns and each server, a fresh server on the echo demo
(/ws: "Welcome", then "new message :" + message) holds that many
connections from wsbench (`wsbench hold --exchange`: the upgrades, 5 s idle,
then one message each way and a ping per connection, 5 s idle again) and the
server's VmRSS gives two figures per connection: right after the handshakes
and after the use. Servers: wspush (handlers/echo.lua, --bin, default
$WSPUSH_BIN or build/wspush; use a Release or RelWithDebInfo build),
the same with `--ping-interval 2` (the server pings every idle connection
every 2 s, so it is never idle for long), and node `ws`
(tests/bench/peers/node_echo.js, which sends no pings) as the in-run
reference. Each runs --runs times (a fresh process each, interleaved); the
medians are printed.

    /usr/bin/python3 tests/bench/idle_rss.py [--conns 10000,19800] [--runs 3]
        [--servers wspush,wspush-ping2,node] [--bin B] [--wsbench W]

Counts above the descriptor limit (less 200) are lowered to it. Only
127.0.0.0/8 is contacted (wsbench's sources 127.0.0.1-4).
"""
import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from deflate_rss import DemoServer  # noqa: E402  (the same servers on the same demo)

ROOT = HERE.parents[1]
SERVERS = {
    "wspush": ("wspush", []),
    "wspush-ping2": ("wspush", ["--ping-interval", "2"]),
    "node": ("node", []),
}
FIELDS = ("rss_handshake_b", "rss_exchange_b")


def hold(wsbench, server, conns):
    """One wsbench hold --exchange against server: {field: bytes per connection}."""
    out = subprocess.run([wsbench, "hold", "--port", str(server.port), "-c", str(conns),
                          "--pid", str(server.proc.pid), "--hold", "5", "--exchange"],
                         capture_output=True, text=True, timeout=300)
    m = re.search(r"^RESULT .*", out.stdout, re.M)
    if not m or " ok=%d " % conns not in m.group(0):
        raise SystemExit("wsbench hold failed: %s" % (out.stdout + out.stderr)[-800:])
    return {f: int(re.search(r"\b%s=(\d+)" % f, m.group(0)).group(1)) for f in FIELDS}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--conns", default="10000,19800")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--servers", default=",".join(SERVERS))
    ap.add_argument("--bin", default=os.environ.get("WSPUSH_BIN", str(ROOT / "build" / "wspush")))
    ap.add_argument("--wsbench", default=str(ROOT / "build" / "tests" / "bench" / "wsbench"))
    a = ap.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by the servers and wsbench
    names = [s for s in a.servers.split(",") if s]
    for s in names:
        if s not in SERVERS:
            raise SystemExit("unknown server %r (have %s)" % (s, ", ".join(SERVERS)))
    if "node" in names and not shutil.which("node"):
        print("node not found: skipping node ws")
        names.remove("node")
    counts = []
    for c in a.conns.split(","):
        n = min(int(c), hard - 200)
        if n != int(c):
            print("descriptor limit %d: holding %d connections instead of %s" % (hard, n, c))
        counts.append(n)
    figures = {}
    with tempfile.TemporaryDirectory() as logdir:
        for n in counts:
            for run in range(a.runs):
                for name in names:
                    kind, args = SERVERS[name]
                    srv = DemoServer(kind, ["--no-watch", *args], False,
                                     a.bin, None, logdir)
                    try:
                        r = hold(a.wsbench, srv, n)
                    finally:
                        srv.stop()
                    print("run %d, %s, %d held: %d B after the handshakes, %d B after use" % (
                        run + 1, name, n, r["rss_handshake_b"], r["rss_exchange_b"]), flush=True)
                    for f in FIELDS:
                        figures.setdefault((n, name, f), []).append(r[f])
    print("\nRSS per idle connection, medians of %d (bytes)" % a.runs)
    print("| held | server | after the handshakes | after a message each way and a ping |")
    print("|---|---|---|---|")
    for n in counts:
        for name in names:
            h, x = (statistics.median(figures[(n, name, f)]) for f in FIELDS)
            print("| %d | %s | %.0f | %.0f |" % (n, name, h, x))
    for n in counts:
        print("RESULT conns=%d %s" % (n, " ".join(
            "%s_%s=%.0f" % (name.replace("-", "_"), f, statistics.median(figures[(n, name, f)]))
            for name in names for f in FIELDS)))


if __name__ == "__main__":
    main()
