#!/usr/bin/python3
"""Soak and churn test for wspush (issue 8, "Soak and churn").

Runs a churning population of WebSocket clients against handlers/broadcast.lua
while a pusher publishes sequence-numbered messages through GET /receive, mixes
in misbehaving clients (TCP resets, half-sent frames and handshakes, clients
that never read, garbage), samples the server's RSS and open descriptors, and
checks at the end that nothing was lost and nothing leaked.  See the "## Soak"
section of tests/bench/README.md for the exact rules.

    /usr/bin/python3 tests/bench/soak.py --duration 60 --clients 2000
    /usr/bin/python3 tests/bench/soak.py --port 8000 --pid 1234      # a running server

Exit status: 0 = all checks passed, 1 = a check failed, 2 = could not run.
Only 127.0.0.1 is ever contacted.

Longer than our ~600-line guide on purpose: one soak run with its client
kinds, pusher, checker and report, which only make sense together.
"""
import argparse
import array
import asyncio
import base64
import bisect
import collections
import json
import multiprocessing
import os
import random
import re
import resource
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
HOST = "127.0.0.1"
LISTEN_RE = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")
SANITIZER_RE = re.compile(r"AddressSanitizer|LeakSanitizer|runtime error:")

WELCOME = "Welcome"
ECHO_PREFIX = "new message :"
PUSH_PREFIX = "push "

# Timeouts (seconds) for well-behaved clients; generous because the client
# side is Python and shares the CPU with the server.
T_CONNECT = 15.0
T_REPLY = 15.0
T_CLOSE = 10.0

MISBEHAVIOURS = ("reset", "half_frame", "half_handshake", "non_reader", "garbage_http",
                 "garbage_frame")


def now():
    return time.monotonic()  # CLOCK_MONOTONIC: comparable across processes


# --------------------------------------------------------------------------
# server process and /proc sampling


def proc_rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def proc_fds(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return None


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except OSError:
        return False


def is_asan_binary(path):
    try:
        with open(path, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


class ServerProc:
    def __init__(self, binary, script, log_path, extra_args):
        self.log_path = log_path
        self.log = open(log_path, "wb")
        cmd = [binary, "--host", HOST, "--port", "0", "--no-watch", *extra_args, script]
        env = dict(os.environ)
        # keep going after the first ASan/UBSan report so the soak can count them
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=self.log, cwd=REPO, env=env)
        self.pid = self.proc.pid
        self.port = None
        deadline = now() + 30
        while now() < deadline:
            m = LISTEN_RE.search(self.read_log())
            if m:
                self.port = int(m.group(1))
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        tail = self.read_log()[-2000:]
        self.stop()
        raise RuntimeError("server did not start (exit %s):\n%s" % (self.proc.returncode, tail))

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout=20):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.log.close()
                return "killed (no exit %g s after SIGTERM)" % timeout
        self.log.close()
        return self.proc.returncode


# --------------------------------------------------------------------------
# raw WebSocket helpers (misbehaving clients)


def frame(opcode, payload, fin=True, mask=True):
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", b0, (0x80 if mask else 0) | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, (0x80 if mask else 0) | 126, n)
    else:
        head = struct.pack("!BBQ", b0, (0x80 if mask else 0) | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i & 3] for i, b in enumerate(payload))


def handshake_bytes(port, path="/ws"):
    key = base64.b64encode(os.urandom(16)).decode()
    return ("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
            % (path, HOST, port, key)).encode()


async def raw_connect(port, rcvbuf=None):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (HOST, port)),
                               T_CONNECT)
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock)


async def raw_upgrade(port, rcvbuf=None):
    reader, writer = await raw_connect(port, rcvbuf)
    writer.write(handshake_bytes(port))
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), T_REPLY)
    status = head.split(b"\r\n", 1)[0]
    if b" 101 " not in status + b" ":
        abort(writer)
        raise HandshakeRefused(status.decode("latin-1"))
    return reader, writer


class HandshakeRefused(Exception):
    pass


def abort(writer):
    """Close with an RST: SO_LINGER {on, 0} then close."""
    try:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    writer.transport.abort()


def hang_up(st, rng, kind, writer, p_rst):
    """End a misbehaving connection with an RST (probability p_rst) or a FIN, and count which."""
    if rng.random() < p_rst:
        abort(writer)
        st.mis[kind + ":rst"] += 1
    else:
        writer.close()
        st.mis[kind + ":fin"] += 1


async def read_server_close(reader, timeout):
    """Read server frames until a close frame or EOF; return the close code,
    'eof' or 'timeout'."""
    buf = b""
    deadline = now() + timeout
    while True:
        # parse what we have
        while len(buf) >= 2:
            b0, b1 = buf[0], buf[1]
            n = b1 & 0x7F
            off = 2
            if n == 126:
                if len(buf) < 4:
                    break
                n = struct.unpack("!H", buf[2:4])[0]
                off = 4
            elif n == 127:
                if len(buf) < 10:
                    break
                n = struct.unpack("!Q", buf[2:10])[0]
                off = 10
            if len(buf) < off + n:
                break
            if b0 & 0x0F == 0x8:
                payload = buf[off:off + n]
                return struct.unpack("!H", payload[:2])[0] if n >= 2 else 1005
            buf = buf[off + n:]
        left = deadline - now()
        if left <= 0:
            return "timeout"
        try:
            data = await asyncio.wait_for(reader.read(65536), left)
        except asyncio.TimeoutError:
            return "timeout"
        except (ConnectionError, OSError):
            return "eof"
        if not data:
            return "eof"
        buf += data


# --------------------------------------------------------------------------
# the client population (runs in worker processes)


class WorkerState:
    def __init__(self, cfg, deadline, stop):
        self.cfg = cfg
        self.stop = stop                          # set by the parent when the server died
        self.overrun = collections.Counter()      # kind -> worst seconds past the deadline
        self.port = cfg["port"]
        self.deadline = deadline
        self.errors = collections.Counter()       # well-behaved client errors by kind
        self.error_samples = {}
        self.mis = collections.Counter()          # misbehaving outcomes "kind:outcome"
        self.sessions = []                        # (t_open, t_close, array of seqs)
        self.wb_connects = 0
        self.wb_clean = 0
        self.echo_ok = 0
        self.mis_connects = 0

    def error(self, kind, detail=""):
        self.errors[kind] += 1
        if detail and kind not in self.error_samples:
            self.error_samples[kind] = str(detail)[:300]


async def well_behaved(st, rng, slot):
    import websockets
    from websockets.exceptions import ConnectionClosed, InvalidStatusCode
    compression = "deflate" if slot % 2 == 0 else None
    try:
        ws = await asyncio.wait_for(websockets.connect(
            "ws://%s:%d/ws" % (HOST, st.port), compression=compression, open_timeout=None,
            close_timeout=T_CLOSE, max_size=2 ** 22, ping_interval=None), T_CONNECT)
    except ConnectionRefusedError as e:
        st.error("connect refused", e)
        return
    except InvalidStatusCode as e:
        st.error("handshake status %s" % e.status_code, e)
        return
    except asyncio.TimeoutError:
        st.error("timeout: connect/handshake")
        return
    except (OSError, ConnectionClosed, websockets.exceptions.InvalidHandshake) as e:
        st.error("connect failed: %s" % type(e).__name__, e)
        return
    st.wb_connects += 1
    seqs = array.array("l")
    echoes = collections.deque()
    echo_event = asyncio.Event()
    opened = asyncio.get_running_loop().create_future()
    bad = []

    async def reader():
        first = True
        async for msg in ws:
            if first:
                first = False
                if msg != WELCOME:
                    bad.append(("first message is not Welcome", msg[:80]))
                    continue
                if not opened.done():
                    opened.set_result(now())
                continue
            if isinstance(msg, bytes):
                bad.append(("unexpected binary message", msg[:40]))
            elif msg.startswith(PUSH_PREFIX):
                seq = int(msg[len(PUSH_PREFIX):])
                if seqs and seq <= seqs[-1]:
                    bad.append(("push out of order/duplicate", "%d after %d" % (seq, seqs[-1])))
                seqs.append(seq)
            elif msg.startswith(ECHO_PREFIX):
                echoes.append(msg[len(ECHO_PREFIX):])
                echo_event.set()
            else:
                bad.append(("unexpected message", msg[:80]))

    rtask = asyncio.ensure_future(reader())
    t_open = None
    phase = "welcome"
    try:
        done, _ = await asyncio.wait({opened, rtask}, timeout=T_REPLY,
                                     return_when=asyncio.FIRST_COMPLETED)
        if not opened.done():
            raise asyncio.TimeoutError
        t_open = opened.result()
        phase = "echo"
        for i in range(rng.randint(1, 4)):
            r = rng.random()
            if r < 0.1:
                text = "big-%d-%d-" % (slot, i) + "x" * rng.randint(1000, 70000)
                await ws.send(text)
            elif r < 0.2:  # a fragmented message
                parts = ["frag-%d-%d" % (slot, i), "-é-", "ü" * rng.randint(1, 300)]
                text = "".join(parts)
                await ws.send(iter(parts))
            else:
                text = "e-%d-%d-%s" % (slot, i, "€" * rng.randint(0, 40))
                await ws.send(text)
            while not echoes:
                echo_event.clear()
                done, _ = await asyncio.wait({asyncio.ensure_future(echo_event.wait()), rtask},
                                             timeout=T_REPLY, return_when=asyncio.FIRST_COMPLETED)
                if not echoes and (rtask.done() or not done):
                    if rtask.done():
                        raise ConnectionClosed(None, None) if not rtask.exception() else rtask.exception()
                    raise asyncio.TimeoutError
            got = echoes.popleft()
            if got != text:
                st.error("echo mismatch", "%r != %r" % (got[:60], text[:60]))
            else:
                st.echo_ok += 1
        phase = "hold"
        lo, hi = st.cfg["hold"]
        hold = min(rng.uniform(lo, hi), st.deadline - now())
        if hold > 0:
            await asyncio.wait({rtask}, timeout=hold)
        if rtask.done():
            raise ConnectionClosed(None, None) if not rtask.exception() else rtask.exception()
        phase = "close"
        t_close = now()
        await asyncio.wait_for(ws.close(1000, "bye"), T_CLOSE + 5)
        await asyncio.wait_for(rtask, T_CLOSE)
        if ws.close_code != 1000:
            st.error("unexpected close code %s (closing)" % ws.close_code, ws.close_reason)
        else:
            st.wb_clean += 1
            st.sessions.append((t_open, t_close, seqs))
    except asyncio.TimeoutError:
        st.error("timeout: %s" % phase)
    except ConnectionClosed as e:
        code = getattr(ws, "close_code", None)
        st.error("unexpected close code %s (%s)" % (code, phase), e)
    except (OSError, RuntimeError) as e:
        st.error("error in %s: %s" % (phase, type(e).__name__), e)
    finally:
        if not rtask.done():
            rtask.cancel()
        try:
            await asyncio.wait_for(ws.close(), 2)
        except BaseException:
            pass
        ws.transport.abort() if ws.transport else None
        for kind, detail in bad:
            st.error(kind, detail)


async def misbehaving(st, rng, kind):
    port = st.port
    try:
        if kind == "half_handshake":
            reader, writer = await raw_connect(port)
            st.mis_connects += 1
            hs = handshake_bytes(port)
            writer.write(hs[:rng.randint(1, len(hs) - 3)])
            await asyncio.sleep(rng.uniform(0.05, 1.5))
            hang_up(st, rng, kind, writer, 0.5)
            return
        if kind == "garbage_http":
            reader, writer = await raw_connect(port)
            st.mis_connects += 1
            junk = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 600)))
            writer.write(junk + b"\r\n\r\n")
            try:
                data = await asyncio.wait_for(reader.read(4096), 12)
                out = data[:12].decode("latin-1").split(" ")[1] if data.startswith(b"HTTP/1.1 ") \
                    else ("eof" if not data else "other")
            except asyncio.TimeoutError:
                out = "no answer in 12 s"
            except (ConnectionError, OSError):
                out = "reset"
            st.mis[kind + ":" + out] += 1
            abort(writer)
            return
        rcvbuf = 4096 if kind == "non_reader" else None
        reader, writer = await raw_upgrade(port, rcvbuf)
        st.mis_connects += 1
        if kind == "reset":
            if rng.random() < 0.5:
                writer.write(frame(0x1, b"hello before reset"))
            await asyncio.sleep(rng.uniform(0, 1.0))
            abort(writer)
            st.mis[kind + ":rst"] += 1
        elif kind == "half_frame":
            payload = os.urandom(rng.randint(200, 100000))
            full = frame(0x2 if rng.random() < 0.5 else 0x1, payload)
            writer.write(full[:rng.randint(1, len(full) - 1)])
            await asyncio.sleep(rng.uniform(0, 1.0))
            hang_up(st, rng, kind, writer, 0.5)
        elif kind == "non_reader":
            # pile up echo replies and pushes the client never reads
            msg = frame(0x1, b"r" * 8000)
            for _ in range(rng.randint(20, 200)):
                writer.write(msg)
            hold = min(rng.uniform(1, 5), max(0.0, st.deadline - now()))
            await asyncio.sleep(hold)
            hang_up(st, rng, kind, writer, 0.7)
        elif kind == "garbage_frame":
            r = rng.random()
            if r < 0.33:
                bad = frame(0x3, b"reserved opcode")            # -> 1002
                want = 1002
            elif r < 0.66:
                bad = frame(0x1, b"not masked", mask=False)     # -> 1002
                want = 1002
            else:
                bad = frame(0x1, b"\xff\xfe\xc0 bad utf8")     # -> 1007
                want = 1007
            writer.write(bad)
            code = await read_server_close(reader, 10)
            st.mis["%s:close %s%s" % (kind, code, "" if code == want else " (expected %d)" % want)] += 1
            abort(writer)
    except HandshakeRefused as e:
        st.mis["%s:handshake refused %s" % (kind, e)] += 1
    except ConnectionRefusedError:
        st.mis[kind + ":connect refused"] += 1
    except asyncio.TimeoutError:
        st.mis[kind + ":timeout"] += 1
    except (ConnectionError, OSError, asyncio.IncompleteReadError) as e:
        st.mis["%s:%s" % (kind, type(e).__name__)] += 1


async def slot_loop(st, slot, misbehave):
    rng = random.Random(st.cfg["seed"] * 100003 + slot * 7 + int(st.deadline))
    # stagger the start so the initial wave does not overflow the accept backlog
    await asyncio.sleep(rng.uniform(0, st.cfg["ramp"]))
    i = 0
    margin = 1.0  # do not start a session that could not open before the deadline
    while now() + margin < st.deadline and i < 100000 and not st.stop.is_set():
        i += 1
        if misbehave:
            kind = MISBEHAVIOURS[(slot + i) % len(MISBEHAVIOURS)]
            await misbehaving(st, rng, kind)
        else:
            kind = "well_behaved"
            await well_behaved(st, rng, slot)
        late = now() - st.deadline
        if late > st.overrun[kind]:
            st.overrun[kind] = round(late, 2)
        await asyncio.sleep(rng.uniform(0.2, 1.0) if misbehave else rng.uniform(0.0, 0.3))


async def worker_async(cfg, slots, deadline, stop):
    st = WorkerState(cfg, deadline, stop)
    tasks = [asyncio.ensure_future(slot_loop(st, s, m)) for s, m in slots]
    # hard bound: every session ends by itself; never wait forever
    await asyncio.wait(tasks, timeout=max(1, deadline - now()) + T_CONNECT + T_REPLY * 2 + T_CLOSE)
    for t in tasks:
        if not t.done():
            t.cancel()
            st.error("client stuck past the deadline (cancelled)")
        elif t.exception() is not None:
            st.error("client crashed: %s" % type(t.exception()).__name__, repr(t.exception()))
    return st


def worker_main(cfg, slots, deadline, stop, conn):
    try:
        st = asyncio.run(worker_async(cfg, slots, deadline, stop))
        out = dict(errors=dict(st.errors), error_samples=st.error_samples, mis=dict(st.mis),
                   sessions=[(a, b, s.tobytes()) for a, b, s in st.sessions],
                   wb_connects=st.wb_connects, wb_clean=st.wb_clean, echo_ok=st.echo_ok,
                   mis_connects=st.mis_connects, overrun=dict(st.overrun))
    except BaseException as e:  # report, never hang the parent
        out = dict(fatal=repr(e))
    conn.send(out)
    conn.close()


# --------------------------------------------------------------------------
# pusher and sampler (parent process)


class Pusher:
    def __init__(self, port, rate, first_seq):
        self.port = port
        self.rate = rate
        self.seq = first_seq - 1
        self.log = []        # (seq, t_send, t_recv, sent)
        self.errors = collections.Counter()
        self.reader = self.writer = None

    async def one(self, seq):
        if self.writer is None:
            self.reader, self.writer = await asyncio.wait_for(
                asyncio.open_connection(HOST, self.port), 10)
        q = urllib.parse.quote(PUSH_PREFIX + str(seq))
        t_send = now()
        self.writer.write(("GET /receive?msg=%s HTTP/1.1\r\nHost: %s:%d\r\n\r\n"
                           % (q, HOST, self.port)).encode())
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10)
        m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
        body = await asyncio.wait_for(self.reader.readexactly(int(m.group(1)) if m else 0), 10)
        t_recv = now()
        if not head.startswith(b"HTTP/1.1 200"):
            raise ValueError("status %r" % head.split(b"\r\n")[0])
        return t_send, t_recv, json.loads(body)["sent"]

    async def run(self, until):
        t0 = now()
        k = 0
        while now() < until and k < 10 ** 7:
            due = t0 + k / self.rate
            k += 1
            if due > now():
                await asyncio.sleep(due - now())
            self.seq += 1
            try:
                t_send, t_recv, sent = await self.one(self.seq)
                self.log.append((self.seq, t_send, t_recv, sent))
            except ConnectionRefusedError:
                self.errors["push: connect refused"] += 1
                self.drop()
            except asyncio.TimeoutError:
                self.errors["push: timeout"] += 1
                self.drop()
            except (OSError, ValueError, KeyError, asyncio.IncompleteReadError) as e:
                self.errors["push: %s" % type(e).__name__] += 1
                self.drop()

    def drop(self):
        if self.writer:
            self.writer.transport.abort()
        self.reader = self.writer = None


class Sampler:
    def __init__(self, pid, t_start):
        self.pid = pid
        self.t_start = t_start
        self.samples = []   # (t, phase, rss_kb, fds)

    def sample(self, phase):
        s = (now() - self.t_start, phase, proc_rss_kb(self.pid), proc_fds(self.pid))
        self.samples.append(s)
        return s

    dead = False

    async def run(self, until, phase, every=0.5):
        while now() < until:
            self.sample(phase)
            if not pid_alive(self.pid):
                self.dead = True
                return
            await asyncio.sleep(every)


def settle(pid, target_fds, timeout):
    """Wait until the server holds exactly target_fds descriptors (stable for
    0.5 s); return the last count."""
    deadline = now() + timeout
    stable_since = None
    fds = proc_fds(pid)
    while now() < deadline:
        fds = proc_fds(pid)
        if fds is None or not pid_alive(pid):
            return None
        if fds == target_fds:
            stable_since = stable_since or now()
            if now() - stable_since >= 0.5:
                return fds
        else:
            stable_since = None
        time.sleep(0.1)
    return fds


def run_phase(cfg, name, seconds, sampler, slots, nworkers):
    """One churn phase: workers drive the population, the parent pushes and samples."""
    deadline = now() + seconds
    ctx = multiprocessing.get_context("fork")
    procs = []
    stop = ctx.Event()
    for w in range(nworkers):
        parent_conn, child_conn = ctx.Pipe(duplex=False)
        p = ctx.Process(target=worker_main, args=(cfg, slots[w::nworkers], deadline, stop, child_conn),
                        daemon=True)
        p.start()
        child_conn.close()
        procs.append((p, parent_conn))
    pusher = Pusher(cfg["port"], cfg["rate"], cfg["next_seq"])

    async def drive():
        # pushes only while the clients are active; stop just before the deadline,
        # or at once if the server died
        push = asyncio.ensure_future(pusher.run(deadline - 0.5))
        await sampler.run(deadline, name)
        if not push.done():
            push.cancel()
        await asyncio.gather(push, return_exceptions=True)
        pusher.drop()
        if sampler.dead:
            stop.set()
    asyncio.run(drive())
    results = []
    bound = now() + T_CONNECT + T_REPLY * 2 + T_CLOSE + 30
    for p, conn in procs:
        left = max(0.1, bound - now())
        if conn.poll(left):
            try:
                results.append(conn.recv())
            except EOFError:
                results.append(dict(fatal="worker exited without results"))
        else:
            results.append(dict(fatal="worker did not finish"))
        p.join(5)
        if p.is_alive():
            p.kill()
            p.join()
    return pusher, results


# --------------------------------------------------------------------------
# verification and report


def verify(pushes, sessions):
    """Each session must have received every push whose /receive request was
    sent after the session saw Welcome and whose answer arrived before the
    session started closing."""
    pushes.sort()
    seqs = [p[0] for p in pushes]
    t_send = [p[1] for p in pushes]
    t_recv = [p[2] for p in pushes]
    n = len(pushes)
    expect_diff = [0] * (n + 1)
    got = [0] * n
    index = {s: i for i, s in enumerate(seqs)}
    expected = delivered = lost = 0
    lost_samples = []
    sessions_with_loss = 0
    for t_open, t_close, raw in sessions:
        rec = array.array("l")
        rec.frombytes(raw)
        lo = bisect.bisect_right(t_send, t_open)
        hi = bisect.bisect_left(t_recv, t_close)
        rset = set(rec)
        for s in rec:
            i = index.get(s)
            if i is not None:
                got[i] += 1
        if hi <= lo:
            continue
        expect_diff[lo] += 1
        expect_diff[hi] -= 1
        need = hi - lo
        have = sum(1 for i in range(lo, hi) if seqs[i] in rset)
        expected += need
        delivered += have
        if have < need:
            sessions_with_loss += 1
            lost += need - have
            if len(lost_samples) < 5:
                missing = [seqs[i] for i in range(lo, hi) if seqs[i] not in rset][:10]
                lost_samples.append("session open %.3f..%.3f missed seqs %s" % (t_open, t_close, missing))
    # cross-check with the server's own count of subscribers reached
    over_sent = []
    run = 0
    for i in range(n):
        run += expect_diff[i]
        if run > pushes[i][3] or got[i] > pushes[i][3]:
            over_sent.append((seqs[i], run, got[i], pushes[i][3]))
    return dict(expected=expected, delivered=delivered, lost=lost, lost_samples=lost_samples,
                sessions_with_loss=sessions_with_loss, over_sent=over_sent,
                sent_total=sum(p[3] for p in pushes), received_total=sum(got))


def fmt_mb(kb):
    return "-" if kb is None else "%.1f MB" % (kb / 1024.0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=60, help="total churn seconds, warm-up included (default 60)")
    ap.add_argument("--clients", type=int, default=2000, help="client population kept connected/churning (default 2000)")
    ap.add_argument("--misbehaving", type=float, default=0.1, help="fraction of the population that misbehaves (default 0.1)")
    ap.add_argument("--rate", type=float, default=5, help="pushes per second through /receive (default 5)")
    ap.add_argument("--hold", default="2,8", help="well-behaved clients stay open MIN,MAX seconds (default 2,8)")
    ap.add_argument("--warmup", type=float, default=None, help="warm-up seconds before the baseline (default 15%% of duration, 2..10)")
    ap.add_argument("--workers", type=int, default=None, help="client processes (default 1 per 1000 clients, max 4)")
    ap.add_argument("--bin", default=os.environ.get("WSPUSH_BIN") or os.path.join(REPO, "build", "wspush"))
    ap.add_argument("--script", default=os.path.join(REPO, "handlers", "broadcast.lua"))
    ap.add_argument("--server-arg", action="append", default=[], help="extra server argument (repeatable)")
    ap.add_argument("--server-log", default=None, help="keep the server's stderr here (default: a temp file)")
    ap.add_argument("--port", type=int, default=None, help="use a running server on 127.0.0.1:PORT (needs --pid)")
    ap.add_argument("--pid", type=int, default=None, help="pid of that running server (for RSS/fd sampling)")
    ap.add_argument("--rss-tolerance-pct", type=float, default=20)
    ap.add_argument("--rss-tolerance-mb", type=float, default=8)
    ap.add_argument("--settle", type=float, default=20, help="seconds to wait for fds to return to baseline")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    a = ap.parse_args(argv)
    if (a.port is None) != (a.pid is None):
        ap.error("--port and --pid go together")
    if a.clients < 1 or a.clients > 15000 or a.duration <= 0 or a.duration > 24 * 3600 or a.rate <= 0:
        ap.error("bounds: 1 <= --clients <= 15000, 0 < --duration <= 86400, --rate > 0")
    hold = tuple(float(x) for x in a.hold.split(","))
    warmup = a.warmup if a.warmup is not None else min(10.0, max(2.0, a.duration * 0.15))
    warmup = min(warmup, a.duration / 2)
    nworkers = a.workers or min(4, max(1, (a.clients + 999) // 1000))

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 20000
    want = min(want, 20000)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if a.clients + 200 > soft:
        print("soak: RLIMIT_NOFILE %d too small for %d clients" % (soft, a.clients), file=sys.stderr)
        return 2

    server = None
    asan = False
    if a.port is None:
        log_path = a.server_log or tempfile.mkstemp(prefix="wspush-soak-", suffix=".log")[1]
        asan = is_asan_binary(a.bin)
        try:
            server = ServerProc(a.bin, a.script, log_path, a.server_arg)
        except (RuntimeError, OSError) as e:
            print("soak: %s" % e, file=sys.stderr)
            return 2
        port, pid = server.port, server.pid
        import atexit   # never leave the server behind, even on an unexpected exception
        atexit.register(lambda: server.proc.poll() is None and server.proc.kill())
    else:
        port, pid = a.port, a.pid
        if not pid_alive(pid):
            print("soak: pid %d is not running" % pid, file=sys.stderr)
            return 2

    cfg = dict(port=port, next_seq=1, rate=a.rate, hold=hold, seed=a.seed, ramp=min(3.0, warmup / 2))
    n_mis = int(round(a.clients * a.misbehaving))
    slots = [(i, i < n_mis) for i in range(a.clients)]
    random.Random(a.seed).shuffle(slots)

    t_start = now()
    sampler = Sampler(pid, t_start)
    time.sleep(0.3)
    fd_initial = proc_fds(pid)
    rss_initial = proc_rss_kb(pid)
    sampler.sample("idle")
    print("soak: server pid %d port %d%s; %d clients (%d misbehaving) in %d worker(s); "
          "%g s warm-up + %g s soak; %g pushes/s"
          % (pid, port, " (ASan build)" if asan else "", a.clients, n_mis, nworkers, warmup,
             a.duration - warmup, a.rate), flush=True)

    all_results = []
    pushes = []
    push_errors = collections.Counter()
    failures = []

    phase_end = [0.0]

    def phase(name, seconds):
        phase_end[0] = now() + seconds
        pusher, results = run_phase(cfg, name, seconds, sampler, slots, nworkers)
        pushes.extend(pusher.log)
        cfg["next_seq"] = pusher.seq + 1
        push_errors.update(pusher.errors)
        all_results.extend(results)
        cfg["seed"] += 1
        t_clients = now()
        fds = settle(pid, fd_initial, a.settle)
        over = collections.Counter()
        for r in results:
            for k, v in r.get("overrun", {}).items():
                over[k] = max(over[k], v)
        print("soak: %s phase done: clients finished %.1f s after its end (latest by kind: %s), "
              "server fds %s %.1f s later" % (name, t_clients - phase_end[0],
                                              ", ".join("%s %.1f" % kv for kv in over.most_common(3)),
                                              fds, now() - t_clients), flush=True)
        time.sleep(1.0)   # let freed memory settle before sampling RSS
        s = sampler.sample(name + " end")
        return fds, s[2]

    fd_warm, rss_base = phase("warm-up", warmup)
    fd_final, rss_final = phase("soak", a.duration - warmup)
    crashed = not pid_alive(pid) if server is None else not server.alive()

    # merge results
    errors = collections.Counter()
    samples = {}
    mis = collections.Counter()
    sessions = []
    wb_connects = wb_clean = echo_ok = mis_connects = 0
    for r in all_results:
        if "fatal" in r:
            errors["worker: " + r["fatal"]] += 1
            continue
        errors.update(r["errors"])
        for k, v in r["error_samples"].items():
            samples.setdefault(k, v)
        mis.update(r["mis"])
        sessions.extend(r["sessions"])
        wb_connects += r["wb_connects"]
        wb_clean += r["wb_clean"]
        echo_ok += r["echo_ok"]
        mis_connects += r["mis_connects"]
    errors.update(push_errors)
    v = verify(pushes, sessions)

    exit_note = None
    sanitizer_lines = []
    if server is not None:
        rc = server.stop()
        exit_note = rc
        if rc != 0 and not crashed:
            failures.append("server exit status after SIGTERM: %s" % rc)
        log = server.read_log()
        sanitizer_lines = [l for l in log.splitlines() if SANITIZER_RE.search(l)]
        if sanitizer_lines:
            failures.append("%d sanitizer report line(s) in the server log" % len(sanitizer_lines))

    # checks
    if crashed:
        failures.append("server died during the soak")
    if v["lost"]:
        failures.append("%d push(es) lost for well-behaved clients (%d sessions)"
                        % (v["lost"], v["sessions_with_loss"]))
    if v["over_sent"]:
        failures.append("%d push(es) where clients expected/received more than the server's sent count"
                        % len(v["over_sent"]))
    if errors:
        failures.append("%d well-behaved client/pusher error(s)" % sum(errors.values()))
    if not pushes:
        failures.append("no push succeeded")
    if fd_warm != fd_initial:
        failures.append("fds after warm-up %s != idle %s" % (fd_warm, fd_initial))
    if fd_final != fd_initial:
        failures.append("fds after soak %s != baseline %s" % (fd_final, fd_initial))
    rss_allow_kb = max(rss_base * a.rss_tolerance_pct / 100.0, a.rss_tolerance_mb * 1024) if rss_base else 0
    rss_ok = rss_final is not None and rss_base is not None and rss_final <= rss_base + rss_allow_kb
    if not rss_ok and not asan and not crashed:
        failures.append("RSS after soak %s > baseline %s + %s" % (fmt_mb(rss_final), fmt_mb(rss_base), fmt_mb(rss_allow_kb)))

    # report
    out = []
    p = out.append
    p("")
    p("=" * 72)
    p("wspush soak summary  (%g s, %d clients, %d misbehaving, %g pushes/s)" % (a.duration, a.clients, n_mis, a.rate))
    p("-" * 72)
    row = "  %-44s %s"
    p(row % ("connections served (total)", wb_connects + mis_connects))
    p(row % ("  well-behaved sessions opened", wb_connects))
    p(row % ("  well-behaved sessions closed cleanly (1000)", wb_clean))
    p(row % ("  misbehaving connections", mis_connects))
    p(row % ("echo replies verified", echo_ok))
    p(row % ("pushes published (answered)", len(pushes)))
    p(row % ("push deliveries expected (well-behaved)", v["expected"]))
    p(row % ("push deliveries received (expected ones)", v["delivered"]))
    p(row % ("push deliveries LOST", v["lost"]))
    p(row % ("sum of /receive 'sent' (all subscribers)", v["sent_total"]))
    p(row % ("pushes received by well-behaved (all)", v["received_total"]))
    p(row % ("server fds idle / after warm-up / after soak", "%s / %s / %s" % (fd_initial, fd_warm, fd_final)))
    p(row % ("server RSS idle / baseline / after soak", "%s / %s / %s" % (fmt_mb(rss_initial), fmt_mb(rss_base), fmt_mb(rss_final))))
    p(row % ("RSS allowance over baseline", "%s%s" % (fmt_mb(rss_allow_kb), " (not enforced: ASan build)" if asan else "")))
    peak_rss = max((s[2] or 0) for s in sampler.samples)
    peak_fds = max((s[3] or 0) for s in sampler.samples)
    p(row % ("server peak RSS / peak fds", "%s / %d" % (fmt_mb(peak_rss), peak_fds)))
    if server is not None:
        p(row % ("server exit after SIGTERM", exit_note))
        p(row % ("sanitizer lines in server log", len(sanitizer_lines)))
    p("-" * 72)
    p("errors by kind (well-behaved clients and pusher):")
    if not errors:
        p("  none")
    for k, n in sorted(errors.items(), key=lambda x: -x[1]):
        p("  %6d  %s%s" % (n, k, ("   e.g. " + samples[k]) if k in samples else ""))
    p("misbehaving clients (kind:outcome):")
    for k, n in sorted(mis.items()):
        p("  %6d  %s" % (n, k))
    p("-" * 72)
    p("server over time:    t(s)  phase          RSS       fds")
    step = max(1, len(sampler.samples) // 16)
    shown = sampler.samples[::step]
    if sampler.samples[-1] not in shown:
        shown.append(sampler.samples[-1])
    for t, ph, rss, fds in shown:
        p("                   %6.1f  %-12s %9s %7s" % (t, ph, fmt_mb(rss), fds))
    for s in v["lost_samples"]:
        p("lost: " + s)
    for s in v["over_sent"][:5]:
        p("sent-count mismatch: seq %d expected %d received %d server sent %d" % s)
    for l in sanitizer_lines[:20]:
        p("sanitizer: " + l)
    if server is not None and (failures or a.server_log):
        p("server log: %s" % server.log_path)
    p("-" * 72)
    p("RESULT: %s" % ("PASS" if not failures else "FAIL"))
    for f in failures:
        p("  - " + f)
    p("=" * 72)
    print("\n".join(out), flush=True)

    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(connections=wb_connects + mis_connects, wb_sessions=wb_connects,
                           wb_clean=wb_clean, mis_connections=mis_connects, pushes=len(pushes),
                           expected=v["expected"], delivered=v["delivered"], lost=v["lost"],
                           errors=dict(errors), misbehaving=dict(mis), fd_initial=fd_initial,
                           fd_warm=fd_warm, fd_final=fd_final, rss_initial_kb=rss_initial,
                           rss_base_kb=rss_base, rss_final_kb=rss_final, peak_rss_kb=peak_rss,
                           peak_fds=peak_fds, failures=failures, samples=sampler.samples), f)
    if server is not None and not failures and not a.server_log:
        try:
            os.unlink(server.log_path)
        except OSError:
            pass
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
