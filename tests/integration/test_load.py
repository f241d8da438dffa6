"""Big messages and many connections (bounded in count and time)."""
import asyncio
import os
import time

import pytest
import websockets

import rawws
from conftest import scaled

N_CONNS = 1000
N_MSGS = 5
CONNECT_PARALLEL = 100   # connection attempts in flight (the listen backlog is finite)


@pytest.mark.slow
def test_16_mib_message_round_trips_through_echo_lua(echo_server):
    size = 16 * 1024 * 1024
    # printable ASCII with some structure, so a shifted/garbled copy is noticed
    block = bytes(range(32, 127))
    msg = (block * (size // len(block) + 1))[:size].decode("ascii")

    async def go():
        async with websockets.connect(echo_server.url + "/ws", compression=None, max_size=64 * 1024 * 1024,
                                      open_timeout=scaled(10), close_timeout=scaled(10)) as ws:
            assert await asyncio.wait_for(ws.recv(), scaled(10)) == "Welcome"
            await ws.send(msg)
            reply = await asyncio.wait_for(ws.recv(), scaled(60))
            return reply
    reply = asyncio.run(asyncio.wait_for(go(), scaled(90)))
    assert len(reply) == len("new message :") + size
    assert reply.startswith("new message :")
    assert reply[13:] == msg


@pytest.mark.slow
def test_16_mib_binary_message_in_many_fragments(spawn):
    from conftest import SCRIPTS
    s = spawn(SCRIPTS / "app.lua")
    data = os.urandom(16 * 1024 * 1024)
    chunk = 64 * 1024
    with rawws.upgrade(s.port, "/echo", timeout=scaled(60)) as c:
        frames = []
        for i in range(0, len(data), chunk):
            op = rawws.OP_BINARY if i == 0 else rawws.OP_CONT
            frames.append(rawws.build_frame(op, data[i:i + chunk], fin=(i + chunk >= len(data))))
        c.send(b"".join(frames))
        op, got = c.recv_message(timeout=scaled(60))
        assert op == rawws.OP_BINARY
        assert len(got) == len(data)
        assert got == data


@pytest.mark.slow
def test_1000_concurrent_connections_get_their_own_replies(echo_server):
    url = echo_server.url + "/ws"
    sem = asyncio.Semaphore(CONNECT_PARALLEL)

    async def client(i, all_open, opened):
        async with sem:
            ws = await websockets.connect(url, compression=None, open_timeout=scaled(30),
                                          close_timeout=scaled(10))
        try:
            assert await asyncio.wait_for(ws.recv(), scaled(30)) == "Welcome"
            opened.append(i)
            if len(opened) == N_CONNS:
                all_open.set()
            # every connection is open at the same time before anyone talks
            await asyncio.wait_for(all_open.wait(), scaled(60))
            for k in range(N_MSGS):
                text = "c%d-m%d" % (i, k)
                await ws.send(text)
                reply = await asyncio.wait_for(ws.recv(), scaled(30))
                assert reply == "new message :" + text, (i, k, reply)
            return True
        finally:
            await ws.close()

    async def go():
        all_open = asyncio.Event()
        opened = []
        t0 = time.monotonic()
        results = await asyncio.gather(*(client(i, all_open, opened) for i in range(N_CONNS)),
                                       return_exceptions=True)
        return results, time.monotonic() - t0

    results, elapsed = asyncio.run(asyncio.wait_for(go(), scaled(120)))
    errors = [r for r in results if r is not True]
    assert not errors, "%d of %d clients failed; first: %r" % (len(errors), N_CONNS, errors[:3])
    print("1000 connections x %d messages in %.2fs" % (N_MSGS, elapsed))
    # the server is still healthy and every connection is gone
    r = echo_server.http("/index")
    assert r.status == 200 and r.body == b"Hello world"
