"""TLS, continued: what the cleartext suites check, over TLS (heartbeat,
backpressure, graceful shutdown with close_notify), hostile TLS peers, and a
handshake churn. Certificates come from the `pki` fixture (tlspki.py)."""
import queue
import re
import socket
import ssl
import subprocess
import threading
import time

import pytest

import rawws
from conftest import REPO, SCRIPTS, report, rss_kb, scaled, wait_for
from rawws import OP_PING, OP_PONG, OP_TEXT

ECHO = REPO / "handlers" / "echo.lua"
APP = SCRIPTS / "app.lua"
SLACK = 0.02


def tls_server(spawn, pki, *args, script=ECHO):
    s = spawn(script, "--tls-cert", pki.server, "--tls-key", pki.server_key, *args)
    return s.use_tls(pki.client_context())


def wss_echo_works(s, text="still serving"):
    with rawws.upgrade(s.port, "/ws") as c:
        assert c.recv_text() == "Welcome"
        c.send_text(text)
        assert c.recv_text() == "new message :" + text


def raw_connect(port, timeout=5):
    return socket.create_connection(("127.0.0.1", int(port)), timeout=scaled(timeout))


def read_to_eof(sock, timeout):
    """Everything the server sends until it closes; (bytes, seconds). Fails on a timeout."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    got = b""
    for _ in range(100000):
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            pytest.fail("the server kept the connection open for %ss (got %r)" % (timeout, got[:60]))
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return got, time.monotonic() - t0
        got += chunk
    pytest.fail("endless data")


class BioClient:
    """A TLS client through ssl.MemoryBIO over a raw socket: the test chooses every
    byte that goes out (records made early, sent late, cut short...)."""

    def __init__(self, port, ctx):
        self.sock = raw_connect(port)
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.inc, self.out, server_hostname="localhost")

    def client_hello(self):
        with pytest.raises(ssl.SSLWantReadError):
            self.tls.do_handshake()
        return self.out.read()

    def handshake(self):
        for _ in range(50):
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.sock.sendall(self.out.read())
                data = self.sock.recv(65536)
                if not data:
                    raise EOFError("server closed during the handshake")
                self.inc.write(data)
        self.sock.sendall(self.out.read())   # our Finished

    def seal(self, data):
        self.tls.write(data)
        return self.out.read()

    def read_plain_to_eof(self, timeout=5):
        """The plaintext the server sends until it closes TCP, and whether its
        close_notify came before the end (False: TCP ended without one)."""
        raw, _ = read_to_eof(self.sock, scaled(timeout))
        self.inc.write(raw)
        self.inc.write_eof()
        plain = b""
        for _ in range(10000):
            try:
                chunk = self.tls.read(65536)
            except ssl.SSLZeroReturnError:   # their close_notify, after ours
                return plain, True
            except (ssl.SSLEOFError, ssl.SSLWantReadError):
                return plain, False
            if not chunk:                    # their close_notify (python's read says b"")
                return plain, True
            plain += chunk
        pytest.fail("endless plaintext")

    def read_plain_until(self, marker, timeout=5):
        """Plaintext up to and including marker (the connection stays open)."""
        deadline = time.monotonic() + scaled(timeout)
        plain = b""
        for _ in range(10000):
            try:
                plain += self.tls.read(65536)
            except ssl.SSLWantReadError:
                self.sock.settimeout(max(0.001, deadline - time.monotonic()))
                data = self.sock.recv(65536)
                assert data, "the server closed before %r (got %r)" % (marker, plain)
                self.inc.write(data)
            if marker in plain:
                return plain
        pytest.fail("no %r" % marker)

    def close(self):
        self.sock.close()


# --- what the cleartext suites check, over TLS ------------------------------------------

def test_heartbeat_pings_over_tls_and_a_silent_peer_is_dropped(spawn, pki):
    s = tls_server(spawn, pki, "--ping-interval", "0.2", "--ping-timeout", "1", script=APP)
    with rawws.upgrade(s.port, "/echo") as c:
        for _ in range(3):
            f = c.recv_frame(timeout=scaled(5))
            assert f.opcode == OP_PING, f
            c.send_frame(OP_PONG, f.payload)
        c.send_text("still here")
        for _ in range(10):
            f = c.recv_frame(timeout=scaled(5))
            if f.opcode != OP_PING:
                break
            c.send_frame(OP_PONG, f.payload)
        assert (f.opcode, f.payload) == (OP_TEXT, b"still here"), f
    s2 = tls_server(spawn, pki, "--ping-interval", "0.2", "--ping-timeout", "0.3", script=APP)
    t0 = time.monotonic()
    with rawws.upgrade(s2.port, "/echo") as c:
        c.wait_eof(timeout=scaled(5))            # the pings are never answered
        waited = time.monotonic() - t0
    assert 0.5 - SLACK <= waited <= 0.5 + scaled(1.5), waited


def test_pushes_to_a_tls_peer_that_does_not_read_close_it_1008(spawn, pki):
    """test_limits' backpressure case over TLS: the queue bound holds although
    every frame is sealed into ciphertext below it."""
    s = tls_server(spawn, pki, "--max-buffered", "65536", "--backpressure", "close",
                   "--close-timeout", "10", script=APP)
    with rawws.upgrade(s.port, "/state", timeout=scaled(10)) as c:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
        c.send_text("id")
        cid = int(c.recv_text())
        r = s.json("/blast?id=%d&size=65536&count=256" % cid)   # 16 MiB pushed at once
        assert r["refused"] > 0 and r["err"] == "buffer full", r
        f, before = c.recv_close(timeout=scaled(20), max_frames=1000)
        assert f.close_code == 1008 and f.close_reason == b"too slow: send buffer full", f
        assert len(before) <= r["sent"]
    wait_for(lambda: s.json("/closes?id=%d" % cid)["code"] == 1008, desc="on_close with 1008")


@pytest.mark.valgrind
def test_sigterm_sends_1001_then_close_notify(spawn, pki):
    s = tls_server(spawn, pki)
    # suppress_ragged_eofs=False: an end of TCP without close_notify raises SSLEOFError
    c = rawws.upgrade(s.port, "/ws", suppress_ragged_eofs=False)
    try:
        assert c.recv_text() == "Welcome"
        s.terminate()
        f, before = c.recv_close(timeout=scaled(5))
        assert before == [] and (f.close_code, f.close_reason) == (1001, b"server shutting down"), f
        c.send_close(1001)
        c.sock.settimeout(scaled(5))
        try:
            rest = c.sock.recv(4096)
        except ssl.SSLEOFError as e:
            pytest.fail("TCP ended without a close_notify: %s" % e)
        assert rest == b"", rest
        assert c.sock.pending() == 0
    finally:
        c.close()
    assert s.wait_exit() == 0


def test_ciphertext_one_byte_per_write_and_connection_close_ends_with_close_notify(spawn, pki):
    s = tls_server(spawn, pki)
    bc = BioClient(s.port, pki.client_context())
    try:
        for b in bc.client_hello():
            bc.sock.send(bytes([b]))
        for _ in range(50):
            bc.inc.write(bc.sock.recv(65536))
            try:
                bc.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                pass
        rest = bc.out.read() + bc.seal(b"GET /index HTTP/1.1\r\nHost: localhost\r\n"
                                       b"Connection: close\r\n\r\n")
        for b in rest:
            bc.sock.send(bytes([b]))
        plain, clean = bc.read_plain_to_eof()
    finally:
        bc.close()
    assert plain.startswith(b"HTTP/1.1 200 OK\r\n") and plain.endswith(b"\r\n\r\nHello world"), plain
    assert clean is True, "the server ended TCP without a close_notify"


# --- hostile peers ---------------------------------------------------------------

@pytest.mark.valgrind
@pytest.mark.parametrize("garbage, answer", [
    (b"GET /index HTTP/1.1\r\nHost: localhost\r\n\r\n", b""),      # cleartext HTTP: no answer
    (bytes(range(256)) * 4, b""),                                  # not TLS at all
    # a handshake record longer than TLS allows: a fatal record_overflow alert (22)
    (b"\x16\x03\x01\xff\xff" + b"\x01" + b"\x00" * 600, b"\x15\x03\x03\x00\x02\x02\x16"),
], ids=["http", "binary", "oversized-record"])
def test_garbage_instead_of_a_client_hello_is_closed(spawn, pki, garbage, answer):
    s = tls_server(spawn, pki, "--handshake-timeout", "30")
    with raw_connect(s.port) as sock:
        sock.sendall(garbage)
        got, waited = read_to_eof(sock, scaled(5))   # well before the handshake timeout
    assert got == answer
    wss_echo_works(s)


def test_a_handshake_that_stalls_after_the_client_hello_is_cut(spawn, pki):
    timeout = 1.0
    s = tls_server(spawn, pki, "--handshake-timeout", timeout)
    bc = BioClient(s.port, pki.client_context())
    try:
        t0 = time.monotonic()       # the server's clock starts at accept, after this
        bc.sock.sendall(bc.client_hello())
        got, _ = read_to_eof(bc.sock, scaled(10))
        waited = time.monotonic() - t0
    finally:
        bc.close()
    assert got[:3] == b"\x16\x03\x03", got[:10]    # the server's flight, then nothing
    assert timeout - SLACK <= waited <= timeout + scaled(1.5), waited
    wss_echo_works(s)


@pytest.mark.valgrind
def test_renegotiation_is_refused(spawn, pki):
    """openssl s_client asks for a TLS 1.2 renegotiation ("R"): the server answers
    with a no_renegotiation alert, the client gives up; no second handshake."""
    s = tls_server(spawn, pki)
    p = subprocess.Popen(["openssl", "s_client", "-connect", "127.0.0.1:%d" % s.port, "-tls1_2",
                          "-CAfile", str(pki.ca), "-servername", "localhost"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines = queue.Queue()
    out = []
    threading.Thread(target=lambda: [lines.put(l.decode("latin-1")) for l in p.stdout] +
                     [lines.put(None)], daemon=True).start()

    def wait_line(pattern, timeout=10):
        deadline = time.monotonic() + scaled(timeout)
        while True:
            try:
                line = lines.get(timeout=max(0.001, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail("s_client printed no %r within %ss:\n%s" % (pattern, timeout, "".join(out)))
            if line is None:
                pytest.fail("s_client ended before %r:\n%s" % (pattern, "".join(out)))
            out.append(line)
            if re.search(pattern, line):
                return line
    try:
        wait_line(r"Verify return code: 0 \(ok\)")
        p.stdin.write(b"GET /index HTTP/1.1\r\nHost: localhost\r\n\r\n")
        p.stdin.flush()
        wait_line(r"Content-Length: 11")
        p.stdin.write(b"R\n")
        p.stdin.flush()
        wait_line(r"^Hello worldRENEGOTIATING")   # the body has no newline of its own
        wait_line(r"no renegotiation")
        rc = p.wait(timeout=scaled(10))
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    for _ in range(1000):
        line = lines.get(timeout=scaled(5))
        if line is None:
            break
        out.append(line)
    text = "".join(out)
    assert rc == 1, text
    assert text.count("HTTP/1.1 200 OK") == 1, text
    wss_echo_works(s)


@pytest.mark.valgrind
def test_close_notify_then_more_data_is_ignored(spawn, pki):
    s = tls_server(spawn, pki)
    bc = BioClient(s.port, pki.client_context())
    try:
        bc.handshake()
        req = b"GET /index HTTP/1.1\r\nHost: localhost\r\n\r\n"
        bc.sock.sendall(bc.seal(req))
        assert bc.read_plain_until(b"Hello world").startswith(b"HTTP/1.1 200 OK\r\n")
        with pytest.raises(ssl.SSLWantReadError):
            bc.tls.unwrap()                   # our close_notify (then it would wait for theirs)
        close_notify = bc.out.read()
        assert close_notify[:1] == b"\x17"    # TLS 1.3: an encrypted alert record
        # After it: an application data record that would fail its MAC (a peer
        # that read on would answer with a bad_record_mac alert) and junk.
        junk = b"\x17\x03\x03\x00\x20" + bytes(range(32)) + b"junk after the end"
        bc.sock.sendall(close_notify + junk)
        plain, _ = bc.read_plain_to_eof()     # an alert from the server would raise here
    finally:
        bc.close()
    # what follows the close_notify is not even read: no alert, no answer
    assert plain == b"", plain
    wss_echo_works(s)


@pytest.mark.valgrind
def test_a_request_then_close_notify_is_still_answered(spawn, pki):
    s = tls_server(spawn, pki)
    bc = BioClient(s.port, pki.client_context())
    try:
        bc.handshake()
        request = bc.seal(b"GET /index HTTP/1.1\r\nHost: localhost\r\n\r\n")
        with pytest.raises(ssl.SSLWantReadError):
            bc.tls.unwrap()
        bc.sock.sendall(request + bc.out.read())      # one segment: the request, close_notify
        plain, _ = bc.read_plain_to_eof()
    finally:
        bc.close()
    assert plain.startswith(b"HTTP/1.1 200 OK\r\n") and plain.endswith(b"Hello world"), plain


@pytest.mark.valgrind
@pytest.mark.parametrize("when", ["handshake", "request", "websocket"])
def test_a_truncated_record_then_eof_ends_the_connection(spawn, pki, when):
    s = tls_server(spawn, pki, "--handshake-timeout", "30")
    bc = BioClient(s.port, pki.client_context())
    try:
        if when == "handshake":
            record = bc.client_hello()
        else:
            bc.handshake()
            if when == "websocket":
                bc.sock.sendall(bc.seal(
                    b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    b"Sec-WebSocket-Version: 13\r\n\r\n"))
            record = bc.seal(rawws.build_frame(OP_TEXT, b"x" * 3000) if when == "websocket"
                             else b"GET /index HTTP/1.1\r\nHost: localhost\r\n\r\n")
        bc.sock.sendall(record[:len(record) // 2])
        bc.sock.shutdown(socket.SHUT_WR)
        read_to_eof(bc.sock, scaled(5))       # well before the handshake timeout
    finally:
        bc.close()
    wss_echo_works(s)


def test_max_tcp_per_ip_counts_tls_handshakes_in_progress(spawn, pki):
    s = tls_server(spawn, pki, "--max-tcp-per-ip", "2", "--handshake-timeout", "30",
                   "--close-timeout", "2")
    a, b = raw_connect(s.port), raw_connect(s.port)   # connected, no ClientHello
    try:
        # a third is cut before any handshake (a 503 would first cost one):
        # at once, not after --close-timeout (2 s) or the handshake timeout (30 s)
        for _ in range(2):
            with raw_connect(s.port) as d:
                got, waited = read_to_eof(d, scaled(5))
            assert got == b"" and waited < scaled(1), (got, waited)
        # so a client that tries its handshake fails it at once
        with pytest.raises((ssl.SSLError, ConnectionResetError, ConnectionAbortedError, OSError)):
            with rawws.Conn(s.port) as c:
                c.read_response(timeout=scaled(5))
        # the two in progress are still there, and still count
        with raw_connect(s.port) as d:
            assert read_to_eof(d, scaled(5))[0] == b""
    finally:
        a.close()
        b.close()
    def admitted():
        # Until the server has seen a and b close, a new connection is still
        # cut (reset), which is the limit at work, not a failure.
        try:
            return s.http("/index").status == 200
        except (ssl.SSLError, OSError):
            return False

    wait_for(admitted, desc="a connection admitted again")
    wss_echo_works(s)


# --- churn -------------------------------------------------------------------------

@pytest.mark.slow
def test_handshake_churn_with_s_time_while_an_echo_goes_on(spawn, pki, capsys):
    s = tls_server(spawn, pki)
    wss_echo_works(s, "warm up")
    rss0 = rss_kb(s.proc.pid)
    p = subprocess.Popen(["openssl", "s_time", "-connect", "127.0.0.1:%d" % s.port, "-new",
                          "-time", "10"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    echoes = 0
    try:
        with rawws.upgrade(s.port, "/ws") as c:
            assert c.recv_text() == "Welcome"
            t0 = time.monotonic()
            while p.poll() is None and time.monotonic() - t0 < scaled(30):
                c.send_text("tick %d" % echoes)
                assert c.recv_text(timeout=scaled(2)) == "new message :tick %d" % echoes
                echoes += 1
        out = p.communicate(timeout=scaled(30))[0].decode()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    m = re.search(r"(\d+) connections in ([\d.]+)s; ([\d.]+) connections/user sec", out)
    assert p.returncode == 0 and m, out
    n = int(m.group(1))
    assert n >= 500, out            # a few hundred per second at the very least
    assert echoes >= 100, echoes    # and the echo kept going meanwhile
    report(capsys, "TLS handshake churn (openssl s_time -new, 10 s): %d full handshakes, %.0f/s wall, "
           "%s per s_time CPU second; %d wss echoes meanwhile" % (n, n / 10.0, m.group(3), echoes))
    wss_echo_works(s, "after the churn")
    rss = wait_for(lambda: (lambda r: r if r - rss0 <= 4096 else None)(rss_kb(s.proc.pid)),
                   timeout=10, desc="RSS back within 4 MiB of %d KiB" % rss0)
    report(capsys, "server RSS before the churn %d KiB, after %d KiB" % (rss0, rss))
