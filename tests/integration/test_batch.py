"""Messages that arrive in one read are handed to the handler together, in
one task (core/levent.c, "hold" and "flush"). The handler must see exactly
what it saw when each message was its own task: order, a close or an error
by an earlier handler, a handler that waits, a handler swapped by the script,
a ping between messages, a protocol error or the rate limit after valid
messages, and a time budget of its own per message.

Each test writes all its frames with one send() on loopback, so that they
reach the server in one read; what the handlers did is recorded by
scripts/batch.lua and read back over HTTP.
"""
import rawws
from rawws import OP_CLOSE, OP_PING, OP_TEXT, build_frame, close_payload
from conftest import SCRIPTS, scaled, wait_for

BATCH = SCRIPTS / "batch.lua"


def start(spawn, *args):
    return spawn(BATCH, "--ping-interval", "0", *args)


def events(s, tag):
    return s.json("/events?tag=%s" % tag)["events"]


def events_until(s, tag, last, timeout=5):
    """The events of tag once one equal to `last` was recorded (bounded poll:
    server-side state no client can await)."""
    return wait_for(lambda: (lambda ev: ev if last in ev else None)(events(s, tag)),
                    timeout=timeout, desc="event %r of %s" % (last, tag))


def texts(*msgs):
    return b"".join(build_frame(OP_TEXT, m) for m in msgs)


def recv_texts(c, n):
    out = []
    for _ in range(n):
        f = c.recv_frame()
        assert f.opcode == OP_TEXT, f
        out.append(f.payload.decode())
    return out


def test_messages_of_one_read_are_handled_in_order(spawn):
    s = start(spawn)
    msgs = ["m%d" % i for i in range(40)]   # over the 32 held at most: two batches
    with rawws.upgrade(s.port, "/rec?tag=order", timeout=scaled(5)) as c:
        c.send(texts(*msgs))
        assert recv_texts(c, len(msgs)) == ["ok:" + m for m in msgs]
    assert events(s, "order")[:len(msgs)] == ["m:" + m for m in msgs]


def test_a_close_by_an_earlier_handler_drops_the_rest(spawn):
    # Handled one by one, "close" sends our close frame before m3 is read,
    # and what arrives after it is dropped (RFC 6455 5.5.1).
    s = start(spawn)
    with rawws.upgrade(s.port, "/rec?tag=close", timeout=scaled(5)) as c:
        c.send(texts("m1", "close", "m3", "m4"))
        assert recv_texts(c, 2) == ["ok:m1", "ok:close"]
        f = c.recv_frame()
        assert f.opcode == OP_CLOSE and f.close_code == 1000, f
        c.send_close(1000)
    assert events_until(s, "close", "close:1000") == ["m:m1", "m:close", "close:1000"]


def test_an_error_in_an_earlier_handler_drops_the_rest(spawn):
    s = start(spawn)
    with rawws.upgrade(s.port, "/rec?tag=err", timeout=scaled(5)) as c:
        c.send(texts("m1", "err", "m3"))
        assert recv_texts(c, 2) == ["ok:m1", "ok:err"]
        f = c.recv_frame()
        assert f.opcode == OP_CLOSE and f.close_code == 1011, f
    s.wait_log(r"on_message \(/rec, conn \d+\): .*boom")
    assert "m:m3" not in events(s, "err")


def test_the_handler_is_looked_up_again_for_each_message(spawn):
    s = start(spawn)
    with rawws.upgrade(s.port, "/rec?tag=swap", timeout=scaled(5)) as c:
        c.send(texts("swap", "m2", "m3"))
        assert recv_texts(c, 3) == ["ok:swap", "swapped:m2", "swapped:m3"]
    assert events(s, "swap")[:3] == ["m:swap", "swapped:m2", "swapped:m3"]


def test_an_inherited_handler_is_asked_for_each_message(spawn):
    s = start(spawn)
    with rawws.upgrade(s.port, "/inherit?tag=inh", timeout=scaled(5)) as c:
        c.send(texts("a", "b", "c"))
        assert recv_texts(c, 3) == ["i:a", "i:b", "i:c"]
    assert s.http("/asked").body == b"3"


def test_a_ping_between_messages_is_heard_between_them(spawn):
    s = start(spawn)
    with rawws.upgrade(s.port, "/rec?tag=ping", timeout=scaled(5)) as c:
        c.send(texts("m1") + build_frame(OP_PING, b"p") + texts("m2"))
        frames = [c.recv_frame() for _ in range(3)]
    assert [(f.opcode, f.payload) for f in frames] == [
        (OP_TEXT, b"ok:m1"), (0xA, b"p"), (OP_TEXT, b"ok:m2")]
    assert events(s, "ping")[:3] == ["m:m1", "ping:p", "m:m2"]


def test_a_waiting_handler_gets_the_rest_after_it_even_when_the_peer_closes(spawn):
    # One by one: "sleep" waits, m2 and m3 queue behind it, the close frame
    # ends the connection and interrupts the wait; queued events are still
    # handled, on_close last.
    s = start(spawn)
    with rawws.upgrade(s.port, "/rec?tag=wait", timeout=scaled(5)) as c:
        c.send(texts("sleep", "m2", "m3") + build_frame(OP_CLOSE, close_payload(1000)))
        assert recv_texts(c, 1) == ["ok:sleep"]
        f = c.recv_frame()
        assert f.opcode == OP_CLOSE, f
    assert events_until(s, "wait", "close:1000") == [
        "m:sleep", "woke:nil:closed", "m:m2", "m:m3", "close:1000"]


def test_a_waiting_handler_gets_the_rest_after_its_wait(spawn):
    s = start(spawn)
    with rawws.upgrade(s.port, "/rec?tag=wait2", timeout=scaled(5)) as c:
        c.send(texts("sleep", "m2", "m3"))
        assert recv_texts(c, 3) == ["ok:sleep", "ok:m2", "ok:m3"]
    assert events(s, "wait2")[:4] == ["m:sleep", "woke:true:nil", "m:m2", "m:m3"]


def test_each_message_has_a_time_budget_of_its_own(spawn):
    # 4 x 0.6 s of CPU in one read, under a 2 s budget: together they run at
    # least 2.4 s, so one budget for the batch would stop the fourth; each
    # alone stays under the budget unless the machine gives the server less
    # than a third of a core.
    s = start(spawn, "--lua-timeout", "2")
    with rawws.upgrade(s.port, "/rec?tag=spin", timeout=scaled(20)) as c:
        c.send(texts(*["spin 0.6"] * 4))
        assert recv_texts(c, 4) == ["ok:spin 0.6"] * 4
    assert wait_for(lambda: events(s, "spin").count("spun") == 4, timeout=10, desc="four spins")
    assert "time budget" not in s.log


def test_messages_before_a_protocol_error_are_handled_first(spawn):
    s = start(spawn)
    with rawws.upgrade(s.port, "/rec?tag=bad", timeout=scaled(5)) as c:
        c.send(texts("m1", "m2") + build_frame(OP_TEXT, b"unmasked", mask=False))
        assert recv_texts(c, 2) == ["ok:m1", "ok:m2"]
        f = c.recv_frame()
        assert f.opcode == OP_CLOSE and f.close_code == 1002, f
    assert events(s, "bad")[:2] == ["m:m1", "m:m2"]


def test_messages_before_the_rate_limit_are_handled_first(spawn):
    s = start(spawn, "--rate-limit", "1", "--rate-burst", "3")
    with rawws.upgrade(s.port, "/rec?tag=rate", timeout=scaled(5)) as c:
        c.send(texts("m1", "m2", "m3", "m4", "m5"))
        assert recv_texts(c, 3) == ["ok:m1", "ok:m2", "ok:m3"]
        f = c.recv_frame()
        assert f.opcode == OP_CLOSE and f.close_code == 1008, f
    assert events(s, "rate")[:3] == ["m:m1", "m:m2", "m:m3"]
    assert "m:m4" not in events(s, "rate")


def test_methods_refuse_what_is_not_a_connection(spawn):
    # Inside a handler the event's connection is known by address; anything
    # else, a userdata of another kind included, is still checked.
    s = start(spawn)
    with rawws.upgrade(s.port, "/confuse", timeout=scaled(5)) as c:
        c.send(texts("a", "b"))
        for reply in recv_texts(c, 2):
            parts = reply.split("|")
            assert len(parts) == 4, reply
            for p in parts:
                assert p.startswith("false:") and "wspush.conn expected" in p, reply
        c.send_text("ping")   # the server is still there
        assert len(recv_texts(c, 1)[0].split("|")) == 4


def test_a_tampered_connections_table_does_not_confuse_the_methods(spawn):
    # Through the debug library a script can put io.stdout where its
    # connection object was; the next event then hands io.stdout to the
    # handler, and a method given it must refuse it, not read it as a box.
    s = start(spawn)
    with rawws.upgrade(s.port, "/tamper", timeout=scaled(5)) as c:
        c.send_text("tamper")
        assert recv_texts(c, 1) == ["tampered"]
        c.send(texts("a", "b"))
        reply = recv_texts(c, 1)[0]
    assert reply.startswith("file|false|") and "wspush.conn expected" in reply, reply
