#!/usr/bin/python3
"""Benchmark (not a test) of TLS (wss://) against cleartext on the same server build, in the same
run. Prints figures only; it asserts nothing and exits 0 whenever it could print them.

    /usr/bin/python3 tests/bench/tls.py [--quick] [--runs 3] [--conns 10000]
                                        [--only mem,echo,fanout,handshake,profile,massif]
                                        [--wspush BIN] [--wsbench BIN]

A throw-away ECDSA P-256 self-signed certificate (127.0.0.1, localhost) is made with the openssl
CLI in a temporary directory. Every server is fresh, started with --no-watch --ping-interval 0
(no heartbeat: idle means idle) and pinned to core 0; wsbench (with --tls: OpenSSL through memory
BIOs, wbtls.c) runs on core 1. Clear and TLS runs alternate, so background load is shared.

mem        RSS per idle connection: --conns connections to handlers/echo.lua (wsbench hold
           --exchange --hold 5): VmRSS delta / N after the handshakes and 5 s idle, then again
           after one message each way (the echo) and one ping (its pong) and 5 s idle.
echo       pipelined echo, 100 connections x 16 in flight, 32-byte payloads: replies/s and
           server CPU per reply (utime + stime from /proc/PID/stat over the measured window).
fanout     1000 subscribers of scripts/fanout.lua, 8 publishes in flight, 64 B: deliveries/s
           and server CPU per delivery.
handshake  full handshakes (no resumption): wsbench hold -c 3000 --concurrency 64 (TLS 1.3, TLS
           1.2, cleartext): upgrades/s and server CPU per upgrade; handshakes per second of one
           server core = 1 / (server CPU per TLS upgrade). Then `openssl s_time -new` (one
           connection at a time, so bound by its own round trips) for each version.
profile    callgrind of the server on a fan-out (100 subscribers, 8 in flight, 64 B), each of
           TLS and cleartext run with two delivery counts: the difference of the two runs is the
           cost of the extra deliveries alone (handshakes and start-up cancel out), per function
           (self cost, grouped: AES-GCM, other libcrypto/libssl, libc, the rest) and SSL_write's
           inclusive cost, and SSL_write_ex calls per delivery. The same for the pipelined echo
           (100 x 16, 32 B; half the counts), per reply.
massif     where a held TLS connection's memory is: a massif snapshot (vgdb detailed_snapshot)
           of a server holding --massif-conns (400) TLS connections after the exchange; the
           allocation sites over 0.5 %% of the heap, in bytes per connection.
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
import time
from pathlib import Path

from benchlib import Wspush, pinned

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


class Server(Wspush):
    def __init__(self, a, script, tls, prefix=(), extra=()):
        argv = [a.wspush, "--host", "127.0.0.1", "--port", "0", "--no-watch", "--ping-interval",
                "0", "--max-connections", "200000", "--log-level", "info"] + list(extra)
        if tls:
            argv += ["--tls-cert", a.cert, "--tls-key", a.key]
        # A prefix (valgrind, callgrind) is slow to start.
        super().__init__(pinned(0, list(prefix) + argv + [str(script)]),
                         log=open(os.path.join(a.tmp, "server.log"), "w+b"),
                         timeout=60 if prefix else 10, what="server")

    def tail(self):
        return self.text()[-800:]

    def stop(self, timeout=60, quiet=False):
        super().stop(timeout, quiet)


def wsbench(a, server, args, timeout=600):
    argv = pinned(1, [a.wsbench] + args + ["--port", str(server.port), "--pid",
                                           str(server.proc.pid)])
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    fields = {}
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            fields.update(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)
    if not fields or fields.get("rate") == "0":
        raise RuntimeError("wsbench %s: %s %s" % (" ".join(args), out.stdout[-600:],
                                                  out.stderr[-600:]))
    if out.returncode != 0:
        print("   (wsbench exit %d: %s)" % (out.returncode, out.stderr.strip()[-200:]), flush=True)
    return fields


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(v, unit=""):
    if v is None:
        return "-"
    a = abs(v)
    s = ("%.2f M" % (v / 1e6) if a >= 1e6 else "%.1f k" % (v / 1e3) if a >= 1e4
         else "%.0f" % v if a >= 100 else "%.1f" % v if a >= 10 else "%.3f" % v)
    return s + unit


def ratio(x, y):
    return "%.2f" % (x / y) if x is not None and y else "-"


VARIANTS = {"clear": [], "tls13": ["--tls-version", "1.3"], "tls12": ["--tls-version", "1.2"]}


# --- mem ----------------------------------------------------------------------------------------

def bench_mem(a, table):
    res = {"clear": ([], []), "tls13": ([], [])}
    for run in range(a.mem_runs):
        for v in ("clear", "tls13"):
            s = Server(a, ROOT / "handlers" / "echo.lua", v != "clear")
            try:
                r = wsbench(a, s, ["hold", "-c", str(a.conns), "--sources", "4", "--hold",
                                   str(a.hold), "--exchange", "--timeout", "120"] + VARIANTS[v])
            except RuntimeError as e:
                print("mem %s run %d: %s" % (v, run + 1, e), flush=True)
                continue
            finally:
                s.stop()
            if r.get("ok") != str(a.conns):
                print("mem %s run %d: only %s of %d connections" % (v, run + 1, r.get("ok"),
                                                                    a.conns), flush=True)
            hs, ex = float(r["rss_handshake_b"]), float(r["rss_exchange_b"])
            res[v][0].append(hs)
            res[v][1].append(ex)
            print("mem run %d %-5s %s conns (%s): after handshake %6.0f B/conn, after exchange "
                  "%6.0f B/conn (VmRSS %s -> %s -> %s kB)" % (
                      run + 1, v, r["ok"], r.get("tls", "off"), hs, ex, r["rss_before_kb"],
                      r["rss_mid_kb"], r["rss_after_kb"]), flush=True)
    for i, when in enumerate(("after the handshake, 5 s idle",
                              "after 1 message each way + 1 ping, 5 s idle")):
        c, t = med(res["clear"][i]), med(res["tls13"][i])
        table.append(("RSS per idle connection, %d conns, %s (B)" % (a.conns, when),
                      fmt(c), fmt(t), ratio(t, c), "%d" % len(res["tls13"][i]),
                      "TLS - clear = %s B" % fmt(t - c if t is not None and c is not None else None)))
    return res


# --- echo / fanout --------------------------------------------------------------------------------

def bench_rate(a, table, kind):
    if kind == "echo":
        script, args = ROOT / "handlers" / "echo.lua", ["echo", "-c", "100", "-k", "16", "-s", "32"]
        label, unit = "pipelined echo 100 x 16 in flight, 32 B", "replies"
    else:
        script, args = HERE / "scripts" / "fanout.lua", ["fanout", "-c", "1000", "-k", "8", "-s",
                                                           "64"]
        label, unit = "fan-out 1000 subscribers, 8 in flight, 64 B", "deliveries"
    args = args + ["-d", str(a.duration), "-w", "1"]
    rate = {"clear": [], "tls13": []}
    cpu = {"clear": [], "tls13": []}
    ratios = []
    for run in range(a.runs):
        got = {}
        for v in ("clear", "tls13"):
            s = Server(a, script, v != "clear")
            try:
                r = wsbench(a, s, args + VARIANTS[v])
            except RuntimeError as e:
                print("%s %s run %d: %s" % (kind, v, run + 1, e), flush=True)
                continue
            finally:
                s.stop()
            got[v] = float(r["rate"])
            rate[v].append(got[v])
            cpu[v].append(float(r["server_us_per_msg"]))
            print("%s run %d %-5s %10.0f %s/s, server %.3f us/%s (%.2f s CPU), generator %s %%, "
                  "%s" % (kind, run + 1, v, got[v], unit, cpu[v][-1], "reply" if kind == "echo"
                          else "delivery", float(r["server_cpu_s"]), r.get("cpu_pct"),
                          r.get("tls", "off")), flush=True)
        if "clear" in got and "tls13" in got:
            ratios.append(got["tls13"] / got["clear"])
    c, t = med(rate["clear"]), med(rate["tls13"])
    table.append(("%s (%s/s)" % (label, unit), fmt(c), fmt(t), ratio(t, c), str(len(ratios)),
                  "per-run TLS/clear: %s (median %s)" % (", ".join("%.2f" % x for x in ratios),
                                                         "%.2f" % med(ratios) if ratios else "-")))
    cc, ct = med(cpu["clear"]), med(cpu["tls13"])
    table.append(("%s: server CPU per %s (us)" % (label, "reply" if kind == "echo" else "delivery"),
                  "%.3f" % cc if cc else "-", "%.3f" % ct if ct else "-", ratio(ct, cc),
                  str(len(cpu["tls13"])), "rate ratio a CPU-bound server would reach: clear/TLS "
                  "CPU = %s" % ratio(cc, ct)))


# --- handshakes -------------------------------------------------------------------------------------

def s_time(a, port, ver):
    t0 = time.monotonic()
    out = subprocess.run(pinned(1, ["openssl", "s_time", "-connect", "127.0.0.1:%d" % port, "-new",
                                    "-time", str(a.stime), "-tls1_3" if ver == "tls13" else "-tls1_2"]),
                         capture_output=True, text=True, timeout=a.stime + 60)
    wall = time.monotonic() - t0
    m = re.search(r"(\d+) connections in ([\d.]+)s; ([\d.]+) connections/user sec", out.stdout)
    if not m:
        raise RuntimeError("s_time: " + out.stdout[-300:] + out.stderr[-300:])
    return int(m.group(1)), wall, float(m.group(2))


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12])


def bench_handshake(a, table):
    rate = {v: [] for v in VARIANTS}
    cpu = {v: [] for v in VARIANTS}
    for run in range(a.runs):
        for v in ("clear", "tls13", "tls12"):
            s = Server(a, ROOT / "handlers" / "echo.lua", v != "clear")
            try:
                r = wsbench(a, s, ["hold", "-c", str(a.upgrades), "--sources", "4", "--hold", "0",
                                   "--concurrency", "64", "--timeout", "60"] + VARIANTS[v])
            except RuntimeError as e:
                print("handshake %s run %d: %s" % (v, run + 1, e), flush=True)
                continue
            finally:
                s.stop()
            rate[v].append(float(r["connect_rate"]))
            cpu[v].append(float(r["server_us_per_upgrade"]))
            print("handshake run %d %-5s %6.0f upgrades/s, server %.1f us CPU per upgrade "
                  "(server core %.0f %% busy), %s" % (run + 1, v, rate[v][-1], cpu[v][-1],
                                                      rate[v][-1] * cpu[v][-1] / 1e4,
                                                      r.get("tls", "off")), flush=True)
    for v, name in (("tls13", "TLS 1.3"), ("tls12", "TLS 1.2")):
        r, c, cc = med(rate[v]), med(cpu[v]), med(cpu["clear"])
        table.append(("full %s handshake + upgrade, 64 at a time (upgrades/s)" % name,
                      fmt(med(rate["clear"])), fmt(r), ratio(r, med(rate["clear"])),
                      str(len(rate[v])), "client on core 1"))
        table.append(("  server CPU per upgrade (us); upgrades per server core-second" ,
                      "%.1f; %s" % (cc, fmt(1e6 / cc)) if cc else "-",
                      "%.1f; %s" % (c, fmt(1e6 / c)) if c else "-", ratio(c, cc),
                      str(len(cpu[v])),
                      "TLS part %.1f us = %s handshakes/s per core" % (c - cc, fmt(1e6 / (c - cc)))
                      if c and cc and c > cc else ""))
    # openssl s_time: sequential, one handshake at a time.
    for v, name in (("tls13", "TLS 1.3"), ("tls12", "TLS 1.2")):
        s = Server(a, ROOT / "handlers" / "echo.lua", True)
        try:
            t0 = cpu_ticks(s.proc.pid)
            n, wall, user = s_time(a, s.port, v)
            scpu = (cpu_ticks(s.proc.pid) - t0) / os.sysconf("SC_CLK_TCK")
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            print("s_time %s: %s" % (v, e), flush=True)
            continue
        finally:
            s.stop()
        print("s_time %-5s %d handshakes in %.1f s wall = %.0f/s (client user CPU %.2f s); server "
              "CPU %.2f s = %.0f us per handshake" % (v, n, wall, n / wall, user, scpu,
                                                      scpu * 1e6 / n), flush=True)
        table.append(("openssl s_time -new -time %d, %s (handshakes/s)" % (a.stime, name), "",
                      fmt(n / wall), "", "1", "sequential; server %.0f us CPU per handshake = "
                      "%s per core" % (scpu * 1e6 / n, fmt(n / scpu) if scpu else "-")))


# --- profile ------------------------------------------------------------------------------------------

ANN_RE = re.compile(r"^\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(\S.*)$")


def annotate(path, inclusive):
    out = subprocess.run(["callgrind_annotate", "--inclusive=" + ("yes" if inclusive else "no"),
                          "--threshold=100", "--auto=no", path], capture_output=True, text=True,
                         timeout=300)
    funcs, total = {}, None
    for line in out.stdout.splitlines():
        m = ANN_RE.match(line)
        if not m:
            continue
        n, name = int(m.group(1).replace(",", "")), m.group(2).strip()
        if name.startswith(("=>", "<")):
            continue
        if "PROGRAM TOTALS" in name:
            total = n
            continue
        if ":" in name:
            funcs[name] = funcs.get(name, 0) + n
    return total, funcs


def calls_to(path, fn_name):
    """Calls to `fn_name` in a callgrind out file (name compression: "(id) name" once, "(id)")."""
    names, n, want = {}, 0, False
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("cfn="):
                m = re.match(r"cfn=(\((\d+)\))?\s*(.*)", line.rstrip("\n"))
                if m.group(2) and m.group(3):
                    names[m.group(2)] = m.group(3)
                name = m.group(3) or names.get(m.group(2), "")
                want = name == fn_name
            elif line.startswith("calls=") and want:
                n += int(line[6:].split()[0])
                want = False
    return n


def group(name):
    fn = name.split(":", 1)[1].split(" ")[0] if ":" in name else name
    obj = name.rsplit("[", 1)[1] if "[" in name else ""
    if re.search(r"aes|gcm|ghash|gf128", fn, re.I):
        return "AES-GCM (aesni / ghash / gcm glue)"
    if "libcrypto" in obj or "libssl" in obj or "openssl" in name.lower():
        return "other libssl / libcrypto"
    if "libc.so" in obj or "ld-linux" in obj:
        return "libc (memcpy, malloc, syscall stubs)"
    if "liblua" in obj or "lua" in fn.lower()[:4]:
        return "Lua"
    return "wspush + libuv + liburing"


def bench_profile(a, table, kind):
    if not shutil.which("valgrind") or not shutil.which("callgrind_annotate"):
        print("profile: valgrind not found, skipped", flush=True)
        return
    subs, n1, n2 = 100, a.prof_n1, a.prof_n2
    if kind == "echo":
        script, args, what = ROOT / "handlers" / "echo.lua", ["echo", "-c", "100", "-k", "16",
                                                                "-s", "32"], "reply"
        n1, n2 = n1 // 2, n2 // 2
    else:
        script, args, what = HERE / "scripts" / "fanout.lua", ["fanout", "-c", str(subs), "-k",
                                                                 "8", "-s", "64"], "delivery"
    results = {}
    for v in ("clear", "tls13"):
        for n in (n1, n2):
            out = os.path.join(a.tmp, "cg.%s.%s.%d" % (kind, v, n))
            s = Server(a, script, v != "clear",
                       prefix=["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out])
            try:
                r = wsbench(a, s, args + ["-n", str(n), "-w", "0", "-d", "600", "--timeout",
                                          "120"] + VARIANTS[v])
            finally:
                s.stop()
            time.sleep(0.5)
            incl_total, incl = annotate(out, True)
            self_total, selfc = annotate(out, False)
            results[v, n] = (self_total, selfc, incl, calls_to(out, "SSL_write_ex"),
                             calls_to(out, "ws_conn_flush"))
            print("profile %s %-5s %d %s: %s Ir (%s)" % (kind, v, n, "replies" if kind == "echo" else "deliveries",
                                                              format(self_total or 0, ","),
                                                               r.get("tls", "off")), flush=True)
    per = {}
    for v in ("clear", "tls13"):
        (t1, s1, i1, w1, f1), (t2, s2, i2, w2, f2) = results[v, n1], results[v, n2]
        d = n2 - n1
        per[v] = (t2 - t1) / d
        groups = {}
        for name in set(s1) | set(s2):
            g = group(name)
            groups[g] = groups.get(g, 0) + (s2.get(name, 0) - s1.get(name, 0)) / d
        top = sorted(((s2.get(k, 0) - s1.get(k, 0)) / d, k) for k in set(s1) | set(s2))[-12:]
        print("\nprofile %s %s: %.0f server instructions per %s (callgrind, %d - %d, %s)" % (
            kind, v, per[v], what, n2, n1, " ".join(args)))
        for g, x in sorted(groups.items(), key=lambda kv: -kv[1]):
            print("  %-40s %8.0f Ir/msg  %5.1f %%" % (g, x, 100 * x / per[v]))
        print("  SSL_write_ex calls per %s %.2f; connection flushes (ws_conn_flush) per "
              "%s %.3f" % (what, (w2 - w1) / d, what, (f2 - f1) / d))
        for k in ("SSL_write_ex", "ERR_clear_error"):
            names = [nm for nm in set(i1) | set(i2) if re.search(r":%s( |$)" % k, nm)]
            if names:
                x = sum((i2.get(nm, 0) - i1.get(nm, 0)) for nm in names) / d
                print("  inclusive %-30s %8.0f Ir/msg  %5.1f %%" % (k, x, 100 * x / per[v]))
        print("  top functions (self Ir per %s):" % what)
        for x, k in reversed(top):
            print("    %8.1f  %s" % (x, k[:110]))
    table.append(("%s, server instructions per %s (callgrind)" % (" ".join(args), what),
                  fmt(per["clear"]), fmt(per["tls13"]), ratio(per["tls13"], per["clear"]), "1",
                  "%d - %d %s" % (n2, n1, "replies" if kind == "echo" else "deliveries")))
    sys.stdout.flush()


def bench_massif(a, table):
    """Where a held TLS connection's memory is: a massif snapshot taken (through vgdb) while
    --massif-conns connections are held after the exchange; top allocation sites / N."""
    if not shutil.which("valgrind") or not shutil.which("vgdb"):
        print("massif: valgrind not found, skipped", flush=True)
        return
    n = a.massif_conns
    out = os.path.join(a.tmp, "massif.out")
    snap = os.path.join(a.tmp, "massif.snap")
    s = Server(a, ROOT / "handlers" / "echo.lua", True,
               prefix=["valgrind", "--tool=massif", "--vgdb=yes", "--threshold=0.5",
                       "--massif-out-file=" + out])
    try:
        hold = subprocess.Popen(pinned(1, [a.wsbench, "hold", "--port", str(s.port), "--tls", "-c",
                                           str(n), "--hold", "30", "--exchange", "--timeout", "120",
                                           "--concurrency", "16"]),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        # The exchange needs every connection established; it starts 30 s after the last.
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            est = subprocess.run(["ss", "-Htn", "state", "established", "( sport = :%d )" % s.port],
                                 capture_output=True, text=True).stdout.count("\n")
            if est >= n:
                break
            time.sleep(1)
        time.sleep(40)  # the exchange is done 30 s after the handshakes, then held 30 s more
        subprocess.run(["vgdb", "--pid=%d" % s.proc.pid, "detailed_snapshot", snap],
                       capture_output=True, timeout=60)
        hold.wait(timeout=200)
    finally:
        s.stop()
    try:
        lines = open(snap).read().splitlines()
    except OSError:
        print("massif: no snapshot", flush=True)
        return
    total = next((int(l.split("=")[1]) for l in lines if l.startswith("mem_heap_B=")), 0)
    print("\nmassif: %d TLS connections held (after one message each way and a ping): heap %d B "
          "= %.0f B per connection; allocation sites over 0.5 %%, bytes per connection:" % (
              n, total, total / n))
    for i, l in enumerate(lines):
        m = re.match(r"^( {1,2})n\d+: (\d+) (.*)$", l)
        if not m:
            continue
        depth, b, what = len(m.group(1)), int(m.group(2)), m.group(3)
        if what.startswith("0x") and ": " in what:
            what = what.split(": ", 1)[1]
        # For a generic allocator (CRYPTO_zalloc / malloc) name its caller too.
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        caller = re.match(r"^ +n\d+: \d+ (?:0x[0-9A-F]+: )?(.*)$", nxt)
        if depth == 2 or "CRYPTO" not in what:
            print("  %s%7.0f  %s%s" % ("  " * (depth - 1), b / n, what[:70],
                                       ("  <- " + caller.group(1)[:60]) if caller and depth == 2
                                       else ""))
    table.append(("massif: heap per held TLS connection (B), %d conns" % n, "", "%.0f" % (total / n),
                  "", "1", "sites printed above"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="1 run, 2000 held conns, 2 s runs, 5 s s_time, no valgrind parts: ~1 minute")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mem-runs", type=int, default=None, help="default: --runs")
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--upgrades", type=int, default=3000)
    ap.add_argument("--hold", type=float, default=5)
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--stime", type=int, default=10)
    ap.add_argument("--prof-n1", type=int, default=50000)
    ap.add_argument("--prof-n2", type=int, default=250000)
    ap.add_argument("--massif-conns", type=int, default=400)
    ap.add_argument("--only", default=None,
                    help="default: mem,echo,fanout,handshake,profile,massif (--quick: no "
                         "profile, massif)")
    ap.add_argument("--wspush", default=os.environ.get("WSPUSH_BIN") or str(ROOT / "build" / "wspush"))
    ap.add_argument("--wsbench", default=str(ROOT / "build" / "tests" / "bench" / "wsbench"))
    a = ap.parse_args()
    if a.quick:
        a.runs, a.conns, a.duration, a.stime, a.upgrades = 1, 2000, 2, 5, 1000
        a.prof_n1, a.prof_n2 = 20000, 100000
    if a.only is None:
        a.only = "mem,echo,fanout,handshake" + ("" if a.quick else ",profile,massif")
    if a.mem_runs is None:
        a.mem_runs = a.runs
    for b in (a.wspush, a.wsbench):
        if not os.access(b, os.X_OK):
            raise SystemExit("missing %s: cmake -S . -B build -DWSPUSH_TESTS=OFF -DWSPUSH_BENCH=ON "
                             "&& cmake --build build -j2" % b)
    # Held connections need a descriptor each on both sides; servers inherit the raised limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2 * a.conns + 500
    if hard != resource.RLIM_INFINITY and hard < want:
        a.conns = (hard - 500) // 2
        print("descriptor limit %d: holding %d connections" % (hard, a.conns))
        want = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    a.tmp = tempfile.mkdtemp(prefix="wspush-tls-bench.")
    try:
        a.cert, a.key = os.path.join(a.tmp, "cert.pem"), os.path.join(a.tmp, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", a.key, "-out", a.cert,
                        "-days", "2", "-subj", "/CN=localhost", "-addext",
                        "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, capture_output=True)
        start = time.time()
        print("wspush TLS benchmark, %s, %d cores (%s), load average %s; server core 0, client "
              "core 1; %s" % (time.strftime("%Y-%m-%d %H:%M"), os.cpu_count(), os.uname().release,
                              " ".join(open("/proc/loadavg").read().split()[:3]),
                              subprocess.run(["openssl", "version"], capture_output=True,
                                             text=True).stdout.strip()), flush=True)
        table = []
        only = set(a.only.split(","))
        if "mem" in only:
            bench_mem(a, table)
        if "echo" in only:
            bench_rate(a, table, "echo")
        if "fanout" in only:
            bench_rate(a, table, "fanout")
        if "handshake" in only:
            bench_handshake(a, table)
        if "profile" in only:
            bench_profile(a, table, "fanout")
            bench_profile(a, table, "echo")
        if "massif" in only:
            bench_massif(a, table)
        print("\nmedians; runs interleaved clear / TLS; %.0f s in all; load average now %s\n" % (
            time.time() - start, " ".join(open("/proc/loadavg").read().split()[:3])))
        print("| figure | cleartext | TLS 1.3 (unless named) | TLS / clear | runs | note |")
        print("|---|---|---|---|---|---|")
        for row in table:
            print("| " + " | ".join(row) + " |")
    finally:
        shutil.rmtree(a.tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
