"""Routing, pub/sub, timers, logging and control-frame hooks (docs/api.md)."""
import json
import time

import pytest

import rawws
from rawws import OP_PING, OP_PONG, OP_TEXT
from conftest import SCRIPTS, scaled, script_line, wait_for

ROUTES = SCRIPTS / "routes.lua"


@pytest.fixture
def srv(spawn):
    return spawn(ROUTES, "--close-timeout", "10")


def ws(server, path, **kw):
    return rawws.upgrade(server.port, path, timeout=scaled(5), **kw)


# --- routing ----------------------------------------------------------------------------

def test_websocket_route_with_param_capture(srv):
    with ws(srv, "/room/kitchen") as c:
        assert c.recv_text() == "room:kitchen"


def test_param_capture_is_percent_decoded(srv):
    with ws(srv, "/room/a%20b") as c:
        assert c.recv_text() == "room:a b"


def test_exact_route_wins_over_pattern(srv):
    r = srv.http("/room/lobby")
    assert r.status == 200 and r.body == b"exact lobby", r
    assert srv.json("/items/special") == {"route": "exact"}


def test_param_wins_over_splat_for_one_segment(srv):
    assert srv.json("/items/42") == {"route": "param", "id": "42"}


def test_splat_captures_rest_of_path(srv):
    assert srv.json("/items/a/b/c") == {"route": "splat", "rest": "a/b/c"}
    assert srv.json("/files/dir/sub/file.txt") == {"path": "dir/sub/file.txt"}


def test_param_does_not_match_empty_segment(srv):
    # "/room/" has an empty segment: no WebSocket room route, and no other route
    r = srv.http("/room/")
    assert r.status == 404, r


def test_method_routes_and_405_with_allow(srv):
    assert srv.json("/things", method="POST", body=b"abc") == {"m": "post", "body": "abc"}
    assert srv.json("/things", method="DELETE") == {"m": "delete"}
    r = srv.http("/things", method="PUT", body=b"x")
    assert r.status == 405, r
    allow = {m.strip() for m in (r.header("Allow") or "").split(",")}
    assert {"POST", "DELETE"} <= allow, r


def test_any_route_takes_every_method(srv):
    for m in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        assert srv.json("/any", method=m, body=b"" if m == "GET" else b"x")["m"] == m


def test_head_on_http_route_has_no_body(srv):
    with rawws.Conn(srv.port) as c:
        c.send(("HEAD /room/lobby HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                "GET /room/lobby HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").encode())
        r1 = c.read_response(head_only=True)
        assert r1.status == 200, r1
        # the next bytes on the connection are the GET's answer, not a HEAD body
        r2 = c.read_response()
        assert r2.status == 200 and r2.body == b"exact lobby", r2


def test_catch_all_router_function(srv):
    assert srv.json("/dyn/widget") == {"dyn": "widget", "method": "GET"}
    assert srv.http("/dyn/not/this").status == 404
    assert srv.http("/nowhere").status == 404


def test_request_form_and_json_bodies(srv):
    j = srv.json("/form", method="POST", body=b"a=1&b=x+y&c=%C3%A9",
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert j["form"] == {"a": "1", "b": "x y", "c": "é"}, j
    j = srv.json("/json", method="POST", body=b'{"k": [1, 2], "s": "v"}',
                 headers={"Content-Type": "application/json"})
    assert j["json"] == {"k": [1, 2], "s": "v"}, j


def test_request_headers_case_insensitive_and_remote(srv):
    with rawws.Conn(srv.port) as c:
        r = c.request("GET /headers HTTP/1.1\r\nHost: x\r\nX-Thing: thing-value\r\nConnection: close\r\n\r\n")
        j = json.loads(r.body)
        assert j["a"] == "thing-value" and j["b"] == "thing-value", j
        assert j["remote"] == "127.0.0.1:%d" % c.local_port, j


def test_chunked_request_body(srv):
    with rawws.Conn(srv.port) as c:
        r = c.request("POST /things HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n")
        assert r.status == 200, r
        assert json.loads(r.body) == {"m": "post", "body": "abcdefg"}
        # and the connection is still usable (the chunked body was consumed exactly)
        r = c.request("GET /room/lobby HTTP/1.1\r\nHost: x\r\n\r\n")
        assert r.body == b"exact lobby"


def test_post_body_then_second_request_on_same_connection(srv):
    with rawws.Conn(srv.port) as c:
        r = c.request("POST /things HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        assert json.loads(r.body) == {"m": "post", "body": "hello"}
        r = c.request("GET /room/lobby HTTP/1.1\r\nHost: x\r\n\r\n")
        assert r.body == b"exact lobby"


# --- pub/sub ----------------------------------------------------------------------------

@pytest.mark.valgrind
def test_publish_reaches_every_subscriber_and_only_them(srv):
    with ws(srv, "/sub?topic=news") as a, ws(srv, "/sub?topic=news") as b, ws(srv, "/sub?topic=other") as o:
        for c in (a, b, o):
            assert c.recv_text() == "subscribed"
        assert srv.json("/publish?topic=news&msg=extra%20extra")["sent"] == 2
        assert a.recv_text() == "extra extra"
        assert b.recv_text() == "extra extra"
        # o got nothing: its next message is the answer to its own command
        o.send_text("topics")
        assert json.loads(o.recv_text()) == ["other"]


def test_publish_binary(srv):
    with ws(srv, "/sub?topic=bin") as a:
        assert a.recv_text() == "subscribed"
        assert srv.json("/publish?topic=bin&msg=raw&binary=1")["sent"] == 1
        assert a.recv_message() == (rawws.OP_BINARY, b"raw")


def test_unsubscribe_and_topics(srv):
    with ws(srv, "/sub?topic=t1") as a:
        assert a.recv_text() == "subscribed"
        a.send_text("sub t2")
        assert a.recv_text() == "ok"
        a.send_text("topics")
        assert json.loads(a.recv_text()) == ["t1", "t2"]
        a.send_text("unsub t1")
        assert a.recv_text() == "ok"
        assert srv.json("/publish?topic=t1&msg=x")["sent"] == 0
        assert srv.json("/publish?topic=t2&msg=y")["sent"] == 1
        assert a.recv_text() == "y"


def test_closed_connection_leaves_its_topics(srv):
    c = ws(srv, "/sub?topic=gone")
    assert c.recv_text() == "subscribed"
    c.send_close(1000)
    c.recv_close()
    c.close()
    wait_for(lambda: srv.json("/publish?topic=gone&msg=x")["sent"] == 0, desc="publish reaching 0")


def test_publish_to_a_topic_nobody_joined(srv):
    assert srv.json("/publish?topic=nobody&msg=x")["sent"] == 0


# --- timers -----------------------------------------------------------------------------

def test_after_timer_fires_once(srv):
    with ws(srv, "/ctl") as c:
        c.send_text("after")
        assert c.recv_text() == "fired"
        c.send_text("x")
        assert c.recv_text() == "echo:x"


def test_every_timer_repeats_until_stopped(srv):
    with ws(srv, "/ctl") as c:
        c.send_text("every")
        assert [c.recv_text() for _ in range(4)] == ["tick1", "tick2", "tick3", "stopped"]
        c.send_text("x")
        assert c.recv_text() == "echo:x"


def test_stopped_timer_never_fires(srv):
    with ws(srv, "/ctl") as c:
        c.send_text("cancel")
        assert c.recv_text() == "after cancel"


def test_timer_error_is_logged_and_timers_go_on(srv):
    mark = srv.log_mark()
    with ws(srv, "/ctl") as c:
        c.send_text("timer error")
        assert c.recv_text() == "timers still work"
    srv.wait_log(r"routes\.lua:%d:" % script_line(ROUTES, "TIMER_RAISE_LINE"), since=mark)
    srv.wait_log(r"timer went wrong", since=mark)


# --- logging, clock, connection methods ----------------------------------------------------

def test_wspush_log_writes_to_stderr(srv):
    mark = srv.log_mark()
    with ws(srv, "/ctl") as c:
        c.send_text("log")
        assert c.recv_text() == "logged"
    srv.wait_log(r"(?i)warn.*custom log line from lua 7f3a", since=mark)


def test_wspush_now_is_a_number(srv):
    with ws(srv, "/ctl") as c:
        c.send_text("now")
        a = json.loads(c.recv_text())
        c.send_text("now")
        b = json.loads(c.recv_text())
        assert a["type"] == "number" and b["now"] >= a["now"]


def test_conn_buffered_counts_the_queued_frame_bytes(srv):
    """conn:buffered() is the bytes queued and not yet written: 0 on a connection
    whose peer has read everything (nothing was sent on /ctl before), then, after
    a 1000-byte text send inside the same handler (written only once it
    returns), that frame: 2 header bytes + 2 of extended length + 1000."""
    with ws(srv, "/ctl") as c:
        c.send_text("buffered")
        assert c.recv_text() == "b" * 1000
        j = json.loads(c.recv_text())
        assert j == {"type": "integer", "before": 0, "after": 4 + 1000}, j


def test_conn_is_open_until_close_starts(srv):
    with ws(srv, "/ctl") as c:
        c.send_text("isopen")
        f, _ = c.recv_close()
        assert f.close_code == 4002 and f.close_reason == b"checked"
    st = srv.json("/state")
    assert st["isopen"] == {"before": True, "after": False}, st


def test_server_ping_reaches_client_and_pong_calls_on_pong(srv):
    with ws(srv, "/ctl") as c:
        c.send_text("ping me")
        f = c.recv_frame()
        assert f.opcode == OP_PING and f.payload == b"hb", f
        c.send_frame(OP_PONG, b"hb")
        assert c.recv_text() == "got pong hb"


def test_on_ping_is_called_and_pong_is_automatic(srv):
    with ws(srv, "/ctl") as c:
        c.send_frame(OP_PING, b"abc")
        frames = [c.recv_frame(), c.recv_frame()]
        pongs = [f for f in frames if f.opcode == OP_PONG]
        texts = [f.payload for f in frames if f.opcode == OP_TEXT]
        assert len(pongs) == 1 and pongs[0].payload == b"abc", frames
        assert texts == [b"got ping abc"], frames


def test_send_invalid_utf8_as_text_is_refused(srv):
    with ws(srv, "/ctl") as c:
        c.send_text("bad utf8")
        op, data = c.recv_message()
        assert data != b"\xff\xfe", "invalid UTF-8 went out in a text frame"
        # docs/api.md: conn:send returns nil, "invalid UTF-8 (send it as binary)";
        # it does not raise
        assert (op, json.loads(data)) == (OP_TEXT, {
            "pcall_ok": True, "result": "nil", "err": "invalid UTF-8 (send it as binary)"}), data
        # and the connection goes on
        c.send_text("x")
        assert c.recv_text() == "echo:x"


# --- handler errors outside on_message ----------------------------------------------------

def test_error_in_open_closes_1011_and_is_logged(srv):
    mark = srv.log_mark()
    with ws(srv, "/ctl") as other:
        with ws(srv, "/open_boom") as c:
            f, before = c.recv_close()
            assert f.close_code == 1011, f
            assert before == [], before
            # finish the close handshake: once the server has closed TCP the
            # connection is gone from wspush.count()
            c.send_close(1011)
            c.wait_eof(timeout=scaled(5))
        srv.wait_log(r"routes\.lua:%d:" % script_line(ROUTES, "OPEN_RAISE_LINE"), since=mark)
        # the failed connection is not counted; the other one still is
        assert srv.json("/count")["count"] == 1
        other.send_text("x")
        assert other.recv_text() == "echo:x"


def test_error_in_on_close_is_logged_and_server_goes_on(srv):
    mark = srv.log_mark()
    with ws(srv, "/close_boom") as c:
        assert c.recv_text() == "hi"
        c.send_close(1000)
        c.recv_close()
    srv.wait_log(r"routes\.lua:%d:" % script_line(ROUTES, "CLOSE_RAISE_LINE"), since=mark)
    assert srv.json("/state")["closed_errors"] == 1
    with ws(srv, "/ctl") as c:
        c.send_text("x")
        assert c.recv_text() == "echo:x"


def test_handler_that_never_returns_does_not_hang_the_server(srv):
    """DESIGN.md: a Lua count hook bounds each callback and raises inside it."""
    with ws(srv, "/spin", ) as c, ws(srv, "/ctl") as other:
        c.send_text("spin")
        try:
            f, _ = c.recv_close(timeout=scaled(15))
        except (TimeoutError, EOFError) as e:
            pytest.fail("a spinning handler was not interrupted within 15 s: %r" % e)
        assert f.close_code == 1011, f
        other.send_text("x")
        assert other.recv_text() == "echo:x"


BUDGET = SCRIPTS / "budget.lua"


@pytest.mark.parametrize("what", ["main", "pcall", "sort", "wrap", "create", "nested"])
def test_a_loop_that_never_ends_is_stopped_at_its_budget(spawn, what):
    """The main thread runs without a count hook: the watchdog's signal sets one
    when the budget (0.3 s here) is over. Coroutines carry their own from
    coroutine.create/wrap. An error that reaches the handler fails it (1011);
    one caught by coroutine.resume comes back as its message, unless the
    handler, over budget already, is stopped itself at its next check."""
    s = spawn(BUDGET, "--lua-timeout", "0.3")
    mark = s.log_mark()
    with ws(s, "/ws") as c, ws(s, "/ws") as other:
        t0 = time.monotonic()
        c.send_text(what)
        f = c.recv_frame(timeout=scaled(10))
        # the budget of the outermost callback, not HOOK_COUNT instructions of luck
        assert time.monotonic() - t0 < scaled(5)
        if f.opcode == OP_TEXT:
            assert what in ("create", "nested"), f
            assert "exceeded its time budget" in f.payload.decode(), f
            c.send_text("again")
            assert c.recv_text() == "again 123"
        else:
            assert f.close_code == 1011, f
            s.wait_log(r"exceeded its time budget", since=mark)
        other.send_text("still")
        assert other.recv_text() == "still 123"


def test_every_callback_stays_bounded_after_one_was_stopped(spawn):
    """Callbacks run in pooled coroutines: one stopped by the budget (by a yield,
    or by an error where it could not yield) must not leave the next callback
    that runs in its place without a budget."""
    s = spawn(BUDGET, "--lua-timeout", "0.2")
    for what in ["main", "sort", "main", "pcall", "sort", "main"]:
        with ws(s, "/ws") as c:
            c.send_text(what)
            f = c.recv_frame(timeout=scaled(10))
            assert f.close_code == 1011, (what, f)
    with ws(s, "/ws") as c:
        c.send_text("fine")
        assert c.recv_text() == "fine 123"
