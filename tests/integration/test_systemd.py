"""Running under systemd: the sd_notify protocol (Type=notify) and the
synchronous reload command (ExecReload=wspush --reload PATH).

The test plays systemd's part: it binds a unix datagram socket, passes its
name in NOTIFY_SOCKET and reads what the server says, with the sender's pid
(SO_PASSCRED), so that a datagram from a worker is caught. The reload command
is the real binary against the server's --control-socket.
"""
import os
import re
import socket
import stat
import struct
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import rawws
from conftest import BIN, scaled, script_line

TEMPLATE = """\
local wspush = require "wspush"
return {{
  ["/version"] = function(req) return "{v}:" .. wspush.worker.id end,
  ["/ws"] = {{ open = function(conn) conn:send("{v}") end }},
}}
"""

BROKEN = """\
return {
  ["/version"] = function() return "broken" .. end,
}
"""


class Notify:
    """A fake systemd notification socket: a path, or an abstract name ("@...")."""

    def __init__(self, name):
        self.name = str(name)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind("\0" + self.name[1:] if self.name.startswith("@") else self.name)
        self.got = []  # (pid, {key: value}) in arrival order

    def recv(self, timeout=10.0):
        """The next datagram as (sender pid, {KEY: value}); fails after timeout."""
        self.sock.settimeout(scaled(timeout))
        try:
            data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        except socket.timeout:
            raise AssertionError("no notification within %ss; got so far: %r"
                                 % (timeout, self.got))
        pid = None
        for level, kind, cdata in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("iII", cdata[:12])[0]
        fields = dict(line.split("=", 1) for line in data.decode().split("\n") if line)
        self.got.append((pid, fields))
        return pid, fields

    def expect(self, key, pid, timeout=10.0, bounded=20):
        """Read datagrams until one has key; every one must come from pid."""
        for _ in range(bounded):
            sender, fields = self.recv(timeout)
            assert sender == pid, "a datagram from pid %r, not the main process %d: %r" % (
                sender, pid, fields)
            if key in fields:
                return fields
        raise AssertionError("%d datagrams without %s: %r" % (bounded, key, self.got))

    def quiet(self, seconds=0.3):
        """Nothing more arrives for a while (what a worker would have sent)."""
        self.sock.settimeout(seconds)
        try:
            data = self.sock.recv(4096)
        except socket.timeout:
            return
        raise AssertionError("unexpected notification %r" % data)

    def close(self):
        self.sock.close()


@pytest.fixture
def notify(tmp_path, monkeypatch):
    n = Notify(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", n.name)
    yield n
    n.close()


def served_port(status):
    m = re.search(r"^serving \S+ on 127\.0\.0\.1:(\d+)", status)
    assert m, status
    return int(m.group(1))


def version(port):
    r = rawws.http_get(port, "/version", timeout=scaled(5))
    assert r.status == 200, r
    return r.body.decode().split(":")[0]


def children(pid):
    with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
        return [int(p) for p in f.read().split()]


def environ_of(pid):
    with open("/proc/%d/environ" % pid, "rb") as f:
        return f.read().split(b"\0")


def edit_and_expect_reload(notify, server, text):
    """Write the script (the watcher reloads it): RELOADING=1, then READY=1 with STATUS."""
    server.script_path.write_text(text)
    reloading = notify.expect("RELOADING", server.proc.pid)
    assert reloading["RELOADING"] == "1" and int(reloading["MONOTONIC_USEC"]) > 0, reloading
    ready = notify.expect("READY", server.proc.pid)
    assert ready["READY"] == "1", ready
    return ready["STATUS"]


@pytest.mark.valgrind
@pytest.mark.parametrize("workers", [1, 2], ids=["single", "workers2"])
def test_notify_ready_reload_and_stopping(spawn, tmp_path, notify, workers):
    path = tmp_path / "live.lua"
    path.write_text(TEMPLATE.format(v="v1"))
    s = spawn(path, "--workers", workers)
    s.script_path = path
    ready = notify.expect("READY", s.proc.pid)
    # READY=1 comes once every worker serves: each answers, right away, on
    # connections of its own (fresh source ports spread over the workers).
    port = served_port(ready["STATUS"])
    assert port == s.port
    seen = set()
    for _ in range(200):
        r = rawws.http_get(port, "/version", timeout=scaled(2))
        assert r.status == 200 and r.body.decode().startswith("v1:"), r
        seen.add(r.body.decode())
        if len(seen) == workers:
            break
    assert len(seen) == workers, seen
    if workers > 1:
        assert ready["STATUS"].endswith("with 2 workers; 0 connections"), ready
        kids = children(s.proc.pid)
        assert len(kids) == 2, kids
        for k in kids:
            assert not [v for v in environ_of(k) if v.startswith(b"NOTIFY_SOCKET=")], k
    else:
        assert ready["STATUS"].endswith("; 0 connections"), ready

    # the count follows the connections (looked at once a second)
    with rawws.upgrade(port, "/ws") as c:
        assert c.recv_text() == "v1"
        status = notify.expect("STATUS", s.proc.pid, timeout=5)["STATUS"]
        assert status.endswith("; 1 connection"), status
    status = notify.expect("STATUS", s.proc.pid, timeout=5)["STATUS"]
    assert status.endswith("; 0 connections"), status

    status = edit_and_expect_reload(notify, s, TEMPLATE.format(v="v2"))
    assert status.startswith("serving %s on 127.0.0.1:%d" % (path, port)), status
    assert version(port) == "v2"

    status = edit_and_expect_reload(notify, s, BROKEN)
    line = script_line(path, '"broken" ..')
    # the failure stays in the status until a reload succeeds
    assert status.startswith("serving %s on 127.0.0.1:%d" % (path, port)), status
    m = re.search(r"; 0 connections; reload failed, the previous version serves: (.*)", status)
    assert m and "live.lua:%d:" % line in m.group(1), status
    assert version(port) == "v2"
    status = edit_and_expect_reload(notify, s, TEMPLATE.format(v="v3"))
    assert "reload failed" not in status and status.endswith("; 0 connections"), status

    s.terminate()
    stopping = notify.expect("STOPPING", s.proc.pid)
    assert stopping["STOPPING"] == "1" and stopping["STATUS"].startswith("SIGTERM: stopping")
    assert s.wait_exit(timeout=15) == 0
    notify.quiet()
    # nothing but the main process ever spoke
    assert {pid for pid, _ in notify.got} == {s.proc.pid}, notify.got


def test_an_abstract_notify_socket_is_reached(spawn, tmp_path, monkeypatch):
    n = Notify("@wspush-test-%d-%d" % (os.getpid(), time.monotonic_ns()))
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", n.name)
        path = tmp_path / "v.lua"
        path.write_text(TEMPLATE.format(v="v1"))
        s = spawn(path)
        assert served_port(n.expect("READY", s.proc.pid)["STATUS"]) == s.port
    finally:
        n.close()


# ---- the reload command ----

def reload_cmd(ctl, timeout=60):
    return subprocess.run([str(BIN), "--reload", str(ctl)], capture_output=True, text=True,
                          timeout=scaled(timeout))


@pytest.mark.valgrind
@pytest.mark.parametrize("workers", [1, 2], ids=["single", "workers2"])
def test_reload_command_waits_for_the_outcome(spawn, tmp_path, workers):
    path = tmp_path / "live.lua"
    path.write_text(TEMPLATE.format(v="v1"))
    ctl = tmp_path / "control"
    s = spawn(path, "--workers", workers, "--no-watch", "--control-socket", ctl)
    assert stat.S_IMODE(os.stat(ctl).st_mode) == 0o600

    path.write_text(TEMPLATE.format(v="v2"))
    p = reload_cmd(ctl)
    assert p.returncode == 0, p.stderr
    assert re.match(r"reloaded \S*live\.lua \(reload command\)", p.stdout), p.stdout
    # when it returns, the new version serves (no waiting)
    for _ in range(20):
        assert version(s.port) == "v2"

    path.write_text(BROKEN)
    p = reload_cmd(ctl)
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert p.stdout == ""
    assert p.stderr.startswith("wspush: ") and p.stderr.endswith("\n"), p.stderr
    assert "live.lua:%d:" % script_line(path, '"broken" ..') in p.stderr, p.stderr
    for _ in range(20):
        assert version(s.port) == "v2"

    # several at once (a reload under way when the next asks): each gets an answer
    path.write_text(TEMPLATE.format(v="v3"))
    with ThreadPoolExecutor(4) as ex:
        results = list(ex.map(lambda _: reload_cmd(ctl), range(4)))
    assert [r.returncode for r in results] == [0] * 4, [r.stderr for r in results]
    assert version(s.port) == "v3"

    # SIGHUP still reloads as before
    path.write_text(TEMPLATE.format(v="v4"))
    mark = s.log_mark()
    s.proc.send_signal(1)
    s.wait_log(r"reloaded \S*live\.lua \(SIGHUP\)", since=mark, timeout=10)
    assert version(s.port) == "v4"

    s.terminate()
    assert s.wait_exit(timeout=15) == 0
    assert not ctl.exists()
    p = reload_cmd(ctl)
    assert p.returncode == 1 and "cannot connect to %s" % ctl in p.stderr, p.stderr


def test_a_second_server_on_the_same_control_socket_is_refused(spawn, tmp_path):
    path = tmp_path / "live.lua"
    path.write_text(TEMPLATE.format(v="v1"))
    ctl = tmp_path / "control"
    spawn(path, "--control-socket", ctl)
    p = subprocess.run([str(BIN), "--host", "127.0.0.1", "--port", "0", "--control-socket",
                        str(ctl), str(path)], capture_output=True, text=True,
                       timeout=scaled(30))
    assert p.returncode == 1
    assert "--control-socket %s: another server listens there" % ctl in p.stderr, p.stderr
    assert reload_cmd(ctl).returncode == 0  # the first one still has it


def test_a_stale_control_socket_is_replaced(spawn, tmp_path):
    path = tmp_path / "live.lua"
    path.write_text(TEMPLATE.format(v="v1"))
    ctl = tmp_path / "control"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(ctl))
    stale.close()  # the file stays, nobody listens: a server that died
    spawn(path, "--control-socket", ctl)
    p = reload_cmd(ctl)
    assert p.returncode == 0, p.stderr


def test_the_control_socket_answers_a_wrong_command_and_survives_a_silent_client(spawn, tmp_path):
    path = tmp_path / "live.lua"
    path.write_text(TEMPLATE.format(v="v1"))
    ctl = tmp_path / "control"
    s = spawn(path, "--no-watch", "--control-socket", ctl)
    for _ in range(3):  # connects and leaves without a word
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(str(ctl))
        c.close()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.settimeout(scaled(5))
        c.connect(str(ctl))
        c.sendall(b"restart\n")
        assert c.makefile("rb").readline() == b"error unknown command (the commands: reload)\n"
    path.write_text(TEMPLATE.format(v="v2"))
    assert reload_cmd(ctl).returncode == 0
    assert version(s.port) == "v2"


def test_the_reload_command_fails_when_the_server_closes_without_an_answer(tmp_path):
    ctl = tmp_path / "control"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(ctl))
    srv.listen(1)
    with ThreadPoolExecutor(1) as ex:
        fut = ex.submit(reload_cmd, ctl)
        srv.settimeout(scaled(10))
        conn, _ = srv.accept()
        conn.settimeout(scaled(10))
        assert conn.recv(64) == b"reload\n"
        conn.close()
        p = fut.result()
    srv.close()
    assert p.returncode == 1
    assert p.stderr == "wspush: %s closed without an answer\n" % ctl, p.stderr
