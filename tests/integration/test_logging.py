"""The log: never blocks the loop (a stalled stderr costs records, counted,
not service), --log-format json, --access-log."""
import json
import os
import re
import signal
import subprocess
import time

import pytest

import rawws
from conftest import BIN, SCRIPTS, scaled

APP = SCRIPTS / "logs_app.lua"
TEXT_LINE_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \[(error|warn|info|debug)\] ")
DROPPED_RE = re.compile(r"(\d+) log records? (?:was|were) dropped: the log could not keep up")
# Enough to fill the pipe (64 KiB) and the server's queue (1 MiB) twice over.
SPAM_N, SPAM_SIZE = 2500, 1000


def echo_round_trips(port, n=10, limit=2.0):
    """n echo round trips on a fresh connection, each within limit seconds."""
    with rawws.upgrade(port) as c:
        for i in range(n):
            t0 = time.monotonic()
            c.send_text("ping %d" % i)
            assert c.recv_text(timeout=scaled(limit)) == "ping %d" % i
            assert time.monotonic() - t0 < scaled(limit)


def stalled_log_scenario(srv, nworkers):
    srv.stall_log()
    try:
        # Every worker spams (each request may land on any worker).
        for _ in range(2 * nworkers):
            r = srv.http("/spam?n=%d&size=%d" % (SPAM_N, SPAM_SIZE), timeout=10)
            assert r.status == 200, r
        # The log is stalled for good now: clients are still served.
        for _ in range(2 * nworkers):
            echo_round_trips(srv.port)
        r = srv.http("/index")
        assert (r.status, r.body) == (200, b"Hello world")
    finally:
        srv.resume_log()
    # Once the pipe drains, the server says how many records it lost.
    srv.wait_log(DROPPED_RE, timeout=10)
    # A record after the notice shows the notice is whole and in its place.
    assert srv.http("/say?msg=after-the-stall").status == 200
    srv.wait_log(r"after-the-stall", timeout=10)
    lines = srv.log.splitlines()
    spam_re = re.compile(r"spam (\d+) (x*)$")
    seen = 0
    for line in lines:
        # Every line whole: a record's start, never a piece of another.
        assert TEXT_LINE_RE.match(line), "not a whole record: %r" % line[:200]
        m = spam_re.search(line)
        if m:
            assert len(m.group(2)) == SPAM_SIZE, "a cut record: %r" % line[:200]
            seen += 1
    dropped = sum(int(m.group(1)) for m in DROPPED_RE.finditer(srv.log))
    assert dropped > 0
    # Each record either reached the log or was counted as dropped.
    assert seen + dropped == 2 * nworkers * SPAM_N, (seen, dropped)


def test_a_stalled_log_drops_counted_records_and_never_stalls_the_clients(spawn):
    srv = spawn(APP)
    stalled_log_scenario(srv, 1)


def test_with_workers_a_stalled_log_stalls_neither_supervisor_nor_workers(spawn):
    srv = spawn(APP, "--workers", "2")
    stalled_log_scenario(srv, 2)


def json_records(srv):
    """Every line of the server's log as a JSON object (each must parse)."""
    out = []
    for line in srv.log.splitlines():
        try:
            rec = json.loads(line)
        except ValueError as e:
            raise AssertionError("not a JSON line (%s): %r" % (e, line[:300]))
        assert isinstance(rec, dict), line
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", rec["ts"]), rec
        assert rec["level"] in ("error", "warn", "info", "debug"), rec
        assert isinstance(rec["msg"], str), rec
        out.append(rec)
    return out


@pytest.mark.parametrize("workers", [1, 2])
def test_json_log_every_line_parses_and_strings_are_escaped(spawn, workers):
    srv = spawn(APP, "--log-format", "json", "--workers", str(workers))
    # Control characters, a quote, a backslash and bytes that are not UTF-8.
    r = srv.http("/say?msg=a%0D%0A2026%20%5Binfo%5D%20forged%22%5C%FF%01%09end")
    assert r.status == 200
    srv.wait_log(r"forged", timeout=10)
    echo_round_trips(srv.port, n=2)
    srv.terminate()
    srv.wait_exit(10)
    recs = json_records(srv)
    said = [r for r in recs if "forged" in r["msg"]]
    assert len(said) == 1, recs
    assert said[0]["level"] == "warn"
    assert said[0]["msg"].endswith("a\r\n2026 [info] forged\"\\\ufffd\x01\tend"), said[0]
    assert any("listening on http://127.0.0.1:%d" % srv.port in r["msg"] for r in recs)
    if workers > 1:
        # A worker's records say which worker; the supervisor's say none.
        assert said[0]["worker"] in (1, 2)
        stopping = [r for r in recs if "shutting down" in r["msg"]]
        assert sorted(r["worker"] for r in stopping) == [1, 2], stopping
        assert all("worker" not in r for r in recs if "workers stopped" in r["msg"])
    else:
        assert all("worker" not in r for r in recs)


# ---- --access-log ----

def access_records(srv, n, since=0, timeout=10):
    """Wait for n access records in the (JSON) log after mark since; return them."""
    deadline = time.monotonic() + scaled(timeout)
    while True:
        recs = [json.loads(l) for l in srv.log.splitlines()[since:]]
        acc = [r for r in recs if r["msg"] == "access"]
        if len(acc) >= n or time.monotonic() > deadline:
            assert len(acc) == n, acc
            return acc
        time.sleep(0.02)


def without_time(rec, port):
    """The record's fields, its remote checked and the timing fields set aside."""
    rec = dict(rec)
    assert rec.pop("remote") == "127.0.0.1:%d" % port, rec
    d = rec.pop("duration_ms")
    assert isinstance(d, int) and 0 <= d < scaled(5000), rec
    for k in ("ts", "level", "msg"):
        rec.pop(k)
    return rec


@pytest.mark.valgrind
def test_access_log_http_requests_and_refused_upgrades(spawn):
    srv = spawn(APP, "--access-log", "-", "--log-format", "json")
    mark = srv.log_mark()
    ports = []
    for method, target in [("GET", "/index?token=secret"), ("HEAD", "/nowhere")]:
        with rawws.Conn(srv.port) as c:
            ports.append(c.local_port)
            c.send(("%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                    % (method, target)).encode())
            c.read_response(head_only=method == "HEAD")
    with rawws.Conn(srv.port) as c:  # a cross-origin upgrade: check_origin says no
        ports.append(c.local_port)
        assert c.handshake("/ws?x=1", headers={"Origin": "http://evil.example"}).status == 403
    with rawws.Conn(srv.port) as c:  # a bad handshake: no key
        ports.append(c.local_port)
        assert c.handshake("/ws", headers={"Sec-WebSocket-Key": None}).status == 400
    with rawws.Conn(srv.port) as c:  # not HTTP at all: no method, no path
        ports.append(c.local_port)
        assert c.request("\x01\x02 nonsense\r\n\r\n").status == 400
    recs = access_records(srv, 5, since=mark)
    got = [without_time(r, p) for r, p in zip(recs, ports)]
    assert got[0] == {"kind": "http", "method": "GET", "path": "/index", "status": 200}
    assert got[1] == {"kind": "http", "method": "HEAD", "path": "/nowhere", "status": 404}
    assert got[2] == {"kind": "upgrade", "method": "GET", "path": "/ws", "status": 403,
                      "reason": "cross-origin request refused"}, got[2]
    assert got[3] == {"kind": "upgrade", "method": "GET", "path": "/ws", "status": 400,
                      "reason": "missing Sec-WebSocket-Key"}, got[3]
    assert got[4]["kind"] == "http" and got[4]["status"] == 400, got[4]
    assert "method" not in got[4] and "path" not in got[4], got[4]
    # The query (where tokens travel) is never in the log.
    assert "secret" not in srv.log


@pytest.mark.valgrind
def test_access_log_a_closed_websocket_with_its_code_bytes_and_messages(spawn):
    srv = spawn(APP, "--access-log", "-", "--log-format", "json")
    mark = srv.log_mark()
    with rawws.upgrade(srv.port, "/ws?token=t") as c:
        port = c.local_port
        for msg in ("hello", "there"):
            c.send_text(msg)
            assert c.recv_text() == msg
        c.send_close(4001, b"done")
        assert c.recv_close()[0].close_code == 4001
    rec, = access_records(srv, 1, since=mark)
    # In: two text frames of 5 bytes (2 + 4 mask + 5) and the close (2 + 4 + 2 + 4);
    # out: the two echoes (2 + 5) and the close echoed (2 + 2).
    assert without_time(rec, port) == {
        "kind": "ws", "path": "/ws", "code": 4001, "reason": "done",
        "bytes_in": 2 * 11 + 12, "bytes_out": 2 * 7 + 4, "msgs_in": 2, "msgs_out": 2}


def test_access_log_text_lines_are_key_values_with_quoted_strings(spawn):
    srv = spawn(APP, "--access-log", "-")
    with rawws.Conn(srv.port) as c:
        port = c.local_port
        assert c.request("GET /index HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").status == 200
    m = srv.wait_log(r"\[info\] access (.*)\n")
    assert re.fullmatch(r'kind="http" method="GET" path="/index" status=200 remote="127\.0\.0\.1:%d" '
                        r'duration_ms=\d+' % port, m.group(1)), m.group(1)


def test_no_access_records_without_the_option(spawn):
    srv = spawn(APP)
    assert srv.http("/index").status == 200
    with rawws.upgrade(srv.port) as c:
        c.send_close(1000)
        c.recv_close()
    srv.terminate()
    srv.wait_exit(10)
    assert "access kind=" not in srv.log


def wait_lines(path, n, timeout=10):
    deadline = time.monotonic() + scaled(timeout)
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= n or time.monotonic() > deadline:
            assert len(lines) == n, lines
            return lines
        time.sleep(0.02)


@pytest.mark.parametrize("workers", [1, 2])
def test_access_log_file_is_reopened_on_sigusr1_for_rotation(spawn, tmp_path, workers):
    path = tmp_path / "access.log"
    srv = spawn(APP, "--access-log", str(path), "--workers", str(workers))
    for i in range(4):
        assert srv.http("/index?n=%d" % i).status == 200
    before = wait_lines(path, 4)
    # What logrotate does: move the file away, then signal the server.
    os.rename(path, tmp_path / "access.log.1")
    srv.proc.send_signal(signal.SIGUSR1)
    # The supervisor and every worker reopen their descriptor.
    deadline = time.monotonic() + scaled(10)
    while srv.log.count("reopened the access log") < (workers + 1 if workers > 1 else 1):
        assert time.monotonic() < deadline, srv.log
        time.sleep(0.02)
    for i in range(4):
        assert srv.http("/nowhere").status == 404
    after = wait_lines(path, 4)
    assert (tmp_path / "access.log.1").read_text().splitlines() == before
    line_re = re.compile(r'^\S+Z \[info\] (?:\[worker \d\] )?access kind="http" method="GET" '
                         r'path="/(index|nowhere)" status=(200|404) remote="127\.0\.0\.1:\d+" '
                         r'duration_ms=\d+$')
    assert all(line_re.match(l) and "index" in l for l in before), before
    assert all(line_re.match(l) and "nowhere" in l for l in after), after
    # The records went to the file, not to the log.
    assert "access kind=" not in srv.log


def test_access_log_file_that_cannot_be_opened_stops_the_start(tmp_path):
    bad = tmp_path / "no-such-dir" / "access.log"
    p = subprocess.run([str(BIN), "--port", "0", "--access-log", str(bad), str(APP)],
                       capture_output=True, text=True, timeout=scaled(10))
    assert p.returncode == 1
    assert p.stderr == "wspush: --access-log %s: No such file or directory\n" % bad
