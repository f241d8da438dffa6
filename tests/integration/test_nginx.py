"""examples/nginx.conf as a user would use it, with Debian's nginx in front of
wspush: only its placeholders are replaced (the listen port, the certificate,
the upstream's port), and the example goes inside a minimal nginx.conf of the
test's own (temporary paths, so that nginx runs unprivileged and never reads
/etc/nginx). The client connects from 127.0.0.2 and nginx from 127.0.0.1, so
that the address wspush sees tells the two apart."""
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

import rawws
from rawws import OP_PING, OP_PONG
from conftest import REPO, SCRIPTS, scaled
from redislib import free_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
EXAMPLE = REPO / "examples" / "nginx.conf"
APP = SCRIPTS / "proxy_app.lua"
CLIENT = "127.0.0.2"  # the browser's address, as nginx sees it
PING = 0.3            # wspush's --ping-interval here, in seconds

pytestmark = pytest.mark.skipif(not os.path.exists(NGINX),
                                reason="no nginx: `bash tests/deps.sh --test` installs Debian's")

# What a user changes in the example, and what the test puts there.
PLACEHOLDERS = ("listen 443 ssl;", "127.0.0.1:8000;", "/etc/ssl/wspush.example.com.pem;",
                "/etc/ssl/wspush.example.com.key;")

MAIN_CONF = """\
worker_processes 1;
events {{ worker_connections 64; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    include {d}/wspush.conf;
}}
"""


class Nginx:
    def __init__(self, d, port):
        self.port = port
        self.pidfile = d / "nginx.pid"
        self.err = []
        self.proc = subprocess.Popen(
            [NGINX, "-p", str(d), "-e", "stderr", "-c", str(d / "nginx.conf"),
             "-g", "daemon off; pid %s; error_log stderr;" % self.pidfile],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        threading.Thread(target=self._drain, daemon=True).start()
        deadline = time.monotonic() + scaled(15)
        while True:
            if self.proc.poll() is not None:
                raise AssertionError("nginx exited (%s): %s" % (self.proc.returncode, self.log))
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError("nginx is not listening on %d: %s" % (port, self.log))
                time.sleep(0.05)

    def _drain(self):
        for line in iter(self.proc.stderr.readline, b""):
            self.err.append(line.decode("utf-8", "replace"))

    @property
    def log(self):
        return "".join(self.err)

    def stop(self):
        """By the master's PID: SIGQUIT (graceful), then SIGKILL."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(timeout=scaled(10))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def render(d, nginx_port, wspush_port, pki):
    text = EXAMPLE.read_text()
    for p in PLACEHOLDERS:
        assert text.count(p) == 1, "examples/nginx.conf: the placeholder %r changed" % p
    text = (text.replace("listen 443 ssl;", "listen 127.0.0.1:%d ssl;" % nginx_port)
            .replace("127.0.0.1:8000;", "127.0.0.1:%d;" % wspush_port)
            .replace("/etc/ssl/wspush.example.com.pem;", "%s;" % pki.fullchain)
            .replace("/etc/ssl/wspush.example.com.key;", "%s;" % pki.server_key))
    (d / "wspush.conf").write_text(text)
    (d / "nginx.conf").write_text(MAIN_CONF.format(d=d))


@pytest.fixture
def front(spawn, pki, tmp_path):
    """wspush behind nginx; returns (wspush server, nginx, the TLS port to use)."""
    s = spawn(APP, "--trusted-proxy", "127.0.0.1", "--ping-interval", str(PING),
              "--ping-timeout", "2")
    for attempt in range(3):
        port = free_port()
        render(tmp_path, port, s.port, pki)
        try:
            n = Nginx(tmp_path, port)
            break
        except AssertionError:
            if attempt == 2:
                raise  # not a lost race for the free port
    yield s, n, rawws.TLSPort(port, pki.client_context())
    n.stop()
    assert n.proc.returncode == 0, n.log
    assert "[emerg]" not in n.log and "[alert]" not in n.log, n.log


def origin(port):
    return "https://127.0.0.1:%d" % port


def upgrade(port, **headers):
    hs = {"Origin": origin(port)}
    hs.update(headers)
    return rawws.upgrade(port, "/ws", headers=hs, source=CLIENT, timeout=scaled(10))


def get(port, path):
    with rawws.Conn(port, source=CLIENT, timeout=scaled(10)) as c:
        return c.request("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n"
                         % (path, int(port)))


def test_a_same_origin_websocket_through_nginx_upgrades_and_sees_the_client(front):
    s, n, port = front
    with upgrade(port) as c:
        assert c.recv_text() == "remote " + CLIENT, "conn.remote must be the client, not nginx"
        c.send_text("hello")
        assert c.recv_text() == "new message :hello"
        c.send_text("proto")
        assert c.recv_text() == "proto https"


def test_a_forged_x_forwarded_for_through_nginx_is_not_believed(front):
    s, n, port = front
    with upgrade(port, **{"X-Forwarded-For": "6.6.6.6"}) as c:
        assert c.recv_text() == "remote " + CLIENT


def test_publishes_from_inside_reach_clients_through_nginx(front):
    s, n, port = front
    with upgrade(port) as c:
        c.recv_text()
        r = s.http("/receive?msg=hi")  # straight to wspush, as the example says
        assert r.status == 200 and b'"sent":1' in r.body, r
        assert c.recv_text() == "hi"


def test_only_the_public_routes_are_reachable_through_nginx(front):
    s, n, port = front
    assert get(port, "/").status == 200
    r = get(port, "/index")
    assert (r.status, r.body) == (200, b"Hello world"), r
    for path in ("/receive?msg=x", "/receive", "/remote", "/ws/x"):
        r = get(port, path)
        assert r.status == 404, (path, r)
    assert s.http("/receive?msg=x").status == 200  # wspush itself still has it


def test_a_cross_origin_upgrade_through_nginx_is_refused(front):
    s, n, port = front
    with rawws.Conn(port, source=CLIENT, timeout=scaled(10)) as c:
        r = c.handshake("/ws", headers={"Origin": "https://evil.example"})
        assert r.status == 403, r
    # the same host on another port is another origin too
    with rawws.Conn(port, source=CLIENT, timeout=scaled(10)) as c:
        r = c.handshake("/ws", headers={"Origin": "https://127.0.0.1"})
        assert r.status == 403, r


def test_messages_flow_both_ways_through_nginx_across_ping_intervals(front):
    """Heartbeats cross nginx (pings out, pongs back), and the connection
    carries messages both ways for several ping intervals."""
    s, n, port = front
    with upgrade(port) as c:
        c.recv_text()
        pings = 0
        sent = got = 0
        end = time.monotonic() + 6 * PING
        while time.monotonic() < end:
            c.send_text("m%d" % sent)
            sent += 1
            deadline = time.monotonic() + scaled(5)
            while True:
                f = c.recv_frame(timeout=max(0.01, deadline - time.monotonic()))
                if f.opcode == OP_PING:
                    pings += 1
                    c.send_frame(OP_PONG, f.payload)
                    continue
                assert f.payload == b"new message :m%d" % got, f
                got += 1
                break
            # quiet for more than an interval: the server pings
            if sent % 2 == 0:
                f = c.recv_frame(timeout=scaled(5) + 2 * PING)
                assert f.opcode == OP_PING, f
                pings += 1
                c.send_frame(OP_PONG, f.payload)
        assert got == sent and sent >= 2
        assert pings >= 2, pings
        c.send_text("remote")
        f = c.recv_frame(timeout=scaled(5))
        while f.opcode == OP_PING:
            c.send_frame(OP_PONG, f.payload)
            f = c.recv_frame(timeout=scaled(5))
        assert f.payload == ("remote " + CLIENT).encode()
