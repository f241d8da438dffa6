"""TLS (--tls-cert/--tls-key): real clients over wss:// and https://, the TLS
options, start-up errors, certificate reloads and session resumption.

Every server here uses certificates of a throwaway CA made with the openssl
CLI (the `pki` fixture, tlspki.py); clients trust that CA only and check the
name (localhost / 127.0.0.1). test_tls_robustness.py has the rest (heartbeat,
backpressure, shutdown, hostile peers, handshake churn); test_conformance.py
runs the whole protocol suite over wss:// as well.
"""
import asyncio
import base64
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import warnings
import zlib

import pytest
import websockets

import rawws
from conftest import HERE, REPO, SCRIPTS, scaled
from pushlib import HANDLERS, log_errors, recv, run
from test_startup import assert_start_error, run_server

ECHO = REPO / "handlers" / "echo.lua"
NODE_PATH = "/usr/share/nodejs"
CHROMIUM = "/usr/bin/chromium"
RELOADED = r"\[info\] TLS certificate reloaded \(%s\): "
RELOAD_FAILED = r"\[error\] TLS certificate reload failed \(%s\), the previous one keeps serving: "


def tls_server(spawn, pki, *args, script=ECHO, cert=None, key=None):
    s = spawn(script, "--tls-cert", cert or pki.server, "--tls-key", key or pki.server_key, *args)
    return s.use_tls(pki.client_context())


def tls_connect(port, ctx, session=None, timeout=5):
    """A verified TLS socket to the server (handshake done)."""
    raw = socket.create_connection(("127.0.0.1", int(port)), timeout=scaled(timeout))
    try:
        return ctx.wrap_socket(raw, server_hostname="localhost", session=session)
    except BaseException:
        raw.close()
        raise


def peer_fingerprint(port, ctx):
    """sha256 of the certificate a new handshake gets."""
    with tls_connect(port, ctx) as s:
        return hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest()


def get_index(sock):
    """GET /index on a TLS socket (Connection: close); the whole response."""
    sock.sendall(b"GET /index HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    data = b""
    for _ in range(1000):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def wss_echo_works(s, text="still serving"):
    with rawws.upgrade(s.port, "/ws") as c:
        assert c.recv_text() == "Welcome"
        c.send_text(text)
        assert c.recv_text() == "new message :" + text


# --- clients -----------------------------------------------------------------------

def test_python_websockets_echo_1mib_and_5000_pipelined(spawn, pki):
    s = tls_server(spawn, pki)
    big = base64.b64encode(os.urandom(3 << 18)).decode()   # 1 MiB of text, incompressible
    n = 5000

    async def go():
        async with websockets.connect(s.url + "/ws", ssl=s.tls, compression=None, max_size=4 << 20,
                                      open_timeout=scaled(10), max_queue=None) as ws:
            tls = ws.transport.get_extra_info("ssl_object")
            assert tls.version() == "TLSv1.3", tls.version()
            assert await recv(ws) == "Welcome"
            await ws.send("hello over tls")
            assert await recv(ws) == "new message :hello over tls"
            await ws.send(big)
            got = await recv(ws, 20)
            assert len(got) == len(big) + 13 and got == "new message :" + big, len(got)

            async def send_all():
                for i in range(n):
                    await ws.send("m%d" % i)
            sender = asyncio.ensure_future(send_all())
            for i in range(n):
                got = await recv(ws, 20)
                assert got == "new message :m%d" % i, (i, got)
            await sender
    run(go(), 60)


def test_permessage_deflate_over_tls(spawn, pki):
    s = tls_server(spawn, pki)
    text = "compress me over tls " * 50000   # 1 MiB, very compressible
    # python-websockets negotiates it and gets byte-exact echoes
    async def go():
        async with websockets.connect(s.url + "/ws", ssl=s.tls, compression="deflate",
                                      max_size=4 << 20, open_timeout=scaled(10)) as ws:
            ext = ws.response_headers.get("Sec-WebSocket-Extensions", "")
            assert ext.startswith("permessage-deflate"), ext
            assert await recv(ws) == "Welcome"
            for msg in (text, "short", text[:5000]):
                await ws.send(msg)
                assert await recv(ws, 20) == "new message :" + msg
    run(go(), 60)
    # and the wire carries it compressed: one RSV1 frame far smaller than the text
    with rawws.Conn(s.port) as c:
        r = c.handshake("/ws", headers={"Sec-WebSocket-Extensions": "permessage-deflate"})
        assert r.status == 101 and "permessage-deflate" in r.header("Sec-WebSocket-Extensions"), r
        assert c.recv_text() == "Welcome"
        c.send_text(text)
        f = c.recv_frame(timeout=scaled(20))
        assert f.opcode == rawws.OP_TEXT and f.fin and f.rsv == 4, f
        assert len(f.payload) < len(text) // 20, len(f.payload)
        d = zlib.decompressobj(-15)
        assert d.decompress(f.payload + b"\x00\x00\xff\xff") == b"new message :" + text.encode()


def test_https_get_with_http_client(spawn, pki):
    s = tls_server(spawn, pki)
    conn = http.client.HTTPSConnection("127.0.0.1", int(s.port), context=pki.client_context(),
                                       timeout=scaled(5))
    try:
        for _ in range(2):   # keep-alive: the second request on the same TLS connection
            conn.request("GET", "/index")
            r = conn.getresponse()
            assert (r.status, r.read()) == (200, b"Hello world")
        assert conn.sock.version() == "TLSv1.3"
        conn.request("GET", "/nope")
        r = conn.getresponse()
        r.read()
        assert r.status == 404
    finally:
        conn.close()


@pytest.mark.parametrize("offer, selected", [(["h2", "http/1.1"], "http/1.1"), (["h2"], None),
                                             (None, None)])
def test_alpn_selects_http11_only(spawn, pki, offer, selected):
    s = tls_server(spawn, pki)
    with rawws.Conn(s.port, tls=pki.client_context(alpn=offer)) as c:
        assert c.sock.selected_alpn_protocol() == selected
        r = c.request("GET /index HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert (r.status, r.body) == (200, b"Hello world")


def test_tls_version_and_cipher_options(spawn, pki):
    s = tls_server(spawn, pki, "--tls-min-version", "1.3", "--tls-ciphersuites",
                   "TLS_CHACHA20_POLY1305_SHA256")
    with pytest.raises(ssl.SSLError, match="TLSV1_ALERT_PROTOCOL_VERSION"):   # the server's alert
        tls_connect(s.port, pki.client_context(maximum=ssl.TLSVersion.TLSv1_2))
    with tls_connect(s.port, pki.client_context()) as t:
        assert (t.version(), t.cipher()[0]) == ("TLSv1.3", "TLS_CHACHA20_POLY1305_SHA256")
    s2 = tls_server(spawn, pki, "--tls-ciphers", "ECDHE-ECDSA-AES256-GCM-SHA384")
    with tls_connect(s2.port, pki.client_context(maximum=ssl.TLSVersion.TLSv1_2)) as t:
        assert (t.version(), t.cipher()[0]) == ("TLSv1.2", "ECDHE-ECDSA-AES256-GCM-SHA384")
    # the default minimum is 1.2: a TLS 1.1 client gets the server's protocol_version alert
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old = pki.client_context(maximum=ssl.TLSVersion.TLSv1_1)
        old.minimum_version = ssl.TLSVersion.TLSv1
    old.set_ciphers("ALL:@SECLEVEL=0")
    with pytest.raises(ssl.SSLError, match="TLSV1_ALERT_PROTOCOL_VERSION"):
        tls_connect(s2.port, old)
    wss_echo_works(s2)


def test_node_ws_client_over_wss(spawn, pki):
    node = shutil.which("node")
    assert node, "node is not installed"
    s = tls_server(spawn, pki)
    env = dict(os.environ, NODE_PATH=NODE_PATH)
    script = str(HERE / "node" / "wss_client.js")

    def run_node(ca):
        p = subprocess.run([node, script, "wss://127.0.0.1:%d/ws" % s.port, ca], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=scaled(30))
        out = p.stdout.decode().strip().splitlines()
        assert out, "node printed nothing; stderr: %s" % p.stderr.decode()
        return p.returncode, json.loads(out[-1])

    rc, res = run_node(str(pki.ca))
    assert rc == 0 and res["ok"], res
    assert res["steps"] == ["welcome", "echo", "big"], res
    assert res["tls"] == {"protocol": "TLSv1.3", "authorized": True, "alpn": False}, res
    assert res["close"]["code"] == 1000, res
    # without the test CA node refuses the certificate: the check above was real
    rc, res = run_node("-")
    assert rc == 1 and not res["ok"], res
    assert "UNABLE_TO_VERIFY_LEAF_SIGNATURE" in res["error"], res
    wss_echo_works(s)


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="%s is absent" % CHROMIUM)
def test_chromium_page_over_https_and_its_wss(spawn, pki):
    from browser.cdp import Chromium
    s = tls_server(spawn, pki, script=HANDLERS / "broadcast.lua")
    spki = pki.spki_sha256_b64(pki.server)
    url = "https://127.0.0.1:%d/" % s.port
    mark = s.log_mark()
    log_text = "Array.from(document.querySelectorAll('#log > div')).map(d => d.textContent)"

    def log_has(text):
        return "%s.some(t => t.endsWith(%s))" % (log_text, json.dumps("  " + text))

    async def go():
        loop = asyncio.get_running_loop()
        browser = await loop.run_in_executor(
            None, lambda: Chromium.launch(scaled(30), ["--ignore-certificate-errors-spki-list=" + spki]))
        async with browser:
            page = await browser.new_page()
            await page.navigate(url)
            await page.wait_for("document.readyState === 'complete'", scaled(15))
            assert await page.eval("[location.protocol, document.title]") == ["https:", "wspush"]
            await page.wait_for(log_has("Welcome"), scaled(10), desc="Welcome over wss")
            assert await page.eval(log_has("connected to wss://127.0.0.1:%d/ws" % s.port))
            assert await page.eval("ws.url") == "wss://127.0.0.1:%d/ws" % s.port
            await page.type_text("#text", "hello from chromium over tls")
            await page.press_enter()
            await page.wait_for(log_has("new message :hello from chromium over tls"), scaled(10))
            r = await loop.run_in_executor(None, lambda: s.http("/receive?msg=pushed+over+tls"))
            assert r.status == 200 and json.loads(r.body) == {"sent": 1}, r
            await page.wait_for(log_has("pushed over tls"), scaled(10), desc="the push")
            assert page.exceptions == [], page.exceptions
            assert [c for c in page.console if c[0] in ("error", "assert")] == []
    asyncio.run(asyncio.wait_for(go(), scaled(60)))
    assert not log_errors(s, mark)


# --- start-up ------------------------------------------------------------------------

def free_port():
    with socket.socket() as b:
        b.bind(("127.0.0.1", 0))
        return b.getsockname()[1]


def start_error(port, *args):
    rc, err = run_server("--host", "127.0.0.1", "--port", port, *args, ECHO)
    with pytest.raises(ConnectionRefusedError):   # nothing is listening on it
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    return rc, err


@pytest.mark.parametrize("case", ["missing cert", "missing key",
                                  "key mismatch",
                                  "cert not PEM", "key not PEM", "no usable cipher"])
def test_tls_start_errors_are_one_line_and_exit_1(pki, tmp_path, case):
    missing = tmp_path / "nope.pem"
    args, line = {
        "missing cert": (("--tls-cert", missing, "--tls-key", pki.server_key),
                         "wspush: --tls-cert %s: No such file or directory" % missing),
        "missing key": (("--tls-cert", pki.server, "--tls-key", missing),
                        "wspush: --tls-key %s: No such file or directory" % missing),
        "key mismatch": (("--tls-cert", pki.server, "--tls-key", pki.other_key),
                         "wspush: --tls-key %s does not match the certificate in --tls-cert %s"
                         % (pki.other_key, pki.server)),
        "cert not PEM": (("--tls-cert", pki.notpem, "--tls-key", pki.server_key),
                         "wspush: --tls-cert %s: not a PEM certificate chain (" % pki.notpem),
        "key not PEM": (("--tls-cert", pki.server, "--tls-key", pki.notpem),
                        "wspush: --tls-key %s: not a PEM private key (" % pki.notpem),
        "no usable cipher": (("--tls-cert", pki.server, "--tls-key", pki.server_key,
                              "--tls-ciphers", "NO-SUCH-CIPHER"),
                             "wspush: --tls-ciphers: no usable cipher in 'NO-SUCH-CIPHER'"),
    }[case]
    rc, err = start_error(free_port(), *args)
    assert_start_error(rc, err)
    assert rc == 1, (rc, err)
    assert err.startswith(line), err


@pytest.mark.parametrize("args", [("--tls-cert", "CERT"), ("--tls-key", "KEY"),
                                  ("--tls-min-version", "1.3")])
def test_tls_options_without_their_pair_exit_2(pki, args):
    args = [{"CERT": pki.server, "KEY": pki.server_key}.get(a, a) for a in args]
    rc, err = start_error(free_port(), *args)
    assert_start_error(rc, err)
    assert rc == 2, (rc, err)
    assert "--tls-cert and --tls-key go together" in err or "need --tls-cert" in err, err


def test_an_expired_certificate_warns_and_serves(spawn, pki):
    s = tls_server(spawn, pki, cert=pki.expired, key=pki.expired_key)
    m = s.wait_log(r"\[warn\] (.*)\n")
    assert str(pki.expired) in m.group(1) and "expired" in m.group(1), m.group(1)
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate has expired"):
        tls_connect(s.port, pki.client_context())
    lax = ssl.create_default_context()
    lax.check_hostname = False
    lax.verify_mode = ssl.CERT_NONE
    with tls_connect(s.port, lax) as t:
        assert get_index(t).endswith(b"\r\n\r\nHello world")


# --- reloading the certificate ----------------------------------------------------------

@pytest.fixture
def pair(tmp_path, pki):
    """cert.pem / key.pem in a directory of their own, a copy of the server's pair."""
    d = tmp_path / "tls"
    d.mkdir()
    shutil.copy(pki.server, d / "cert.pem")
    shutil.copy(pki.server_key, d / "key.pem")
    return d / "cert.pem", d / "key.pem"


def hup(s, why="SIGHUP", ok=True):
    mark = s.log_mark()
    s.proc.send_signal(signal.SIGHUP)
    return s.wait_log((RELOADED if ok else RELOAD_FAILED) % why + r"(.*)", since=mark, timeout=5)


def test_sighup_reloads_the_certificate_and_live_connections_go_on(spawn, pki, pair):
    cert, key = pair
    s = tls_server(spawn, pki, "--no-watch", cert=cert, key=key)
    ctx = pki.client_context()
    assert peer_fingerprint(s.port, ctx) == pki.fingerprint(pki.server)
    with rawws.upgrade(s.port, "/ws") as live:
        assert live.recv_text() == "Welcome"
        shutil.copy(pki.second, cert)
        shutil.copy(pki.second_key, key)
        assert hup(s).group(1) == str(cert)
        assert peer_fingerprint(s.port, ctx) == pki.fingerprint(pki.second)
        live.send_text("across the reload")    # the old session is untouched
        assert live.recv_text() == "new message :across the reload"
        assert live.sock.getpeercert(binary_form=True) == pki.der(pki.server)
    wss_echo_works(s)


def test_a_certbot_symlink_swap_is_picked_up_without_a_signal(spawn, pki, tmp_path):
    archive, live = tmp_path / "archive", tmp_path / "live"
    archive.mkdir()
    live.mkdir()
    for n, (c, k) in enumerate([(pki.server, pki.server_key), (pki.second, pki.second_key)], 1):
        shutil.copy(c, archive / ("cert%d.pem" % n))
        shutil.copy(k, archive / ("privkey%d.pem" % n))
    os.symlink("../archive/cert1.pem", live / "cert.pem")
    os.symlink("../archive/privkey1.pem", live / "privkey.pem")
    s = tls_server(spawn, pki, cert=live / "cert.pem", key=live / "privkey.pem")
    ctx = pki.client_context()
    assert peer_fingerprint(s.port, ctx) == pki.fingerprint(pki.server)
    mark = s.log_mark()
    for name, target in (("cert.pem", "cert2.pem"), ("privkey.pem", "privkey2.pem")):
        os.symlink("../archive/" + target, live / (name + ".new"))
        os.replace(live / (name + ".new"), live / name)     # atomic, like certbot
    m = s.wait_log(RELOADED % "certificate files changed" + r"(.*)", since=mark, timeout=5)
    assert m.group(1) == str(live / "cert.pem")
    assert peer_fingerprint(s.port, ctx) == pki.fingerprint(pki.second)
    wss_echo_works(s)


def test_a_broken_new_pair_is_refused_and_the_old_one_keeps_serving(spawn, pki, pair):
    cert, key = pair
    s = tls_server(spawn, pki, "--no-watch", cert=cert, key=key)
    ctx = pki.client_context()
    with rawws.upgrade(s.port, "/ws") as live:
        assert live.recv_text() == "Welcome"
        shutil.copy(pki.second, cert)             # the new certificate, the old key
        m = hup(s, ok=False)
        # the wording is test_reload_names_a_mismatched_key's business (a server bug)
        assert m.group(1).startswith("--tls-key %s" % key) and "match" in m.group(1), m.group(1)
        assert peer_fingerprint(s.port, ctx) == pki.fingerprint(pki.server)
        live.send_text("after a failed reload")
        assert live.recv_text() == "new message :after a failed reload"
    wss_echo_works(s)
    cert.write_bytes(b"-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n")
    assert hup(s, ok=False).group(1).startswith("--tls-cert %s: not a PEM certificate chain" % cert)
    assert peer_fingerprint(s.port, ctx) == pki.fingerprint(pki.server)
    shutil.copy(pki.second, cert)             # and once the pair is whole again, it is taken
    shutil.copy(pki.second_key, key)
    hup(s)
    assert peer_fingerprint(s.port, ctx) == pki.fingerprint(pki.second)


def test_reload_names_a_mismatched_key(spawn, pki, pair):
    cert, key = pair
    s = tls_server(spawn, pki, "--no-watch", cert=cert, key=key)
    shutil.copy(pki.second, cert)
    m = hup(s, ok=False)
    assert m.group(1) == "--tls-key %s does not match the certificate in --tls-cert %s" % (key, cert)


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3],
                         ids=["tls1.2", "tls1.3"])
def test_session_resumption_across_a_reload(spawn, pki, pair, version):
    cert, key = pair
    s = tls_server(spawn, pki, "--no-watch", cert=cert, key=key)
    ctx = pki.client_context(maximum=version)
    ctx.minimum_version = version

    def session_of(session=None):
        with tls_connect(s.port, ctx, session=session) as t:
            assert t.version() == version.name.replace("v1_", "v1.")
            # reading lets a TLS 1.3 ticket (sent after the handshake) arrive
            assert get_index(t).endswith(b"Hello world")
            return t.session, t.session_reused, hashlib.sha256(
                t.getpeercert(binary_form=True)).hexdigest()

    sess, reused, _ = session_of()
    assert not reused and sess.has_ticket, sess
    sess2, reused, _ = session_of(sess)
    assert reused, "no resumption even before a reload"
    shutil.copy(pki.second, cert)
    shutil.copy(pki.second_key, key)
    hup(s)
    _, reused, fp = session_of(sess2 if version == ssl.TLSVersion.TLSv1_3 else sess)
    assert reused, "the ticket was not accepted after the reload"
    assert fp == pki.fingerprint(pki.server)     # resumed: the session's certificate
    _, reused, fp = session_of()
    assert not reused and fp == pki.fingerprint(pki.second)
