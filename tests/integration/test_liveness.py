"""Liveness, limits, backpressure and graceful shutdown (issue 5), end to end.

Complements test_limits.py / test_robustness.py (which cover the basic cases):
here the figures are measured and printed (time to detect a dead peer, when a
slowloris is cut, server RSS while a client never reads, CPU while out of
descriptors), the policies are checked by what the slow client finally reads,
and shutdown is checked with 100 clients and a script that records its hooks.

Server script: scripts/live_liveness.lua. Every wait is bounded; the only
sleeps are pacing (a slowloris trickle, a well-behaved message rate) and the
one-second CPU measurement window.

Longer than our ~600-line guide on purpose: each case needs its own
stuck or silent client and the figures it prints; split by theme they would
share most of their helpers again.
"""
import json
import re
import resource
import select
import signal
import socket
import struct
import time
from pathlib import Path

import pytest

import rawws
from rawws import OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, build_frame
from conftest import SCRIPTS, bin_is_sanitized, cpu_seconds, report, rss_kb, scaled, wait_for

SCRIPT = SCRIPTS / "live_liveness.lua"


SANITIZED = bin_is_sanitized()


def start(spawn, *args):
    return spawn(SCRIPT, "--close-timeout", "5", *args)


def stats(s):
    return s.json("/stats")


def conn_id(c):
    c.send_text("id")
    return int(c.recv_text())


def read_events(path):
    p = Path(path)
    return p.read_text().splitlines() if p.exists() else []


# ---------------------------------------------------------------------------
# heartbeat

INTERVAL, TIMEOUT = 0.3, 0.3


def test_client_answering_pings_stays_for_several_intervals_and_on_pong_runs(spawn, capsys):
    s = start(spawn, "--ping-interval", INTERVAL, "--ping-timeout", TIMEOUT)
    with rawws.upgrade(s.port, "/echo") as c:
        t0 = time.monotonic()
        pings, on_pong = 0, []
        for _ in range(200):
            f = c.recv_frame(timeout=scaled(3))
            if f.opcode == OP_PING:
                pings += 1
                c.send_frame(OP_PONG, f.payload)
            elif f.opcode == OP_TEXT:
                on_pong.append(f.payload.decode())
            else:
                pytest.fail("unexpected frame while answering pings: %r" % f)
            if pings >= 6:
                break
        elapsed = time.monotonic() - t0
        # six pings answered: that is several times interval + timeout
        assert pings >= 6 and elapsed >= 2 * (INTERVAL + TIMEOUT), (pings, elapsed)
        # an unsolicited pong reaches on_pong with its data
        c.send_frame(OP_PONG, b"hello")
        c.send_text("still here")
        texts = []
        for _ in range(50):
            f = c.recv_frame(timeout=scaled(3))
            if f.opcode == OP_PING:
                c.send_frame(OP_PONG, f.payload)
                continue
            assert f.opcode == OP_TEXT, f
            texts.append(f.payload.decode())
            if texts[-1] == "still here":
                break
        on_pong += texts[:-1]
        assert texts[-1] == "still here"
    report(capsys, "answering client: %d pings answered over %.2f s (interval %.1f s, timeout %.1f s), "
           "still open" % (pings, elapsed, INTERVAL, TIMEOUT))
    # on_pong ran for the heartbeat pongs (empty data) and the unsolicited one
    assert sum(1 for t in on_pong if t.endswith("[]")) >= 5, on_pong
    assert on_pong[-1].endswith("[hello]"), on_pong
    assert stats(s)["pongs"] >= 6


def fragmented_and_split_ping(c, text):
    """A text message in two fragments with a ping between them, the ping's
    payload split across two reads of the server: the reader needs both its
    buffers (the message's, and the control frame's, 2 of whose 10 payload
    bytes come in the first read)."""
    half = len(text) // 2
    ping = build_frame(OP_PING, b"split-ping")
    c.send(build_frame(OP_TEXT, text[:half].encode(), fin=False) + ping[:8])
    # A pause between the two sends would not split anything for sure: the
    # server may read both at once. TCP_NODELAY (rawws sets it) makes the
    # first part leave at once, and we wait until the server has provably
    # read it (the kernel's count of unread bytes on its socket is 0), so the
    # second part can only come in a later read.
    c.wait_read_by_server(timeout=scaled(5))
    c.send(ping[8:] + build_frame(0, text[half:].encode()))
    frames = [c.recv_frame(timeout=scaled(3)) for _ in range(2)]
    assert [(f.opcode, f.payload) for f in frames] == [
        (OP_PONG, b"split-ping"), (OP_TEXT, text.encode())], frames


def test_idle_connection_releases_its_buffers_and_still_works(spawn):
    """The sweep releases the read and write buffers of a quiet connection (an
    idle connection holds none); the next fragmented message and split
    control frame must work as before."""
    s = start(spawn, "--log-level", "debug")
    with rawws.upgrade(s.port, "/echo") as c:
        cid = conn_id(c)
        fragmented_and_split_ping(c, "before the idle period")
        s.wait_log(r"conn %d: idle, buffers released" % cid, timeout=5)
        fragmented_and_split_ping(c, "after the buffers were released")
        mark = s.log_mark()
        s.wait_log(r"conn %d: idle, buffers released" % cid, timeout=5, since=mark)


def test_client_ignoring_pings_is_closed_within_interval_plus_timeout(spawn, capsys):
    s = start(spawn, "--ping-interval", INTERVAL, "--ping-timeout", TIMEOUT)
    with rawws.upgrade(s.port, "/echo") as c:
        cid = conn_id(c)
        t0 = time.monotonic()          # the server's last byte from us is just before this
        f = c.recv_frame(timeout=scaled(3))
        t_ping = time.monotonic() - t0
        assert f.opcode == OP_PING, f
        # never answer; the server must drop us
        try:
            c.wait_eof(timeout=scaled(5))
        except TimeoutError:
            pytest.fail("a peer ignoring pings was still connected 5 s later")
        t_dead = time.monotonic() - t0
    report(capsys, "dead peer detected after %.3f s (first ping after %.3f s; interval %.1f + timeout %.1f "
           "= %.1f s, sweep 0.1 s)" % (t_dead, t_ping, INTERVAL, TIMEOUT, INTERVAL + TIMEOUT))
    assert INTERVAL - 0.05 <= t_ping <= INTERVAL + scaled(0.4), t_ping
    # two sweeps of granularity (ping, then close) plus scheduling slack
    assert INTERVAL + TIMEOUT - 0.1 <= t_dead <= INTERVAL + TIMEOUT + scaled(0.5), t_dead
    code = wait_for(lambda: stats(s)["closes"].get(str(cid)), desc="on_close of the dead peer")
    assert code == 1006, "on_close code %r for a peer that vanished without a close frame" % code


def test_slowloris_trickling_headers_is_cut_at_the_handshake_deadline(spawn, capsys):
    """The deadline is for the whole request: a byte every 50 ms does not extend it."""
    deadline = 0.5
    s = start(spawn, "--handshake-timeout", deadline)
    with rawws.Conn(s.port) as c:
        c.send(b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nX-Slow: ")
        t0 = time.monotonic()
        got = b""
        cut = None
        for _ in range(200):                      # at most ~10 s
            if time.monotonic() - t0 > scaled(5):
                break
            r, _, _ = select.select([c.sock], [], [], 0.05)   # pacing of the trickle
            if r:
                try:
                    data = c.sock.recv(65536)
                except ConnectionResetError:
                    data = b""
                if not data:
                    cut = time.monotonic() - t0
                    break
                got += data
                continue
            try:
                c.send(b"a")
            except OSError:
                cut = time.monotonic() - t0
                break
        if cut is None:
            pytest.fail("a client trickling its headers was still connected 5 s later (got %r)" % got[:200])
    report(capsys, "slowloris cut after %.3f s (--handshake-timeout %.1f s); answer %r"
           % (cut, deadline, got.split(b"\r\n")[0]))
    assert got.startswith(b"HTTP/1.1 408"), got[:200]
    assert deadline - 0.05 <= cut <= deadline + scaled(0.5), cut
    with rawws.upgrade(s.port, "/echo") as d:    # the server is fine
        d.send_text("ok")
        assert d.recv_text() == "ok"


# ---------------------------------------------------------------------------
# connection caps

def test_connection_cap_answers_503_and_disturbs_nothing(spawn):
    s = start(spawn, "--max-connections", "3", "--ping-interval", "0")
    conns = [rawws.upgrade(s.port, "/echo") for _ in range(3)]
    try:
        ids = [conn_id(c) for c in conns]
        for i in range(10):
            with rawws.Conn(s.port) as x:
                r = x.handshake("/echo")
                assert r.status == 503, r
        # the three live connections did not notice
        for i, c in enumerate(conns):
            c.send_text("after rejects %d" % i)
            assert c.recv_text() == "after rejects %d" % i
        assert s.json("/count")["count"] == 3
        assert stats(s)["closes"] == {}, "a connection was closed by the rejects"
        # rejected upgrades did not leak slots: free one, and one more fits
        conns[0].send_close(1000)
        conns[0].recv_close()
        conns[0].close()
        wait_for(lambda: s.json("/count")["count"] == 2, desc="count == 2")
        conns[0] = rawws.upgrade(s.port, "/echo")
        assert conn_id(conns[0]) > max(ids)
        with rawws.Conn(s.port) as x:
            assert x.handshake("/echo").status == 503
    finally:
        for c in conns:
            c.close()


def test_out_of_file_descriptors_does_not_spin_and_recovers(spawn, capsys):
    s = start(spawn, "--ping-interval", "0")
    mark = s.log_mark()
    nofile = 64
    resource.prlimit(s.proc.pid, resource.RLIMIT_NOFILE, (nofile, nofile))
    with rawws.upgrade(s.port, "/echo") as c:     # it still works under the limit
        c.send_text("before")
        assert c.recv_text() == "before"
    socks = []
    try:
        # more TCP connections than the server has descriptors (the kernel
        # completes them all; the server can accept only some)
        t_out = time.monotonic()
        for _ in range(2 * nofile):
            socks.append(rawws.Conn(s.port, timeout=scaled(5)))
        upgraded = 0
        for x in socks:
            try:
                r = x.handshake("/echo")
                upgraded += r.status == 101
            except (OSError, EOFError, rawws.ProtocolError, TimeoutError):
                pass
        assert 0 < upgraded < nofile, upgraded
        # keep knocking while out of descriptors, and measure the server's CPU
        cpu0, t0 = cpu_seconds(s.proc.pid), time.monotonic()
        extra = []
        for _ in range(10):
            try:
                extra.append(socket.create_connection(("127.0.0.1", s.port), timeout=1))
            except OSError:
                pass
            time.sleep(0.1)                       # the measurement window
        cpu = cpu_seconds(s.proc.pid) - cpu0
        wall = time.monotonic() - t0
        for e in extra:
            e.close()
        # logged at the first refused accept, over a second ago: a short wait
        # only lets our reader of the server's stderr catch up
        warned = bool(s.wait_log(r"\[warn\] accept: too many open files", timeout=1,
                                 since=mark, must=False))
        n_warned = len(re.findall(r"\[warn\] accept: ", "".join(s.log.splitlines(True)[mark:])))
        report(capsys, "out of descriptors (RLIMIT_NOFILE %d, %d upgraded, %d refused): server CPU "
               "%.3f s over %.2f s; accept warning logged: %s" % (
                   nofile, upgraded, len(socks) - upgraded, cpu, wall, warned))
        assert cpu < 0.25 * wall, "the server spins while out of descriptors: %.2f s CPU in %.2f s" % (cpu, wall)
        # "at most once a second" since the descriptors ran out
        assert n_warned <= 1 + int(time.monotonic() - t_out), "accept warning logged %d times" % n_warned
        assert s.alive()
    finally:
        for x in socks:
            x.close()
    # descriptors free up: a new connection works (the server needs a moment
    # to notice the closes, hence the bounded retry)
    def works():
        try:
            with rawws.upgrade(s.port, "/echo", timeout=scaled(2)) as d:
                d.send_text("after")
                return d.recv_text() == "after"
        except (OSError, EOFError, rawws.ProtocolError, TimeoutError):
            return False
    wait_for(works, timeout=10, interval=0.1, desc="a connection to work after descriptors freed up")
    wait_for(lambda: s.json("/count")["count"] == 0, desc="count == 0")
    assert warned, "out of descriptors, but no '[warn] accept: too many open files' in the log"


# ---------------------------------------------------------------------------
# rate limit

def test_rate_limit_allows_the_burst_then_closes_1008(spawn):
    s = start(spawn, "--rate-limit", "10", "--rate-burst", "5", "--ping-interval", "0")
    with rawws.upgrade(s.port, "/echo") as c:
        cid = conn_id(c)                        # one token spent
        c.send(b"".join(build_frame(OP_TEXT, b"m%d" % i) for i in range(10)))
        f, before = c.recv_close(timeout=scaled(5), max_frames=100)
        assert f.close_code == 1008, f
        got = [x.payload for x in before if x.opcode == OP_TEXT]
        # the bucket held 5 - 1 tokens (+ what refilled in a few ms)
        assert got == [b"m%d" % i for i in range(len(got))] and 4 <= len(got) <= 5, got
        c.send_close(1000)
    code = wait_for(lambda: stats(s)["closes"].get(str(cid)), desc="on_close after the rate limit")
    assert code in (1008, 1000), code


def test_client_within_the_rate_limit_stays(spawn):
    s = start(spawn, "--rate-limit", "100", "--rate-burst", "5", "--ping-interval", "0")
    with rawws.upgrade(s.port, "/echo") as c:
        for i in range(30):                     # 50 messages/s at most: half the limit
            c.send_text("m%d" % i)
            assert c.recv_text() == "m%d" % i
            time.sleep(0.02)                    # pacing, not synchronisation


def test_per_route_rate_limit(spawn):
    s = start(spawn, "--ping-interval", "0")   # no limit on the command line
    with rawws.upgrade(s.port, "/echo") as c:
        c.send(b"".join(build_frame(OP_TEXT, b"e%d" % i) for i in range(20)))
        assert [c.recv_text() for _ in range(20)] == ["e%d" % i for i in range(20)]
    with rawws.upgrade(s.port, "/rl") as c:    # rate_limit = 5, rate_burst = 3
        c.send(b"".join(build_frame(OP_TEXT, b"r%d" % i) for i in range(10)))
        f, before = c.recv_close(timeout=scaled(5), max_frames=100)
        assert f.close_code == 1008, f
        assert [x.payload for x in before if x.opcode == OP_TEXT] == [b"r0", b"r1", b"r2"]


# ---------------------------------------------------------------------------
# backpressure

FLOOD_TICKS, FLOOD_PER, FLOOD_SIZE = 128, 4, 65536     # 512 messages, 32 MiB, ~1.3 s


def seq_of(payload):
    return int(payload[:8])


def read_feed(c, timeout):
    """Read a feed subscriber to its end: returns (seqs, end_seen, close_frame)."""
    deadline = time.monotonic() + scaled(timeout)
    seqs, close = [], None
    for _ in range(100000):
        f = c.recv_frame(timeout=max(0.01, deadline - time.monotonic()))
        if f.opcode == OP_BINARY:
            assert f.fin
            seqs.append(seq_of(f.payload))
            assert len(f.payload) == FLOOD_SIZE
        elif f.opcode == OP_TEXT:
            assert f.payload == b"end", f
            return seqs, True, None
        elif f.opcode == OP_CLOSE:
            return seqs, False, f
    raise AssertionError("feed did not end")


def stuck_client(s, path):
    c = rawws.upgrade(s.port, path, timeout=scaled(20))
    # a fixed receive buffer (no autotuning up to tcp_rmem's 32 MiB), still
    # larger than two loopback segments so that reading it later is fast
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
    c.send_text("subscribed?")
    assert c.recv_text() == "subscribed?"       # open() ran: it is subscribed
    return c


def flood_with_reader(s, capsys, label, ticks=FLOOD_TICKS, per=FLOOD_PER):
    """Start the flood, read it completely on a fast reader, sample the
    server's RSS meanwhile. Returns the number of messages."""
    reader = rawws.upgrade(s.port, "/feed", timeout=scaled(20))
    try:
        reader.send_text("subscribed?")
        assert reader.recv_text() == "subscribed?"
        base = peak = rss_kb(s.proc.pid)
        r = s.http("/flood?ticks=%d&per=%d&size=%d" % (ticks, per, FLOOD_SIZE))
        assert r.status == 200, r
        n = ticks * per
        deadline = time.monotonic() + scaled(30)
        seqs = []
        for i in range(n + 1):
            op, data = reader.recv_message(timeout=max(0.01, deadline - time.monotonic()))
            if op == OP_TEXT:
                assert data == b"end"
                break
            seqs.append(seq_of(data))
            if i % 16 == 0:
                peak = max(peak, rss_kb(s.proc.pid))
        peak = max(peak, rss_kb(s.proc.pid))
        # the fast reader got every message, in order
        assert seqs == list(range(n)), "reader missed messages: %d of %d, first gap near %r" % (
            len(seqs), n, next((i for i, x in enumerate(seqs) if x != i), None))
        report(capsys, "%s: pushed %d MiB; server VmRSS %.1f MiB before, peak %.1f MiB (+%.1f MiB)%s"
               % (label, n * FLOOD_SIZE >> 20, base / 1024, peak / 1024, (peak - base) / 1024,
                  " [ASan build: RSS includes the allocator quarantine, not checked]" if SANITIZED else ""))
        if not SANITIZED:
            # unbounded queueing would keep ~all of the 32 MiB for the stuck client
            assert peak - base < 16 * 1024, "RSS grew by %d KiB while a client did not read" % (peak - base)
        return n
    finally:
        reader.close()


@pytest.mark.parametrize("policy", ["close", "drop", "drop-oldest"])
def test_client_that_never_reads_gets_the_policy_and_memory_stays_bounded(spawn, capsys, policy):
    s = start(spawn, "--max-buffered", "1m", "--backpressure", policy, "--ping-interval", "0")
    stuck = stuck_client(s, "/feed")
    try:
        n = flood_with_reader(s, capsys, "--backpressure %s, --max-buffered 1m" % policy)
        # now the stuck client reads what is left for it
        seqs, end, close = read_feed(stuck, timeout=20)
        assert seqs == sorted(set(seqs)), "out of order or duplicated"
        assert seqs[:1] == [0]
        gaps = [(a, b) for a, b in zip(seqs, seqs[1:]) if b != a + 1]
        desc = "stuck client got %d of %d messages (%.1f MiB), gaps %r, end %r, close %r" % (
            len(seqs), n, len(seqs) * FLOOD_SIZE / 2**20, gaps[:3], end, close)
        report(capsys, "--backpressure %s: %s" % (policy, desc))
        assert len(seqs) < n, desc
        if policy == "close":
            assert close is not None and close.close_code == 1008, desc
            assert close.close_reason == b"too slow: send buffer full", desc
            assert not gaps, "close must not drop from the middle: " + desc
        elif policy == "drop":
            # the new messages were dropped: what arrives is the beginning, no more
            assert close is None and not gaps, desc
            stuck.send_text("still open?")
            for _ in range(10):
                op, data = stuck.recv_message(timeout=scaled(5))
                if op == OP_TEXT:
                    assert data in (b"end", b"still open?"), data
                    if data == b"still open?":
                        break
        else:
            # the oldest were dropped: the beginning (already in the socket),
            # one gap, then the newest up to the last message and "end"
            assert close is None and end, desc
            assert len(gaps) == 1 and seqs[-1] == n - 1, desc
            stuck.send_text("still open?")
            assert stuck.recv_text() == "still open?"
    finally:
        stuck.close()


def test_per_route_max_buffered_and_backpressure_override_the_command_line(spawn, capsys):
    s = start(spawn, "--max-buffered", "512k", "--backpressure", "close", "--ping-interval", "0")
    a = stuck_client(s, "/feed")                # command line: 512k, close
    b = stuck_client(s, "/feed_drop_oldest")    # route: 256k, drop-oldest
    c = stuck_client(s, "/feed_big")            # route: 64m, close
    try:
        n = flood_with_reader(s, capsys, "per-route settings", ticks=64)
        sa, ea, ca = read_feed(a, timeout=20)
        sb, eb, cb = read_feed(b, timeout=20)
        sc, ec, cc = read_feed(c, timeout=30)
        report(capsys, "per-route: /feed got %d + close %r; /feed_drop_oldest got %d (end %r); "
               "/feed_big got %d (end %r)" % (len(sa), ca and ca.close_code, len(sb), eb, len(sc), ec))
        assert ca is not None and ca.close_code == 1008 and len(sa) < n
        assert cb is None and eb and sb[-1] == n - 1 and len(sb) < n, (len(sb), sb[-3:], cb)
        assert cc is None and ec and sc == list(range(n)), (len(sc), cc)
    finally:
        for x in (a, b, c):
            x.close()


def test_send_returns_buffer_full_when_the_policy_refuses(spawn):
    s = start(spawn, "--max-buffered", "256k", "--backpressure", "close", "--ping-interval", "0")
    # close (command line): send refuses, the connection is being closed 1008
    with rawws.upgrade(s.port, "/fill", timeout=scaled(10)) as c:
        cid = conn_id(c)
        c.send_text("fill 65536")
        f, before = c.recv_close(timeout=scaled(10))
        assert f.close_code == 1008 and f.close_reason == b"too slow: send buffer full", f
        out = stats(s)["sends"][str(cid)]
        assert out["err"] == "buffer full" and out["open"] is False and 1 <= out["sent"] <= 4, out
    # drop (route /fill_drop, 128k): send refuses, the connection goes on and
    # delivers exactly what was accepted
    with rawws.upgrade(s.port, "/fill_drop", timeout=scaled(10)) as c:
        c.send_text("fill 32768")
        c.send_text("after")
        msgs = []
        for _ in range(100):
            op, data = c.recv_message(timeout=scaled(5))
            msgs.append(op)
            if op == OP_TEXT:
                assert data == b"after"
                break
        sends = [v for v in stats(s)["sends"].values() if v.get("open")]
        assert len(sends) == 1 and sends[0]["err"] == "buffer full", sends
        assert msgs.count(OP_BINARY) == sends[0]["sent"] and 1 <= sends[0]["sent"] <= 4, (msgs, sends)


@pytest.mark.parametrize("threshold", [256 * 1024, 6 * 1024 * 1024], ids=["256k", "6m"])
def test_on_drain_streams_everything_in_order(spawn, capsys, threshold):
    """The documented streaming pattern: send while conn:buffered() < threshold,
    go on in on_drain. 320 chunks of 64 KiB (20 MiB) must all arrive in order,
    whether or not the socket absorbed a whole batch at once."""
    # --max-buffered above the handler's own threshold: the handler keeps the bound here.
    s = start(spawn, "--ping-interval", "0", "--max-buffered", "16m")
    n, size = 320, 65536
    with rawws.upgrade(s.port, "/stream", timeout=scaled(20)) as c:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        c.send_text("stream %d %d %d" % (n, size, threshold))
        seqs = []
        for _ in range(n + 1):
            try:
                op, data = c.recv_message(timeout=scaled(3))
            except TimeoutError:
                pytest.fail("stream stalled after %d of %d chunks (threshold %d): on_drain never came; "
                            "server stats %r" % (len(seqs), n, threshold, stats(s)))
            if op == OP_TEXT:
                done = json.loads(data)
                break
            seqs.append(seq_of(data))
        else:
            pytest.fail("no final message")
    report(capsys, "on_drain stream (threshold %d KiB): %d chunks in order, %d on_drain calls, peak "
           "conn:buffered() %d KiB" % (threshold >> 10, len(seqs), done["drains"], done["peak"] >> 10))
    assert seqs == list(range(1, n + 1))
    assert done["done"] == n and done["drains"] >= 1, done
    # the handler kept its own bound: at most one chunk over the threshold
    assert done["peak"] <= threshold + size + 16, done


# ---------------------------------------------------------------------------
# graceful shutdown

@pytest.fixture
def events(tmp_path, monkeypatch):
    path = tmp_path / "events.log"
    monkeypatch.setenv("LIVE_EVENTS", str(path))
    return path


def test_sigterm_with_100_clients_closes_each_1001_runs_hooks_and_exits_0(spawn, events, capsys):
    s = start(spawn, "--ping-interval", "0", "--shutdown-timeout", "10")
    conns = []
    try:
        for _ in range(100):
            conns.append(rawws.upgrade(s.port, "/echo", timeout=scaled(10)))
        ids = {conn_id(c) for c in conns}
        assert len(ids) == 100
        t0 = time.monotonic()
        s.terminate()
        for c in conns:
            f, before = c.recv_close(timeout=scaled(10))
            assert f.close_code == 1001 and f.close_reason == b"server shutting down", f
            # on_shutdown ran before the close frames were sent
            assert [x.payload for x in before if x.opcode == OP_TEXT] == [b"bye from on_shutdown"], before
            c.send_close(1001, "bye")
        for c in conns:
            c.wait_eof(timeout=scaled(10))
        rc = s.wait_exit(timeout=10)
        took = time.monotonic() - t0
    finally:
        for c in conns:
            c.close()
    report(capsys, "SIGTERM with 100 clients: exit %d after %.3f s" % (rc, took))
    assert rc == 0
    lines = read_events(events)
    assert lines and lines[0] == "shutdown 100", lines[:3]
    closes = [l.split(" ", 3) for l in lines[1:]]
    assert all(x[0] == "close" for x in closes), lines
    assert sorted(int(x[1]) for x in closes) == sorted(ids), "on_close did not run exactly once for each"
    assert {x[2] for x in closes} == {"1001"}, {x[2] for x in closes}


def test_second_signal_during_a_long_shutdown_exits_at_once(spawn, events, capsys):
    s = start(spawn, "--ping-interval", "0", "--shutdown-timeout", "30")
    conns = [rawws.upgrade(s.port, "/echo") for _ in range(5)]
    try:
        ids = {conn_id(c) for c in conns}
        s.terminate()
        for c in conns:                          # they get the close and never answer it
            f, _ = c.recv_close(timeout=scaled(5))
            assert f.close_code == 1001
        assert s.alive(), "the server did not wait for the close handshakes"
        t0 = time.monotonic()
        s.proc.send_signal(signal.SIGINT)
        rc = s.wait_exit(timeout=5)
        took = time.monotonic() - t0
    finally:
        for c in conns:
            c.close()
    report(capsys, "second signal during a 30 s shutdown: exit %d after %.3f s" % (rc, took))
    assert rc == 0
    assert took < scaled(3.0), "not prompt: %.2f s (the shutdown timeout is 30 s)" % took
    closes = [l.split(" ", 3) for l in read_events(events) if l.startswith("close ")]
    assert sorted(int(x[1]) for x in closes) == sorted(ids), "on_close must run for each connection"


def test_shutdown_timeout_bounds_the_wait_for_silent_clients(spawn, events, capsys):
    s = start(spawn, "--ping-interval", "0", "--shutdown-timeout", "0.5")
    conns = [rawws.upgrade(s.port, "/echo") for _ in range(3)]
    try:
        ids = {conn_id(c) for c in conns}
        t0 = time.monotonic()
        s.terminate()
        for c in conns:
            f, _ = c.recv_close(timeout=scaled(5))
            assert f.close_code == 1001
        rc = s.wait_exit(timeout=5)
        took = time.monotonic() - t0
    finally:
        for c in conns:
            c.close()
    report(capsys, "SIGTERM, 3 clients that never answer, --shutdown-timeout 0.5: exit %d after %.3f s"
           % (rc, took))
    assert rc == 0 and 0.4 <= took <= 0.5 + scaled(1.5), (rc, took)
    closes = [l.split(" ", 3) for l in read_events(events) if l.startswith("close ")]
    assert sorted(int(x[1]) for x in closes) == sorted(ids)


@pytest.mark.skipif(SANITIZED, reason="RSS figures mean little under ASan")
def test_a_backlog_of_small_messages_costs_about_its_size(spawn, capsys):
    """What --max-buffered counts (frame bytes) is about what a client that
    never reads costs: published frames are made to measure, and a private
    chunk is trimmed once another frame follows it. 40,000 publishes plus
    40,000 direct sends of 64 bytes queue ~5.3 MB; the server's RSS must not
    grow by more than 3x that (a standard 16 KiB chunk per frame made it ~30x)."""
    s = spawn(SCRIPTS / "stuck_small.lua", "--ping-interval", "0")
    stuck = rawws.upgrade(s.port, "/sub", timeout=scaled(20))
    stuck.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    assert stuck.recv_text() == "ready"
    pub = rawws.upgrade(s.port, "/pub", timeout=scaled(20))
    try:
        n, size = 40000, 64
        before = rss_kb(s.proc.pid)
        frames = b"".join(build_frame(OP_TEXT, b"%064d" % i) for i in range(n))
        pub.sock.sendall(frames)
        pub.send_text("sync")
        assert pub.recv_text(timeout=scaled(30)) == "synced"
        grew = (rss_kb(s.proc.pid) - before) * 1024
        queued = 2 * n * (size + 2)
        report(capsys, "backlog of %d small frames (%.1f MB): server RSS grew %.1f MB (%.2fx)"
               % (2 * n, queued / 1e6, grew / 1e6, grew / queued))
        assert grew < 3 * queued, (grew, queued)
    finally:
        stuck.close()
        pub.close()
