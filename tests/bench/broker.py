#!/usr/bin/python3
"""Benchmark (not a test) of `wspush --broker redis://...`: fan-out on one node without a broker,
on one node with --broker, and across two nodes through Redis, in the same run. Prints figures
only; it asserts nothing and exits 0 whenever it could print them (1 when a case delivered
nothing: its server logs are printed then).

    /usr/bin/python3 tests/bench/broker.py [--quick] [--runs 3] [--inflight 8,64]
                                           [--only 1,2,3] [--wspush BIN] [--wsbench BIN]

Cases (wsbench fanout on scripts/fanout.lua: --subscribers (1000) on /ws subscribe to "all",
one publisher on /pub keeps K publishes of 64 B in flight, K = 8 and 64, 1 s warm-up,
--duration (5) s measured; run.sh's fanout and fanout64 loads):

  1  one node, no broker: subscribers and publisher on the same node (the baseline).
  2  one node with --broker: the same, but every publish is also PUBLISHed to Redis; the node
     has subscribers to "all", so it is SUBSCRIBEd to "wspush:all" and Redis sends each message
     back to it, where it is skipped (its own node's): the cost of the broker when nobody else
     listens.
  3  two nodes through Redis: subscribers on node B (--port B), the publisher on node A
     (--pub-port A): every delivery crosses Redis (A PUBLISHes, Redis pushes to B, B delivers).

Cases and K alternate within each of --runs repetitions; every node is fresh (--no-watch
--ping-interval 0, --workers 1), started from a private copy of the binary; one redis-server of
the bench's own (Debian's, tests/integration/redislib.py, no persistence) serves every run.
Nothing is pinned: the nodes, redis-server and wsbench share the machine's cores.

Figures per case: deliveries/s and p99 delivery latency (wsbench: the publisher's send time in
the payload to receipt by a subscriber), and server CPU per delivery: utime + stime of every
wspush process (/proc/PID/stat, children included) plus redis-server in cases 2 and 3, sampled
every 50 ms, over the inside of wsbench's measured window (workers.py's method: its last
--duration seconds before it exits, 0.3 s trimmed at each end) divided by the deliveries in that
time; the wspush-only share is given separately (and in case 3 node B's and node A's). In case 1
wsbench's own --pid figure is printed beside it as a check. TCP segments sent per delivery
(/proc/net/snmp OutSegs over the same window; the whole machine, so other traffic counts too)
show how many deliveries share a send: at K = 8 the CPU per delivery follows it. Ratios 2/1 and
3/1 of the medians, and same-run ratios per repetition.

Checks that deliveries really cross Redis: before the measured runs, cases 2 and 3 each get an
open-loop run (wsbench fanout --interval 5: one publish every 5 ms whatever the subscribers do,
every subscriber must see every sequence number once) that reports missed and duplicated
deliveries; every measured run compares Redis's PUBLISH count (INFO commandstats, reset before
the run) with wsbench's publishes, and the nodes' logs are scanned for broker warnings (lost,
gap). A case whose wsbench delivers nothing or times out is reported with its nodes' logs, never
with figures.

Bounded: wsbench's own deadlines (--timeout 30, its hard deadline) and a subprocess timeout; the
defaults take about 2 minutes, --quick (1 run, 2 s measured, 1 s checks) about 25 s.
"""
import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests" / "integration"))
import workers as W  # noqa: E402  Sampler, med, fmt, ratio, cpu_ticks, children
from benchlib import Wspush  # noqa: E402
from redislib import MISSING, REDIS_SERVER, RedisServer  # noqa: E402

SCRIPT = HERE / "scripts" / "fanout.lua"
CASES = {1: "1 node, no broker", 2: "1 node, --broker", 3: "2 nodes via Redis"}
BROKER_TROUBLE = re.compile(r"^.*\b(broker\b.*\b(lost|back after|gap)|\bgap\b).*$", re.M | re.I)


class Node(Wspush):
    """One wspush server (one process: --workers 1), --broker URL or none."""

    def __init__(self, a, broker):
        argv = [a.wspush, "--host", "127.0.0.1", "--port", "0", "--no-watch", "--ping-interval",
                "0", "--shutdown-timeout", "2", "--max-connections", "200000", "--workers", "1"]
        if broker:
            argv += ["--broker", broker]
        self.argv = argv + [str(SCRIPT)]
        # With a broker, started means its broker connected too.
        super().__init__(self.argv, timeout=15, ready=(lambda t: b"connected" in t) if broker else None,
                         what="wspush" + (" (or its broker connection)" if broker else ""))
        if broker:
            time.sleep(0.1)  # the publishing connection, made beside the subscriber's
        self.pids = [self.proc.pid] + W.children(self.proc.pid)


class Procs:
    """What workers.Sampler samples: cpu() of a set of processes; subscribers are counted in
    the `workers` (the wspush processes)."""

    def __init__(self, pids, wspush_pids):
        self.pids, self.workers = pids, wspush_pids

    def cpu(self):
        return sum(W.cpu_ticks(p) for p in self.pids)


class OutSegs(Procs):
    """Sampled like CPU: TCP segments sent on the whole machine (/proc/net/snmp OutSegs): a
    proxy for sends per delivery (a send of a few frames is one segment on loopback); other
    traffic on the machine counts too."""

    def __init__(self, wspush_pids):
        super().__init__([], wspush_pids)

    def cpu(self):
        try:
            with open("/proc/net/snmp") as f:
                rows = [l.split() for l in f if l.startswith("Tcp:")]
            return int(rows[1][rows[0].index("OutSegs")])
        except (OSError, ValueError, IndexError):
            return 0


def result_fields(stdout, mode):
    f = {}
    for line in stdout.splitlines():
        if line.startswith("RESULT ") and ("mode=" not in line or "mode=%s " % mode in line):
            f.update(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)
    return f


def start_nodes(a, case, redis):
    """(nodes, subscribers' node, publisher's node)."""
    if case == 1:
        n = Node(a, None)
        return [n], n, n
    if case == 2:
        n = Node(a, redis.url)
        return [n], n, n
    pub = Node(a, redis.url)
    try:
        sub = Node(a, redis.url)
    except RuntimeError:
        pub.stop()
        raise
    return [pub, sub], sub, pub


def logs(nodes, sub, pub):
    out = []
    for n in nodes:
        role = ("subscribers' and publisher's node" if n is sub and n is pub else
                "subscribers' node B" if n is sub else "publisher's node A")
        out.append("--- %s (pid %d, port %d) log:\n%s" % (role, n.proc.pid, n.port,
                                                         n.text()[-3000:].rstrip()))
    return "\n".join(out)


def redis_counts(ctl):
    calls = ctl.command_calls()
    st = ctl.info("stats")
    return calls.get("publish", 0), int(st.get("total_net_output_bytes", 0))


def check_once(a, case, redis, ctl):
    """Open loop: one publish every --check-interval ms; missed and duplicated deliveries."""
    label = CASES[case]
    try:
        nodes, sub, pub = start_nodes(a, case, redis)
    except RuntimeError as e:
        print("check %s: %s" % (label, e), flush=True)
        return None
    try:
        ctl.call("CONFIG", "RESETSTAT")
        argv = [a.wsbench, "fanout", "--port", str(sub.port), "--pub-port", str(pub.port),
                "-c", str(a.subscribers), "-s", "64", "--interval", str(a.check_interval),
                "-d", str(a.check_duration), "-w", "0.5", "--timeout", "30"]
        try:
            p = subprocess.run(argv, capture_output=True, text=True,
                               timeout=a.check_duration + 60)
        except subprocess.TimeoutExpired:
            print("check %s: wsbench timed out\n%s" % (label, logs(nodes, sub, pub)), flush=True)
            return None
        publishes, _ = redis_counts(ctl)
        text = logs(nodes, sub, pub)
    finally:
        for n in nodes:
            n.stop()
    f = result_fields(p.stdout, "fanout-interval")
    if "missed" not in f:
        print("check %s: no result (wsbench exit %d): %s %s\n%s" % (
            label, p.returncode, p.stdout[-600:], p.stderr[-400:], text), flush=True)
        return None
    pubd, subs = int(f["published"]), int(f["subscribers"])
    r = dict(published=pubd, subscribers=subs, missed=int(f["missed"]), dup=int(f["dup"]),
             redis_publish=publishes, failed=int(f["failed"]), lost=int(f["lost"]),
             trouble=BROKER_TROUBLE.findall(text))
    ok = r["missed"] == 0 and r["dup"] == 0 and subs == a.subscribers and r["failed"] == 0
    print("check %-17s open loop, 1 publish / %g ms: %d published (Redis PUBLISH %d) to %d "
          "subscribers: %d deliveries missed, %d duplicated%s -> %s" % (
              label, a.check_interval, pubd, publishes, subs, r["missed"], r["dup"],
              "; broker log: %s" % r["trouble"] if r["trouble"] else "",
              "every delivery arrived once" if ok else "NOT OK"), flush=True)
    if not ok:
        print(text, flush=True)
    r["ok"] = ok
    return r


def fanout_once(a, case, k, run, redis, ctl):
    label = CASES[case]
    try:
        nodes, sub, pub = start_nodes(a, case, redis)
    except RuntimeError as e:
        print("run %d k=%-3d %s: %s" % (run + 1, k, label, e), flush=True)
        return None
    wspush_pids = [p for n in nodes for p in n.pids]
    all_pids = wspush_pids + ([redis.proc.pid] if case > 1 else [])
    try:
        ctl.call("CONFIG", "RESETSTAT")
        r0 = redis_counts(ctl)
        s_all = W.Sampler(Procs(all_pids, wspush_pids), a.subscribers + 1)
        s_ws = W.Sampler(Procs(wspush_pids, wspush_pids), a.subscribers + 1)
        # Case 3: node B's (the subscribers') share, the rest of wspush's being node A's.
        s_b = W.Sampler(Procs(sub.pids, sub.pids), a.subscribers) if pub is not sub else None
        s_seg = W.Sampler(OutSegs(wspush_pids), a.subscribers + 1)
        samplers = [s for s in (s_all, s_ws, s_b, s_seg) if s]
        for s in samplers:
            s.start()
        argv = [a.wsbench, "fanout", "--port", str(sub.port), "-c", str(a.subscribers), "-k",
                str(k), "-s", "64", "-d", str(a.duration), "-w", str(a.warmup), "--timeout", "30"]
        if pub is not sub:
            argv += ["--pub-port", str(pub.port)]
        if case == 1:
            argv += ["--pid", str(sub.proc.pid)]
        timed_out = False
        try:
            p = subprocess.run(argv, capture_output=True, text=True,
                               timeout=a.duration + a.warmup + 60)
            t_exit = time.monotonic()
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            for s in samplers:
                s.stop_ev.set()
            for s in samplers:
                s.join()
        r1 = redis_counts(ctl)
        text = logs(nodes, sub, pub)
    finally:
        for n in nodes:
            n.stop()
    if timed_out:
        print("run %d k=%-3d %s: wsbench timed out; no figures.\n%s" % (
            run + 1, k, label, text), flush=True)
        return None
    f = result_fields(p.stdout, "fanout")
    if not f.get("rate") or float(f["rate"]) == 0:
        print("run %d k=%-3d %s: NOTHING DELIVERED (wsbench exit %d); no figures.\n%s%s\n%s" % (
            run + 1, k, label, p.returncode, p.stdout[-600:], p.stderr[-400:], text), flush=True)
        return None
    m = re.search(r"^publishes: (\d+)", p.stdout, re.M)
    published = int(m.group(1)) if m else None
    rate, secs = float(f["rate"]), float(f["secs"])
    t0, t1 = t_exit - secs + 0.3, t_exit - 0.3
    figs = {}
    for name, sm in (("all", s_all), ("ws", s_ws), ("b", s_b)):
        if sm is None:
            figs[name] = figs[name + "_pct"] = None
            continue
        c0, c1 = sm.at(t0), sm.at(t1)
        ok = c0 is not None and c1 is not None and t1 > t0
        figs[name] = (c1 - c0) / W.CLK_TCK * 1e6 / (rate * (t1 - t0)) if ok else None
        figs[name + "_pct"] = 100 * (c1 - c0) / W.CLK_TCK / (t1 - t0) if ok else None
    g0, g1 = s_seg.at(t0), s_seg.at(t1)
    segs = (g1 - g0) / (rate * (t1 - t0)) if g0 is not None and g1 is not None and t1 > t0 else None
    r = dict(rate=rate, segs=segs, p50=float(f["p50_us"]) / 1e3, p99=float(f["p99_us"]) / 1e3,
             us=figs["all"], us_ws=figs["ws"], pct=figs["all_pct"], pct_ws=figs["ws_pct"],
             us_b=figs["b"],
             gen=float(f.get("cpu_pct", "nan")), published=published,
             redis_publish=r1[0] - r0[0], redis_out=r1[1] - r0[1],
             check=float(f["server_us_per_msg"]) if case == 1 else None,
             trouble=BROKER_TROUBLE.findall(text), failed=int(f.get("failed", 0)))
    extra = []
    if case == 1:
        extra.append("[wsbench --pid: %.3f]" % r["check"])
    else:
        extra.append("Redis PUBLISH %d for %s publishes, %.0f B out per PUBLISH" % (
            r["redis_publish"], published if published is not None else "?",
            r["redis_out"] / r["redis_publish"] if r["redis_publish"] else 0))
    if r["us_b"] is not None and r["us_ws"] is not None:
        extra.append("[wspush: node B %.3f + node A %.3f]" % (r["us_b"],
                                                              r["us_ws"] - r["us_b"]))
    if r["pct"] is not None and r["pct_ws"] is not None and case > 1:
        extra.append("redis-server %.0f%% of a core" % (r["pct"] - r["pct_ws"]))
    if r["trouble"]:
        extra.append("broker log: %s" % r["trouble"][:3])
    if p.returncode != 0 or r["failed"]:
        extra.append("(wsbench exit %d, %d connections failed: %s)" % (
            p.returncode, r["failed"], p.stderr.strip()[-160:]))
    print("run %d k=%-3d %-17s %9.0f deliveries/s  p50 %6.2f ms  p99 %6.2f ms  CPU %s us/delivery "
          "(wspush %s; %s%% of a core)  wsbench %.0f%%  TCP segments/delivery %s  %s" % (
              run + 1, k, label, rate, r["p50"], r["p99"],
              "%.3f" % r["us"] if r["us"] is not None else "-",
              "%.3f" % r["us_ws"] if r["us_ws"] is not None else "-",
              "%.0f" % r["pct"] if r["pct"] is not None else "-", r["gen"],
              "%.3f" % segs if segs is not None else "-", " ".join(extra)),
          flush=True)
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 run, 2 s measured: about 25 s")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--subscribers", type=int, default=1000)
    ap.add_argument("--inflight", default="8,64", help="publishes in flight (default 8,64)")
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--warmup", type=float, default=1)
    ap.add_argument("--only", default="1,2,3", help="cases (default 1,2,3)")
    ap.add_argument("--check-interval", type=float, default=5,
                    help="delivery check: ms between publishes (default 5)")
    ap.add_argument("--check-duration", type=float, default=2,
                    help="delivery check: seconds (default 2; 0: no check)")
    ap.add_argument("--wspush", default=os.environ.get("WSPUSH_BIN") or
                    str(ROOT / "build" / "wspush"))
    ap.add_argument("--wsbench", default=str(ROOT / "build" / "tests" / "bench" / "wsbench"))
    a = ap.parse_args()
    if a.quick:
        a.runs, a.duration, a.check_duration = 1, 2, 1
    if not REDIS_SERVER.exists():
        raise SystemExit(MISSING)
    for b in (a.wspush, a.wsbench):
        if not os.access(b, os.X_OK):
            raise SystemExit("missing %s: cmake -S . -B build -DWSPUSH_BENCH=ON && cmake --build "
                             "build -j2" % b)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tmp = tempfile.mkdtemp(prefix="wspush-broker-bench.")
    # A private copy: a rebuild during the run cannot change the binary under the nodes.
    shutil.copy2(a.wspush, os.path.join(tmp, "wspush"))
    a.wspush_src, a.wspush = a.wspush, os.path.join(tmp, "wspush")
    redis = RedisServer(os.path.join(tmp, "redis"))
    try:
        redis.start()
        with redis.client(timeout=10) as ctl:
            return run(a, redis, ctl)
    finally:
        redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def loadavg():
    return " ".join(open("/proc/loadavg").read().split()[:3])


def run(a, redis, ctl):
    start = time.time()
    cases = [int(x) for x in a.only.split(",")]
    ks = [int(x) for x in a.inflight.split(",")]
    ver = subprocess.run([str(REDIS_SERVER), "--version"], capture_output=True,
                         text=True).stdout.split()
    print("wspush --broker benchmark, %s, %d cores (kernel %s), load average %s; %s; %s %s; "
          "nothing pinned: the wspush nodes, redis-server and wsbench share the %d cores" % (
              time.strftime("%Y-%m-%d %H:%M"), os.cpu_count(), os.uname().release, loadavg(),
              a.wspush_src, ver[1] if len(ver) > 1 else "redis", ver[2] if len(ver) > 2 else "",
              os.cpu_count()), flush=True)
    failed = False
    checks = {}
    if a.check_duration > 0:
        for case in cases:
            if case > 1:
                checks[case] = check_once(a, case, redis, ctl)
                failed |= not (checks[case] and checks[case]["ok"])
    res = {(c, k): [] for c in cases for k in ks}
    pairs = {(c, k): [] for c in cases for k in ks}
    for run_i in range(a.runs):
        for k in ks:
            got = {}
            for case in cases:
                got[case] = fanout_once(a, case, k, run_i, redis, ctl)
                if got[case]:
                    res[case, k].append(got[case])
                else:
                    failed = True
            for case in cases:
                if case > 1 and got.get(case) and got.get(1):
                    pairs[case, k].append(got[case]["rate"] / got[1]["rate"])
    print("\nmedians of %d run%s, cases alternating; %.0f s in all; load average now %s" % (
        a.runs, "s" if a.runs > 1 else "", time.time() - start, loadavg()))
    out = {}
    print("\nFan-out through the broker: %d subscribers on /ws, 1 publisher on /pub, 64 B, K "
          "publishes in flight, %g s measured after %g s warm-up. CPU per delivery = all wspush "
          "processes + redis-server (cases 2, 3); wspush only beside it\n" % (
              a.subscribers, a.duration, a.warmup))
    print("| K | case | deliveries/s | p99 ms | CPU us/delivery (wspush + redis) | "
          "wspush only | CPU % of a core | wsbench CPU % | TCP segments/delivery | runs |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for k in ks:
        meds = {}
        for case in cases:
            rs = res[case, k]
            if not rs:
                print("| %d | %s | no figures | | | | | | | 0 |" % (k, CASES[case]))
                continue
            meds[case] = m = [W.med([r[x] for r in rs]) for x in ("rate", "p99", "us", "us_ws")]
            sg = W.med([r["segs"] for r in rs])
            print("| %d | %s | %s | %.2f | %s | %s | %s | %s | %s | %d |" % (
                k, CASES[case], W.fmt(m[0]), m[1], "%.3f" % m[2] if m[2] is not None else "-",
                "%.3f" % m[3] if m[3] is not None else "-",
                W.fmt(W.med([r["pct"] for r in rs])), W.fmt(W.med([r["gen"] for r in rs])),
                "%.3f" % sg if sg is not None else "-", len(rs)))
            for x, v in zip(("rate", "p99_ms", "us", "us_wspush"), m):
                out["k%d_case%d_%s" % (k, case, x)] = v
        for case in cases:
            if case > 1 and case in meds and 1 in meds:
                print("| %d | %d / 1 | %s | %s | %s | %s | | | | |" % (
                    k, case, *(W.ratio(meds[case][i], meds[1][i]) for i in range(4))))
                out["k%d_ratio%d_1" % (k, case)] = meds[case][0] / meds[1][0]
    split = ["k=%d: node B (subscribers) %.3f + node A (publisher) %.3f" % (
        k, W.med([r["us_b"] for r in res[3, k]]),
        W.med([r["us_ws"] - r["us_b"] for r in res[3, k]
               if r["us_b"] is not None and r["us_ws"] is not None]))
        for k in ks if res.get((3, k)) and W.med([r["us_b"] for r in res[3, k]]) is not None]
    if split:
        print("\n2 nodes via Redis, wspush CPU us/delivery per node (medians): " +
              "; ".join(split))
    same = ["k=%d %d/1: %s" % (k, c, " ".join("%.2f" % x for x in pairs[c, k]))
            for k in ks for c in cases if pairs.get((c, k))]
    if same:
        print("\nsame-run ratios (deliveries/s): " + "; ".join(same))
    if checks:
        print("\ndelivery checks (open loop, 1 publish / %g ms, %g s): %s" % (
            a.check_interval, a.check_duration, "; ".join(
                "%s: %s" % (CASES[c], "%d published, %d missed, %d duplicated" % (
                    r["published"], r["missed"], r["dup"]) if r else "no result")
                for c, r in checks.items())))
    print("\nNote: on this %d-core machine the wspush nodes, redis-server and the load generator "
          "(wsbench) share the %d cores, so the absolute figures are lower than with each on "
          "machines of its own; the ratios between the cases and the CPU per delivery are what "
          "carry over (at K = 8 the CPU per delivery also follows how many deliveries share a "
          "send, which depends on scheduling: see TCP segments/delivery)." % (
              os.cpu_count(), os.cpu_count()))
    if failed:
        print("\nSOME CASES DID NOT DELIVER (see above): their figures are missing, not invented.")
    print("RESULT " + " ".join("%s=%s" % (k, "%.4g" % v if isinstance(v, float) else v)
                               for k, v in out.items() if v is not None))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
