#!/usr/bin/python3
"""Benchmark (not a test) of handlers that wait: what a waiting handler costs
in memory, and what an upgrade that asks an auth service costs in rate.

    /usr/bin/python3 tests/bench/waiting.py [--conns 10000] [--upgrades 5000] [--runs 3]
                                            [--wspush BIN] [--wsbench BIN]

Memory: a fresh server per run holds --conns connections (wsbench hold, which
reads the server's VmRSS before and after). With scripts/held.lua each
connection only greets; with scripts/sleepers.lua its open() greets and then
waits in wspush.sleep(600), so each one holds a waiting handler (a coroutine,
its task and its timer). The difference of the two medians is the memory of
one waiting handler.

Rate: --upgrades connections are opened, 64 handshakes at a time (wsbench hold
--concurrency 64), against scripts/held.lua (no upgrade hook) and against
scripts/auth_upgrade.lua, whose upgrade(req) asks an auth service over HTTP
with wspush.fetch (keep-alive, pooled) and fills conn.data from its JSON; the
auth service is a second wspush serving scripts/auth_server.lua. Upgrades per
second, median of --runs. The server under test is pinned to core 0, the
generator and the auth service to core 1. Runs alternate between the two
scripts so that background load is shared. Prints one RESULT line.
"""
import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
from pathlib import Path

from benchlib import Wspush, pinned

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
class Server(Wspush):
    def __init__(self, binary, script, cpu, env=None):
        super().__init__(
            pinned(cpu, [binary, "--host", "127.0.0.1", "--port", "0", "--no-watch",
                         "--max-connections", "200000", "--ping-interval", "0", str(script)]),
            env=env, log=open("/tmp/wspush-waiting-bench-%d.log" % os.getpid(), "w+b"),
            error=SystemExit, what="server")


def wsbench_hold(wsbench, server, conns, extra):
    out = subprocess.run(
        pinned(1, [wsbench, "hold", "--port", str(server.port), "-c", str(conns), "--pid",
                   str(server.proc.pid), "--hold", "0.5", "--timeout", "60"] + extra),
        capture_output=True, text=True, timeout=300)
    m = re.search(r"^RESULT .*$", out.stdout, re.M)
    if not m:
        raise SystemExit("wsbench failed: %s %s" % (out.stdout[-500:], out.stderr[-500:]))
    fields = dict(kv.split("=", 1) for kv in m.group(0).split()[1:])
    if fields["ok"] != str(conns):
        raise SystemExit("wsbench: %s of %d connections: %s" % (fields["ok"], conns, out.stdout[-300:]))
    return fields


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--upgrades", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--wspush", default=os.environ.get("WSPUSH_BIN") or str(ROOT / "build" / "wspush"))
    ap.add_argument("--wsbench", default=str(ROOT / "build" / "tests" / "bench" / "wsbench"))
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2 * max(a.conns, a.upgrades) + 200
    if hard != resource.RLIM_INFINITY and hard < want:
        raise SystemExit("descriptor limit %d is below the %d this needs" % (hard, want))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    env = dict(os.environ)

    mem = {"held": [], "sleepers": []}
    for run in range(a.runs):
        for name in ("held", "sleepers"):
            s = Server(a.wspush, HERE / "scripts" / (name + ".lua"), 0, env)
            try:
                r = wsbench_hold(a.wsbench, s, a.conns, [])
                mem[name].append(float(r["rss_per_conn_b"]))
            finally:
                s.stop()
            print("memory run %d %-8s %6.0f bytes per connection" % (run + 1, name, mem[name][-1]),
                  flush=True)

    auth = Server(a.wspush, HERE / "scripts" / "auth_server.lua", 1, env)
    rate = {"plain": [], "auth": []}
    try:
        env_auth = dict(env, WSPUSH_AUTH_URL="http://127.0.0.1:%d/auth" % auth.port)
        for run in range(a.runs):
            for name, script in (("plain", "held.lua"), ("auth", "auth_upgrade.lua")):
                s = Server(a.wspush, HERE / "scripts" / script, 0, env_auth)
                try:
                    r = wsbench_hold(a.wsbench, s, a.upgrades, ["--concurrency", "64"])
                    rate[name].append(float(r["connect_rate"]))
                finally:
                    s.stop()
                print("rate run %d %-6s %7.0f upgrades/s" % (run + 1, name, rate[name][-1]),
                      flush=True)
    finally:
        auth.stop()

    held, sleep = statistics.median(mem["held"]), statistics.median(mem["sleepers"])
    plain, authed = statistics.median(rate["plain"]), statistics.median(rate["auth"])
    print("RESULT conns=%d held_b=%.0f sleeping_b=%.0f per_waiting_handler_b=%.0f "
          "upgrades=%d plain_per_s=%.0f auth_per_s=%.0f auth_ratio=%.2f"
          % (a.conns, held, sleep, sleep - held, a.upgrades, plain, authed, authed / plain))


if __name__ == "__main__":
    sys.exit(main())
