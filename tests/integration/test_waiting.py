"""Handlers that wait (docs/api.md "Handlers that wait"): every Lua callback
runs in a pooled coroutine and may wspush.sleep while the server goes on.

End to end against the real binary over 127.0.0.1: order per connection,
max_pending (the server stops reading: bytes stay unread in the kernel, seen
in /proc/net/tcp), close during a wait, a waiting open, hot reload under a
waiting handler, where waiting is refused, --lua-timeout counting running
time only, many waiting handlers at once, the upgrade(req) hook, HTTP
handlers, timers and on_shutdown that wait.

State of the handlers is recorded by scripts/waiting.lua and read back over
HTTP as JSON. Timing assertions are only generous bounds on waits the server
controls (a sleep's length, --upgrade-timeout, --shutdown-timeout).
"""
import re
import select
import socket
import subprocess
import threading
import time

import pytest

import rawws
from rawws import OP_CLOSE, OP_TEXT, build_frame, close_payload
from conftest import BIN, REPO, SCRIPTS, report, scaled, script_line, wait_for

WAITING = SCRIPTS / "waiting.lua"
SLACK = 0.02   # the loop clock is in ms; a sleep may end a hair early by the client's clock


def start(spawn, *args):
    return spawn(WAITING, "--ping-interval", "0", "--close-timeout", "5", *args)


def events(s, tag):
    return s.json("/events?tag=%s" % tag)["events"]


def events_until(s, tag, last, timeout=5):
    """The events of tag once one starting with `last` was recorded (bounded poll:
    server-side state no client can await)."""
    return wait_for(lambda: (lambda ev: ev if any(e.startswith(last) for e in ev) else None)(
        events(s, tag)), timeout=timeout, desc="event %r of %s" % (last, tag))


def tcp_queues(client_port, server_port):
    """(unacknowledged bytes of our socket, unread bytes of the server's socket)
    of one connection, from /proc/net/tcp (both ends live on this host)."""
    mine = theirs = None
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            lport = int(fields[1].rsplit(":", 1)[1], 16)
            rport = int(fields[2].rsplit(":", 1)[1], 16)
            tx, rx = (int(x, 16) for x in fields[4].split(":"))
            if (lport, rport) == (client_port, server_port):
                mine = tx
            elif (lport, rport) == (server_port, client_port):
                theirs = rx
    if mine is None or theirs is None:
        raise AssertionError("connection %d <-> %d not in /proc/net/tcp" % (client_port, server_port))
    return mine, theirs


def readable(c, timeout=0.0):
    """Has the server sent c anything (buffered or on the socket)?"""
    if c.buf:
        return True
    r, _, _ = select.select([c.sock], [], [], timeout)
    return bool(r)


def still_serving(s):
    assert s.http("/fast").body == b"fast"
    with rawws.upgrade(s.port, "/echo", timeout=scaled(5)) as c:
        c.send_text("still here")
        assert c.recv_text() == "still here"


def log_since(s, mark):
    with s._cond:
        return "".join(s._lines[mark:])


def field_ms(text, name):
    m = re.search(r"\b%s=(\d+)" % name, text)
    assert m, "no %s= in %r" % (name, text)
    return int(m.group(1))


# ---------------------------------------------------------------------------
# 1. Order is kept while a handler waits.

def test_replies_keep_send_order_while_a_handler_waits(spawn):
    """A message whose handler sleeps 1 s, and five more in the same write:
    the replies come in send order, the later ones only after the sleep, and
    meanwhile another connection is served (the wait blocks nothing else)."""
    s = start(spawn)
    secs = scaled(1.0)
    with rawws.upgrade(s.port, "/order", timeout=scaled(5)) as c, \
            rawws.upgrade(s.port, "/echo", timeout=scaled(5)) as other:
        burst = build_frame(OP_TEXT, "sleep %g first" % secs)
        burst += b"".join(build_frame(OP_TEXT, "m%d" % i) for i in range(1, 6))
        t0 = time.monotonic()
        c.send(burst)
        # Another connection is answered while the sleeper sleeps, and c has
        # had nothing yet: the server did not handle m1..m5 ahead of it.
        other.send_text("ping")
        assert other.recv_text() == "ping"
        assert not readable(c), "a reply came before the sleeping handler woke: %r" % c.recv_text()
        replies = [c.recv_text(timeout=scaled(5)) for _ in range(6)]
        t_first = time.monotonic() - t0
    assert replies[0].startswith("first slept true nil "), replies
    assert [r.split()[0] for r in replies[1:]] == ["m1", "m2", "m3", "m4", "m5"], replies
    start_ms, end_ms = field_ms(replies[0], "start"), field_ms(replies[0], "end")
    assert end_ms - start_ms >= secs * 1000 - 10, replies[0]
    for r in replies[1:]:
        # each later handler started only once the sleeper had ended
        assert field_ms(r, "start") >= end_ms, (r, replies[0])
    assert t_first >= secs - SLACK, t_first


# ---------------------------------------------------------------------------
# 2. max_pending: the server stops reading, nothing is dropped.

def flood(s, path, tag, n=300, size=1000, secs=1.0):
    """Make the handler of a `path` connection sleep `secs`, then send n
    messages of `size` bytes at once from a thread. Returns (conn, data
    length, sent counter, thread, time the sleeper said it sleeps)."""
    c = rawws.upgrade(s.port, "%s?tag=%s" % (path, tag), timeout=scaled(10))
    c.send_text("sleep %g" % secs)
    assert c.recv_text() == "sleeping"
    t_ack = time.monotonic()
    data = b"".join(build_frame(OP_TEXT, ("m %d " % i).ljust(size, "x")) for i in range(1, n + 1))
    sent = [0]

    def sender():
        view = memoryview(data)
        deadline = time.monotonic() + scaled(20)
        c.sock.setblocking(False)
        while sent[0] < len(data) and time.monotonic() < deadline:
            try:
                sent[0] += c.sock.send(view[sent[0]:])
            except BlockingIOError:
                select.select([], [c.sock], [], 0.05)
        c.sock.setblocking(True)

    th = threading.Thread(target=sender, daemon=True)
    th.start()
    return c, len(data), sent, th, t_ack


def finish_flood(s, c, n, th, tag):
    th.join(timeout=scaled(20))
    assert not th.is_alive(), "the sender could not send everything after the sleep ended"
    c.sock.settimeout(scaled(10))
    assert c.recv_text(timeout=scaled(10)) == "slept"
    got = [c.recv_text(timeout=scaled(10)) for _ in range(n)]
    assert got == ["got %d" % i for i in range(1, n + 1)], \
        [g for g, w in zip(got, ("got %d" % i for i in range(1, n + 1))) if g != w][:5]
    assert s.json("/pending_state?tag=%s" % tag) == {"sleeping": False, "handled": n}


def test_max_pending_stops_reading_while_the_handler_waits(spawn, capsys):
    """max_pending = 2, the handler sleeps 1 s, 300 KB of messages arrive at
    once: the server stops reading (most of the bytes stay unread in the
    kernel, the server's socket has a receive queue) while the handler
    sleeps; afterwards every message is handled, in order."""
    s = start(spawn)
    n, secs = 300, scaled(1.0)
    c, total, sent, th, t_ack = flood(s, "/pending", "small", n=n, secs=secs)
    try:
        # An observation window within the sleep (it ends >= secs after the
        # ack): the server must not read the bytes meanwhile.
        rx_seen = []
        for _ in range(100000):
            tx, rx = tcp_queues(c.local_port, s.port)
            rx_seen.append(rx)
            if time.monotonic() > t_ack + 0.6 * secs:
                break
            time.sleep(0.005)
        tx, rx = tcp_queues(c.local_port, s.port)
        consumed = sent[0] - tx - rx        # what the server has read from its socket
        st = s.json("/pending_state?tag=small")
        # still within the sleep: what we saw was while the handler waits
        assert st == {"sleeping": True, "handled": 0}, st
        report(capsys, "max_pending=2, handler asleep: %d of %d bytes sent, server read %d, "
               "%d unread in its socket (max seen %d)" % (sent[0], total, consumed, rx, max(rx_seen)))
        assert rx > 0, "the server's socket has no unread bytes: it kept reading while the handler waited"
        # At most a couple of reads (64 KiB each) before the queue was full.
        assert consumed <= 2 * 65536, consumed
        finish_flood(s, c, n, th, "small")
    finally:
        c.close()


def test_a_large_max_pending_reads_everything_while_the_handler_waits(spawn, capsys):
    """The control: max_pending = 1000 queues all 300 messages; the server's
    socket is read empty while the handler still sleeps, none is handled
    before it wakes, then all are, in order."""
    s = start(spawn)
    n, secs = 300, scaled(1.0)
    c, total, sent, th, t_ack = flood(s, "/pending_big", "big", n=n, secs=secs)
    try:
        def all_read():
            tx, rx = tcp_queues(c.local_port, s.port)
            return sent[0] == total and tx == 0 and rx == 0
        wait_for(all_read, timeout=0.6, interval=0.005,   # wait_for scales it, as secs is
                 desc="the server to read every byte while the handler sleeps")
        waited = time.monotonic() - t_ack
        st = s.json("/pending_state?tag=big")
        assert st == {"sleeping": True, "handled": 0}, st
        report(capsys, "max_pending=1000: all %d bytes read %.0f ms after the handler fell asleep"
               % (total, waited * 1e3))
        finish_flood(s, c, n, th, "big")
    finally:
        c.close()


# ---------------------------------------------------------------------------
# 3. Close during a wait.

@pytest.mark.parametrize("how", ["close frame", "tcp cut"])
def test_a_close_interrupts_the_wait_and_on_close_runs_after_the_handler(spawn, how):
    s = start(spawn)
    tag = "cw_" + how.replace(" ", "_")
    with rawws.upgrade(s.port, "/closewait?tag=" + tag, timeout=scaled(5)) as c:
        c.send_text("sleep 5")
        assert c.recv_text() == "sleeping"
        if how == "close frame":
            c.send_close(1000, "bye")
            f, before = c.recv_close(timeout=scaled(2))
            assert f.close_code == 1000 and before == [], (f, before)
            c.wait_eof(timeout=scaled(2))
            code = 1000
        else:
            c.sock.shutdown(socket.SHUT_RDWR)
            code = 1006
    ev = events_until(s, tag, "on_close", timeout=2)
    assert ev[:2] == ["start", "sleep returned nil closed"], ev
    assert ev[3:] == ["after: open=false send=nil closed", "end", "on_close %d" % code], ev
    waited = int(ev[2].split()[1])
    assert waited < 500, "the 5 s sleep returned after %d ms, not at once" % waited
    still_serving(s)


def test_messages_queued_before_a_close_are_handled_then_on_close(spawn):
    """Two messages and a close frame arrive while the handler sleeps: the
    sleep returns nil, "closed", the two are still handled (seeing the
    connection closed), on_close comes last."""
    s = start(spawn)
    with rawws.upgrade(s.port, "/closewait?tag=cq", timeout=scaled(5)) as c:
        c.send_text("sleep 5")
        assert c.recv_text() == "sleeping"
        c.send(build_frame(OP_TEXT, "m1") + build_frame(OP_TEXT, "m2")
               + build_frame(OP_CLOSE, close_payload(1000)))
        f, before = c.recv_close(timeout=scaled(2))
        # nothing sent after the close reached the client
        assert f.close_code == 1000 and before == [], (f, before)
        c.wait_eof(timeout=scaled(2))
    ev = events_until(s, "cq", "on_close", timeout=2)
    assert ev[:2] == ["start", "sleep returned nil closed"], ev
    assert int(ev[2].split()[1]) < 500, ev
    assert ev[3:] == [
        "after: open=false send=nil closed", "end",
        "msg m1: open=false send=nil closed",
        "msg m2: open=false send=nil closed",
        "on_close 1000",
    ], ev


# ---------------------------------------------------------------------------
# 4. A waiting open.

def test_messages_wait_for_a_waiting_open(spawn):
    """open sleeps 0.5 s. One message travels in the same packet as the
    upgrade request, another is sent right after the 101: both are handled
    after open finished, in order."""
    s = start(spawn)
    secs = scaled(0.5)
    with rawws.Conn(s.port, timeout=scaled(5)) as c:
        t0 = time.monotonic()
        r = c.handshake("/slowopen?secs=%g" % secs, extra=build_frame(OP_TEXT, "early"))
        assert r.status == 101, r
        c.send_text("late")
        got = [c.recv_text(timeout=scaled(5)) for _ in range(3)]
        t_open = time.monotonic() - t0
    assert got[0].startswith("open done after "), got
    assert int(got[0].split()[-1]) >= secs * 1000 - 10, got
    assert got[1:] == ["msg early ready=true", "msg late ready=true"], got
    assert t_open >= secs - SLACK


# ---------------------------------------------------------------------------
# 5. Hot reload during a wait.

RELOAD_TEMPLATE = """\
local wspush = require "wspush"
local V = "@V@"
wspush.shared.current = V
local ws = {}
function ws.on_message(conn, msg)
  if msg == "sleep" then
    conn:send(V .. " sleeping")
    local ok, err = wspush.sleep(@SECS@)
    -- shared.current names the version loaded last: it tells whether the
    -- reload happened while this handler waited.
    conn:send(V .. " woke " .. tostring(ok) .. " current=" .. tostring(wspush.shared.current))
  else
    conn:send(V .. " got " .. msg)
  end
end
return { ["/ws"] = ws, ["/version"] = function() return V end }
"""


def test_a_waiting_handler_finishes_on_its_own_version_after_a_reload(spawn, tmp_path):
    path = tmp_path / "reload_wait.lua"
    secs = scaled(2.0)
    render = lambda v: RELOAD_TEMPLATE.replace("@V@", v).replace("@SECS@", "%g" % secs)
    path.write_text(render("v1"))
    s = spawn(path, "--ping-interval", "0")
    with rawws.upgrade(s.port, "/ws", timeout=scaled(5)) as c:
        c.send_text("sleep")
        assert c.recv_text() == "v1 sleeping"
        mark = s.log_mark()
        path.write_text(render("v2"))
        s.wait_log(r"reloaded \S*reload_wait\.lua", since=mark, timeout=5)
        wait_for(lambda: s.http("/version").body == b"v2", desc="v2 serving HTTP")
        c.send_text("next")      # queued behind the waiting v1 handler
        assert c.recv_text(timeout=scaled(5)) == "v1 woke true current=v2"
        assert c.recv_text(timeout=scaled(5)) == "v2 got next"
        c.send_text("again")
        assert c.recv_text() == "v2 got again"
    assert "reload failed" not in s.log, s.log


# ---------------------------------------------------------------------------
# 6. Waiting where it cannot.

def test_sleep_at_the_top_level_fails_the_load():
    path = SCRIPTS / "sleep_at_load.lua"
    p = subprocess.run([str(BIN), "--host", "127.0.0.1", "--port", "0", str(path)],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=scaled(10), cwd=str(REPO))
    err = p.stderr.decode("utf-8", "replace")
    assert p.returncode in (1, 2), (p.returncode, err)
    assert "listening on" not in err, err
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, "the start error should be one line, got:\n%s" % err
    assert "sleep_at_load.lua:%d:" % script_line(path, "LOAD_SLEEP_LINE") in err, err
    assert "wspush.sleep can only wait in a handler" in err, err


@pytest.mark.parametrize("msg, marker, why", [
    ("sort", "SORT_LINE", "wspush.sleep cannot wait here: a C function is between the handler and this call"),
    ("gsub", "GSUB_LINE", "wspush.sleep cannot wait here: a C function is between the handler and this call"),
    ("wrap", "WRAP_LINE", "wspush.sleep cannot wait inside a coroutine of your own"),
    ("yield", "YIELD_LINE", "coroutine.yield in a handler"),
])
def test_waiting_where_it_cannot_fails_the_handler_with_1011(spawn, msg, marker, why):
    s = start(spawn)
    line = script_line(WAITING, marker)
    mark = s.log_mark()
    tag = "cannot_" + msg
    with rawws.upgrade(s.port, "/cannot?tag=" + tag, timeout=scaled(5)) as c:
        c.send_text("hello")
        assert c.recv_text() == "echo hello"
        c.send_text(msg)
        f, before = c.recv_close(timeout=scaled(5))
        assert f.close_code == 1011 and before == [], (f, before)
    m = s.wait_log(r"\[error\] on_message \(/cannot, conn \d+\): (.*)", since=mark)
    assert why in m.group(1), m.group(0)
    assert "waiting.lua:%d" % line in log_since(s, mark), "the log does not name waiting.lua:%d" % line
    assert events_until(s, tag, "on_close") == ["on_close 1011"]
    still_serving(s)


def test_pcall_of_sleep_waits_like_a_direct_call(spawn):
    s = start(spawn)
    with rawws.upgrade(s.port, "/cannot", timeout=scaled(5)) as c:
        c.send_text("pcall")
        r = c.recv_text(timeout=scaled(5))
        assert r.startswith("pcall true true waited "), r
        assert int(r.split()[-1]) >= 45, r
        c.send_text("again")
        assert c.recv_text() == "echo again"


# ---------------------------------------------------------------------------
# 7. --lua-timeout counts running time only.

def test_lua_timeout_adds_up_the_runs_of_a_waiting_handler(spawn):
    """Budget 0.5 s: computing 0.3 s, waiting 1 s, computing 0.3 s is 0.6 s of
    running: the second computation is stopped."""
    s = start(spawn, "--lua-timeout", "0.5")
    mark = s.log_mark()
    with rawws.upgrade(s.port, "/budget", timeout=scaled(5)) as c:
        c.send_text("0.3 1 0.3")
        assert c.recv_text(timeout=scaled(5)) == "slept"   # the first 0.3 s and the wait were fine
        t0 = time.monotonic()
        f, before = c.recv_close(timeout=scaled(5))
        stopped_after = time.monotonic() - t0
        assert f.close_code == 1011 and before == [], (f, before)
    s.wait_log(r"on_message \(/budget, conn \d+\): .*callback exceeded its time budget", since=mark)
    # 0.2 s left of the budget, checked every quarter of it
    assert stopped_after < scaled(1.0), stopped_after
    still_serving(s)


def test_lua_timeout_does_not_count_the_wait(spawn):
    """Budget 0.5 s: computing 0.1 s, waiting 1 s, computing 0.1 s lasts 1.2 s
    but runs 0.2 s: it finishes."""
    s = start(spawn, "--lua-timeout", "0.5")
    with rawws.upgrade(s.port, "/budget", timeout=scaled(5)) as c:
        t0 = time.monotonic()
        c.send_text("0.1 1 0.1")
        assert c.recv_text(timeout=scaled(5)) == "slept"
        assert c.recv_text(timeout=scaled(5)) == "done"
        # longer than the budget by the wall clock (os.clock counts every
        # thread of the process, so the computations may take less wall time)
        assert time.monotonic() - t0 >= 1.0 - SLACK
        c.send_text("x")
        assert c.recv_text() == "echo x"
    assert "time budget" not in s.log


# ---------------------------------------------------------------------------
# 8. Many waiting at once; the others are served.

def test_200_waiting_handlers_do_not_hold_up_anyone(spawn, capsys):
    s = start(spawn)
    n, secs = 200, 0.5
    conns = []
    try:
        for _ in range(n):
            conns.append(rawws.upgrade(s.port, "/sleepy?secs=%g" % secs, timeout=scaled(10)))
        canary = rawws.upgrade(s.port, "/echo", timeout=scaled(5))
        conns.append(canary)
        lat, failures, stop = [], [], threading.Event()

        def run_canary():
            deadline = time.monotonic() + scaled(30)
            for k in range(100000):
                if stop.is_set() or time.monotonic() > deadline:
                    break
                msg = "canary %d" % k
                t = time.monotonic()
                canary.send_text(msg)
                try:
                    got = canary.recv_text(timeout=scaled(1))
                except TimeoutError:
                    failures.append("round trip %d timed out" % k)
                    break
                lat.append(time.monotonic() - t)
                if got != msg:
                    failures.append((k, got))
                    break
                time.sleep(0.002)

        th = threading.Thread(target=run_canary, daemon=True)
        th.start()
        t0 = time.monotonic()
        for i, c in enumerate(conns[:n]):
            c.send_text("c%d" % i)
        for i, c in enumerate(conns[:n]):
            assert c.recv_text(timeout=scaled(10)) == "woke c%d" % i
        elapsed = time.monotonic() - t0
        stop.set()
        th.join(timeout=scaled(5))
        assert not th.is_alive()
        lat.sort()
        report(capsys, "%d handlers sleeping %.1f s each: all replies in %.3f s; echo canary meanwhile: "
               "%d round trips, p50 %.2f ms, p99 %.2f ms, max %.2f ms, %d failures"
               % (n, secs, elapsed, len(lat), lat[len(lat) // 2] * 1e3,
                  lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3, lat[-1] * 1e3, len(failures)))
        assert not failures, failures
        assert len(lat) >= 10, "the canary made only %d round trips" % len(lat)
        assert secs - SLACK <= elapsed < scaled(10), elapsed
    finally:
        for c in conns:
            c.close()


# ---------------------------------------------------------------------------
# 9. The upgrade(req) hook.

WAITS = [None, 0.05]


def q(wait, **kw):
    if wait is not None:
        kw["wait"] = "%g" % wait
    return "&".join("%s=%s" % kv for kv in kw.items())


@pytest.mark.parametrize("wait", WAITS, ids=["direct", "waits"])
def test_upgrade_returning_a_table_makes_it_conn_data(spawn, wait):
    s = start(spawn)
    with rawws.upgrade(s.port, "/up_table?" + q(wait, user="ann"), timeout=scaled(5)) as c:
        assert c.recv_text() == "hello ann from upgrade"
        c.send_text("x")
        assert c.recv_text() == "echo x"
    with rawws.upgrade(s.port, "/up_true?" + q(wait), timeout=scaled(5)) as c:
        assert c.recv_text() == "data is table"


@pytest.mark.parametrize("wait", WAITS, ids=["direct", "waits"])
def test_upgrade_refusals_answer_their_status(spawn, wait):
    s = start(spawn)
    with rawws.Conn(s.port, timeout=scaled(5)) as c:
        r = c.handshake("/up_401?" + q(wait))
        assert r.status == 401, r
        assert r.header("WWW-Authenticate") == "Bearer", r
        assert r.header("Sec-WebSocket-Accept") is None, r
        assert b"should not open" not in r.body
    with rawws.Conn(s.port, timeout=scaled(5)) as c:
        r = c.handshake("/up_false?" + q(wait))
        assert r.status == 403, r
        assert r.header("Sec-WebSocket-Accept") is None, r
    still_serving(s)


@pytest.mark.parametrize("wait", WAITS, ids=["direct", "waits"])
def test_an_error_in_upgrade_answers_500_and_logs_file_line(spawn, wait):
    s = start(spawn)
    mark = s.log_mark()
    with rawws.Conn(s.port, timeout=scaled(5)) as c:
        r = c.handshake("/up_error?" + q(wait))
    assert r.status == 500, r
    line = script_line(WAITING, "UPGRADE_ERROR_LINE")
    s.wait_log(r"\[error\] WebSocket upgrade GET /up_error\S*: .*waiting\.lua:%d: upgrade exploded" % line,
               since=mark)
    still_serving(s)


def test_an_upgrade_that_does_not_decide_in_time_gets_503(spawn):
    s = start(spawn, "--upgrade-timeout", "0.3")
    mark = s.log_mark()
    with rawws.Conn(s.port, timeout=scaled(5)) as c:
        t0 = time.monotonic()
        r = c.handshake("/up_logged?tag=late&wait=%g" % scaled(3))
        waited = time.monotonic() - t0
        assert r.status == 503, r
        assert r.header("Sec-WebSocket-Accept") is None, r
    assert 0.3 - SLACK <= waited < scaled(1.5), waited
    s.wait_log(r"\[warn\] WebSocket upgrade GET /up_logged\?tag=late&wait=[\d.]+: no decision within "
               r"--upgrade-timeout \(0\.3 s\): 503", since=mark)
    # the waiting sleep was told at once, not after its 3 s
    assert events_until(s, "late", "upgrade sleep returned", timeout=1) == \
        ["upgrade sleep returned nil timeout"]
    # the server goes on: later upgrades work, waiting ones included
    with rawws.upgrade(s.port, "/up_table?user=bo&wait=0.05", timeout=scaled(5)) as c:
        assert c.recv_text() == "hello bo from upgrade"
    still_serving(s)


def test_upgrade_runs_after_check_origin_and_before_select_subprotocol(spawn):
    s = start(spawn)
    headers = {"Origin": "http://ok.example", "Sec-WebSocket-Protocol": "p1, p2"}
    with rawws.upgrade(s.port, "/up_order?tag=ord&wait=0.1", headers=headers, timeout=scaled(5)) as c:
        assert c.response.header("Sec-WebSocket-Protocol") == "p2", c.response
        assert c.recv_text() == "opened p2"
    assert events_until(s, "ord", "open") == [
        "check_origin http://ok.example",
        "upgrade",
        "upgrade sleep returned true nil",
        "upgrade decided",
        "select_subprotocol p1,p2",
        "open p2 order",
    ]
    # An origin check that refuses: upgrade is never asked.
    headers["Origin"] = "http://refused.example"
    with rawws.Conn(s.port, timeout=scaled(5)) as c:
        r = c.handshake("/up_order?tag=ref&wait=0.1", headers=headers)
    assert r.status == 403, r
    assert s.json("/events?tag=ref")["events"] == ["check_origin http://refused.example"]


def test_nothing_more_is_read_from_a_client_while_its_upgrade_waits(spawn, capsys):
    """A frame sent while the upgrade waits stays unread in the server's socket
    until the decision; then it is read and handled after open."""
    s = start(spawn)
    secs = scaled(1.0)
    mark = s.log_mark()
    with rawws.Conn(s.port, timeout=scaled(5)) as c:
        key = rawws.new_key()
        c.send(("GET /up_logged?tag=rd&wait=%g HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                % (secs, s.port, key)).encode())
        s.wait_log(r"upgrade waiting rd", since=mark)
        frame = build_frame(OP_TEXT, "early")
        c.send(frame)
        samples, times = [], []
        for _ in range(100000):
            if readable(c, 0.005):
                break               # the decision came: reading may resume
            samples.append(tcp_queues(c.local_port, s.port)[1])
            times.append(time.monotonic())
        # Once our frame arrived, it stayed unread until the answer. The
        # server reads it in the turn it answers, so the last sample or two
        # (taken before the 101 reached us) may find it read already. The
        # samples' count depends on how busy /proc/net/tcp is: judge by time.
        first = next((i for i, rx in enumerate(samples) if rx), len(samples))
        during = samples[first:]
        tail = 0
        while during and during[-1] == 0 and tail < 3:
            during.pop()
            tail += 1
        unread_for = times[first + len(during) - 1] - times[first] if len(during) > 1 else 0
        report(capsys, "upgrade waiting %.1f s: %d samples of the server's receive queue, %d with the "
               "frame unread (over %.2f s), %d after it was read, values %s"
               % (secs, len(samples), len(during), unread_for, tail, sorted(set(samples))))
        assert len(during) >= 3 and unread_for >= secs * 0.6, samples
        assert set(during) == {len(frame)}, samples
        r = c.read_response()
        assert r.status == 101 and r.header("Sec-WebSocket-Accept") == rawws.accept_for(key), r
        assert c.recv_text() == "open rd"
        assert c.recv_text() == "echo early"


def test_a_client_leaving_while_its_upgrade_waits_is_seen_at_once(spawn):
    """Not read, but watched: the upgrade's wait returns nil, "closed" when the
    client goes, not when the wait would have ended."""
    s = start(spawn)
    mark = s.log_mark()
    c = rawws.Conn(s.port, timeout=scaled(5))
    try:
        c.send(("GET /up_logged?tag=gone&wait=%g HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                % (scaled(3), s.port, rawws.new_key())).encode())
        s.wait_log(r"upgrade waiting gone", since=mark)
    finally:
        c.close()
    t0 = time.monotonic()
    ev = events_until(s, "gone", "upgrade sleep returned", timeout=scaled(2))
    assert ev == ["upgrade sleep returned nil closed"], ev
    assert time.monotonic() - t0 < scaled(1.5)


# ---------------------------------------------------------------------------
# 10. HTTP handlers that wait.

def test_an_http_handler_that_waits_answers(spawn):
    s = start(spawn)
    t0 = time.monotonic()
    r = s.http("/slow_http?tag=h1")
    assert (r.status, r.body) == (200, b"slow done h1"), r
    assert time.monotonic() - t0 >= 0.2 - SLACK
    assert events(s, "h1")[0] == "http sleep returned true nil"


def test_a_long_poll_is_not_cut_by_the_connection_deadlines(spawn):
    """docs: the connection's deadlines do not run while the answer is pending."""
    s = start(spawn, "--handshake-timeout", "0.3", "--keepalive-timeout", "0.3")
    with rawws.Conn(s.port, timeout=scaled(5)) as c:
        r = c.request("GET /slow_http?tag=lp&secs=1 HTTP/1.1\r\nHost: x\r\n\r\n", timeout=scaled(5))
        assert (r.status, r.body) == (200, b"slow done lp"), r
        # the keep-alive connection serves the next request
        r = c.request("GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (r.status, r.body) == (200, b"fast"), r


def send_and_leave(s, path, tag):
    """Send a request to an HTTP handler that waits, wait until it runs, and go."""
    mark = s.log_mark()
    c = rawws.Conn(s.port, timeout=scaled(5))
    try:
        c.send(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path).encode())
        s.wait_log(r"slow_http waiting %s" % tag, since=mark)
    finally:
        c.close()
    return mark


def test_a_client_gone_during_an_http_wait_costs_nothing(spawn):
    """The client goes while the handler sleeps 0.5 s: the handler ends, the
    answer goes nowhere, nothing bad is logged, the server serves on."""
    s = start(spawn)
    mark = send_and_leave(s, "/slow_http?tag=gone&secs=0.5", "gone")
    ev = events_until(s, "gone", "waited_ms", timeout=3)
    assert len(ev) == 2, ev
    assert s.alive()
    assert s.http("/fast").body == b"fast"
    still_serving(s)
    bad = [l for l in log_since(s, mark).splitlines() if re.search(r"\[(error|warn)\]", l)]
    assert not bad, bad


def test_an_http_wait_is_told_at_once_when_its_client_goes(spawn):
    s = start(spawn)
    send_and_leave(s, "/slow_http?tag=told&secs=3", "told")
    ev = events_until(s, "told", "waited_ms", timeout=5)
    assert ev[0] == "http sleep returned nil closed", ev
    assert int(ev[1].split()[1]) < 1000, ev


# ---------------------------------------------------------------------------
# 11. Timers that wait.

def test_timers_may_wait_and_a_repeating_one_skips_turns(spawn):
    """after(0.01, fn) where fn sleeps 0.2 s; every(0.05, fn) where fn sleeps
    0.3 s, for 1 s: one run at a time, so about 3 runs, not 20."""
    s = start(spawn)
    assert s.http("/start_timers").body == b"started"
    st = wait_for(lambda: (lambda j: j if j.get("final") is not None else None)(s.json("/timers")),
                  timeout=5, desc="the repeating timer's 1 s to end")
    assert st["after"].startswith("slept true at "), st
    assert int(st["after"].split()[-1]) >= 200, st
    assert 2 <= st["final"] <= 6, st
    assert st["max_active"] == 1, st


# ---------------------------------------------------------------------------
# 12. Shutdown waits for a waiting on_shutdown.

def test_shutdown_waits_for_a_waiting_on_shutdown(spawn):
    s = start(spawn)
    s.http("/shutdown_wait?secs=0.5")
    mark = s.log_mark()
    t0 = time.monotonic()
    s.terminate()
    s.wait_log(r"on_shutdown: sleeping 0\.5", since=mark)
    rc = s.wait_exit(timeout=5)
    took = time.monotonic() - t0
    assert rc == 0, (rc, s.log)
    s._thread.join(timeout=5)
    assert re.search(r"on_shutdown: done, sleep returned true nil", s.log), s.log
    assert took >= 0.5 - SLACK, "exited %.3f s after SIGTERM, before on_shutdown's 0.5 s sleep" % took
    assert "handlers still waiting" not in s.log


def test_shutdown_timeout_drops_a_waiting_on_shutdown(spawn):
    s = start(spawn, "--shutdown-timeout", "0.3")
    s.http("/shutdown_wait?secs=5")
    mark = s.log_mark()
    t0 = time.monotonic()
    s.terminate()
    rc = s.wait_exit(timeout=5)
    took = time.monotonic() - t0
    assert rc == 0, (rc, s.log)
    s._thread.join(timeout=5)
    assert 0.3 - SLACK <= took < scaled(1.5), took
    s.wait_log(r"on_shutdown: sleeping 5", since=mark)
    s.wait_log(r"shutdown: 1 handlers still waiting after the timeout, dropping them", since=mark)
    assert "on_shutdown: done" not in s.log


def test_shutdown_interrupts_a_waiting_event_handler(spawn):
    """SIGTERM while an on_message sleeps 5 s: the connection gets 1001, the
    sleep returns at once, and the server exits 0 well before the sleep or
    the 10 s --shutdown-timeout would end."""
    s = start(spawn)
    with rawws.upgrade(s.port, "/closewait?tag=term", timeout=scaled(5)) as c:
        c.send_text("sleep 5")
        assert c.recv_text() == "sleeping"
        t0 = time.monotonic()
        s.terminate()
        f, before = c.recv_close(timeout=scaled(3))
        assert f.close_code == 1001 and before == [], (f, before)
        c.send_close(1001)
        rc = s.wait_exit(timeout=5)
        took = time.monotonic() - t0
    assert rc == 0, (rc, s.log)
    assert took < scaled(2), took
    s._thread.join(timeout=5)
    assert "handlers still waiting" not in s.log, s.log
