"""handlers/chat.lua end to end: rooms by route capture, join/leave notices,
rooms isolated from each other."""
import json

import pytest

import rawws
from pushlib import HANDLERS, connect, http, log_errors, recv_json, run


@pytest.fixture
def chat(spawn):
    return spawn(HANDLERS / "chat.lua")


async def join(server, room):
    ws = await connect(server, "/room/" + room)
    w = await recv_json(ws)
    assert w["type"] == "welcome" and w["room"] == room, w
    return ws, w["you"]


def test_index_explains(chat):
    r = http(chat, "GET", "/")
    assert r.status == 200 and b"/room/" in r.body, r


def test_join_message_leave_in_one_room(chat):
    async def go():
        a, ida = await join(chat, "lobby")
        b, idb = await join(chat, "lobby")
        assert ida != idb
        # a sees b join; b does not see its own join
        assert await recv_json(a) == {"type": "join", "user": idb, "room": "lobby"}
        await b.send("hello from b")
        want = {"type": "message", "user": idb, "room": "lobby", "text": "hello from b"}
        assert await recv_json(a) == want
        assert await recv_json(b) == want  # the sender gets its own message too
        await b.close()
        assert await recv_json(a) == {"type": "leave", "user": idb, "room": "lobby"}
        await a.send("alone")
        got = await recv_json(a)
        assert got["type"] == "message" and got["text"] == "alone", got
        await a.close()
    run(go())


def test_two_rooms_are_isolated(chat):
    mark = chat.log_mark()

    async def go():
        a1, id_a1 = await join(chat, "a")
        b1, id_b1 = await join(chat, "b")
        a2, id_a2 = await join(chat, "a")
        assert (await recv_json(a1))["user"] == id_a2  # join in a
        b2, id_b2 = await join(chat, "b")
        assert (await recv_json(b1))["user"] == id_b2  # join in b

        for i in range(5):
            await a1.send("in a %d" % i)
        for i in range(5):
            got = await recv_json(a2)
            assert got == {"type": "message", "user": id_a1, "room": "a", "text": "in a %d" % i}
        # Marker: a message in b. If anything from room a had leaked into b,
        # it would have been queued before this one on the same connection.
        await b2.send("marker b")
        for ws in (b1, b2):
            got = await recv_json(ws)
            assert got == {"type": "message", "user": id_b2, "room": "b", "text": "marker b"}, got
        # and room a never sees b's traffic: a2's next message is a's own
        await a1.send("marker a")
        got = await recv_json(a2)
        assert got["text"] == "marker a", got

        # leaving a is announced in a only
        await a2.close()
        for _ in range(10):
            got = await recv_json(a1)
            if got["type"] == "leave":
                break
        assert got == {"type": "leave", "user": id_a2, "room": "a"}, got
        await b1.send("after leave")
        got = await recv_json(b2)
        assert got["text"] == "after leave", got  # no leave notice from room a in b
        for ws in (a1, b1, b2):
            await ws.close()
    run(go())
    assert not log_errors(chat, mark)


def test_binary_and_oversized_messages_get_an_error(chat):
    async def go():
        a, _ = await join(chat, "x")
        await a.send(b"\x00\x01")
        got = await recv_json(a)
        assert got["type"] == "error", got
        await a.send("y" * 5000)
        got = await recv_json(a)
        assert got["type"] == "error", got
        await a.send("ok")
        assert (await recv_json(a))["text"] == "ok"
        await a.close()
    run(go())


def test_room_names_are_decoded_and_a_dropped_client_is_announced(chat):
    async def go2():
        a = await connect(chat, "/room/caf%C3%A9")
        w = await recv_json(a)
        assert w["room"] == "café", w
        c = rawws.upgrade(chat.port, "/room/caf%C3%A9")
        cw = json.loads(c.recv_text())
        assert cw["room"] == "café"
        assert await recv_json(a) == {"type": "join", "user": cw["you"], "room": "café"}
        c.close()  # TCP gone, no close frame
        assert await recv_json(a) == {"type": "leave", "user": cw["you"], "room": "café"}
        await a.close()
    run(go2())


def test_empty_room_name_is_404(chat):
    r = http(chat, "GET", "/room/")
    assert r.status == 404, r
