"""wspush.fetch end to end (docs/api.md, "Handlers that wait"): handlers,
upgrade hooks and HTTP routes call a real HTTP server that this test runs on
127.0.0.1 (http.server in a thread), and the server goes on serving everyone
else meanwhile. The backend's endpoints are scripted below; the wspush side
is scripts/fetch_app.lua."""
import base64
import hashlib
import json
import select
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

import rawws
from conftest import SCRIPTS, report, scaled, wait_for
from test_startup import assert_start_error, run_server

APP = SCRIPTS / "fetch_app.lua"


# --- the backend ---------------------------------------------------------------------------

class Backend:
    """What the scripted HTTP server saw: connections (total, open now, the
    most open at once), requests, and events (a slow answer whose client
    went away). Tests wait on `cond` for these to change."""

    def __init__(self):
        self.cond = threading.Condition()
        self.accepted = 0
        self.open = 0
        self.peak = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.requests = []
        self.events = []
        self.httpd = None
        self.port = None

    def url(self, path, host="127.0.0.1"):
        return "http://%s:%d%s" % (host, self.port, path)

    def wait(self, pred, timeout, desc):
        """Wait (on the condition, not by polling) until pred() holds."""
        deadline = time.monotonic() + scaled(timeout)
        with self.cond:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("backend: timed out after %ss waiting for %s "
                                         "(accepted=%d open=%d requests=%d events=%r)"
                                         % (timeout, desc, self.accepted, self.open,
                                            len(self.requests), self.events[-5:]))
                self.cond.wait(left)

    def note(self, **kw):
        with self.cond:
            self.events.append(kw)
            self.cond.notify_all()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as wspush's pool expects

    def log_message(self, *a):
        pass

    # Every TCP connection passes here once: count them (keep-alive reuse,
    # the --max-outbound cap).
    def setup(self):
        super().setup()
        b = self.server.backend
        with b.cond:
            b.accepted += 1
            b.open += 1
            b.peak = max(b.peak, b.open)
            b.cond.notify_all()

    def finish(self):
        try:
            super().finish()
        finally:
            b = self.server.backend
            with b.cond:
                b.open -= 1
                b.cond.notify_all()

    # -- helpers --
    def send(self, status, body=b"", ctype="text/plain", headers=()):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status, obj, headers=()):
        self.send(status, json.dumps(obj), "application/json", headers)

    def wait_for_eof(self, seconds):
        """Hold the answer for `seconds`, or until the client closes; True if it did."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            r, _, _ = select.select([self.connection], [], [], left)
            if r:
                try:
                    data = self.connection.recv(1, socket.MSG_PEEK)
                except OSError:
                    return True
                if not data:
                    return True
                # bytes of a next request: not expected while we hold this one
                time.sleep(min(left, 0.01))

    # -- dispatch --
    drop_next = False

    def handle_any(self):
        if self.drop_next:
            self.server.backend.note(kind="dropped", path=self.path)
            self.close_connection = True
            return
        u = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(u.query).items()}
        n = int(self.headers.get("Content-Length") or 0)
        if u.path == "/early":
            # answer at once, before the request's body (which is not read)
            self.send(413, "too big for me", headers=[("Connection", "close")])
            self.close_connection = True
            with self.server.backend.cond:
                self.server.backend.requests.append({"method": self.command, "path": self.path,
                                                     "headers": [], "body": b""})
            return
        body = self.rfile.read(n) if n else b""
        b = self.server.backend
        with b.cond:
            b.requests.append({"method": self.command, "path": self.path,
                               "headers": list(self.headers.items()), "body": body})
            b.in_flight += 1
            b.peak_in_flight = max(b.peak_in_flight, b.in_flight)
            b.cond.notify_all()
        try:
            getattr(self, "ep_" + u.path.strip("/").replace("/", "_"), self.ep_missing)(q, body)
        finally:
            with b.cond:
                b.in_flight -= 1
                b.cond.notify_all()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = handle_any

    def ep_missing(self, q, body):
        self.send(404, "no such endpoint")

    def ep_hello(self, q, body):
        self.send(200, "hello from the backend")

    def ep_auth(self, q, body):
        token = self.headers.get("Authorization", "")
        if token == "Bearer slow":
            eof = self.wait_for_eof(5)
            self.server.backend.note(kind="auth slow", eof=eof)
            if eof:
                self.close_connection = True
                return
        if token in ("Bearer good", "Bearer slow"):
            self.send_json(200, {"user": "alice", "role": "admin"})
        else:
            self.send_json(401, {"error": "bad token"})

    def ep_slow(self, q, body):
        """Answer after `delay` s, unless the client leaves first (noted)."""
        delay = float(q.get("delay", "0.5"))
        t0 = time.monotonic()
        eof = self.wait_for_eof(delay)
        self.server.backend.note(kind="slow", tag=q.get("tag"), eof=eof,
                                 held=time.monotonic() - t0)
        if eof:
            self.close_connection = True
            return
        self.send(200, "slow %s" % q.get("tag", ""))

    def ep_cut(self, q, body):
        """Announce `len` body bytes, send `send` of them, close."""
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", q.get("len", "1000"))
        self.end_headers()
        self.wfile.write(b"x" * int(q.get("send", "100")))
        self.wfile.flush()
        self.close_connection = True

    def ep_big(self, q, body):
        n = int(q.get("n", "100000"))
        if q.get("chunked"):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for _ in range(n // 1000):
                self.wfile.write(b"3e8\r\n" + b"y" * 1000 + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send(200, b"y" * n)

    def ep_chunked(self, q, body):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for part in (b"hello ", b"chunked ", b"world"):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
        self.wfile.write(b"0\r\nX-Trailer: done\r\n\r\n")

    def ep_redirect(self, q, body):
        n = int(q.get("n", "0"))
        if n > 0:
            self.send(302, "moved", headers=[("Location", "/redirect?n=%d" % (n - 1))])
        else:
            self.send(200, "final")

    def ep_echo(self, q, body):
        self.send_json(200, {"method": self.command, "path": self.path,
                             "headers": list(self.headers.items()),
                             "body": body.decode("latin-1")},
                       headers=[("X-Multi", "one"), ("X-Multi", "two"), ("X-Case", "Mixed")])

    def ep_text(self, q, body):
        self.send(200, '{"looks": "like JSON", "but": "text/plain"}')

    def ep_json(self, q, body):
        self.send_json(200, {"answer": 42, "list": [1, 2, 3]})

    def ep_arm(self, q, body):
        """Answer (keep-alive), then drop the next request on this connection
        unanswered: a pooled connection the server closed meanwhile."""
        self.send(200, "armed")
        self.drop_next = True

    def ep_close_delimited(self, q, body):
        """HTTP/1.0 style: no length, the body ends with the connection."""
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end")
        self.close_connection = True

    def ep_interim(self, q, body):
        self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n")
        self.send(200, "after interim")

    def ep_garbage(self, q, body):
        self.wfile.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        self.close_connection = True

    def ep_hugehead(self, q, body):
        self.send(200, "ok", headers=[("X-Pad%d" % i, "p" * 1000) for i in range(70)])

    def ep_see_other(self, q, body):
        self.send(303, "", headers=[("Location", "/echo?after=303")])

    def ep_cross(self, q, body):
        """302 to another origin (same server, other host name)."""
        self.send(302, "", headers=[("Location", "http://localhost:%d/echo?cross=1"
                                     % self.server.server_address[1])])

    def ep_sink(self, q, body):
        self.send_json(200, {"len": len(body), "sha256": hashlib.sha256(body).hexdigest()})

    def ep_redirect_to(self, q, body):
        self.send(302, "", headers=[("Location", q["url"])])

    def ep_nocontent(self, q, body):
        self.send_response(204)
        self.end_headers()


@pytest.fixture
def backend():
    b = Backend()

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        block_on_close = False
        request_queue_size = 512  # 200 fetches arrive at once

    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.backend = b
    b.httpd = httpd
    b.port = httpd.server_address[1]
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield b
    httpd.shutdown()
    httpd.server_close()
    t.join(timeout=5)


def start(spawn, backend, *args):
    s = spawn(APP, *args)
    assert s.http("/config?port=%d" % backend.port).body == b"ok"
    return s


def fetch(s, url, opts=None, lookups=None, timeout=10):
    """One wspush.fetch through POST /fetch; its result as the script saw it."""
    spec = {"url": url, "lookups": lookups or []}
    if opts is not None:
        spec["opts"] = opts
    return s.json("/fetch", method="POST", body=json.dumps(spec).encode(),
                  headers={"Content-Type": "application/json"}, timeout=timeout)


def events(s, kind=None):
    return [e for e in s.json("/events") if kind is None or e["kind"] == kind]


def ws(s, path, timeout=5):
    return rawws.upgrade(s.port, path, timeout=scaled(timeout))


def still_serving(s, backend):
    """Everyone else goes on: a WebSocket round trip and a fetch that works."""
    with ws(s, "/echo") as c:
        c.send_text("still here")
        assert c.recv_text() == "still here"
    r = fetch(s, backend.url("/hello"))
    assert r["ok"] and r["status"] == 200 and r["body"] == "hello from the backend", r


def closed_port():
    sk = socket.socket()
    sk.bind(("127.0.0.1", 0))
    port = sk.getsockname()[1]
    sk.close()
    return port


# --- 1. auth in upgrade -----------------------------------------------------------------

def test_upgrade_accepts_a_good_token_and_fills_conn_data(spawn, backend):
    s = start(spawn, backend)
    with ws(s, "/ws?token=good") as c:
        assert json.loads(c.recv_text()) == {"user": "alice", "role": "admin"}
    req = [r for r in backend.requests if r["path"] == "/auth"]
    assert len(req) == 1 and ("Authorization", "Bearer good") in req[0]["headers"], req


def test_upgrade_refuses_a_bad_token_with_401_and_www_authenticate(spawn, backend):
    s = start(spawn, backend)
    with rawws.Conn(s.port, timeout=scaled(5)) as c:
        r = c.handshake("/ws?token=bad")
    assert r.status == 401, r
    assert r.header("WWW-Authenticate") == 'Bearer realm="wspush"', r
    assert r.header("Sec-WebSocket-Accept") is None, r
    assert r.body.rstrip(b"\n") == b"bad token", r
    still_serving(s, backend)


def test_upgrade_whose_auth_server_hangs_gets_503_at_the_upgrade_timeout(spawn, backend):
    s = start(spawn, backend, "--upgrade-timeout", "0.5")
    mark = s.log_mark()
    t0 = time.monotonic()
    with rawws.Conn(s.port, timeout=scaled(5)) as c:
        r = c.handshake("/ws?token=slow")
    took = time.monotonic() - t0
    assert r.status == 503, r
    assert 0.45 <= took <= scaled(2), took
    s.wait_log(r"WebSocket upgrade GET /ws.*no decision within --upgrade-timeout \(0\.5 s\): 503",
               since=mark)
    # The waiting fetch was told (nil, "timeout") and let go of its request:
    # the auth server sees its client leave, long before its 5 s.
    backend.wait(lambda: any(e["kind"] == "auth slow" for e in backend.events), 3,
                 "the abandoned auth request to end")
    slow = [e for e in backend.events if e["kind"] == "auth slow"]
    assert slow == [{"kind": "auth slow", "eof": True}], slow
    up = wait_for(lambda: [e for e in events(s, "upgrade") if e["token"] == "slow"], timeout=3,
                  desc="the timed-out upgrade to finish")
    assert up[0]["err"] == "timeout" and up[0]["elapsed"] < 1.5, up
    # The next upgrade works.
    with ws(s, "/ws?token=good") as c:
        assert json.loads(c.recv_text())["user"] == "alice"


# --- 2. many waiting at once, others served ---------------------------------------------

def test_200_fetches_wait_at_once_while_an_echo_client_is_served(spawn, backend, capsys):
    s = start(spawn, backend)
    n = 200
    clients = []
    try:
        for _ in range(n):
            clients.append(ws(s, "/many", timeout=20))
        stop = threading.Event()
        lat, failures = [], []

        def echo_loop():
            try:
                with ws(s, "/echo") as c:
                    for i in range(100000):
                        if stop.is_set():
                            return
                        t = time.monotonic()
                        c.send_text("rt %d" % i)
                        try:
                            got = c.recv_text(timeout=1.0)
                        except (TimeoutError, EOFError) as e:
                            failures.append("round trip %d: %r" % (i, e))
                            return
                        lat.append(time.monotonic() - t)
                        assert got == "rt %d" % i
            except Exception as e:  # noqa: BLE001 (reported below)
                failures.append(repr(e))

        th = threading.Thread(target=echo_loop, daemon=True)
        th.start()
        url = backend.url("/slow?delay=0.5&tag=")
        t0 = time.monotonic()
        for i, c in enumerate(clients):
            c.send_text(url + str(i))
        answers = []
        for i, c in enumerate(clients):
            answers.append(c.recv_text(timeout=max(0.1, t0 + scaled(20) - time.monotonic())))
        took = time.monotonic() - t0
        stop.set()
        th.join(timeout=scaled(5))
    finally:
        for c in clients:
            c.close()
    assert answers == ["200 slow %d" % i for i in range(n)]
    assert not failures, failures
    assert len(lat) >= 10, "the echo client made only %d round trips" % len(lat)
    lat.sort()
    pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000  # noqa: E731
    report(capsys, "200 fetches of a 0.5 s endpoint: all answered in %.2f s; backend had %d "
           "requests in flight at once; echo meanwhile: %d round trips, p50 %.2f ms, p99 %.2f ms, "
           "max %.2f ms" % (took, backend.peak_in_flight, len(lat), pct(0.5), pct(0.99),
                             lat[-1] * 1000))
    assert took < scaled(15), took
    # They did wait together (not one after another, nor in small groups).
    assert backend.peak_in_flight >= 100, backend.peak_in_flight


# --- 3. failures, each with its exact error ---------------------------------------------

def test_timeout(spawn, backend):
    s = start(spawn, backend)
    t0 = time.monotonic()
    r = fetch(s, backend.url("/slow?delay=5&tag=t"), {"timeout": 0.3})
    took = time.monotonic() - t0
    assert r == {"ok": False, "err": "timeout", "elapsed": r["elapsed"]}, r
    assert 0.28 <= r["elapsed"] and took <= scaled(2), (r, took)
    # the request was dropped, not left hanging on the backend
    backend.wait(lambda: any(e.get("tag") == "t" for e in backend.events), 3, "the slow request to end")
    ev = [e for e in backend.events if e.get("tag") == "t"][0]
    assert ev["eof"] and ev["held"] < 2, ev
    still_serving(s, backend)


def test_server_closes_mid_body(spawn, backend):
    s = start(spawn, backend)
    r = fetch(s, backend.url("/cut?len=1000&send=100"))
    assert r["ok"] is False and r["err"] == "connection closed", r
    still_serving(s, backend)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_body_over_max_body(spawn, backend, chunked):
    s = start(spawn, backend)
    path = "/big?n=100000" + ("&chunked=1" if chunked else "")
    r = fetch(s, backend.url(path), {"max_body": 10000})
    assert r["ok"] is False and r["err"] == "response too large", r
    # the same body fits a larger max_body, and one exactly that size fits too
    r = fetch(s, backend.url(path), {"max_body": 100000})
    assert r["ok"] and len(r["body"]) == 100000, {k: v for k, v in r.items() if k != "body"}
    still_serving(s, backend)


def test_refused_connection(spawn, backend):
    s = start(spawn, backend)
    r = fetch(s, "http://127.0.0.1:%d/" % closed_port())
    assert r["ok"] is False and r["err"] == "connection refused", r
    still_serving(s, backend)


def test_unresolvable_host(spawn, backend):
    s = start(spawn, backend)
    r = fetch(s, "http://host.invalid/")
    assert r["ok"] is False and r["err"] == "cannot resolve host", r
    still_serving(s, backend)


def test_link_local_metadata_address_is_not_allowed(spawn, backend):
    # Refused by the policy before any connect: nothing leaves the machine.
    s = start(spawn, backend)
    r = fetch(s, "http://169.254.169.254/latest/meta-data/", {"timeout": 2})
    assert r["ok"] is False and r["err"] == "address not allowed", r
    assert r["elapsed"] < 0.5, r  # not a connect that timed out
    still_serving(s, backend)


def test_https_to_a_server_that_speaks_cleartext_fails_with_the_tls_reason(spawn, backend):
    s = start(spawn, backend)
    r = fetch(s, "https://127.0.0.1:%d/hello" % backend.port)
    assert r["ok"] is False and r["err"].startswith("tls: "), r
    still_serving(s, backend)


# --- https ----------------------------------------------------------------------------

def make_cert(tmp_path, name, san):
    """A self-signed ECDSA certificate (and its key) for the names in san."""
    cert, key = tmp_path / (name + ".pem"), tmp_path / (name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=" + name,
                    "-addext", "subjectAltName=" + san], check=True, capture_output=True)
    return cert, key


@pytest.fixture
def https_backend(tmp_path):
    """The scripted backend behind TLS (a certificate for the name localhost
    only); the names clients sent as SNI are in .sni (None: no SNI)."""
    cert, key = make_cert(tmp_path, "backend", "DNS:localhost")
    b = Backend()
    b.cert = cert
    b.sni = []
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.sni_callback = lambda sock, name, c: b.sni.append(name)

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        block_on_close = False

        def get_request(self):
            sock, addr = self.socket.accept()
            return ctx.wrap_socket(sock, server_side=True), addr

    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.backend = b
    b.httpd = httpd
    b.port = httpd.server_address[1]
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield b
    httpd.shutdown()
    httpd.server_close()
    t.join(timeout=5)


def test_https_verified_against_the_store_with_sni(spawn, backend, https_backend, monkeypatch):
    # OpenSSL's default store is the file SSL_CERT_FILE names, here our backend's certificate.
    monkeypatch.setenv("SSL_CERT_FILE", str(https_backend.cert))
    s = start(spawn, backend)
    r = fetch(s, "https://localhost:%d/hello" % https_backend.port)
    assert r["ok"] is True and r["status"] == 200 and r["body"] == "hello from the backend", r
    assert https_backend.sni == ["localhost"], https_backend.sni
    # keep-alive over TLS: a second request to the same origin reuses the connection
    n = https_backend.accepted
    r = fetch(s, "https://localhost:%d/hello?again=1" % https_backend.port)
    assert r["ok"] is True and https_backend.accepted == n, (r, https_backend.accepted, n)


def test_https_refuses_an_unknown_issuer_unless_verify_is_false(spawn, backend, https_backend):
    s = start(spawn, backend)
    url = "https://localhost:%d/hello" % https_backend.port
    r = fetch(s, url)
    assert r["ok"] is False, r
    assert r["err"] == "tls: certificate verify failed: self-signed certificate", r
    r = fetch(s, url, {"verify": False})
    assert r["ok"] is True and r["status"] == 200, r
    still_serving(s, backend)


def test_https_refuses_a_certificate_for_another_name(spawn, backend, https_backend, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(https_backend.cert))
    s = start(spawn, backend)
    # trusted, but it names localhost, not 127.0.0.1 (and an IP literal goes without SNI, RFC 6066)
    r = fetch(s, "https://127.0.0.1:%d/hello" % https_backend.port)
    assert r["ok"] is False and r["err"] == "tls: certificate verify failed: IP address mismatch", r
    assert https_backend.sni == [None], https_backend.sni


@pytest.mark.parametrize("value", ["a\r\nInjected: yes", "a\nb", "a\rb"])
def test_header_value_with_cr_or_lf_is_refused(spawn, backend, value):
    s = start(spawn, backend)
    r = fetch(s, backend.url("/echo"), {"headers": {"X-Evil": value}})
    assert r["ok"] is False and r["err"] == "invalid header: X-Evil", r
    assert backend.requests == [], backend.requests  # nothing went out
    still_serving(s, backend)


# --- 4. request shape -------------------------------------------------------------------

def echoed(r):
    assert r["ok"] and r["status"] == 200, r
    return json.loads(r["body"])


def test_method_headers_and_string_body_reach_the_server(spawn, backend):
    s = start(spawn, backend)
    r = fetch(s, backend.url("/echo?x=1"), {"method": "PUT", "body": "raw body \u00e9",
                                            "headers": {"X-One": "1", "Content-Type": "text/x-test"}},
              lookups=["x-multi", "X-MULTI", "X-Case", "x-case", "Content-Type", "x-absent"])
    e = echoed(r)
    assert e["method"] == "PUT" and e["path"] == "/echo?x=1", e
    hs = e["headers"]
    assert ["X-One", "1"] in hs and ["Content-Type", "text/x-test"] in hs, hs
    assert e["body"].encode("latin-1").decode("utf-8") == "raw body \u00e9"
    assert ["Content-Length", str(len("raw body \u00e9".encode()))] in hs, hs
    host = [v for k, v in hs if k.lower() == "host"]
    assert host == ["127.0.0.1:%d" % backend.port], hs
    assert any(k.lower() == "user-agent" and v.startswith("wspush/") for k, v in hs), hs
    # the response: status, headers with a case-insensitive lookup, repeated
    # ones joined with ", ", JSON decoded, the URL
    assert r["lookups"] == {"x-multi": "one, two", "X-MULTI": "one, two", "X-Case": "Mixed",
                            "x-case": "Mixed", "Content-Type": "application/json",
                            "x-absent": False}, r["lookups"]
    assert r["headers"]["x-multi"] == "one, two", r["headers"]
    assert r["has_json"] and json.loads(r["json"])["method"] == "PUT", r
    assert r["url"] == backend.url("/echo?x=1"), r


def test_table_body_is_sent_as_json(spawn, backend):
    s = start(spawn, backend)
    e = echoed(fetch(s, backend.url("/echo"), {"method": "POST",
                                              "body": {"text": "hi", "n": 3}}))
    assert e["method"] == "POST"
    assert json.loads(e["body"]) == {"text": "hi", "n": 3}, e
    ctype = [v for k, v in e["headers"] if k.lower() == "content-type"]
    assert ctype == ["application/json"], e["headers"]
    # a Content-Type of the caller's own wins (and is not doubled)
    e = echoed(fetch(s, backend.url("/echo"), {"method": "POST", "body": {"a": 1},
                                              "headers": {"content-type": "application/x+json"}}))
    ctype = [v for k, v in e["headers"] if k.lower() == "content-type"]
    assert ctype == ["application/x+json"], e["headers"]


def test_default_method_is_get_without_a_body(spawn, backend):
    s = start(spawn, backend)
    e = echoed(fetch(s, backend.url("/echo")))
    assert e["method"] == "GET" and e["body"] == ""
    assert not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in e["headers"]), e


def test_json_text_and_chunked_responses(spawn, backend):
    s = start(spawn, backend)
    r = fetch(s, backend.url("/json"))
    assert r["ok"] and r["has_json"] and json.loads(r["json"]) == {"answer": 42, "list": [1, 2, 3]}, r
    r = fetch(s, backend.url("/text"))
    assert r["ok"] and r["body"] == '{"looks": "like JSON", "but": "text/plain"}', r
    assert r["has_json"] is False, r
    assert "json" not in r, r
    r = fetch(s, backend.url("/chunked"), lookups=["x-trailer"])
    assert r["ok"] and r["status"] == 200 and r["body"] == "hello chunked world", r
    assert r["lookups"]["x-trailer"] == "done", r
    r = fetch(s, backend.url("/nowhere"))
    assert r["ok"] and r["status"] == 404 and r["body"] == "no such endpoint", r


# --- 5. keep-alive ----------------------------------------------------------------------

def test_sequential_fetches_reuse_one_connection(spawn, backend):
    s = start(spawn, backend)
    urls = [backend.url("/hello?i=%d" % i) for i in range(3)]
    out = s.json("/fetch_seq", method="POST", body=json.dumps({"urls": urls}).encode(),
                  headers={"Content-Type": "application/json"})
    assert [o["body"] for o in out] == ["hello from the backend"] * 3, out
    assert [r["path"] for r in backend.requests] == ["/hello?i=0", "/hello?i=1", "/hello?i=2"]
    assert backend.accepted == 1, "3 sequential fetches used %d connections" % backend.accepted


# --- 6. redirects -----------------------------------------------------------------------

def test_redirects(spawn, backend):
    s = start(spawn, backend)
    r = fetch(s, backend.url("/redirect?n=2"), lookups=["location"])
    assert r["ok"] and r["status"] == 302 and r["lookups"]["location"] == "/redirect?n=1", r
    assert r["url"] == backend.url("/redirect?n=2"), r
    assert len(backend.requests) == 1
    r = fetch(s, backend.url("/redirect?n=2"), {"follow": True})
    assert r["ok"] and r["status"] == 200 and r["body"] == "final", r
    assert r["url"] == backend.url("/redirect?n=0"), r
    r = fetch(s, backend.url("/redirect?n=5"), {"follow": True})  # 5 is allowed
    assert r["ok"] and r["status"] == 200 and r["url"] == backend.url("/redirect?n=0"), r
    before = len(backend.requests)
    r = fetch(s, backend.url("/redirect?n=6"), {"follow": True})
    assert r["ok"] is False and r["err"] == "too many redirects", r
    assert len(backend.requests) - before == 6, "the 6th redirect was not to be followed"


# --- 7. address policy ------------------------------------------------------------------

def test_fetch_deny_refuses_a_range_and_leaves_the_rest(spawn, backend):
    s = start(spawn, backend, "--fetch-deny", "127.0.0.2/32")
    r = fetch(s, backend.url("/hello", host="127.0.0.2"))
    assert r["ok"] is False and r["err"] == "address not allowed", r
    r = fetch(s, backend.url("/hello"))
    assert r["ok"] and r["body"] == "hello from the backend", r


@pytest.mark.parametrize("opt", ["--fetch-allow", "--fetch-deny"])
def test_malformed_cidr_is_a_start_error(opt):
    rc, err = run_server("--host", "127.0.0.1", "--port", "0", opt, "nonsense", APP)
    assert_start_error(rc, err, opt + " nonsense")


@pytest.mark.parametrize("host", ["127.0.0.2", "2130706434", "127.2", "0x7f000002",
                                  "[::ffff:127.0.0.2]", "[::ffff:7f00:2]"])
def test_fetch_deny_holds_for_every_spelling_of_the_address(spawn, backend, host):
    # If the policy missed a spelling, the request would go to 127.0.0.2, where
    # nothing listens: "connection refused" instead of "address not allowed".
    s = start(spawn, backend, "--fetch-deny", "127.0.0.2/32")
    r = fetch(s, "http://%s:%d/hello" % (host, backend.port))
    assert r["ok"] is False, r
    assert r["err"] == "address not allowed" or r["err"].startswith("invalid url: "), r


def test_fetch_deny_holds_for_names_and_redirects(spawn, backend):
    s = start(spawn, backend, "--fetch-deny", "127.0.0.2/32", "--fetch-deny", "::1/128",
              "--fetch-deny", "127.0.0.1/32", "--fetch-allow", "127.0.0.1/32")
    # a name whose addresses are all denied
    r = fetch(s, "http://localhost:%d/hello" % closed_port())
    assert r["err"] in ("address not allowed", "connection refused"), r
    # a redirect to a denied address (checked again at every hop)
    r = fetch(s, backend.url("/redirect_to?url=http://127.0.0.2:%d/hello" % backend.port),
              {"follow": True})
    assert r["ok"] is False and r["err"] == "address not allowed", r
    # and to the metadata address: refused before any connect
    r = fetch(s, backend.url("/redirect_to?url=http://169.254.169.254/latest"), {"follow": True})
    assert r["ok"] is False and r["err"] == "address not allowed", r
    # allow wins over deny for the same range
    r = fetch(s, backend.url("/hello"))
    assert r["ok"], r


# --- 8. --max-outbound ------------------------------------------------------------------

def test_max_outbound_caps_connections_and_requests_wait(spawn, backend):
    s = start(spawn, backend, "--max-outbound", "2")
    clients = [ws(s, "/many") for _ in range(6)]
    try:
        url = backend.url("/slow?delay=0.3&tag=")
        t0 = time.monotonic()
        for i, c in enumerate(clients):
            c.send_text(url + str(i))
        answers = [c.recv_text(timeout=scaled(10)) for c in clients]
        took = time.monotonic() - t0
    finally:
        for c in clients:
            c.close()
    assert sorted(answers) == sorted("200 slow %d" % i for i in range(6)), answers
    assert backend.peak <= 2, "%d backend connections open at once" % backend.peak
    assert backend.peak_in_flight <= 2
    # 6 requests of 0.3 s over 2 connections: at least 3 rounds
    assert took >= 0.85, took


# --- 9. a client closes while its handler waits -----------------------------------------

def test_close_during_a_fetch_returns_closed_at_once(spawn, backend):
    s = start(spawn, backend)
    c = ws(s, "/wait")
    try:
        c.send_text(backend.url("/slow?delay=3&tag=w"))
        backend.wait(lambda: any(r["path"].endswith("tag=w") for r in backend.requests), 5,
                     "the handler's request")
        t0 = time.monotonic()
        c.send_close(1000, "bye")
    finally:
        c.close()
    # The backend sees the request's connection closed, not kept for later.
    backend.wait(lambda: any(e.get("tag") == "w" for e in backend.events), 3, "the request to end")
    ev = [e for e in backend.events if e.get("tag") == "w"][0]
    assert ev["eof"] is True and ev["held"] < 2, ev
    backend.wait(lambda: backend.open == 0, 3, "no backend connection left open")
    seen = wait_for(lambda: (lambda es: es if len(es) == 2 else None)(
        [e for e in events(s) if e["kind"] in ("fetch returned", "on_close")]),
        timeout=3, desc="the handler and on_close to run")
    fr, oc = seen
    assert fr["kind"] == "fetch returned" and oc["kind"] == "on_close", seen
    assert fr["ok"] is False and fr["err"] == "closed" and fr["send"] == "closed", fr
    assert fr["elapsed"] < 1.5, fr  # at once, not at the backend's 3 s
    assert oc["handler_done"] is True and oc["code"] == 1000, oc
    assert time.monotonic() - t0 < 2
    still_serving(s, backend)


def test_client_leaving_during_a_waiting_upgrade(spawn, backend):
    s = start(spawn, backend, "--upgrade-timeout", "3")
    c = rawws.Conn(s.port, timeout=scaled(5))
    try:
        c.send(("GET /ws?token=slow HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                % rawws.new_key()).encode())
        backend.wait(lambda: any(r["path"] == "/auth" for r in backend.requests), 3, "the auth call")
    finally:
        c.close()
    up = wait_for(lambda: [e for e in events(s, "upgrade") if e["token"] == "slow"], timeout=3,
                  desc="the abandoned upgrade to finish")
    assert up[0]["err"] == "closed" and up[0]["elapsed"] < 1.5, up
    backend.wait(lambda: any(e["kind"] == "auth slow" for e in backend.events), 3, "auth to end")
    still_serving(s, backend)


def test_http_client_leaving_while_its_handler_waits(spawn, backend):
    s = start(spawn, backend)
    c = rawws.Conn(s.port, timeout=scaled(5))
    try:
        c.send(b"GET /slowproxy?tag=gone HTTP/1.1\r\nHost: x\r\n\r\n")
        backend.wait(lambda: any("tag=gone" in r["path"] for r in backend.requests), 3, "the fetch")
    finally:
        c.close()
    ev = wait_for(lambda: events(s, "slowproxy returned"), timeout=5, desc="the handler to end")
    assert ev[0]["err"] == "closed" and ev[0]["elapsed"] < 1.5, ev


# --- 10. an HTTP handler that fetches ---------------------------------------------------

def test_http_handler_answers_with_what_it_fetched(spawn, backend):
    s = start(spawn, backend)
    r = s.http("/proxy")
    assert r.status == 200 and r.body == b"hello from the backend", r
    assert r.header("X-Backend-Type") == "text/plain", r
    assert [q["path"] for q in backend.requests] == ["/hello?from=proxy"]


# --- 11. shutdown with pooled connections -----------------------------------------------

def test_sigterm_exits_promptly_with_idle_pooled_connections(spawn, backend):
    s = start(spawn, backend)
    clients = [ws(s, "/many") for _ in range(3)]
    try:
        for c in clients:
            c.send_text(backend.url("/slow?delay=0.2"))
        assert [c.recv_text() for c in clients] == ["200 slow "] * 3
    finally:
        for c in clients:
            c.close()
    # three connections were busy at once; now they sit idle in the pool
    assert backend.accepted == 3 and backend.open == 3, (backend.accepted, backend.open)
    t0 = time.monotonic()
    s.terminate()
    rc = s.wait_exit(timeout=3)
    took = time.monotonic() - t0
    assert rc == 0, rc
    assert took < 3, took
    backend.wait(lambda: backend.open == 0, 3, "the pooled connections to close")


def test_sigterm_waits_for_a_fetch_in_on_shutdown(spawn, backend):
    """on_shutdown may wait: its webhook call is made and answered before the exit."""
    s = spawn(APP)
    assert s.http("/config?port=%d&webhook=1" % backend.port).body == b"ok"
    t0 = time.monotonic()
    s.terminate()
    rc = s.wait_exit(timeout=5)
    took = time.monotonic() - t0
    assert rc == 0, rc
    ev = [e for e in backend.events if e.get("tag") == "shutdown"]
    assert ev and ev[0]["eof"] is False, backend.events
    assert [r["body"] for r in backend.requests if r["method"] == "POST"] == [b"bye"]
    s.wait_log(r"shutdown webhook: 200")
    assert took < scaled(3), took


# --- more of the contract -----------------------------------------------------------------

def test_a_stale_pooled_connection_is_retried_for_get_but_not_for_post(spawn, backend):
    s = start(spawn, backend)
    urls = [backend.url("/arm"), backend.url("/hello?after=stale")]
    out = s.json("/fetch_seq", method="POST", body=json.dumps({"urls": urls}).encode(),
                 headers={"Content-Type": "application/json"})
    assert [o.get("body") for o in out] == ["armed", "hello from the backend"], out
    assert backend.accepted == 2  # the GET went again, on a new connection
    assert [e["path"] for e in backend.events if e["kind"] == "dropped"] == ["/hello?after=stale"]
    # POST is never repeated: the caller learns the connection closed.
    r = fetch(s, backend.url("/arm"))
    assert r["ok"], r
    r = fetch(s, backend.url("/echo?post=1"), {"method": "POST", "body": "once"})
    assert r["ok"] is False and r["err"] == "connection closed", r
    assert [r["path"] for r in backend.requests].count("/echo?post=1") == 0


def test_response_shapes_close_delimited_interim_204_head(spawn, backend):
    s = start(spawn, backend)
    r = fetch(s, backend.url("/close_delimited"))
    assert r["ok"] and r["status"] == 200 and r["body"] == "until the end", r
    r = fetch(s, backend.url("/interim"), lookups=["link"])
    assert r["ok"] and r["status"] == 200 and r["body"] == "after interim", r
    assert r["lookups"]["link"] is False, r  # an interim response's headers are not the answer's
    r = fetch(s, backend.url("/nocontent"))
    assert r["ok"] and r["status"] == 204 and r["body"] == "", r
    r = fetch(s, backend.url("/hello"), {"method": "HEAD"}, lookups=["content-length"])
    assert r["ok"] and r["status"] == 200 and r["body"] == "", r
    assert r["lookups"]["content-length"] == str(len("hello from the backend")), r
    # and the connection is still good for the next one
    r = fetch(s, backend.url("/hello"))
    assert r["ok"] and r["body"] == "hello from the backend", r


def test_invalid_responses(spawn, backend):
    s = start(spawn, backend)
    r = fetch(s, backend.url("/garbage"))
    assert r["ok"] is False and r["err"] == "invalid response", r
    r = fetch(s, backend.url("/hugehead"))
    assert r["ok"] is False and r["err"] == "invalid response", r
    still_serving(s, backend)


def test_invalid_urls_and_options_never_show_credentials(spawn, backend):
    s = start(spawn, backend)
    for url in ("ftp://127.0.0.1/", "http://", "http://127.0.0.1:99999/", "http://a b/",
                "http://user:s3cret@127.0.0.1:0/"):
        r = fetch(s, url)
        assert r["ok"] is False and r["err"].startswith("invalid url: "), (url, r)
        assert "s3cret" not in r["err"], r
    r = fetch(s, backend.url("/echo"), {"method": "GE T"})
    assert r["ok"] is False and r["err"] == "invalid method", r
    assert backend.requests == []


def test_userinfo_becomes_basic_authorization(spawn, backend):
    s = start(spawn, backend)
    e = echoed(fetch(s, "http://us%40er:p%20ss@127.0.0.1:" + str(backend.port) + "/echo"))
    auth = [v for k, v in e["headers"] if k.lower() == "authorization"]
    assert auth == ["Basic " + base64.b64encode(b"us@er:p ss").decode()], e["headers"]


def test_303_after_post_continues_as_get_without_the_body(spawn, backend):
    s = start(spawn, backend)
    r = fetch(s, backend.url("/see_other"), {"method": "POST", "body": {"x": 1}, "follow": True})
    e = echoed(r)
    assert e["method"] == "GET" and e["path"] == "/echo?after=303" and e["body"] == "", e
    assert not any(k.lower() in ("content-type", "content-length") for k, _ in e["headers"]), e
    assert r["url"] == backend.url("/echo?after=303")


def test_a_redirect_to_another_origin_drops_authorization(spawn, backend):
    s = start(spawn, backend)
    r = fetch(s, backend.url("/cross"), {"follow": True,
                                          "headers": {"Authorization": "Bearer secret",
                                                      "Cookie": "a=b", "X-Keep": "1"}})
    e = echoed(r)
    names = [k.lower() for k, _ in e["headers"]]
    assert "authorization" not in names and "cookie" not in names, e["headers"]
    assert ["X-Keep", "1"] in e["headers"], e["headers"]
    assert ["Host", "localhost:%d" % backend.port] in e["headers"], e["headers"]
    assert r["url"] == "http://localhost:%d/echo?cross=1" % backend.port, r
    first = [q for q in backend.requests if q["path"] == "/cross"][0]
    assert ("Authorization", "Bearer secret") in first["headers"]


def test_the_pool_keeps_at_most_8_idle_connections_per_host(spawn, backend):
    s = start(spawn, backend)
    clients = [ws(s, "/many") for _ in range(10)]
    try:
        for c in clients:
            c.send_text(backend.url("/slow?delay=0.3"))
        assert [c.recv_text(timeout=scaled(5)) for c in clients] == ["200 slow "] * 10
    finally:
        for c in clients:
            c.close()
    assert backend.accepted == 10
    backend.wait(lambda: backend.open == 8, 3, "8 idle connections left open")


def test_a_request_waiting_for_a_free_connection_times_out(spawn, backend):
    s = start(spawn, backend, "--max-outbound", "1")
    c = ws(s, "/many")
    try:
        c.send_text(backend.url("/slow?delay=2&tag=hog"))
        backend.wait(lambda: any("tag=hog" in r["path"] for r in backend.requests), 3, "the hog")
        r = fetch(s, backend.url("/hello"), {"timeout": 0.3})
        assert r["ok"] is False and r["err"] == "timeout", r
        assert c.recv_text(timeout=scaled(5)) == "200 slow hog"
    finally:
        c.close()
    r = fetch(s, backend.url("/hello"))
    assert r["ok"], r


def test_a_large_request_body_arrives_whole(spawn, backend):
    s = start(spawn, backend)
    body = ("0123456789abcdef" * 65536)  # 1 MiB
    r = s.json("/fetch", method="POST", headers={"Content-Type": "application/json"},
               body=json.dumps({"url": backend.url("/sink"), "rep": ["0123456789abcdef", 65536],
                                "opts": {"method": "POST"}}).encode())
    got = json.loads(r["body"])
    assert got == {"len": len(body), "sha256": hashlib.sha256(body.encode()).hexdigest()}, got


def test_an_answer_before_the_request_body_was_sent(spawn, backend):
    s = start(spawn, backend)
    r = s.json("/fetch", method="POST", headers={"Content-Type": "application/json"},
               body=json.dumps({"url": backend.url("/early"), "rep": ["z", 8 << 20],
                                "opts": {"method": "POST"}}).encode())
    # Either the 413 arrived, or the backend's close reset our write first.
    assert (r["ok"] and r["status"] == 413) or r["err"] == "connection closed", r
    still_serving(s, backend)


def test_an_idle_connection_gives_its_slot_to_another_host(spawn, backend):
    """At --max-outbound 1, a pooled connection to one host must not keep a
    request to another host waiting until its timeout."""
    s = start(spawn, backend, "--max-outbound", "1")
    assert fetch(s, backend.url("/hello"))["ok"]
    r = fetch(s, "http://localhost:%d/hello" % backend.port, {"timeout": 3})
    assert r["ok"] and r["body"] == "hello from the backend" and r["elapsed"] < 1, r
    r = fetch(s, backend.url("/hello"), {"timeout": 3})
    assert r["ok"] and r["elapsed"] < 1, r
    assert backend.accepted == 3
