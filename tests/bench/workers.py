#!/usr/bin/python3
"""Benchmark (not a test) of `wspush --workers N`: how connections spread over the workers with
one SO_REUSEPORT socket per worker (the default) against one listening socket shared by all of
them (WSPUSH_SHARED_LISTENER=1), and fan-out with 1 worker against 2 in the same run. Prints
figures only; it asserts nothing and exits 0 whenever it could print them.

    /usr/bin/python3 tests/bench/workers.py [--quick] [--runs 3] [--conns 10000]
                                            [--only spread,fanout] [--wspush BIN] [--wsbench BIN]

No process is pinned: on a 2-core machine 2 workers need both cores, so the load generator
(this script for the spread, wsbench for the fan-out) shares the cores with the server. Every
server is fresh (--no-watch --ping-interval 0: idle means idle) and runs from a private copy of
the binary (the supervisor starts its workers from its executable's path, so a rebuild during
the run would hand them another one); only 127.0.0.0/8 is contacted. Every phase is bounded
(per-connection timeouts, a connect deadline, wsbench's own deadlines and a subprocess timeout).

spread   --workers 2 on scripts/workers_spread.lua, per listener mode (reuseport, shared), --runs
         times, the modes alternating. First --slow connections (200) are opened one at a time,
         --slow-gap ms (5) apart, each waiting for its greeting ("slowly"); then --conns (10,000)
         are opened by asyncio with --concurrency (200) handshakes in progress at once, from
         127.0.0.1-127.0.0.4 ("quickly"), and all are held. The greeting of every connection names
         its worker ("w<id> <count>"), so the tally is client-side and exact; then GET /who over
         fresh HTTP connections (until every worker id was seen, 200 at most) asks each worker
         its wspush.count() as a cross-check. Per mode: connections per worker and the imbalance
         max / mean (1.00 = even, 2.00 = all on one of 2 workers); medians over runs.
fanout   1,000 subscribers of scripts/fanout.lua, one publisher on /pub that keeps --inflight
         publishes of 64 B in flight (wsbench fanout: 8 and 64, run.sh's fanout and fanout64), for
         --workers 1 (the plain single process) and --workers 2 (supervisor + 2 workers; a publish
         reaches the other worker through its mailbox), alternating, --runs times: deliveries/s
         and p99 delivery latency (wsbench: publisher's send time in the payload to receipt), and
         server CPU per delivery: utime + stime of the supervisor and every worker (children found
         by ppid in /proc/*/stat), sampled every 50 ms, over the inside of wsbench's measured
         window (its last --duration seconds before it exits, 0.3 s trimmed at each end), divided
         by deliveries in that time. With 1 worker wsbench's own --pid figure is printed beside it
         as a check of the method. Subscribers per worker are counted from /proc/PID/fd.
"""
import argparse
import asyncio
import base64
import json
import os
import resource
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchlib import Wspush

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")
IP_BIND_ADDRESS_NO_PORT = 24  # linux/in.h
SOURCES = ["127.0.0.%d" % i for i in range(1, 5)]
MODES = {"reuseport": "a socket per worker, SO_REUSEPORT (default)",
         "shared": "one shared socket (WSPUSH_SHARED_LISTENER=1)"}


# --- server -----------------------------------------------------------------------------------

def stat_fields(pid):
    """Fields of /proc/PID/stat after the command: [state, ppid, ...], or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    return s[s.rindex(")") + 2:].split()


def cpu_ticks(pid):
    f = stat_fields(pid)
    return int(f[11]) + int(f[12]) if f else 0  # utime, stime


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            f = stat_fields(int(d))
            if f and int(f[1]) == pid:
                out.append(int(d))
    return sorted(out)


def socket_fds(pid):
    n = 0
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                if os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("socket:"):
                    n += 1
            except OSError:
                pass
    except OSError:
        return -1
    return n


class Server(Wspush):
    def __init__(self, a, script, workers, shared=False):
        env = dict(os.environ)
        env.pop("WSPUSH_SHARED_LISTENER", None)
        if shared:
            env["WSPUSH_SHARED_LISTENER"] = "1"
        argv = [a.wspush, "--host", "127.0.0.1", "--port", "0", "--no-watch", "--ping-interval",
                "0", "--shutdown-timeout", "2", "--max-connections", "200000", "--workers",
                str(workers), str(script)]
        super().__init__(argv, env=env, timeout=15)
        # The workers: children of the supervisor (none with --workers 1: one process).
        self.workers = []
        deadline = time.monotonic() + 10
        while workers > 1 and len(self.workers) < workers and time.monotonic() < deadline:
            self.workers = children(self.proc.pid)
            time.sleep(0.05)
        if workers > 1 and len(self.workers) != workers:
            self.stop()
            raise RuntimeError("found %d worker processes, not %d" % (len(self.workers), workers))
        self.pids = [self.proc.pid] + self.workers

    def cpu(self):
        return sum(cpu_ticks(p) for p in self.pids)


# --- figures ----------------------------------------------------------------------------------

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(v):
    if v is None:
        return "-"
    a = abs(v)
    return ("%.2f M" % (v / 1e6) if a >= 1e6 else "%.1f k" % (v / 1e3) if a >= 1e4
            else "%.0f" % v if a >= 100 else "%.1f" % v if a >= 10 else "%.2f" % v)


def ratio(x, y):
    return "%.2f" % (x / y) if x is not None and y else "-"


def imbalance(counts):
    tot = sum(counts)
    return max(counts) / (tot / len(counts)) if tot else None


# --- spread -----------------------------------------------------------------------------------

def upgrade_request(path):
    key = base64.b64encode(os.urandom(16)).decode()
    return ("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path, key)).encode()


def greeting(buf):
    """The worker id in a 101 response followed by the server's first text frame, None while
    incomplete; raises on anything else."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    if not buf.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(buf[:end].split(b"\r\n")[0].decode(errors="replace"))
    fr = buf[end + 4:]
    if len(fr) < 2 or len(fr) < 2 + (fr[1] & 0x7F):
        return None
    if fr[0] != 0x81 or (fr[1] & 0x7F) >= 126:
        raise RuntimeError("unexpected first frame %r" % fr[:8])
    text = fr[2:2 + (fr[1] & 0x7F)].decode()
    if not text.startswith("w"):
        raise RuntimeError("unexpected greeting %r" % text)
    return int(text[1:].split()[0])


async def open_ws(loop, port, src, path, timeout):
    """One WebSocket connection that received its greeting: (socket, worker id)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setblocking(False)
        try:
            s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        except OSError:
            pass
        s.bind((src, 0))

        async def go():
            await loop.sock_connect(s, ("127.0.0.1", port))
            await loop.sock_sendall(s, upgrade_request(path))
            buf = b""
            while True:
                chunk = await loop.sock_recv(s, 4096)
                if not chunk:
                    raise RuntimeError("closed before the greeting")
                buf += chunk
                w = greeting(buf)
                if w is not None:
                    return w
        w = await asyncio.wait_for(go(), timeout)
        return s, w
    except BaseException:
        s.close()
        raise


def abort(socks):
    """Close with RST (SO_LINGER 0): no TIME_WAIT, so runs do not use up the ports."""
    for s in socks:
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        s.close()


def who(port, workers, tries=200, deadline_s=10.0):
    """GET /who over fresh connections until every worker answered: {id: count}."""
    seen = {}
    deadline = time.monotonic() + deadline_s
    for _ in range(tries):
        if len(seen) >= workers or time.monotonic() > deadline:
            break
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"GET /who HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                buf = b""
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    buf += chunk
            body = json.loads(buf.split(b"\r\n\r\n", 1)[1])
            seen[body["worker"]] = body["count"]
        except (OSError, ValueError, KeyError, IndexError):
            continue
    return seen


async def spread_run(a, port, workers):
    loop = asyncio.get_running_loop()
    socks, slow, fast, errors = [], [0] * workers, [0] * workers, []

    async def connect(i, counts):
        """Open connection i and count it for the worker that greeted it; False on failure."""
        try:
            s, w = await open_ws(loop, port, SOURCES[i % len(SOURCES)], "/ws", a.timeout)
        except (OSError, RuntimeError, asyncio.TimeoutError) as e:
            errors.append(repr(e))
            return False
        socks.append(s)
        counts[w - 1] += 1
        return True

    try:
        # Slowly: one at a time, each greeted before the next starts.
        t0 = time.monotonic()
        for i in range(a.slow):
            if await connect(i, slow):
                await asyncio.sleep(a.slow_gap / 1000)
        slow_s = time.monotonic() - t0
        # Quickly: --concurrency handshakes in progress at once.
        sem = asyncio.Semaphore(a.concurrency)
        deadline = time.monotonic() + a.connect_deadline

        async def one(i):
            async with sem:
                if time.monotonic() > deadline:
                    errors.append("connect deadline")
                    return
                await connect(i, fast)
        t0 = time.monotonic()
        await asyncio.gather(*(one(i) for i in range(a.conns)))
        fast_s = time.monotonic() - t0
        held = len(socks)
        route = await loop.run_in_executor(None, who, port, workers)
        return dict(slow=slow, fast=fast, slow_s=slow_s, fast_s=fast_s, held=held, route=route,
                    errors=errors)
    finally:
        abort(socks)


def bench_spread(a, out):
    res = {m: [] for m in MODES}
    for run in range(a.runs):
        for mode in MODES:
            try:
                srv = Server(a, HERE / "scripts" / "workers_spread.lua", 2, mode == "shared")
            except RuntimeError as e:
                print("spread %s run %d: %s" % (mode, run + 1, e), flush=True)
                continue
            try:
                r = asyncio.run(spread_run(a, srv.port, 2))
            finally:
                time.sleep(0.3)  # let the workers take the resets before SIGTERM
                srv.stop()
            res[mode].append(r)
            total = [s + f for s, f in zip(r["slow"], r["fast"])]
            route = " ".join("w%d=%d" % kv for kv in sorted(r["route"].items()))
            agree = "agrees" if r["route"] and all(
                r["route"].get(i + 1) == total[i] for i in range(2)) else "differs"
            print("spread run %d %-9s quickly %5d conns in %5.1f s (%4.0f/s): w1 %5d  w2 %5d  "
                  "imbalance %.3f | slowly %d: w1 %d  w2 %d  imbalance %.2f | /who %s (%s)%s" % (
                      run + 1, mode, sum(r["fast"]), r["fast_s"], sum(r["fast"]) / r["fast_s"],
                      r["fast"][0], r["fast"][1], imbalance(r["fast"]) or 0, sum(r["slow"]),
                      r["slow"][0], r["slow"][1], imbalance(r["slow"]) or 0, route or "-", agree,
                      "; %d failed (%s)" % (len(r["errors"]), r["errors"][0][:80])
                      if r["errors"] else ""), flush=True)
    rows = []
    for mode, label in MODES.items():
        rs = res[mode]
        if not rs:
            continue
        w = [med([f(r["fast"]) for r in rs]) for f in (max, min)]
        sw = [med([f(r["slow"]) for r in rs]) for f in (max, min)]
        rows.append((label, "%.0f / %.0f" % tuple(w), "%.3f" % med([imbalance(r["fast"])
                                                                     for r in rs]),
                     "%.3f" % max(imbalance(r["fast"]) for r in rs),
                     "%.0f / %.0f" % tuple(sw), "%.2f" % med([imbalance(r["slow"]) for r in rs]),
                     fmt(med([sum(r["fast"]) / r["fast_s"] for r in rs])), str(len(rs))))
        out["spread_%s" % mode] = med([imbalance(r["fast"]) for r in rs])
        out["spread_slow_%s" % mode] = med([imbalance(r["slow"]) for r in rs])
    return rows


# --- fan-out ----------------------------------------------------------------------------------

class Sampler(threading.Thread):
    """(time, server CPU ticks) every 50 ms; subscribers per process once all are connected."""

    def __init__(self, srv, expect):
        super().__init__(daemon=True)
        self.srv, self.expect = srv, expect
        self.procs = srv.workers or [srv.proc.pid]
        self.base = [socket_fds(p) for p in self.procs]
        self.samples, self.subs = [], None
        self.stop_ev = threading.Event()

    def run(self):
        next_fds = 0.0
        while not self.stop_ev.is_set():
            now = time.monotonic()
            self.samples.append((now, self.srv.cpu()))
            if self.subs is None and now >= next_fds:
                n = [socket_fds(p) - b for p, b in zip(self.procs, self.base)]
                if sum(n) >= self.expect:
                    self.subs = n
                next_fds = now + 0.2
            self.stop_ev.wait(0.05)

    def at(self, t):
        """CPU ticks at time t, interpolated."""
        s = self.samples
        for (t0, c0), (t1, c1) in zip(s, s[1:]):
            if t0 <= t <= t1:
                return c0 + (c1 - c0) * (t - t0) / (t1 - t0) if t1 > t0 else c0
        return None


def fanout_once(a, n, k, run):
    try:
        srv = Server(a, HERE / "scripts" / "fanout.lua", n)
    except RuntimeError as e:
        print("fanout k=%d %d worker(s) run %d: %s" % (k, n, run + 1, e), flush=True)
        return None
    try:
        sm = Sampler(srv, a.subscribers + 1)
        sm.start()
        argv = [a.wsbench, "fanout", "--port", str(srv.port), "-c", str(a.subscribers), "-k",
                str(k), "-s", "64", "-d", str(a.duration), "-w", str(a.warmup), "--timeout", "30"]
        if n == 1:
            argv += ["--pid", str(srv.proc.pid)]
        try:
            p = subprocess.run(argv, capture_output=True, text=True,
                               timeout=a.duration + a.warmup + 60)
            t_exit = time.monotonic()
        except subprocess.TimeoutExpired:
            print("fanout k=%d %d worker(s) run %d: wsbench timed out" % (k, n, run + 1),
                  flush=True)
            return None
        finally:
            sm.stop_ev.set()
            sm.join()
    finally:
        srv.stop()
    f = {}
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            f.update(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)
    if not f.get("rate") or f["rate"] == "0":
        print("fanout k=%d %d worker(s) run %d: no result: %s %s" % (
            k, n, run + 1, p.stdout[-400:], p.stderr[-400:]), flush=True)
        return None
    rate, secs = float(f["rate"]), float(f["secs"])
    # The inside of wsbench's measured window: it ends when the last in-flight publish is
    # delivered (milliseconds) and wsbench exits; the trim keeps the closes out.
    t0, t1 = t_exit - secs + 0.3, t_exit - 0.3
    c0, c1 = sm.at(t0), sm.at(t1)
    ok = c0 is not None and c1 is not None and t1 > t0
    us = (c1 - c0) / CLK_TCK * 1e6 / (rate * (t1 - t0)) if ok else None
    r = dict(rate=rate, p50=float(f["p50_us"]) / 1e3, p99=float(f["p99_us"]) / 1e3, us=us,
             cpu_pct=100 * (c1 - c0) / CLK_TCK / (t1 - t0) if ok else None,
             gen=float(f.get("cpu_pct", "nan")), subs=sm.subs,
             check=float(f["server_us_per_msg"]) if n == 1 else None)
    print("fanout run %d k=%-3d %d worker%s: %9.0f deliveries/s  p50 %6.2f ms  p99 %6.2f ms  "
          "server %s us/delivery (%s%% of a core)%s  wsbench %.0f%% of a core  subscribers per "
          "worker %s%s" % (
              run + 1, k, n, "s" if n > 1 else " ", rate, r["p50"], r["p99"],
              "%.3f" % us if us is not None else "-",
              "%.0f" % r["cpu_pct"] if r["cpu_pct"] is not None else "-",
              " [wsbench --pid: %.3f]" % r["check"] if n == 1 else "", r["gen"],
              "/".join(map(str, sm.subs)) if sm.subs else "?",
              "" if p.returncode == 0 else " (wsbench exit %d: %s)" % (
                  p.returncode, p.stderr.strip()[-120:])), flush=True)
    return r


def bench_fanout(a, out):
    ks = [int(x) for x in a.inflight.split(",")]
    res = {(k, n): [] for k in ks for n in (1, 2)}
    pairs = {k: [] for k in ks}
    for run in range(a.runs):
        for k in ks:
            got = {}
            for n in (1, 2):
                got[n] = fanout_once(a, n, k, run)
                if got[n]:
                    res[k, n].append(got[n])
            if got[1] and got[2]:
                pairs[k].append(got[2]["rate"] / got[1]["rate"])
    tables = []
    for k in ks:
        rows, meds = [], {}
        for n in (1, 2):
            rs = res[k, n]
            if not rs:
                continue
            meds[n] = (med([r["rate"] for r in rs]), med([r["p99"] for r in rs]),
                       med([r["us"] for r in rs]))
            rows.append(("%d%s" % (n, " (one process)" if n == 1 else " (supervisor + 2)"),
                         fmt(meds[n][0]), "%.2f" % meds[n][1],
                         "%.3f" % meds[n][2] if meds[n][2] is not None else "-",
                         fmt(med([r["cpu_pct"] for r in rs])), fmt(med([r["gen"] for r in rs])),
                         str(len(rs))))
            out["fanout_k%d_w%d_rate" % (k, n)] = meds[n][0]
            out["fanout_k%d_w%d_p99_ms" % (k, n)] = meds[n][1]
            out["fanout_k%d_w%d_us" % (k, n)] = meds[n][2]
            out["gen_pct"] = max(out.get("gen_pct", 0), med([r["gen"] for r in rs]))
        if 1 in meds and 2 in meds:
            rows.append(("2 / 1", ratio(meds[2][0], meds[1][0]), ratio(meds[2][1], meds[1][1]),
                         ratio(meds[2][2], meds[1][2]), "", "", ""))
        tables.append((k, rows, pairs[k]))
    return tables


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="1 run, 2000 connections, 2 s fan-out runs: about 20 s")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--conns", type=int, default=10000, help="spread: connections opened quickly")
    ap.add_argument("--slow", type=int, default=200, help="spread: connections opened slowly")
    ap.add_argument("--slow-gap", type=float, default=5, help="ms between slow connections")
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--timeout", type=float, default=20, help="seconds per connection")
    ap.add_argument("--connect-deadline", type=float, default=90)
    ap.add_argument("--subscribers", type=int, default=1000)
    ap.add_argument("--inflight", default="8,64",
                    help="fan-out: publishes in flight, a comma-separated list (default 8,64)")
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--warmup", type=float, default=1)
    ap.add_argument("--only", default="spread,fanout")
    ap.add_argument("--wspush", default=os.environ.get("WSPUSH_BIN") or str(ROOT / "build" / "wspush"))
    ap.add_argument("--wsbench", default=str(ROOT / "build" / "tests" / "bench" / "wsbench"))
    a = ap.parse_args()
    if a.quick:
        a.runs, a.conns, a.slow, a.duration = 1, 2000, 100, 2
    for b in (a.wspush, a.wsbench):
        if not os.access(b, os.X_OK):
            raise SystemExit("missing %s: cmake -S . -B build -DWSPUSH_BENCH=ON && cmake --build "
                             "build -j2" % b)
    # Held connections need a descriptor each in this process and in the worker holding them
    # (the server inherits the raised limit).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = a.conns + a.slow + 200
    if hard != resource.RLIM_INFINITY and hard < want:
        a.conns = hard - a.slow - 200
        print("descriptor limit %d: opening %d connections quickly" % (hard, a.conns))
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # The supervisor starts its workers from its executable's path: run a private copy, so that
    # a rebuild during the run cannot hand the workers another (or a half-written) binary.
    tmp = tempfile.mkdtemp(prefix="wspush-workers-bench.")
    shutil.copy2(a.wspush, os.path.join(tmp, "wspush"))
    a.wspush = os.path.join(tmp, "wspush")
    try:
        return run(a)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(a):
    start = time.time()
    only = set(a.only.split(","))
    print("wspush --workers benchmark, %s, %d cores (%s), load average %s; nothing pinned: the "
          "load generator (this script for the spread, wsbench for the fan-out) shares the %d "
          "cores with the server" % (time.strftime("%Y-%m-%d %H:%M"), os.cpu_count(),
                                     os.uname().release,
                                     " ".join(open("/proc/loadavg").read().split()[:3]),
                                     os.cpu_count()), flush=True)
    out = {}
    spread = bench_spread(a, out) if "spread" in only else []
    fan = bench_fanout(a, out) if "fanout" in only else []
    print("\nmedians of %d run%s, modes / worker counts alternating; %.0f s in all; load average "
          "now %s" % (a.runs, "s" if a.runs > 1 else "", time.time() - start,
                      " ".join(open("/proc/loadavg").read().split()[:3])))
    if spread:
        print("\nConnection spread, --workers 2: %d connections opened quickly (%d handshakes at "
              "once), after %d opened slowly (one at a time, %g ms apart); connections of the "
              "busier and the other worker (medians of each; w1/w2 per run above) and imbalance "
              "= max / mean (1.00 even, 2.00 all on one worker)\n" % (
                  a.conns, a.concurrency, a.slow, a.slow_gap))
        print("| listener | quickly: busier / other worker | imbalance | worst run | "
              "slowly: busier / other | "
              "imbalance | connects/s | runs |")
        print("|---|---|---|---|---|---|---|---|")
        for row in spread:
            print("| " + " | ".join(row) + " |")
        r, s = out.get("spread_reuseport"), out.get("spread_shared")
        if r and s:
            better = "SO_REUSEPORT" if r < s else "the shared socket" if s < r else "neither"
            print("\nspread: imbalance reuseport %.3f vs shared %.3f: %s spreads the connections "
                  "more evenly here" % (r, s, better))
    for k, rows, pairs in fan:
        print("\nFan-out: %d subscribers on /ws, 1 publisher on /pub keeping %d publishes of 64 B "
              "in flight, %g s measured after %g s warm-up; server CPU = supervisor + workers\n" % (
                  a.subscribers, k, a.duration, a.warmup))
        print("| workers | deliveries/s | p99 ms | CPU us/delivery | server CPU %% of a core | "
              "wsbench CPU %% | runs |".replace("%%", "%"))
        print("|---|---|---|---|---|---|---|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
        if pairs:
            print("\nsame-run ratios 2 workers / 1 (deliveries/s): %s" % " ".join(
                "%.2f" % x for x in pairs))
    print("\nNote: on this %d-core machine the load generator shares the cores with the server "
          "(%s), so 2 workers cannot show 2x here; the figures compare the modes in the same "
          "run, they are not the server's capacity." % (
              os.cpu_count(), "wsbench used up to %.0f %% of a core in the fan-out" %
              out["gen_pct"] if out.get("gen_pct") else "the spread's client is this script"))
    print("RESULT " + " ".join("%s=%s" % (k, "%.4g" % v if isinstance(v, float) else v)
                               for k, v in out.items() if not isinstance(v, list)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
