"""handlers/broadcast.lua end to end: Welcome/echo, /index, /receive pushes to
500 clients, then to the 250 still connected after the other half left."""
import asyncio
import json

import pytest

import rawws

from conftest import scaled, wait_for
from pushlib import HANDLERS, connect, http, log_errors, recv, run

N = 500
CONNECT_PARALLEL = 100


@pytest.fixture
def broadcast(spawn):
    return spawn(HANDLERS / "broadcast.lua")


def receive(server, msg):
    r = http(server, "GET", "/receive?msg=" + msg, timeout=15)
    assert r.status == 200, r
    assert (r.header("Content-Type") or "").startswith("application/json"), r
    return json.loads(r.body)


def test_welcome_echo_and_index(broadcast):
    async def go():
        async with connect(broadcast, "/ws") as ws:
            assert await recv(ws) == "Welcome"
            await ws.send("hi there")
            assert await recv(ws) == "new message :hi there"
    run(go())
    r = http(broadcast, "GET", "/index")
    assert r.status == 200 and r.body == b"Hello world", r


def test_receive_without_msg_is_400_and_with_no_clients_reaches_0(broadcast):
    r = http(broadcast, "GET", "/receive")
    assert r.status == 400, r
    assert receive(broadcast, "nobody") == {"sent": 0}


def test_receive_decodes_the_query(broadcast):
    async def go():
        async with connect(broadcast, "/ws") as ws:
            assert await recv(ws) == "Welcome"
            got = await asyncio.get_running_loop().run_in_executor(
                None, receive, broadcast, "hello%20w%C3%B6rld+%26+more")
            assert got == {"sent": 1}
            assert await recv(ws) == "hello wörld & more"
    run(go())


@pytest.mark.slow
@pytest.mark.parametrize("how", ["close", "drop"])
def test_500_clients_get_the_push_then_the_250_left_get_the_next(broadcast, how):
    """how=close: half leave with a close handshake; how=drop: their TCP
    connections are aborted without a close frame."""
    mark = broadcast.log_mark()

    async def go():
        loop = asyncio.get_running_loop()
        sem = asyncio.Semaphore(CONNECT_PARALLEL)

        async def open_one():
            async with sem:
                ws = await connect(broadcast, "/ws", open_timeout=scaled(30))
            try:
                assert await recv(ws, 30) == "Welcome"
            except BaseException:
                await ws.close()
                raise
            return ws

        results = await asyncio.gather(*(open_one() for _ in range(N)), return_exceptions=True)
        clients = [r for r in results if not isinstance(r, BaseException)]
        errors = [r for r in results if isinstance(r, BaseException)]
        try:
            assert not errors, "%d of %d connects failed: %r" % (len(errors), N, errors[:3])
            # Every client has its Welcome, so every open() ran: all 500 subscribed.
            first = await loop.run_in_executor(None, receive, broadcast, "push-one")
            assert first == {"sent": N}
            got = await asyncio.gather(*(recv(ws, 30) for ws in clients), return_exceptions=True)
            wrong = [(i, g) for i, g in enumerate(got) if g != "push-one"]
            assert not wrong, "%d clients did not get push-one: %r" % (len(wrong), wrong[:5])

            leaving, staying = clients[::2], clients[1::2]
            probes = 0
            if how == "close":
                # close() returns once the server has answered and closed TCP,
                # so the server knows they are gone: no waiting needed.
                await asyncio.gather(*(ws.close() for ws in leaving))
                codes = {ws.close_code for ws in leaving}
                assert codes == {1000}, codes
            else:
                for ws in leaving:
                    ws.transport.abort()
                # The server learns of a dropped TCP connection asynchronously:
                # poll what /receive reports (bounded); each poll pushes a probe.
                for _ in range(200):
                    probes += 1
                    r = await loop.run_in_executor(None, receive, broadcast, "probe")
                    if r == {"sent": N // 2}:
                        break
                    assert N // 2 < r["sent"] <= N, r
                else:
                    raise AssertionError("dropped clients still counted: %r" % r)

            async def next_real(ws):
                for _ in range(probes + 1):
                    m = await recv(ws, 30)
                    if m != "probe":
                        return m
                return "too many probes"

            second = await loop.run_in_executor(None, receive, broadcast, "push-two")
            assert second == {"sent": N // 2}
            got = await asyncio.gather(*(next_real(ws) for ws in staying), return_exceptions=True)
            wrong = [(i, g) for i, g in enumerate(got) if g != "push-two"]
            assert not wrong, "%d clients did not get push-two: %r" % (len(wrong), wrong[:5])

            # Nothing else was queued for the ones that stayed: an echo comes next.
            async def echo(ws, i):
                await ws.send("after-%d" % i)
                return await recv(ws, 30)
            got = await asyncio.gather(*(echo(ws, i) for i, ws in enumerate(staying)),
                                       return_exceptions=True)
            wrong = [(i, g) for i, g in enumerate(got) if g != "new message :after-%d" % i]
            assert not wrong, wrong[:5]
        finally:
            await asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True)

    run(go(), timeout=90)
    # Everyone is gone now (clean closes): a push reaches nobody.
    assert receive(broadcast, "push-three") == {"sent": 0}
    assert broadcast.alive()
    errs = log_errors(broadcast, mark)
    assert not errs, "errors in the server log:\n" + "".join(errs[:20])


def test_a_dropped_client_leaves_the_broadcast(broadcast):
    """TCP closed without a close frame: the connection leaves the topic too."""
    c = rawws.upgrade(broadcast.port, "/ws")
    c2 = rawws.upgrade(broadcast.port, "/ws")
    try:
        assert c.recv_text() == "Welcome" and c2.recv_text() == "Welcome"
        assert receive(broadcast, "both") == {"sent": 2}
        assert c.recv_text() == "both" and c2.recv_text() == "both"
        c.close()  # no close frame
        # Server-side state no client can await: poll what /receive reports (bounded).
        wait_for(lambda: receive(broadcast, "probe")["sent"] == 1, timeout=5,
                 desc="/receive to reach only the remaining client")
        assert receive(broadcast, "last") == {"sent": 1}
        seen = []
        for _ in range(10000):
            m = c2.recv_text()
            if m == "last":
                break
            seen.append(m)
        assert set(seen) <= {"probe"}, seen
    finally:
        c.close()
        c2.close()
