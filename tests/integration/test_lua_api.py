"""The Lua API (docs/api.md) seen from real clients."""
import asyncio
import functools
import json
import re

import pytest
import websockets

import rawws
import pushlib
from conftest import SCRIPTS, scaled, script_line, wait_for
from pushlib import connect, recv

APP = SCRIPTS / "app.lua"

# These tests keep their own 10 s deadline (pushlib's default is 20 s).
run = functools.partial(pushlib.run, timeout=10)


def closes(server, cid):
    j = server.json("/closes?id=%s" % cid)
    return j if j["seen"] else None


# --- handlers/echo.lua ---------------------------------------------------------------

@pytest.mark.valgrind
def test_echo_lua_transcript(echo_server):
    async def go():
        async with connect(echo_server, "/ws") as ws:
            assert await recv(ws) == "Welcome"
            await ws.send("hi")
            assert await recv(ws) == "new message :hi"
            await ws.send("héllo wörld ✓")
            assert await recv(ws) == "new message :héllo wörld ✓"
    run(go())
    r = echo_server.http("/index")
    assert r.status == 200, r
    assert r.body == b"Hello world"
    assert (r.header("Content-Type") or "").startswith("text/plain")


@pytest.mark.valgrind
def test_http_keep_alive_serves_two_requests_on_one_connection(echo_server):
    with rawws.Conn(echo_server.port) as c:
        req = "GET /index HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % echo_server.port
        r1 = c.request(req)
        assert r1.status == 200 and r1.body == b"Hello world", r1
        r2 = c.request(req)
        assert r2.status == 200 and r2.body == b"Hello world", r2


def test_http_pipelined_requests_are_answered_in_order(app):
    with rawws.Conn(app.port) as c:
        host = "Host: 127.0.0.1:%d\r\n" % app.port
        c.send(("GET /status HTTP/1.1\r\n%s\r\nGET /query?x=1 HTTP/1.1\r\n%s\r\n" % (host, host)).encode())
        r1 = c.read_response()
        r2 = c.read_response()
        assert r1.status == 201 and r1.body == b"made", r1
        assert r2.status == 200 and json.loads(r2.body)["q"] == {"x": "1"}, r2


def test_http_connection_close_is_honoured(echo_server):
    with rawws.Conn(echo_server.port) as c:
        r = c.request("GET /index HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert r.status == 200
        c.wait_eof(timeout=scaled(3))


def test_websocket_upgrade_after_http_request_on_same_connection(app):
    with rawws.Conn(app.port) as c:
        r = c.request("GET /status HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % app.port)
        assert r.status == 201
        r = c.handshake("/echo")
        assert r.status == 101, r
        c.send_text("upgraded")
        assert c.recv_text() == "upgraded"


# --- HTTP handlers ---------------------------------------------------------------------

def test_http_handler_status_and_headers(app):
    r = app.http("/status")
    assert r.status == 201 and r.body == b"made"
    assert r.header("X-Test") == "yes"


def test_http_handler_table_body_is_json(app):
    r = app.http("/table_body")
    assert r.status == 200
    assert "json" in (r.header("Content-Type") or "")
    assert json.loads(r.body) == {"a": 1, "b": "two"}


def test_http_query_is_decoded(app):
    j = app.json("/query?name=a%20b&plus=x+y&k=1&k=2")
    assert j["q"]["name"] == "a b"
    assert j["q"]["k"] == "2"           # a repeated key keeps the last value
    assert j["path"] == "/query" and j["method"] == "GET"


def test_http_post_body_reaches_handler(app):
    r = app.http("/body", method="POST", body=b"payload=1&x=2")
    assert r.status == 200, r
    assert json.loads(r.body) == {"body": "payload=1&x=2", "method": "POST"}


def test_http_method_not_allowed_names_allowed_methods(app):
    r = app.http("/body", method="GET")
    assert r.status == 405, r
    assert "POST" in (r.header("Allow") or ""), r


def test_http_body_over_max_body_is_413(spawn):
    s = spawn(APP, "--max-body", "1000")
    r = s.http("/body", method="POST", body=b"z" * 5000)
    assert r.status == 413, r


@pytest.mark.valgrind
def test_http_handler_error_is_500_and_logged(app):
    mark = app.log_mark()
    r = app.http("/http_boom")
    assert r.status == 500, r
    line = script_line(APP, "HTTP_RAISE_LINE")
    app.wait_log(r"app\.lua:%d:" % line, since=mark)
    app.wait_log(r"http handler exploded", since=mark)
    app.wait_log(r"(?i)traceback", since=mark)
    # and the server goes on
    assert app.http("/status").status == 201


# --- connection object --------------------------------------------------------------

def test_conn_send_table_arrives_as_json_text(app):
    async def go():
        async with connect(app, "/state") as ws:
            await ws.send("json")
            msg = await recv(ws)
            assert isinstance(msg, str), "a table must be sent as a text frame"
            assert json.loads(msg) == {"hello": "world", "n": 42, "list": [1, 2, 3], "nested": {"ok": True}}
    run(go())


def test_conn_fields_id_path_query_headers_remote(app):
    async def go():
        async with connect(app, "/state?room=a%20b&x=1", user_agent_header="wspush-tests/1.0",
                           extra_headers={"X-Custom": "custom-value"}) as ws:
            await ws.send("info")
            info = json.loads(await recv(ws))
            local = ws.local_address
            return info, local
    info, local = run(go())
    assert isinstance(info["id"], int)
    assert info["path"] == "/state"
    assert info["query"] == {"room": "a b", "x": "1"}
    assert info["ua"] == "wspush-tests/1.0"
    assert info["ua_upper"] == "wspush-tests/1.0", "conn.headers lookup must be case-insensitive"
    assert info["custom"] == "custom-value" and info["custom_mixed"] == "custom-value"
    assert info["remote"] == "%s:%d" % (local[0], local[1])
    assert info["subprotocol"] == "none"
    assert info["data_is_table"] is True
    assert info["query_is_table"] is True and info["params_is_table"] is True


def test_conn_without_query_has_empty_tables_and_no_handshake_headers(app):
    """conn.query/params are made on first use when empty, and conn.headers
    leaves out the handshake's own headers (an idle connection's memory)."""
    async def go():
        async with connect(app, "/state", user_agent_header="wspush-tests/1.0") as ws:
            await ws.send("info")
            return json.loads(await recv(ws))
    info = run(go())
    assert info["query"] in ({}, []), "no entries (the test encoder writes an empty table as [])"
    assert info["query_is_table"] is True and info["params_is_table"] is True
    assert info["handshake_headers"] == ["absent"] * 4, info["handshake_headers"]
    assert info["ua"] == "wspush-tests/1.0", "the other headers stay"


def test_conn_subprotocol_is_negotiated(app):
    async def go():
        async with connect(app, "/proto", subprotocols=["chat.v1", "chat.v2"]) as ws:
            assert ws.subprotocol == "chat.v2"
            assert await recv(ws) == "chat.v2"
    run(go())


def test_conn_ids_are_unique_and_data_is_per_connection(app):
    async def go():
        async with connect(app, "/state") as a, connect(app, "/state") as b:
            await a.send("id")
            ida = await recv(a)
            await b.send("id")
            idb = await recv(b)
            assert ida != idb
            for _ in range(3):
                await a.send("count")
                last_a = await recv(a)
            await b.send("count")
            assert last_a == "4"            # "id" + 3 x "count"
            assert await recv(b) == "2"     # "id" + "count"
    run(go())


def test_conn_ids_are_not_reused(app):
    async def go():
        ids = []
        for _ in range(5):
            async with connect(app, "/state") as ws:
                await ws.send("id")
                ids.append(await recv(ws))
        return ids
    ids = run(go())
    assert len(set(ids)) == 5, ids


def test_on_message_is_binary_flag(app):
    async def go():
        async with connect(app, "/state") as ws:
            await ws.send(b"\x00\x01\x02")
            assert await recv(ws) == "binary:3"
            await ws.send("abc")
            assert await recv(ws) == "text:3"
    run(go())


def test_binary_send_from_lua_is_binary_frame(app):
    async def go():
        async with connect(app, "/echo") as ws:
            await ws.send(b"\xff\x00\xfe")
            msg = await recv(ws)
            assert msg == b"\xff\x00\xfe"
    run(go())


# --- wspush module -------------------------------------------------------------------

def test_wspush_count_and_connections_track_open_connections(app):
    async def go():
        assert app.json("/count")["count"] == 0
        async with connect(app, "/state") as a, connect(app, "/state") as b, connect(app, "/echo") as c:
            ids = []
            for ws in (a, b):
                await ws.send("id")
                ids.append(int(await recv(ws)))
            assert app.json("/count")["count"] == 3
            conns = app.json("/conns")["ids"]
            assert len(conns) == 3 and set(ids) <= set(conns), (ids, conns)
            await b.close()
            # the client saw the close handshake complete; the server may run on_close a bit later
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: wait_for(lambda: app.json("/count")["count"] == 2, desc="count == 2"))
            conns = app.json("/conns")["ids"]
            assert ids[1] not in conns and ids[0] in conns, conns
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: wait_for(lambda: app.json("/count")["count"] == 0, desc="count == 0"))
    run(go(), timeout=20)


def test_wspush_get_pushes_to_a_connection_by_id(app):
    async def go():
        async with connect(app, "/state") as a, connect(app, "/state") as b:
            await a.send("id")
            ida = await recv(a)
            loop = asyncio.get_running_loop()
            j = await loop.run_in_executor(None, app.json, "/push?id=%s&msg=pushed%%20to%%20you" % ida)
            assert j["found"] is True and str(j["id"]) == ida and j["ok"] is True, j
            assert await recv(a) == "pushed to you"
            # b got nothing: its next message is the answer to its own request
            await b.send("count")
            assert await recv(b) == "1"
    run(go())


def test_wspush_get_unknown_id_is_nil(app):
    assert app.json("/push?id=987654321&msg=x")["found"] is False


# --- errors and closed connections --------------------------------------------------------

@pytest.mark.valgrind
def test_handler_error_closes_1011_logs_file_line_and_others_go_on(app):
    line = script_line(APP, "RAISE_LINE")

    async def go():
        async with connect(app, "/boom") as victim, connect(app, "/boom") as bystander:
            await bystander.send("before")
            assert await recv(bystander) == "still here: before"
            await victim.send("raise")
            with pytest.raises(websockets.ConnectionClosed) as ei:
                await recv(victim)
            assert ei.value.rcvd is not None and ei.value.rcvd.code == 1011, ei.value
            await bystander.send("after")
            assert await recv(bystander) == "still here: after"
    mark = app.log_mark()
    run(go())
    app.wait_log(r"app\.lua:%d:" % line, since=mark)
    app.wait_log(r"boom on purpose", since=mark)
    app.wait_log(r"(?i)traceback", since=mark)


@pytest.mark.valgrind
def test_kept_conn_after_close_is_inert(app):
    async def go():
        async with connect(app, "/keep") as ws:
            cid = await recv(ws)
        return cid
    cid = run(go())
    wait_for(lambda: closes(app, cid), desc="on_close of %s" % cid)
    j = app.json("/kept")
    assert j["have"] is True
    assert str(j["id"]) == cid, "conn.id must still answer after close"
    assert j["path"] == "/keep"
    assert re.fullmatch(r"127\.0\.0\.1:\d+", j["remote"]), "conn.remote must still answer after close"
    assert j["send"] == ["nil", "closed"], j
    assert j["close"] == ["nil", "closed"], j
    assert j["ping"] == ["nil", "closed"], j


def test_on_close_gets_code_and_reason_from_python_client(app):
    async def go():
        async with connect(app, "/state") as ws:
            await ws.send("id")
            cid = await recv(ws)
            await ws.close(code=4111, reason="done here")
            return cid
    cid = run(go())
    st = wait_for(lambda: closes(app, cid), desc="on_close of %s" % cid)
    assert st["code"] == 4111 and st["reason"] == "done here", st


def test_server_close_4000_reaches_python_client(app):
    async def go():
        async with connect(app, "/state") as ws:
            await ws.send("close me")
            with pytest.raises(websockets.ConnectionClosed) as ei:  # 4000 is not "OK" for websockets
                await recv(ws)
            assert ei.value.rcvd.code == 4000 and ei.value.rcvd.reason == "bye"
    run(go())
