"""One bad handler costs its own request or connection, never the server
(issue 14, part 2): user Lua values (handler tables with raising or looping
metatables, error objects that are tables, JSON of hostile tables) are only
touched inside protected calls under the time budget, and a Lua heap cap
stops a handler that allocates without bound."""
import rawws
from rawws import OP_CLOSE
from conftest import SCRIPTS, scaled

HOSTILE = SCRIPTS / "hostile.lua"


def start(spawn, *args):
    return spawn(HOSTILE, "--lua-timeout", "0.3", "--lua-max-memory", "64m", *args)


def still_serving(s):
    """Everyone else goes on: plain HTTP and another WebSocket route."""
    assert s.http("/index").body == b"fine"
    with rawws.upgrade(s.port, "/echo", timeout=scaled(5)) as c:
        c.send_text("still here")
        assert c.recv_text() == "still here"


def test_a_strict_handler_table_gets_500_and_the_log_names_the_line(spawn):
    s = start(spawn)
    mark = s.log_mark()
    with rawws.Conn(s.port, timeout=scaled(5)) as c:
        r = c.handshake("/strict")
    assert r.status == 500, r
    s.wait_log(r"WebSocket upgrade: .*hostile\.lua:6: strict: no field max_message", since=mark)
    assert s.alive()
    still_serving(s)


def test_an_index_that_never_returns_is_stopped_by_the_time_budget(spawn):
    s = start(spawn)
    mark = s.log_mark()
    with rawws.Conn(s.port, timeout=scaled(5)) as c:
        r = c.handshake("/loopy")
    assert r.status == 500, r
    s.wait_log(r"WebSocket upgrade: .*exceeded its time budget \(--lua-timeout", since=mark)
    still_serving(s)


def test_handlers_are_found_through_a_metatable_chain(spawn):
    s = start(spawn)
    with rawws.upgrade(s.port, "/child", timeout=scaled(5)) as c:
        assert c.recv_text() == "child open"
        c.send_text("x")
        assert c.recv_text() == "base saw x"


def test_a_raising_event_lookup_costs_that_connection_1011(spawn):
    s = start(spawn)
    mark = s.log_mark()
    with rawws.upgrade(s.port, "/strict_events", timeout=scaled(5)) as c:
        assert c.recv_text() == "open"
        c.send_text("x")
        f, _ = c.recv_close(timeout=scaled(5))
        assert f.close_code == 1011
    s.wait_log(r"on_message \(/strict_events, conn \d+\): .*strict: no field on_message", since=mark)
    still_serving(s)


def test_a_handler_that_allocates_without_bound_fails_alone(spawn):
    s = start(spawn)
    with rawws.upgrade(s.port, "/hog", timeout=scaled(5)) as c:
        c.send_text("hello")
        assert c.recv_text() == "ok hello"
        mark = s.log_mark()
        c.send_text("grow")
        f, _ = c.recv_close(timeout=scaled(10))
        assert f.close_code == 1011
    s.wait_log(r"on_message \(/hog, conn \d+\): not enough memory: the Lua heap is at its cap "
               r"\(--lua-max-memory, 64 MiB\)", since=mark)
    # The garbage of the failed callback is collectable: the heap is small again.
    assert s.json("/heap")["lua_kb"] < 16 * 1024
    still_serving(s)


def test_a_finalizer_is_refused_with_a_clear_error(spawn):
    """Lua runs __gc with hooks off: no budget could stop one that loops."""
    s = start(spawn)
    mark = s.log_mark()
    with rawws.upgrade(s.port, "/hog", timeout=scaled(5)) as c:
        c.send_text("gc")
        f, _ = c.recv_close(timeout=scaled(5))
        assert f.close_code == 1011
    s.wait_log(r"__gc metamethods are not allowed", since=mark)
    still_serving(s)


def test_hostile_values_in_sends_and_errors_are_contained(spawn):
    s = start(spawn)
    for msg, pattern in (("json", r"on_message \(/hog, conn \d+\): .*Cannot serialise"),
                         ("errtable", r"error object is a table value")):
        mark = s.log_mark()
        with rawws.upgrade(s.port, "/hog", timeout=scaled(5)) as c:
            c.send_text(msg)
            f, _ = c.recv_close(timeout=scaled(5))
            assert f.opcode == OP_CLOSE and f.close_code == 1011
        s.wait_log(pattern, since=mark)
    still_serving(s)
