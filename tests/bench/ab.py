#!/usr/bin/python3
"""Benchmark (not a test): two wspush builds, same scenario, alternating, so
that a change's effect on the rate shows through this machine's drift.

    /usr/bin/python3 tests/bench/ab.py BEFORE_BIN AFTER_BIN [--pairs 6] [--seconds 3]
                                       [--scenario echo16|echo1|fanout] [--wsbench BIN]

Each pair runs a fresh BEFORE server and a fresh AFTER server (pinned to core
0; wsbench on core 1), one after the other, with the order swapped every
pair. The rates drift by about a quarter from one run to the next here, so
the figure is the ratio after / before within each pair, and their median.
Scenarios: echo16 (100 connections x 16 in flight, 32 B, handlers/echo.lua),
echo1 (100 x 1), fanout (1000 subscribers, 8 publishes in flight, 64 B,
scripts/fanout.lua).
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
LISTEN_RE = re.compile(rb"listening on http://127\.0\.0\.1:(\d+)")
SCENARIOS = {
    "echo16": (ROOT / "handlers" / "echo.lua", ["echo", "-c", "100", "-k", "16", "-s", "32"]),
    "echo1": (ROOT / "handlers" / "echo.lua", ["echo", "-c", "100", "-k", "1", "-s", "32"]),
    "fanout": (HERE / "scripts" / "fanout.lua", ["fanout", "-c", "1000", "-k", "8", "-s", "64"]),
}


def pinned(cpu, argv):
    return (["taskset", "-c", str(cpu)] if shutil.which("taskset") and os.cpu_count() > 1 else []) + argv


def rate(binary, wsbench, scenario, seconds):
    script, args = SCENARIOS[scenario]
    log = open("/tmp/wspush-ab-%d.log" % os.getpid(), "w+b")
    proc = subprocess.Popen(pinned(0, [binary, "--host", "127.0.0.1", "--port", "0", "--no-watch",
                                       str(script)]), stdout=subprocess.DEVNULL, stderr=log)
    try:
        port = None
        deadline = time.monotonic() + 10
        while port is None and time.monotonic() < deadline and proc.poll() is None:
            log.seek(0)
            m = LISTEN_RE.search(log.read())
            if m:
                port = int(m.group(1))
            else:
                time.sleep(0.02)
        if port is None:
            raise SystemExit("%s did not start" % binary)
        out = subprocess.run(pinned(1, [wsbench] + args + ["--port", str(port), "-d", str(seconds)]),
                             capture_output=True, text=True, timeout=seconds + 60)
        m = re.search(r"^RESULT .*\brate=([0-9.]+)", out.stdout, re.M)
        if not m:
            raise SystemExit("wsbench failed: %s %s" % (out.stdout[-300:], out.stderr[-300:]))
        return float(m.group(1))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--pairs", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--scenario", choices=sorted(SCENARIOS), default="echo16")
    ap.add_argument("--wsbench", default=str(ROOT / "build" / "tests" / "bench" / "wsbench"))
    a = ap.parse_args()
    ratios = []
    for i in range(a.pairs):
        order = [("before", a.before), ("after", a.after)]
        if i % 2:
            order.reverse()
        got = {name: rate(b, a.wsbench, a.scenario, a.seconds) for name, b in order}
        ratios.append(got["after"] / got["before"])
        print("pair %d: before %.0f/s, after %.0f/s, after/before %.2f"
              % (i + 1, got["before"], got["after"], ratios[-1]), flush=True)
    print("RESULT scenario=%s pairs=%d median_ratio=%.2f min=%.2f max=%.2f"
          % (a.scenario, a.pairs, statistics.median(ratios), min(ratios), max(ratios)))


if __name__ == "__main__":
    sys.exit(main())
