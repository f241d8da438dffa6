"""Operational options listed by `wspush --help`: heartbeats, timeouts, connection
limits, backpressure, rate limiting. Each test runs its own server with small
values, so every wait is short and bounded."""
import socket
import subprocess
import threading
import time

import pytest

import rawws
from rawws import OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, build_frame
from conftest import BIN, REPO, SCRIPTS, scaled, wait_for

APP = SCRIPTS / "app.lua"


def start(spawn, *args):
    return spawn(APP, "--close-timeout", "10", *args)


def test_help_lists_options_and_exits_zero():
    p = subprocess.run([str(BIN), "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
    assert p.returncode == 0, p
    out = p.stdout.decode()
    for opt in ("--host", "--port", "--max-message", "--max-header", "--max-body", "--close-timeout"):
        assert opt in out, "%s missing from --help: %s" % (opt, out)


def test_version_prints_version_and_exits_zero():
    p = subprocess.run([str(BIN), "--version"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
    assert p.returncode == 0, p
    assert "0.1" in p.stdout.decode(), p


def test_server_pings_and_a_peer_that_answers_stays_open(spawn):
    s = start(spawn, "--ping-interval", "0.2", "--ping-timeout", "1")
    with rawws.upgrade(s.port, "/echo") as c:
        for _ in range(3):
            f = c.recv_frame(timeout=scaled(5))
            assert f.opcode == OP_PING, f
            c.send_frame(OP_PONG, f.payload)
        c.send_text("still here")
        for _ in range(10):   # pings may come in between
            f = c.recv_frame(timeout=scaled(5))
            if f.opcode == OP_PING:
                c.send_frame(OP_PONG, f.payload)
                continue
            assert f.opcode == OP_TEXT and f.payload == b"still here", f
            break
        else:
            pytest.fail("no echo")


# Timeout tests measure from before what starts the server's clock (it starts
# when the server sees it, never earlier), so the lower bound is the option
# itself less SLACK (millisecond clock truncation); the upper bound allows two
# sweeps (0.1 s each) and scheduling, scaled.
SLACK = 0.02


def last_close(s):
    """The last on_close the script recorded (path, code, reason), once there is one."""
    def seen():
        j = s.json("/last_close")
        return j if j["seen"] else None
    return wait_for(seen, desc="on_close")


def test_peer_that_never_answers_pings_is_dropped(spawn):
    interval, timeout = 0.2, 0.3
    s = start(spawn, "--ping-interval", interval, "--ping-timeout", timeout)
    t0 = time.monotonic()
    with rawws.upgrade(s.port, "/echo") as c:
        try:
            c.wait_eof(timeout=scaled(5))
        except TimeoutError:
            pytest.fail("a peer that never answers pings was not dropped within 5 s")
        waited = time.monotonic() - t0
    # a ping after `interval` of silence, then `timeout` for the pong: not before
    assert interval + timeout - SLACK <= waited <= interval + timeout + scaled(1.5), waited
    wait_for(lambda: s.json("/count")["count"] == 0, desc="count == 0")
    # cut without a close handshake: on_close sees 1006
    lc = last_close(s)
    assert (lc["path"], lc["code"]) == ("/echo", 1006), lc


def test_ping_interval_zero_sends_no_pings(spawn):
    s = start(spawn, "--ping-interval", "0")
    with rawws.upgrade(s.port, "/echo") as c:
        with pytest.raises(TimeoutError):
            c.recv_frame(timeout=1.0)


def test_handshake_timeout_drops_slowloris(spawn):
    deadline = 0.5
    s = start(spawn, "--handshake-timeout", deadline)
    t0 = time.monotonic()     # the deadline runs from the request's first bytes, after this
    with rawws.Conn(s.port) as c:
        c.send(b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        try:
            r = c.read_response(timeout=scaled(5))
            c.wait_eof(timeout=scaled(5))
        except TimeoutError:
            pytest.fail("an incomplete request was kept open past --handshake-timeout")
        waited = time.monotonic() - t0
    assert r.status == 408, r
    assert deadline - SLACK <= waited <= deadline + scaled(1.5), waited


def test_keepalive_timeout_closes_idle_http_connection(spawn):
    keepalive = 0.5
    s = start(spawn, "--keepalive-timeout", keepalive)
    with rawws.Conn(s.port) as c:
        t0 = time.monotonic()   # the idle time runs from the answer, after this
        r = c.request("GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
        assert r.status == 201
        try:
            c.wait_eof(timeout=scaled(5))
        except TimeoutError:
            pytest.fail("an idle keep-alive connection outlived --keepalive-timeout")
        waited = time.monotonic() - t0
    assert keepalive - SLACK <= waited <= keepalive + scaled(1.5), waited


def test_idle_timeout_closes_silent_websocket(spawn):
    idle = 0.5
    s = start(spawn, "--idle-timeout", idle, "--ping-interval", "0")
    t0 = time.monotonic()     # the idle time runs from the open, after this
    with rawws.upgrade(s.port, "/echo") as c:
        try:
            f, before = c.recv_close(timeout=scaled(5))
        except TimeoutError:
            pytest.fail("a silent connection outlived --idle-timeout")
        waited = time.monotonic() - t0
        # docs/api.md: the server closes with 1001 (a close handshake, not a cut)
        assert (f.close_code, f.close_reason, before) == (1001, b"idle timeout", []), (f, before)
        assert idle - SLACK <= waited <= idle + scaled(1.5), waited
        c.send_close(1001)
        c.wait_eof(timeout=scaled(5))
    wait_for(lambda: s.json("/count")["count"] == 0, desc="count == 0")
    lc = last_close(s)
    assert (lc["path"], lc["code"]) == ("/echo", 1001), lc


def test_max_connections_answers_503_above_the_limit(spawn):
    s = start(spawn, "--max-connections", "2")
    a = rawws.upgrade(s.port, "/echo")
    b = rawws.upgrade(s.port, "/echo")
    try:
        with rawws.Conn(s.port) as c:
            r = c.handshake("/echo")
            assert r.status == 503, r
        # plain HTTP is not a WebSocket connection: still served
        assert s.http("/status").status == 201
        a.send_close(1000)
        a.recv_close()
        a.close()
        wait_for(lambda: s.json("/count")["count"] == 1, desc="count == 1")
        with rawws.upgrade(s.port, "/echo") as d:
            d.send_text("room again")
            assert d.recv_text() == "room again"
    finally:
        a.close()
        b.close()


def test_max_per_ip_answers_503_above_the_limit(spawn):
    s = start(spawn, "--max-per-ip", "1")
    with rawws.upgrade(s.port, "/echo"):
        with rawws.Conn(s.port) as c:
            r = c.handshake("/echo")
            assert r.status == 503, r


def test_rate_limit_closes_1008(spawn):
    s = start(spawn, "--rate-limit", "5", "--rate-burst", "5")
    with rawws.upgrade(s.port, "/echo") as c:
        c.send(b"".join(build_frame(OP_TEXT, b"m%d" % i) for i in range(50)))
        f, before = c.recv_close(timeout=scaled(5), max_frames=100)
        assert f.close_code == 1008, f
        assert 1 <= len(before) < 50, "expected some messages through then a close, got %d" % len(before)


def kernel_max(name):
    with open("/proc/sys/net/ipv4/" + name) as f:
        return int(f.read().split()[2])


def test_a_peer_that_does_not_read_its_replies_is_paused_not_closed(spawn):
    """Read backpressure: its echoes stop being read at half of --max-buffered,
    so they never reach the bound, and every one arrives once it reads."""
    s = start(spawn, "--max-buffered", "65536", "--backpressure", "close")
    c = rawws.upgrade(s.port, "/echo", timeout=scaled(20))
    try:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
        # More than every buffer between us can hold: the server's receive
        # buffer grows up to tcp_rmem's maximum (32 MiB on some machines),
        # both send buffers up to tcp_wmem's, ours is 512 KiB.
        size = 256 * 1024
        n = (kernel_max("tcp_rmem") + 2 * kernel_max("tcp_wmem") + 4 * size) // size + 16
        sent = []

        def send_all():
            for k in range(n):
                c.send_frame(OP_BINARY, bytes([k]) * size)
                sent.append(k)

        sender = threading.Thread(target=send_all, daemon=True)
        sender.start()
        # Echoes nobody reads: the server stops reading, so the sender
        # blocks before it is done (its send buffer and ours fill up).
        sender.join(timeout=scaled(2))
        assert sender.is_alive(), "all %d frames were taken without a read: no backpressure" % n
        assert s.json("/count")["count"] == 1
        got = []
        while len(got) < n:
            op, data = c.recv_message(timeout=scaled(10))
            assert op == OP_BINARY, (op, data[:20])
            got.append(data[0])
            assert len(data) == size
        sender.join(timeout=scaled(10))
        assert got == list(range(n)) and len(sent) == n
        c.send_text("still open")
        assert c.recv_text() == "still open"
    finally:
        c.close()


def state_id(c):
    c.send_text("id")
    return int(c.recv_text())


def test_pushes_to_a_peer_that_does_not_read_close_it_1008(spawn):
    s = start(spawn, "--max-buffered", "65536", "--backpressure", "close")
    with rawws.upgrade(s.port, "/state", timeout=scaled(10)) as c:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
        cid = state_id(c)
        r = s.json("/blast?id=%d&size=65536&count=256" % cid)  # 16 MiB pushed at once
        assert r["refused"] > 0 and r["err"] == "buffer full", r
        f, before = c.recv_close(timeout=scaled(20), max_frames=1000)
        assert f.close_code == 1008 and f.close_reason == b"too slow: send buffer full", f
        assert len(before) <= r["sent"]  # what was queued when the policy fired is dropped
    wait_for(lambda: s.json("/closes?id=%d" % cid)["code"] == 1008, desc="on_close with 1008")


def test_backpressure_drop_keeps_connection_open(spawn):
    s = start(spawn, "--max-buffered", "65536", "--backpressure", "drop")
    with rawws.upgrade(s.port, "/state", timeout=scaled(10)) as c:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
        cid = state_id(c)
        r = s.json("/blast?id=%d&size=65536&count=256" % cid)
        assert r["refused"] > 0 and r["sent"] + r["refused"] == 256, r
        # exactly what was accepted arrives, then the connection goes on
        for _ in range(r["sent"]):
            op, data = c.recv_message(timeout=scaled(10))
            assert op == OP_BINARY and len(data) == 65536
        c.send_text("count")
        assert c.recv_text().isdigit()


# ---------------------------------------------------------------------------
# Limits that hold before any request (issue 14).

def test_max_tcp_per_ip_counts_http_connections_and_handshakes_too(spawn):
    s = start(spawn, "--max-tcp-per-ip", "2")
    a, b = rawws.Conn(s.port), rawws.Conn(s.port)  # connected, nothing sent yet
    try:
        with rawws.Conn(s.port) as c:
            r = c.read_response(timeout=scaled(5))  # answered without a request
            assert r.status == 503 and r.header("Retry-After") == "1", r
            c.wait_eof(timeout=scaled(5))
        # A connection in progress still counts: its request is served.
        r = a.request("GET /count HTTP/1.1\r\nHost: x\r\n\r\n")
        assert r.status == 200
    finally:
        a.close()
        b.close()
    # Once they are gone, the address may connect again.
    wait_for(lambda: s.http("/count").status == 200, desc="a new connection admitted")


def test_accept_rate_answers_429_to_an_address_that_connects_too_fast(spawn):
    s = start(spawn, "--accept-rate", "3")
    statuses = []
    for _ in range(6):
        with rawws.Conn(s.port) as c:
            c.send(b"GET /count HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            statuses.append(c.read_response(timeout=scaled(5)).status)
    # A fixed one-second window: at most 3 of 6 quick connects get through,
    # at least 3 when the window does not turn in between.
    assert statuses.count(429) >= 2 and statuses.count(200) >= 3, statuses
    assert set(statuses) <= {200, 429}, statuses


def test_max_requests_per_conn_closes_after_the_last_answer(spawn):
    s = start(spawn, "--max-requests-per-conn", "3")
    with rawws.Conn(s.port) as c:
        for k in range(3):
            r = c.request("GET /count HTTP/1.1\r\nHost: x\r\n\r\n")
            assert r.status == 200
            assert (r.header("Connection") == "close") == (k == 2), (k, r)
        c.wait_eof(timeout=scaled(5))


def test_a_slow_request_body_is_cut_like_slow_headers(spawn):
    s = start(spawn, "--handshake-timeout", "1")
    with rawws.Conn(s.port) as c:
        c.send(b"POST /echo_body HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        t0 = time.monotonic()
        status = None
        for _ in range(50):  # one byte every 0.1 s: 5 s for the body, were it let through
            try:
                c.send(b"x")
            except OSError:
                break
            c.sock.settimeout(0.1)
            try:
                status = c.read_response(timeout=0.1).status
                break
            except (TimeoutError, socket.timeout):
                continue
        waited = time.monotonic() - t0
    assert status == 408, status
    assert 0.9 <= waited <= scaled(3), waited


def test_a_flood_of_refusals_is_logged_once_when_it_starts(spawn):
    """Without an access log, an operator still hears that clients are being
    turned away, but once per episode, not once per client."""
    s = start(spawn, "--max-connections", "1")
    mark = s.log_mark()
    a = rawws.upgrade(s.port, "/echo")
    try:
        for _ in range(20):
            with rawws.Conn(s.port) as c:
                assert c.handshake("/echo").status == 503
        s.wait_log(r"refusing: 503 too many connections \(first: 127\.0\.0\.1\)", since=mark)
        lines = [l for l in s.log.splitlines()[mark:] if "too many connections" in l]
        assert len(lines) == 1, lines
        # 5 s without another: the episode ends with its count.
        s.wait_log(r"refused 20 requests with 503 too many connections over [0-9.]+ s",
                   since=mark, timeout=15)
    finally:
        a.close()
