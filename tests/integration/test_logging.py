"""The log: never blocks the loop (a stalled stderr costs records, counted,
not service), --log-format json, --access-log."""
import json
import re
import time

import pytest

import rawws
from conftest import SCRIPTS, scaled

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
