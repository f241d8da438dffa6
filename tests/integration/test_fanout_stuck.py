"""Broadcast to 10,000 subscribers of whom some never read (issue 5, backpressure).

    "Broadcast to 10,000 subscribers of whom some never read: memory stays
    bounded (measured RSS), the readers get everything, the stuck ones are
    handled by the policy."

Server script: scripts/fanout_stuck.lua (max_buffered = 256 KiB on its routes;
/ws is backpressure "close", /ws_drop_oldest is "drop-oldest").

Shape of the test (one run per policy):

1. Open N_TOTAL = 10,000 WebSocket connections from this process (non-blocking
   sockets, handshakes in flight in batches, one selectors loop), spread over
   the source addresses 127.0.0.1-4. N_STUCK = 50 of them are "stuck": a tiny
   SO_RCVBUF set before connect, and never read. They also join topic "bulk".
2. Publish 20 x 64-byte messages to "all": every one of the 9,950 readers must
   get all 20, in order (one selectors loop over all reader sockets, a minimal
   frame parser, a deadline).
3. Bulk phase: publish 800 x 64 KiB to "bulk" (50 MiB per stuck client: far
   over what the kernel absorbs on loopback -- a few MiB of send buffer per
   connection -- plus the 256 KiB queue), 2 per 10 ms tick, and after every
   80th bulk message one more "all" message (10 in all) that every reader
   must also get, in order. Server VmRSS is sampled before, during and after.
4. The policy: "close" -> every stuck connection gets close 1008 (on_close
   code 1008 for exactly the 50 stuck ones, wspush.count() drops by 50, no
   reader closed; a few stuck ones drained afterwards hold a gapless prefix
   of the bulk, then EOF); "drop-oldest" -> the stuck ones stay open (count
   unchanged, conn:buffered() <= max_buffered + one message; they are still
   served: a few drained afterwards get the newest bulk message, the bulk
   sequence strictly increasing with a gap, and an echo).

The RSS bound. The bulk messages are published once and the frame is shared by
every subscriber's queue (refcounted), so what a correct server may keep is at
most, per stuck connection, max_buffered (256 KiB) plus the one message being
written (64 KiB): 50 x 320 KiB = 15.6 MiB even if no two stuck queues shared a
frame. A server that ignored the limit would keep (almost) the whole bulk: 50
MiB minus what the kernel absorbed (~4 MiB per connection, but the frames are
shared, so at least ~46 MiB). The bound is 15.6 MiB + 8 MiB of slack (Lua
garbage: each 64 KiB bulk message is a fresh Lua string, and with 10,000
connections the live Lua heap is ~9 MiB, so the incremental GC lets ~4-9 MiB
of garbage pile up (/stats reports the heap: 9.3 -> 13 MiB); malloc
fragmentation) = ~24 MiB: below the failure by a factor of ~2. Measured
(release build): +7 to +9 MiB with the policy; the same run with the
script's max_buffered set to 1 GiB (i.e. no limit) grows by +51 MiB and fails.
Under ASan (WSPUSH_SANITIZE_LOG set or an ASan binary) the RSS is printed but
not checked: the allocator quarantine keeps freed memory for a while.

Descriptors: both ends of 10,000 connections are not in one process, but this
process needs 10,000 + a few and so does the server, which inherits our soft
RLIMIT_NOFILE: it is raised to min(hard, 20000) for the test (and restored);
with a hard limit under 12,000 the test is skipped.

Under ASan the connection count stays 10,000: the ASan build runs both
parametrizations in ~20 s (connecting 10,000 takes 1.5-2.5 s there), so no
scaling down is needed. WSPUSH_FANOUT_N overrides the count (for a quick local
run; every N_TOTAL // 50-th connection is stuck).

What a stuck client sees, for the record: with "close" the close frame is
queued behind a full socket and never written (the client does not read);
after --close-timeout (2 s here) the server ends TCP, on_close gets 1008, and a
late reader of that socket finds a gapless prefix of the bulk, then EOF. With
"drop-oldest" it finds the beginning (what the kernel buffers held), one gap,
and the newest messages up to the last one.
"""
import errno
import os
import resource
import selectors
import socket
import struct
import time

import pytest

import rawws
from conftest import SANITIZE_LOG, SCRIPTS, bin_is_sanitized, report, rss_kb, scaled, wait_for

SCRIPT = SCRIPTS / "fanout_stuck.lua"


SANITIZED = SANITIZE_LOG or bin_is_sanitized()

N_TOTAL = int(os.environ.get("WSPUSH_FANOUT_N") or 10000)
N_STUCK = 50
N_READERS = N_TOTAL - N_STUCK
PHASE1_MSGS, SMALL = 20, 64
BULK_N, BULK_SIZE, BULK_PER, ALL_EVERY = 800, 65536, 2, 80
MAX_BUFFERED = 256 * 1024
SOURCES = ["127.0.0.%d" % i for i in range(1, 5)]
IN_FLIGHT = 1000                 # handshakes at once (the server's listen backlog is 1024)
NOFILE_WANT, NOFILE_MIN = 20000, 12000
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)

_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
_hard_n = 1 << 30 if _hard == resource.RLIM_INFINITY else _hard

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(_hard_n < NOFILE_MIN,
                       reason="needs RLIMIT_NOFILE hard limit >= %d for %d connections in this "
                              "process and in the server (hard limit is %d)" % (NOFILE_MIN, N_TOTAL, _hard_n)),
]

# RSS bound (see the module docstring): max_buffered + one message in flight per
# stuck connection, plus slack.
RSS_BOUND_KB = (N_STUCK * (MAX_BUFFERED + BULK_SIZE) >> 10) + 8 * 1024


@pytest.fixture
def nofile():
    """Raise the soft RLIMIT_NOFILE (inherited by the server spawned afterwards)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = NOFILE_WANT if hard == resource.RLIM_INFINITY else min(NOFILE_WANT, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    yield want
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# ---------------------------------------------------------------------------
# many connections, one selectors loop

class Client:
    __slots__ = ("sock", "stuck", "key", "out", "buf", "state", "next_seq", "msgs")

    def __init__(self, sock, stuck, key, request):
        self.sock, self.stuck, self.key, self.out = sock, stuck, key, request
        self.buf = bytearray()
        self.state = "connecting"
        self.next_seq = 0           # next "all" sequence number expected
        self.msgs = 0


def _new_socket(i, stuck):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if stuck:
        # before connect, so the advertised window stays tiny (the kernel
        # doubles it and applies its minimum: a few KiB)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
    except OSError:
        pass
    s.bind((SOURCES[i % len(SOURCES)], 0))
    s.setblocking(False)
    return s


def open_connections(port, path, n_total, stuck_every, timeout):
    """Open n_total WebSocket connections, IN_FLIGHT handshakes at a time.
    Connection i is stuck when i % stuck_every == stuck_every - 1.
    Returns the list of Clients (all upgraded) in the order they were created."""
    sel = selectors.DefaultSelector()
    clients = []
    pending = 0
    done = 0
    deadline = time.monotonic() + timeout
    try:
        for _ in range(10 * n_total + 1000):
            while pending < IN_FLIGHT and len(clients) < n_total:
                i = len(clients)
                stuck = i % stuck_every == stuck_every - 1
                s = _new_socket(i, stuck)
                key = rawws.new_key()
                req = ("GET %s%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                       % (path, "?stuck=1" if stuck else "", port, key)).encode()
                c = Client(s, stuck, key, req)
                err = s.connect_ex(("127.0.0.1", port))
                if err not in (0, errno.EINPROGRESS):
                    raise AssertionError("connect #%d from %s failed: %s" % (i, SOURCES[i % len(SOURCES)],
                                                                              os.strerror(err)))
                sel.register(s, selectors.EVENT_WRITE, c)
                clients.append(c)
                pending += 1
            if done == n_total:
                return clients
            if time.monotonic() > deadline:
                raise AssertionError("only %d of %d connections upgraded within %ss" % (done, n_total, timeout))
            for key, ev in sel.select(timeout=0.5):
                c = key.data
                if c.state == "connecting":
                    err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise AssertionError("connect failed: %s (after %d upgraded)" % (os.strerror(err), done))
                    c.sock.send(c.out)      # ~170 bytes into an empty socket buffer
                    c.state = "handshake"
                    sel.modify(c.sock, selectors.EVENT_READ, c)
                    continue
                try:
                    data = c.sock.recv(4096)
                except (BlockingIOError, InterruptedError):
                    continue
                if not data:
                    raise AssertionError("server closed a connection during its handshake (after %d upgraded)"
                                         % done)
                c.buf += data
                end = c.buf.find(b"\r\n\r\n")
                if end < 0:
                    continue
                head = bytes(c.buf[:end]).decode("latin-1")
                assert head.startswith("HTTP/1.1 101"), head
                assert ("sec-websocket-accept: %s" % rawws.accept_for(c.key)).lower() in head.lower(), head
                del c.buf[:end + 4]
                assert not c.buf, "data right after the 101: %r" % bytes(c.buf[:100])
                c.state = "open"
                c.out = None
                sel.unregister(c.sock)
                pending -= 1
                done += 1
        raise AssertionError("connect loop did not finish")
    except BaseException:
        for c in clients:
            c.sock.close()
        raise
    finally:
        sel.close()


class Readers:
    """Read every reader socket in one loop; check each gets the "all" sequence in order."""

    def __init__(self, readers):
        self.sel = selectors.DefaultSelector()
        self.readers = readers
        for c in readers:
            self.sel.register(c.sock, selectors.EVENT_READ, c)

    def close(self):
        self.sel.close()

    def _parse(self, c):
        buf = c.buf
        pos = 0
        n = len(buf)
        while n - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            ln = b1 & 0x7F
            hl = 2
            if ln == 126:
                if n - pos < 4:
                    break
                ln = struct.unpack_from("!H", buf, pos + 2)[0]
                hl = 4
            elif ln == 127:
                if n - pos < 10:
                    break
                ln = struct.unpack_from("!Q", buf, pos + 2)[0]
                hl = 10
            if b1 & 0x80:
                raise AssertionError("server sent a masked frame")
            if n - pos < hl + ln:
                break
            op = b0 & 0x0F
            payload = bytes(buf[pos + hl:pos + hl + ln])
            pos += hl + ln
            if op in (rawws.OP_PING, rawws.OP_PONG):
                continue
            if op == rawws.OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                raise AssertionError("a reader was closed: code %r reason %r after %d messages"
                                     % (code, payload[2:], c.msgs))
            if op != rawws.OP_TEXT or not (b0 & 0x80):
                raise AssertionError("a reader got an unexpected frame: op %d fin %d len %d"
                                     % (op, b0 >> 7, ln))
            seq = int(payload[:8])
            if seq != c.next_seq or len(payload) != SMALL:
                raise AssertionError("a reader got \"all\" message %d (%d bytes), expected %d: a message "
                                     "was lost or reordered" % (seq, len(payload), c.next_seq))
            c.next_seq += 1
            c.msgs += 1
        if pos:
            del buf[:pos]

    def read_until(self, expected, timeout, tick=None, tick_every=0.02):
        """Read until every reader has all "all" messages up to expected - 1.
        tick() is called every tick_every seconds (RSS sampling). Returns
        the seconds it took."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        missing = sum(1 for c in self.readers if c.next_seq < expected)
        last_tick = 0.0
        for _ in range(10 ** 7):
            now = time.monotonic()
            if tick and now - last_tick >= tick_every:
                tick()
                last_tick = now
            if missing == 0:
                return now - t0
            if now > deadline:
                behind = [c.next_seq for c in self.readers if c.next_seq < expected]
                raise AssertionError("after %.1f s, %d of %d readers still miss \"all\" messages (expected "
                                     "%d each; they have e.g. %r)" % (timeout, len(behind), len(self.readers),
                                                                      expected, behind[:10]))
            for key, _ in self.sel.select(timeout=tick_every):
                c = key.data
                try:
                    data = c.sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except ConnectionResetError:
                    data = b""
                if not data:
                    raise AssertionError("the server closed a reader's TCP connection after %d messages" % c.msgs)
                before = c.next_seq < expected
                c.buf += data
                self._parse(c)
                if before and c.next_seq >= expected:
                    missing -= 1
        raise AssertionError("read loop did not finish")


def drain_stuck(c, bulk_n, timeout):
    """Read a stuck connection to its end: until the last bulk message (drop-oldest:
    it is still open) or until the server ended TCP (close). Returns (bulk
    sequence numbers in order, close frame payload or None, eof)."""
    sock = c.sock
    sock.setblocking(True)
    buf = bytearray()
    seqs, close = [], None
    deadline = time.monotonic() + timeout
    for _ in range(10 ** 6):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError("stuck connection drained for %ss: neither the last bulk message nor EOF "
                                 "(got %d, last %r)" % (timeout, len(seqs), seqs[-1:]))
        sock.settimeout(remaining)
        try:
            data = sock.recv(1 << 20)
        except ConnectionResetError:
            data = b""
        if not data:
            return seqs, close, True
        buf += data
        pos = 0
        while len(buf) - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            ln, hl = b1 & 0x7F, 2
            if ln == 126:
                if len(buf) - pos < 4:
                    break
                ln, hl = struct.unpack_from("!H", buf, pos + 2)[0], 4
            elif ln == 127:
                if len(buf) - pos < 10:
                    break
                ln, hl = struct.unpack_from("!Q", buf, pos + 2)[0], 10
            if len(buf) - pos < hl + ln:
                break
            op = b0 & 0x0F
            if op == rawws.OP_CLOSE:
                assert close is None, "two close frames"
                close = bytes(buf[pos + hl:pos + hl + ln])
            elif op == rawws.OP_BINARY:
                assert close is None, "a message after the close frame"
                assert ln == BULK_SIZE, ln
                seqs.append(int(buf[pos + hl:pos + hl + 8]))
            pos += hl + ln
        del buf[:pos]
        if seqs and seqs[-1] == bulk_n - 1:
            assert not buf, "more after the last bulk message: %r" % bytes(buf[:100])
            return seqs, close, False
    raise AssertionError("drain loop did not finish")


# ---------------------------------------------------------------------------

@pytest.mark.parametrize("policy,path", [("close", "/ws"), ("drop-oldest", "/ws_drop_oldest")])
def test_broadcast_to_10k_with_stuck_subscribers(spawn, capsys, nofile, policy, path):
    s = spawn(SCRIPT, "--ping-interval", "0", "--close-timeout", "2", "--max-connections", "100000")
    pid = s.proc.pid
    label = "%s (%d subscribers, %d stuck, max_buffered 256 KiB)" % (policy, N_TOTAL, N_STUCK)
    stats = lambda: s.json("/stats")
    t0 = time.monotonic()
    clients = open_connections(s.port, path, N_TOTAL, N_TOTAL // N_STUCK, timeout=scaled(40))
    t_connect = time.monotonic() - t0
    readers_sel = None
    try:
        readers = [c for c in clients if not c.stuck]
        stuck = [c for c in clients if c.stuck]
        assert len(readers) == N_READERS and len(stuck) == N_STUCK
        st = wait_for(lambda: (lambda x: x if x["opens"] == N_TOTAL else None)(stats()),
                      timeout=10, desc="open() for every connection")
        assert st["count"] == N_TOTAL and st["stuck_opens"] == N_STUCK, st
        rss_conn = rss_kb(pid)
        report(capsys, "%s: %d connections upgraded in %.2f s; server VmRSS %.1f MiB"
               % (label, N_TOTAL, t_connect, rss_conn / 1024))

        # -- phase 1: every reader gets every small message ----------------
        readers_sel = Readers(readers)
        t1 = time.monotonic()
        r = s.json("/pub?n=%d&size=%d" % (PHASE1_MSGS, SMALL))
        assert (r["first"], r["last"]) == (0, PHASE1_MSGS - 1), r
        took = readers_sel.read_until(PHASE1_MSGS, timeout=scaled(20))
        st = stats()
        assert st["all_reached"] == {str(N_TOTAL): PHASE1_MSGS}, st["all_reached"]
        report(capsys, "%s: phase 1: %d x %d B to \"all\": %d readers got all %d in order in %.2f s"
               " (%d deliveries)" % (label, PHASE1_MSGS, SMALL, N_READERS, PHASE1_MSGS,
                                     time.monotonic() - t1, N_READERS * PHASE1_MSGS))

        # -- phase 2: bulk to the stuck ones, interleaved "all" messages -----
        lua_before = st["lua_kb"]
        rss_before = rss_kb(pid)
        peak = [rss_before]

        def sample():
            peak[0] = max(peak[0], rss_kb(pid))

        t2 = time.monotonic()
        r = s.json("/bulk?n=%d&size=%d&per=%d&all_every=%d" % (BULK_N, BULK_SIZE, BULK_PER, ALL_EVERY))
        n_all = PHASE1_MSGS + r["all_msgs"]
        assert r["all_msgs"] == BULK_N // ALL_EVERY, r
        readers_sel.read_until(n_all, timeout=scaled(30), tick=sample)
        t_readers = time.monotonic() - t2

        def bulk_done():
            sample()
            x = stats()
            return x if x["bulk_done"] else None

        st = wait_for(bulk_done, timeout=30, interval=0.02, desc="the bulk publishing to finish")
        t_bulk = time.monotonic() - t2
        bulk_mib = BULK_N * BULK_SIZE / 2 ** 20

        if policy == "close":
            def all_closed():
                sample()
                x = stats()
                return x if x["closes_stuck"].get("1008", 0) >= N_STUCK and x["count"] == N_READERS else None

            st = wait_for(all_closed, timeout=15, interval=0.05,
                          desc="on_close 1008 for the %d stuck connections and count %d" % (N_STUCK, N_READERS))
            assert st["closes_stuck"] == {"1008": N_STUCK}, st["closes_stuck"]
            assert st["stuck_open"] == 0, st
        else:
            st = stats()
            assert st["closes_stuck"] == {}, "drop-oldest closed stuck connections: %r" % st["closes_stuck"]
            assert st["count"] == N_TOTAL and st["stuck_open"] == N_STUCK, st
            # the queues are bounded by max_buffered (one message may exceed it:
            # the limit bounds the backlog, an empty queue takes any message)
            assert st["stuck_max_buffered"] <= MAX_BUFFERED + BULK_SIZE, st
        assert st["closes_reader"] == {}, "readers were closed: %r" % st["closes_reader"]
        sample()
        rss_peak = peak[0]
        rss_after = rss_kb(pid)

        # the readers got nothing more than expected (no duplicates, nothing late)
        readers_sel.read_until(n_all, timeout=1)
        assert all(c.next_seq == n_all for c in readers), "some readers got more than %d messages" % n_all
        reached = st["all_reached"]
        report(capsys, "%s: bulk %d x %d KiB (%.0f MiB per stuck client) in %.2f s; %d readers got all %d "
               "\"all\" messages in order (%d interleaved) after %.2f s; publish reached %r"
               % (label, BULK_N, BULK_SIZE >> 10, bulk_mib, t_bulk, N_READERS, n_all, n_all - PHASE1_MSGS,
                  t_readers, reached))
        report(capsys, "%s: server VmRSS before bulk %.1f MiB, peak %.1f MiB (+%.1f MiB), after %.1f MiB; "
               "bound +%.1f MiB (unbounded queues would keep >= ~%.0f MiB)%s; count %d, stuck open %d, "
               "stuck on_close %r; Lua heap %.1f -> %.1f MiB"
               % (label, rss_before / 1024, rss_peak / 1024, (rss_peak - rss_before) / 1024, rss_after / 1024,
                  RSS_BOUND_KB / 1024, bulk_mib - 4,
                  " [ASan: RSS includes the allocator quarantine, not checked]" if SANITIZED else "",
                  st["count"], st["stuck_open"], st["closes_stuck"], lua_before / 1024, st["lua_kb"] / 1024))
        if not SANITIZED:
            assert rss_peak - rss_before < RSS_BOUND_KB, (
                "server RSS grew by %.1f MiB (bound %.1f MiB) while %d subscribers did not read"
                % ((rss_peak - rss_before) / 1024, RSS_BOUND_KB / 1024, N_STUCK))

        if policy == "close":
            # what a closed stuck client can still read is a prefix of the bulk
            # (close frees the queue: nothing dropped from the middle), then the
            # end of TCP
            got = []
            for c in stuck[:3]:
                seqs, close, eof = drain_stuck(c, BULK_N, timeout=scaled(20))
                code = struct.unpack("!H", close[:2])[0] if close and len(close) >= 2 else None
                got.append((len(seqs), code))
                assert eof and seqs == list(range(len(seqs))) and len(seqs) < BULK_N, (len(seqs), seqs[-3:], eof)
                if close is not None:
                    assert code == 1008, close
            report(capsys, "%s: 3 closed stuck clients drained afterwards: (bulk messages, close code seen) "
                   "%r of %d, then EOF" % (label, got, BULK_N))
        else:
            # the stuck ones are still served: drain a few, they get the newest
            # bulk message; what was dropped is a gap, never a reordering
            got = []
            for c in stuck[:3]:
                seqs, close, eof = drain_stuck(c, BULK_N, timeout=scaled(20))
                got.append(len(seqs))
                assert close is None and not eof, "a drop-oldest stuck client was closed: %r" % close
                gaps = sum(1 for a, b in zip(seqs, seqs[1:]) if b != a + 1)
                assert all(a < b for a, b in zip(seqs, seqs[1:])), "bulk out of order"
                assert len(seqs) < BULK_N and gaps >= 1, (len(seqs), gaps)
                c.sock.sendall(rawws.build_frame(rawws.OP_TEXT, b"still there?"))
                for _ in range(1000):
                    f_head = c.sock.recv(2)
                    if not f_head:
                        raise AssertionError("closed instead of echoing")
                    op, ln = f_head[0] & 0x0F, f_head[1] & 0x7F
                    assert ln < 126, "unexpected large frame after the drain"
                    body = b""
                    while len(body) < ln:
                        body += c.sock.recv(ln - len(body))
                    if op == rawws.OP_TEXT and body == b"still there?":
                        break
                else:
                    raise AssertionError("no echo")
            report(capsys, "%s: 3 stuck clients drained afterwards: they got %r of %d bulk messages "
                   "(in order, the newest included, the oldest dropped), then an echo" % (label, got, BULK_N))
    finally:
        if readers_sel:
            readers_sel.close()
        for c in clients:
            c.sock.close()
