"""Lua routing, request decoding, responses, send-by-id and timers, end to end
(tests/integration/scripts/push_routes.lua)."""
import asyncio
import json
import re

import pytest

from conftest import script_line
from pushlib import connect, http, http_json, log_errors, push_script, raw_request, recv, run

SCRIPT = push_script("push_routes.lua")


@pytest.fixture
def routes(spawn):
    return spawn(SCRIPT)


def body_json(r):
    return json.loads(r.body.decode("utf-8"))


# --- patterns -------------------------------------------------------------------

def test_websocket_pattern_route_captures_into_conn_params(routes):
    async def go():
        async with connect(routes, "/room/lobby%20one?x=1&y=a+b") as ws:
            m = json.loads(await recv(ws))
            assert m["kind"] == "room"
            assert m["name"] == "lobby one" and m["first"] == "lobby one"
            assert m["query"] == {"x": "1", "y": "a b"}
    run(go())


def test_http_pattern_route_captures_into_req_params(routes):
    j = http_json(routes, "GET", "/page/caf%C3%A9?q=1")
    assert j["name"] == "café" and j["params"]["name"] == "café"
    assert j["path"] == "/page/caf%C3%A9"  # the raw path, captures decoded
    j = http_json(routes, "GET", "/a/1/b/two")
    assert j["params"]["x"] == "1" and j["params"]["y"] == "two"
    j = http_json(routes, "GET", "/files/deep/er/file.txt")
    assert j["rest"] == "deep/er/file.txt"


def test_pattern_needs_a_non_empty_segment(routes):
    assert http(routes, "GET", "/page/").status == 404
    assert http(routes, "GET", "/page/x/y").status == 404
    assert http(routes, "GET", "/a/1/b").status == 404


def test_same_pattern_websocket_for_get_and_http_for_post(routes):
    r = http(routes, "POST", "/room/kitchen", body=b"hello", headers={"Content-Type": "text/plain"})
    assert r.status == 200, r
    j = body_json(r)
    assert j["name"] == "kitchen" and j["method"] == "POST" and j["body"] == "hello"
    # a plain GET on the WebSocket route asks for an upgrade
    r = http(routes, "GET", "/room/kitchen")
    assert r.status == 426, r
    r = http(routes, "PUT", "/room/kitchen")
    assert r.status == 405, r
    assert set(re.split(r",\s*", r.header("Allow"))) == {"GET", "POST"}, r


# --- methods ------------------------------------------------------------------------

def test_method_route_post_vs_get_is_405_with_allow(routes):
    r = http(routes, "POST", "/items", body=b"{}", headers={"Content-Type": "application/json"})
    assert r.status == 201, r
    assert body_json(r)["made"] is True
    r = http(routes, "GET", "/items")
    assert r.status == 405, r
    assert r.header("Allow") is not None, r
    assert set(re.split(r",\s*", r.header("Allow"))) == {"POST", "DELETE"}, r
    r = http(routes, "DELETE", "/items")
    assert r.status == 200 and r.body == b"deleted", r


def test_any_answers_every_method(routes):
    for m in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        r = http(routes, m, "/any")
        assert r.status == 200 and r.body == m.encode(), (m, r)


def test_head_runs_get_handler_without_body(routes):
    r = http(routes, "HEAD", "/teapot")
    assert r.status == 418, r
    assert r.header("X-Tea") == "earl grey"
    assert r.header("Content-Length") in ("0", str(len("short and stout"))), r
    # the connection is still in sync: nothing follows the head
    assert r.body == b""


# --- exact beats pattern, catch-all, 404 -----------------------------------------------------

def test_exact_path_beats_pattern(routes):
    r = http(routes, "GET", "/items/special")
    assert r.status == 200 and r.body == b"exact", r
    r = http(routes, "GET", "/items/other")
    assert r.status == 200 and r.body == b"pattern other", r


def test_catch_all_router_decides_in_lua(routes):
    j = http_json(routes, "GET", "/dyn/thing?z=9")
    assert j["routed_by"] == "catch-all" and j["m"] == "GET"
    assert j["params"] == {"name": "thing"} and j["query"] == {"z": "9"}
    j = http_json(routes, "POST", "/dyn/other")
    assert j["m"] == "POST"

    async def go():  # the catch-all can route a WebSocket too
        async with connect(routes, "/dyn-ws") as ws:
            assert (await recv(ws)).startswith("id ")
            await ws.send("x")
            assert await recv(ws) == "echo x"
    run(go())


def test_catch_all_is_asked_before_405(routes):
    r = http(routes, "POST", "/caught")
    assert r.status == 200 and r.body == b"post caught", r
    r = http(routes, "GET", "/caught")
    assert r.status == 200 and r.body == b"caught GET", r


def test_captures_are_percent_decoded_once(routes):
    j = http_json(routes, "GET", "/page/a%2Fb")
    assert j["name"] == "a/b"
    j = http_json(routes, "GET", "/page/%2541")
    assert j["name"] == "%41"


def test_unknown_path_is_404(routes):
    r = http(routes, "GET", "/nothing/here")
    assert r.status == 404, r
    r = http(routes, "POST", "/nope")
    assert r.status == 404, r


# --- decoding -----------------------------------------------------------------------------------

def test_query_decoding(routes):
    j = http_json(routes, "GET", "/echo?a=1&b=x+y&c=%2F%26%3D&d&a=2&e=%C3%A9t%C3%A9")
    assert j["query"] == {"a": "2", "b": "x y", "c": "/&=", "d": "", "e": "été"}


def test_form_body_decoding(routes):
    r = http(routes, "POST", "/echo", body="name=J%C3%BCrgen+X&tags=a%2Cb&empty=",
             headers={"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"})
    assert r.status == 200, r
    j = body_json(r)
    assert j["form"] == {"name": "Jürgen X", "tags": "a,b", "empty": ""}
    assert j.get("json") is None


def test_json_body_decoding(routes):
    payload = {"n": 3, "s": "ünï", "list": [1, 2, 3], "nested": {"ok": True}}
    r = http(routes, "PUT", "/echo", body=json.dumps(payload),
             headers={"Content-Type": "application/json"})
    assert r.status == 200, r
    assert body_json(r)["json"] == payload


@pytest.mark.parametrize("ctype", ["application/json; charset=utf-8", "Application/JSON",
                                   "application/vnd.api+json"])
def test_json_body_with_media_type_parameters(routes, ctype):
    r = http(routes, "POST", "/echo", body='{"a": [1, "x"]}', headers={"Content-Type": ctype})
    assert r.status == 200, r
    assert body_json(r)["json"] == {"a": [1, "x"]}


def test_bad_json_body_is_400(routes):
    r = http(routes, "POST", "/echo", body="{not json", headers={"Content-Type": "application/json"})
    assert r.status == 400, r


# --- responses --------------------------------------------------------------------------------------

def test_handler_sets_status_and_headers(routes):
    r = http(routes, "GET", "/teapot")
    assert r.status == 418, r
    assert r.body == b"short and stout"
    assert r.header("X-Tea") == "earl grey"
    assert r.header("X-Count") == "3"
    assert r.header("Content-Type") == "text/x-tea"
    assert len(r.header_all("Content-Type")) == 1, r.headers


def test_handler_204_without_body(routes):
    with __import__("rawws").Conn(routes.port) as c:
        req = "GET /nocontent HTTP/1.1\r\nHost: x\r\n\r\n"
        r = c.request(req)
        assert r.status == 204 and r.header("X-Empty") == "yes", r
        # keep-alive still in sync after a bodiless answer
        r = c.request("GET /items/special HTTP/1.1\r\nHost: x\r\n\r\n")
        assert r.status == 200 and r.body == b"exact", r


# --- any code sends to any connection -------------------------------------------------------

def test_http_route_sends_to_a_connection_found_by_id(routes):
    async def go():
        loop = asyncio.get_running_loop()
        async with connect(routes, "/client") as a, connect(routes, "/client") as b:
            ida = int((await recv(a)).split()[1])
            idb = int((await recv(b)).split()[1])
            assert ida != idb
            j = await loop.run_in_executor(None, http_json, routes, "GET",
                                           "/send?id=%d&msg=hello+a" % ida)
            assert j["sent"] is True
            assert await recv(a) == "hello a"
            # b got nothing: its next message is the echo of what it sends now
            await b.send("ping")
            assert await recv(b) == "echo ping"
            # another connection's handler sends to a by id
            await b.send("tell %d psst" % ida)
            assert await recv(b) == "told"
            assert await recv(a) == "from %d: psst" % idb
            await a.close()
            r = await loop.run_in_executor(None, http, routes, "GET", "/send?id=%d&msg=x" % ida)
            assert r.status == 404, r  # wspush.get of a closed connection is nil
    run(go())


# --- timers --------------------------------------------------------------------------------------

def test_every_pushes_until_stop(routes):
    async def go():
        loop = asyncio.get_running_loop()
        async with connect(routes, "/client") as ws:
            cid = int((await recv(ws)).split()[1])
            r = await loop.run_in_executor(None, http, routes, "GET",
                                           "/timer/every?id=%d&name=t1&interval=0.01" % cid)
            assert r.status == 200, r
            ticks = [await recv(ws) for _ in range(3)]
            assert ticks == ["tick t1 1", "tick t1 2", "tick t1 3"]
            r = await loop.run_in_executor(None, http, routes, "GET", "/timer/stop?id=%d&name=t1" % cid)
            assert r.status == 200, r
            # Ticks already sent before the stop may still be in flight.
            for _ in range(1000):
                m = await recv(ws)
                if m == "stopped t1":
                    break
                assert m.startswith("tick t1 "), m
            # Marker: a one-shot timer 10 intervals later. A timer that was not
            # stopped would push several ticks before it.
            r = await loop.run_in_executor(None, http, routes, "GET",
                                           "/timer/after?id=%d&delay=0.1&tag=marker" % cid)
            assert r.status == 200, r
            m = await recv(ws)
            assert m.startswith("after marker "), "timer still running after :stop(): %r" % m
    run(go())


def test_after_fires_once_after_its_delay_and_stop_cancels(routes):
    async def go():
        loop = asyncio.get_running_loop()
        async with connect(routes, "/client") as ws:
            cid = int((await recv(ws)).split()[1])
            for path in ("/timer/cancelled?id=%d&delay=0.01" % cid,
                         "/timer/after?id=%d&delay=0.05&tag=one" % cid):
                r = await loop.run_in_executor(None, http, routes, "GET", path)
                assert r.status == 200, r
            m = await recv(ws)
            assert m.startswith("after one "), m  # the cancelled (earlier) one never fired
            assert float(m.split()[2]) >= 0.045, m
            await ws.send("next")
            assert await recv(ws) == "echo next"  # fired once only
    run(go())


def test_timer_error_is_logged_with_file_line_and_server_goes_on(routes):
    line = script_line(SCRIPT, "BOOM-LINE")
    mark = routes.log_mark()

    async def go():
        loop = asyncio.get_running_loop()
        async with connect(routes, "/client") as ws:
            cid = int((await recv(ws)).split()[1])
            r = await loop.run_in_executor(None, http, routes, "GET", "/timer/boom?id=%d" % cid)
            assert r.status == 200, r
            assert await recv(ws) == "still ticking"
            await ws.send("alive?")
            assert await recv(ws) == "echo alive?"
    run(go())
    routes.wait_log(r"push_routes\.lua:%d: timer went boom" % line, since=mark)
    assert routes.alive()
    r = http(routes, "GET", "/items/special")
    assert r.status == 200 and r.body == b"exact"
    errs = log_errors(routes, mark)
    assert errs and all("boom" in e or "traceback" in e or "push_routes.lua" in e for e in errs[:1]), errs


def test_a_timer_can_stop_itself_and_a_fired_timer(routes):
    async def go():
        loop = asyncio.get_running_loop()
        async with connect(routes, "/client") as ws:
            cid = int((await recv(ws)).split()[1])
            r = await loop.run_in_executor(None, http, routes, "GET", "/timer/selfstop?id=%d" % cid)
            assert r.status == 200, r
            assert [await recv(ws) for _ in range(4)] == ["self 1", "self 2", "self 3", "self-stopped"]
            # marker 20 intervals later; a timer still running would push "self 4" first
            r = await loop.run_in_executor(None, http, routes, "GET",
                                           "/timer/after?id=%d&delay=0.1&tag=m" % cid)
            assert r.status == 200, r
            m = await recv(ws)
            assert m.startswith("after m "), m
            r = await loop.run_in_executor(None, http, routes, "GET", "/timer/stop-fired?id=%d" % cid)
            assert r.status == 200, r
            assert await recv(ws) == "first fired"
            assert await recv(ws) == "stopped a fired timer"
    run(go())


def test_a_timer_holding_a_closed_connection_gets_closed_errors(routes):
    from conftest import wait_for

    async def go():
        loop = asyncio.get_running_loop()
        async with connect(routes, "/client") as ws:
            cid = int((await recv(ws)).split()[1])
            r = await loop.run_in_executor(None, http, routes, "GET", "/timer/hold?id=%d" % cid)
            assert r.status == 200, r
            assert await recv(ws) == "held"
        return cid
    cid = run(go())
    # The timer runs on (it is never stopped: the server must also shut down cleanly with it).
    st = wait_for(lambda: (lambda j: j if j["closed"] >= 3 else None)(http_json(routes, "GET", "/timer/held")),
                  timeout=5, desc="the timer to see its connection closed")
    assert st["other"] == 0 and st["ok"] >= 1 and st["is_open"] is False and st["id"] == cid, st
    assert http(routes, "GET", "/send?id=%d&msg=x" % cid).status == 404
