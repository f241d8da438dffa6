"""Clients that misbehave, vanish, or churn; graceful shutdown; compression offers."""
import asyncio
import socket
import struct

import pytest
import websockets

import rawws
from rawws import OP_BINARY, OP_TEXT, build_frame
from conftest import REPO, SCRIPTS, scaled, wait_for

APP = SCRIPTS / "app.lua"


def test_client_vanishing_with_unread_output_does_not_hurt_the_server(app):
    """The server has megabytes queued for a peer that resets the connection."""
    big = b"\x00" * (4 * 1024 * 1024)
    c = rawws.upgrade(app.port, "/echo")
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    # The first echo is queued whole (a message always fits an empty queue);
    # then the server stops reading us, and our sends block: stop there.
    c.sock.settimeout(scaled(1))
    for _ in range(4):
        try:
            c.send_frame(OP_BINARY, big)
        except (TimeoutError, socket.timeout):
            break
    # RST instead of FIN, without reading a byte of the echoes
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
    with rawws.upgrade(app.port, "/echo") as d:
        d.send_text("fine?")
        assert d.recv_text() == "fine?"
    wait_for(lambda: app.json("/count")["count"] == 0, desc="the vanished connection to be gone")


def test_peer_half_closing_after_handshake(app):
    c = rawws.upgrade(app.port, "/echo")
    c.sock.shutdown(socket.SHUT_WR)
    try:
        c.wait_eof(timeout=scaled(5))
    except TimeoutError:
        pytest.fail("server kept a half-closed connection open")
    finally:
        c.close()
    wait_for(lambda: app.json("/count")["count"] == 0, desc="count == 0")


def test_disconnect_in_the_middle_of_the_handshake(app):
    for cut in (5, 40):
        with rawws.Conn(app.port) as c:
            req = ("GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % rawws.new_key()).encode()
            c.send(req[:cut])
    with rawws.upgrade(app.port, "/echo") as d:
        d.send_text("ok")
        assert d.recv_text() == "ok"


def test_connection_churn_leaves_no_connections(app):
    """300 connections open and go away in four different ways; the table empties."""
    for i in range(300):
        c = rawws.upgrade(app.port, "/echo")
        how = i % 4
        if how == 0:
            c.send_close(1000)
            c.recv_close()
        elif how == 1:
            c.send_text("x")
            assert c.recv_text() == "x"
        elif how == 2:
            c.send(build_frame(OP_TEXT, b"partial" * 10)[:20])
        else:
            c.send_frame(OP_TEXT, b"x", mask=False)
        c.close()
    wait_for(lambda: app.json("/count")["count"] == 0, timeout=10, desc="count == 0 after churn")


def test_sigterm_closes_open_connections_and_exits_zero(spawn):
    s = spawn(APP)
    c = rawws.upgrade(s.port, "/echo")
    try:
        c.send_text("hi")
        assert c.recv_text() == "hi"
        s.terminate()
        try:
            f, _ = c.recv_close(timeout=scaled(5))
            assert f.close_code == 1001, "expected 1001 (going away) on shutdown, got %r" % f.close_code
            c.send_close(1001)
        except EOFError:
            pytest.fail("server dropped the connection on SIGTERM without a close frame")
        c.wait_eof(timeout=scaled(5))
    finally:
        c.close()
    rc = s.wait_exit(timeout=10)
    assert rc == 0, "exit status %r after SIGTERM" % rc


def test_compression_offer_from_python_client_round_trips(echo_server):
    """websockets offers permessage-deflate: whether the server accepts or declines,
    messages (large and compressible included) must arrive intact."""
    msg = "compress me " * 100000

    async def go():
        async with websockets.connect(echo_server.url + "/ws", compression="deflate",
                                      max_size=8 * 1024 * 1024, open_timeout=scaled(10)) as ws:
            assert await asyncio.wait_for(ws.recv(), scaled(5)) == "Welcome"
            for m in ("small", msg, "after big"):
                await ws.send(m)
                assert await asyncio.wait_for(ws.recv(), scaled(10)) == "new message :" + m
    asyncio.run(asyncio.wait_for(go(), scaled(30)))


def test_extension_response_only_names_offered_extensions(app):
    with rawws.Conn(app.port) as c:
        r = c.handshake("/echo", headers={"Sec-WebSocket-Extensions": "x-unknown-ext; foo=1"})
        assert r.status == 101, r
        assert r.header("Sec-WebSocket-Extensions") is None, r
        # and RSV1 stays forbidden, since nothing was negotiated
        c.send_frame(OP_TEXT, b"x", rsv=4)
        f, _ = c.recv_close()
        assert f.close_code == 1002


def test_many_messages_pipelined_without_reading_then_read_all(app):
    n = 2000
    with rawws.upgrade(app.port, "/echo", timeout=scaled(20)) as c:
        c.send(b"".join(build_frame(OP_TEXT, b"%05d" % i) for i in range(n)))
        got = [c.recv_text(timeout=scaled(20)) for _ in range(n)]
        assert got == ["%05d" % i for i in range(n)]
