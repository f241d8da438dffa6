#!/usr/bin/python3
"""Benchmark (not a test) of wspush.redis: the echo demo's reply with one Redis
GET per message, beside the plain echo, in the same run and the same server.

    /usr/bin/python3 tests/bench/redis.py [--conns 100] [--inflight 1] [--duration 3]
                                          [--runs 2] [--wspush BIN] [--wsbench BIN]

A redis-server of its own (Debian's /usr/bin/redis-server, on a free loopback
port, no persistence; tests/integration/redislib.py) holds bench:prefix =
"new message :". One wspush serves scripts/redis_echo.lua: /plain answers
"new message :" .. msg at once, /redis reads the prefix with
r:call("GET", "bench:prefix") first. wsbench echo (--conns connections,
--inflight messages in flight each, 32-byte payloads, 1 s warm-up, --duration
measured seconds) runs against /plain and /redis in turn, --runs times,
alternating so that background load is shared. wspush is pinned to core 0,
wsbench and redis-server to core 1. Afterwards Redis's own counters say how many
GETs it served and how many connections wspush made (one is expected).

Prints, for each path, messages per second, p50 and p99 latency (medians over
runs), the ratio /redis / /plain, and one RESULT line. Bounded: every wsbench
has a hard timeout, and the defaults take about 25 s in all.
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
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from redislib import MISSING, REDIS_SERVER, RedisServer  # noqa: E402
from benchlib import Wspush, pinned  # noqa: E402


class Server(Wspush):
    """wspush on the bench script."""

    def __init__(self, binary, script, cpu, env):
        super().__init__(pinned(cpu, [binary, "--host", "127.0.0.1", "--port", "0", "--no-watch",
                                      "--ping-interval", "0", str(script)]),
                         env=env, error=SystemExit)


def wsbench_echo(a, server, path):
    argv = pinned(1, [a.wsbench, "echo", "--port", str(server.port), "--path", path,
                      "-c", str(a.conns), "-k", str(a.inflight), "-s", "32",
                      "-d", str(a.duration), "-w", "1", "--timeout", "10",
                      "--pid", str(server.proc.pid)])
    out = subprocess.run(argv, capture_output=True, text=True, timeout=a.duration + 40)
    m = re.search(r"^RESULT mode=echo .*$", out.stdout, re.M)
    if not m:
        raise SystemExit("wsbench failed on %s: %s %s\nserver log:\n%s"
                         % (path, out.stdout[-800:], out.stderr[-800:], server.text()[-2000:]))
    fields = dict(kv.split("=", 1) for kv in m.group(0).split()[1:])
    if fields["failed"] != "0" or fields["lost"] != "0":
        raise SystemExit("wsbench on %s: %s connections failed, %s lost:\n%s\nserver log:\n%s"
                         % (path, fields["failed"], fields["lost"], out.stdout[-800:],
                            server.text()[-2000:]))
    return float(fields["rate"]), float(fields["p50_us"]), float(fields["p99_us"])


def fmt_rate(x):
    return "%.1f k" % (x / 1000) if x >= 10000 else "%.0f" % x


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--conns", type=int, default=100)
    ap.add_argument("--inflight", type=int, default=1)
    ap.add_argument("--duration", type=float, default=3)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--wspush", default=os.environ.get("WSPUSH_BIN") or str(ROOT / "build" / "wspush"))
    ap.add_argument("--wsbench", default=str(ROOT / "build" / "tests" / "bench" / "wsbench"))
    a = ap.parse_args()
    if not REDIS_SERVER.exists():
        raise SystemExit(MISSING)
    for b in (a.wspush, a.wsbench):
        if not os.access(b, os.X_OK):
            raise SystemExit("%s is missing: build with -DWSPUSH_BENCH=ON (see tests/bench/README.md)" % b)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2 * a.conns + 200
    if hard != resource.RLIM_INFINITY and hard < want:
        raise SystemExit("descriptor limit %d is below the %d this needs" % (hard, want))
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    workdir = tempfile.mkdtemp(prefix="wspush-redis-bench-")
    rs = RedisServer(workdir)
    server = None
    try:
        rs.start()
        if shutil.which("taskset") and os.cpu_count() > 1:
            subprocess.run(["taskset", "-a", "-cp", "1", str(rs.proc.pid)], capture_output=True)
        ctl = rs.client(timeout=10)  # open throughout: the connection count is wspush's only
        ctl.call("SET", "bench:prefix", "new message :")
        ctl.call("CONFIG", "RESETSTAT")
        conns_before = ctl.connections_received()
        env = dict(os.environ, REDIS_URL=rs.url)
        server = Server(a.wspush, HERE / "scripts" / "redis_echo.lua", 0, env)
        res = {"/plain": [], "/redis": []}
        for run in range(a.runs):
            for path in ("/plain", "/redis"):
                res[path].append(wsbench_echo(a, server, path))
                rate, p50, p99 = res[path][-1]
                print("run %d %-7s %9.0f msg/s  p50 %8.1f us  p99 %8.1f us"
                      % (run + 1, path, rate, p50, p99), flush=True)
        gets = ctl.command_calls().get("get", 0)
        wspush_conns = ctl.connections_received() - conns_before
        ctl.close()
    finally:
        if server:
            server.stop()
        rs.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    med = {p: [statistics.median(x[i] for x in res[p]) for i in range(3)] for p in res}
    plain, redis = med["/plain"], med["/redis"]
    print()
    print("echo, %d conns, %d in flight each, 32 B; medians of %d run(s) of %g s"
          % (a.conns, a.inflight, a.runs, a.duration))
    print()
    print("| path | messages/s | p50 latency | p99 latency |")
    print("|---|---|---|---|")
    print("| echo (`/plain`) | %s | %.0f us | %.0f us |" % (fmt_rate(plain[0]), plain[1], plain[2]))
    print("| echo + one Redis GET (`/redis`) | %s | %.0f us | %.0f us |"
          % (fmt_rate(redis[0]), redis[1], redis[2]))
    print("| GET / plain | %.2f | %.2f | %.2f |"
          % (redis[0] / plain[0], redis[1] / plain[1], redis[2] / plain[2]))
    print()
    print("Redis served %d GETs over %d connection(s) from wspush" % (gets, wspush_conns))
    print("RESULT conns=%d inflight=%d plain_rate=%.0f redis_rate=%.0f rate_ratio=%.2f "
          "plain_p99_us=%.1f redis_p99_us=%.1f p99_ratio=%.2f redis_gets=%d redis_conns=%d"
          % (a.conns, a.inflight, plain[0], redis[0], redis[0] / plain[0], plain[2], redis[2],
             redis[2] / plain[2], gets, wspush_conns))


if __name__ == "__main__":
    sys.exit(main())
