#!/usr/bin/python3
"""Hot-reload latency with many live connections (issue 4), a benchmark (not a test).

    /usr/bin/python3 tests/bench/reload_latency.py [--conns 10000] [--samples 5]
                     [--sources 4] [--bin build/wspush] [--server-cpu 0 --client-cpu 1]

It starts `wspush --host 127.0.0.1 --port 0 DIR/app.lua` where DIR is a fresh temporary
directory and app.lua a copy of TEMPLATE (the echo demo with a version marker "vK" in front
of every reply), opens --conns idle WebSocket connections to /ws (from 127.0.0.1..S, bound
with IP_BIND_ADDRESS_NO_PORT so that each source address has its own ephemeral ports; each
one waits for its "Welcome" and then only answers pings) plus one probe connection, then:

- write: --samples times, write version K+1 of the script over app.lua (truncate + write,
  like most editors) and immediately send a message on the probe, one in flight, again and
  again until the reply starts with "vK+1 ". The figure is the time from just before the
  write to that reply. It includes the server's 30 ms debounce of file events.
- SIGHUP: the same, but the new version is written first and the clock starts just before
  kill(SIGHUP): no debounce. This phase runs on a second server started with --no-watch (so
  that writing the file does not itself reload it), with the same number of held connections.

The server's own figure for the swap ("reloaded SCRIPT (WHY) in X ms; N connections kept")
is read from its stderr for every sample; N must be conns + 1.

Output: every sample, then the median and p90 of each variant, the median swap time, and a
final line for tests/bench/run.sh:

    RESULT conns=10000 write_p50_ms=.. write_p90_ms=.. hup_p50_ms=.. hup_p90_ms=..
           swap_p50_ms=.. kept_ok=1 closed=0

Only 127.0.0.0/8 is contacted; every wait is bounded. Exit status: 0 when every sample was
measured and every reload kept all connections, 1 otherwise, 2 when it could not run.
"""
import argparse
import base64
import os
import re
import resource
import selectors
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
IP_BIND_ADDRESS_NO_PORT = 24

TEMPLATE = """\
-- reload_latency.py: the echo demo (handlers/echo.lua) with a version marker.
local V = "@V@"
local ws = {}
function ws.check_origin(origin) return true end
function ws.open(conn) conn:send("Welcome") end
function ws.on_message(conn, msg) conn:send(V .. " new message :" .. msg) end
function ws.on_close(conn, code, reason) end
return {
  ["/ws"] = ws,
  ["/index"] = function(req) return "Hello world" end,
}
"""

RELOADED_RE = re.compile(r"reloaded (\S+) \(([^)]*)\) in ([0-9.]+) ms; (\d+) connections? kept")
LISTEN_RE = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")


def die(msg, code=2):
    print("reload_latency: " + msg, file=sys.stderr)
    sys.exit(code)


def pct(vals, p):
    s = sorted(vals)
    if not s:
        return float("nan")
    k = (len(s) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


# --- server ---------------------------------------------------------------------------------

class Server:
    def __init__(self, binary, script, extra, cpu):
        cmd = [str(binary), "--host", "127.0.0.1", "--port", "0", *extra, str(script)]
        pre = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, preexec_fn=pre)
        self.lines = []
        self.cond = threading.Condition()
        self.eof = False
        threading.Thread(target=self._drain, daemon=True).start()
        m = self.wait(LISTEN_RE, 0, 15)
        if not m:
            self.stop()
            die("server did not start:\n" + "".join(self.lines[-10:]))
        self.port = int(m.group(1))

    def _drain(self):
        for raw in iter(self.proc.stderr.readline, b""):
            with self.cond:
                self.lines.append(raw.decode("utf-8", "replace"))
                self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def mark(self):
        with self.cond:
            return len(self.lines)

    def wait(self, rx, since, timeout):
        """The first match of rx in a line from index since on, waiting up to timeout s."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines[since:]:
                    m = rx.search(line)
                    if m:
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or self.eof:
                    return None
                self.cond.wait(left)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


# --- client: raw sockets on one selector ------------------------------------------------------

class Conn:
    __slots__ = ("sock", "buf", "state", "texts", "closed")

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.state = "connecting"  # connecting -> http -> upgrading -> open (Welcome) -> closed
        self.texts = []
        self.closed = False


def masked(opcode, payload):
    key = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    rep = (key * (n // 4 + 1))[:n]
    body = (int.from_bytes(payload, "little") ^ int.from_bytes(rep, "little")).to_bytes(n, "little") if n else b""
    return head + key + body


class Client:
    def __init__(self, port, sources):
        self.port = port
        self.sources = sources
        self.sel = selectors.DefaultSelector()
        self.conns = []
        self.nopen = 0
        self.nclosed = 0
        self.pings = 0
        self.next_src = 0

    def _new_socket(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        src = "127.0.0.%d" % (1 + self.next_src % self.sources)
        self.next_src += 1
        try:
            s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        except OSError:
            pass
        s.bind((src, 0))
        s.setblocking(False)
        return s

    def _request(self):
        key = base64.b64encode(os.urandom(16)).decode()
        return ("GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                % (self.port, key)).encode()

    def _start(self):
        s = self._new_socket()
        c = Conn(s)
        err = s.connect_ex(("127.0.0.1", self.port))
        if err not in (0, 115):  # EINPROGRESS
            s.close()
            raise OSError(err, os.strerror(err))
        self.sel.register(s, selectors.EVENT_WRITE, c)
        self.conns.append(c)
        return c

    def _close(self, c):
        if not c.closed:
            c.closed = True
            if c.state == "open":
                self.nopen -= 1
            self.nclosed += 1
            c.state = "closed"
            try:
                self.sel.unregister(c.sock)
            except (KeyError, ValueError):
                pass
            c.sock.close()

    def _frames(self, c):
        """Parse whole frames in c.buf: texts are queued, pings answered, close closes."""
        buf = c.buf
        i = 0
        while len(buf) - i >= 2:
            b0, b1 = buf[i], buf[i + 1]
            n = b1 & 0x7F
            h = 2
            if n == 126:
                if len(buf) - i < 4:
                    break
                n = struct.unpack_from("!H", buf, i + 2)[0]
                h = 4
            elif n == 127:
                if len(buf) - i < 10:
                    break
                n = struct.unpack_from("!Q", buf, i + 2)[0]
                h = 10
            if len(buf) - i < h + n:
                break
            payload = buf[i + h:i + h + n]
            i += h + n
            op = b0 & 0x0F
            if op == 0x1:
                if c.state == "upgrading" and payload == b"Welcome":
                    c.state = "open"
                    self.nopen += 1
                else:
                    c.texts.append(payload)
            elif op == 0x9:
                self.pings += 1
                c.sock.send(masked(0xA, payload))
            elif op == 0x8:
                c.buf = b""
                self._close(c)
                return
        c.buf = buf[i:]

    def _event(self, c, mask):
        if c.state == "connecting":
            err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._close(c)
                return
            c.sock.send(self._request())
            c.state = "http"
            self.sel.modify(c.sock, selectors.EVENT_READ, c)
            return
        try:
            data = c.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            self._close(c)
            return
        if not data:
            self._close(c)
            return
        c.buf += data
        if c.state == "http":
            end = c.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not c.buf.startswith(b"HTTP/1.1 101"):
                self._close(c)
                return
            c.buf = c.buf[end + 4:]
            c.state = "upgrading"  # until the Welcome frame
        self._frames(c)

    def poll(self, timeout):
        for key, mask in self.sel.select(timeout):
            self._event(key.data, mask)

    def open_many(self, n, deadline, inflight=256):
        """Open connections until n were started in all, at most inflight handshakes at once;
        returns how many are open."""
        started = len(self.conns)
        while time.monotonic() < deadline:
            pending = started - self.nopen - self.nclosed
            while started < n and pending < inflight:
                self._start()
                started += 1
                pending += 1
            if self.nopen + self.nclosed >= n and started >= n:
                break
            self.poll(0.05)
        return self.nopen

    def request(self, c, text, timeout):
        """Send one text on c and return the first text frame that arrives after it."""
        c.sock.send(masked(0x1, text))
        deadline = time.monotonic() + timeout
        while not c.texts:
            if c.closed:
                raise ConnectionError("probe closed")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no reply within %.1f s" % timeout)
            self.poll(left)
        return c.texts.pop(0)


# --- the measurement --------------------------------------------------------------------------

def render(k):
    return TEMPLATE.replace("@V@", "v%d" % k)


def write_script(path, k):
    # Truncate and write in place, as most editors do (a reload follows the last event).
    with open(path, "w") as fh:
        fh.write(render(k))


def measure(server, client, probe, path, k, trigger, timeout):
    """One sample: version k goes live by trigger ('write' or 'hup'); returns (ms, swap_ms, kept)."""
    marker = b"v%d " % k
    mark = server.mark()
    seq = 0
    if trigger == "hup":
        write_script(path, k)
        t0 = time.monotonic()
        server.proc.send_signal(signal.SIGHUP)
    else:
        t0 = time.monotonic()
        write_script(path, k)
    deadline = t0 + timeout
    while True:
        seq += 1
        reply = client.request(probe, b"probe %d" % seq, max(0.1, deadline - time.monotonic()))
        if reply.startswith(marker):
            ms = (time.monotonic() - t0) * 1e3
            break
        if time.monotonic() > deadline:
            raise TimeoutError("version %d not live within %.0f s" % (k, timeout))
    m = server.wait(RELOADED_RE, mark, 5)
    if not m:
        raise RuntimeError("no 'reloaded' line in the server log")
    return ms, float(m.group(3)), int(m.group(4)), seq, m.group(2)


def phase(args, trigger, tmpdir, results):
    path = Path(tmpdir) / ("app_%s.lua" % trigger)
    k = 1
    write_script(path, k)
    extra = ["--no-watch"] if trigger == "hup" else []
    server = Server(args.bin, path, extra + args.server_arg, args.server_cpu)
    client = Client(server.port, args.sources)
    try:
        t = time.monotonic()
        n = client.open_many(args.conns, t + args.connect_timeout)
        connect_s = time.monotonic() - t
        if n < args.conns:
            die("only %d of %d connections opened (closed: %d); see the descriptor limits"
                % (n, args.conns, client.nclosed), 1)
        probe = client._start()
        client.open_many(args.conns + 1, time.monotonic() + 10)
        if probe.state != "open":
            die("the probe connection did not open", 1)
        print("%s: %d idle connections + 1 probe open (%.1f s, %.0f/s); server RSS %.1f MB"
              % (trigger, n, connect_s, n / connect_s, rss(server.proc.pid) / 2**20), flush=True)
        reply = client.request(probe, b"hello", 5)
        assert reply.startswith(b"v1 "), reply
        # Let the server settle (accept backlog drained, allocator quiet) before measuring.
        end = time.monotonic() + args.settle
        while time.monotonic() < end:
            client.poll(0.05)
        for i in range(args.samples):
            k += 1
            ms, swap, kept, msgs, why = measure(server, client, probe, path, k, trigger, args.timeout)
            ok = kept == args.conns + 1
            results.append((trigger, ms, swap, kept, ok))
            print("  %-5s sample %d: %7.2f ms to the first reply of v%d (%d probe messages); "
                  "swap %.2f ms (%s); %d connections kept%s"
                  % (trigger, i + 1, ms, k, msgs, swap, why, kept, "" if ok else "  <-- expected %d" % (args.conns + 1)),
                  flush=True)
            end = time.monotonic() + args.pause
            while time.monotonic() < end:
                client.poll(0.05)
        closed = client.nclosed
        if closed:
            print("  warning: %d held connections were closed by the server" % closed)
        return closed
    finally:
        for c in client.conns:
            if not c.closed:
                c.sock.close()
        server.stop()


def rss(pid):
    with open("/proc/%d/status" % pid) as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--conns", type=int, default=10000, help="idle connections held (default 10000)")
    ap.add_argument("--samples", type=int, default=5, help="reloads per variant (default 5)")
    ap.add_argument("--sources", type=int, default=4, help="source addresses 127.0.0.1..S (default 4)")
    ap.add_argument("--variants", default="write,hup", help="write, hup or both (default write,hup)")
    ap.add_argument("--bin", default=os.environ.get("WSPUSH_BIN") or str(REPO / "build" / "wspush"))
    ap.add_argument("--server-arg", action="append", default=[], help="extra wspush option (repeatable)")
    ap.add_argument("--server-cpu", type=int, default=None, help="pin the server to this CPU")
    ap.add_argument("--client-cpu", type=int, default=None, help="pin this client to this CPU")
    ap.add_argument("--settle", type=float, default=1.0, help="seconds between connecting and the first sample")
    ap.add_argument("--pause", type=float, default=0.3, help="seconds between samples")
    ap.add_argument("--timeout", type=float, default=10.0, help="per sample (default 10 s)")
    ap.add_argument("--connect-timeout", type=float, default=120.0)
    args = ap.parse_args()
    if not Path(args.bin).exists():
        die("no server binary %s (build it, or pass --bin / WSPUSH_BIN)" % args.bin)
    if args.conns < 0 or args.samples < 1 or not 1 <= args.sources <= 254:
        die("bad --conns/--samples/--sources")

    # Every connection is a descriptor here and in the server (which inherits this limit).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and args.conns + 100 > soft:
        print("descriptor limit %d: holding %d connections instead of %d"
              % (soft, soft - 100, args.conns), file=sys.stderr)
        args.conns = soft - 100
    if args.client_cpu is not None:
        os.sched_setaffinity(0, {args.client_cpu})

    print("server: %s; %d held connections from %d source address(es); %d samples per variant"
          % (args.bin, args.conns, args.sources, args.samples), flush=True)
    results = []
    closed = 0
    with tempfile.TemporaryDirectory(prefix="wsreload.") as tmpdir:
        for trigger in [v.strip() for v in args.variants.split(",") if v.strip()]:
            if trigger not in ("write", "hup"):
                die("unknown variant %r" % trigger)
            closed += phase(args, trigger, tmpdir, results)

    out = {"conns": args.conns}
    print()
    for trigger, label in (("write", "file write -> first new reply (includes the 30 ms debounce)"),
                           ("hup", "SIGHUP -> first new reply (no debounce)")):
        ms = [r[1] for r in results if r[0] == trigger]
        if not ms:
            continue
        print("%-62s median %7.2f ms  p90 %7.2f ms  (samples: %s)"
              % (label, statistics.median(ms), pct(ms, 90), ", ".join("%.1f" % v for v in ms)))
        out["%s_p50_ms" % trigger] = "%.2f" % statistics.median(ms)
        out["%s_p90_ms" % trigger] = "%.2f" % pct(ms, 90)
    swaps = [r[2] for r in results]
    kept_ok = all(r[4] for r in results)
    print("%-62s median %7.2f ms  max %7.2f ms" % ("swap itself (server log, 'reloaded ... in X ms')",
                                                   statistics.median(swaps), max(swaps)))
    print("connections kept at every reload == %d: %s" % (args.conns + 1, "yes" if kept_ok else "NO"))
    out["swap_p50_ms"] = "%.2f" % statistics.median(swaps)
    out["kept_ok"] = int(kept_ok)
    out["closed"] = closed
    print("RESULT " + " ".join("%s=%s" % kv for kv in out.items()), flush=True)
    return 0 if kept_ok and not closed else 1


if __name__ == "__main__":
    sys.exit(main())
