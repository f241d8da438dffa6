"""Hot reload (DESIGN.md "Hot reload"; docs/api.md: the script is loaded "again on reload").

The script lives in a temporary directory, the test rewrites it, and observes the
swap through an HTTP route; live connections must survive and be served by the
new handlers from their next event on, with conn.data intact.
"""
import signal

import pytest

import rawws
from conftest import scaled, wait_for

TEMPLATE = """\
local ws = {{}}
function ws.open(conn)
  conn.data.opened_by = "{v}"
  conn:send("hello {v}")
end
function ws.on_message(conn, msg)
  conn:send("{v}:" .. msg .. ":" .. tostring(conn.data.opened_by))
end
return {{
  ["/ws"] = ws,
  ["/version"] = function(req) return "{v}" end,
}}
"""

BROKEN = """\
local ws = {}
function ws.on_message(conn, msg)
  conn:send("broken" .. )
end
return { ["/ws"] = ws, ["/version"] = function() return "broken" end }
"""


def version(server):
    r = server.http("/version")
    return r.body.decode() if r.status == 200 else None


def hup_reload(server, text, ready, desc):
    """Write the script, send SIGHUP and wait until ready() says the new one serves."""
    server.script_path.write_text(text)
    server.proc.send_signal(signal.SIGHUP)
    wait_for(ready, timeout=10, desc=desc)


@pytest.fixture
def live(spawn, tmp_path):
    path = tmp_path / "live.lua"
    path.write_text(TEMPLATE.format(v="v1"))
    s = spawn(path, "--close-timeout", "10")
    s.script_path = path
    return s


def test_sighup_reload_swaps_handlers_and_keeps_connections(live):
    with rawws.upgrade(live.port, "/ws") as c:
        assert c.recv_text() == "hello v1"
        c.send_text("a")
        assert c.recv_text() == "v1:a:v1"
        hup_reload(live, TEMPLATE.format(v="v2"), lambda: version(live) == "v2",
                   "version v2 after SIGHUP")
        # same TCP connection, new handler, conn.data kept
        c.send_text("b")
        assert c.recv_text() == "v2:b:v1"
    with rawws.upgrade(live.port, "/ws") as c:
        assert c.recv_text() == "hello v2"


def test_reload_with_syntax_error_keeps_old_version_and_reports_file_line(live):
    with rawws.upgrade(live.port, "/ws") as c:
        assert c.recv_text() == "hello v1"
        mark = live.log_mark()
        live.script_path.write_text(BROKEN)
        live.proc.send_signal(signal.SIGHUP)
        live.wait_log(r"live\.lua:3:", since=mark, timeout=10)
        assert version(live) == "v1"
        c.send_text("still")
        assert c.recv_text() == "v1:still:v1"


def test_editing_the_script_reloads_it_without_a_signal(live):
    with rawws.upgrade(live.port, "/ws") as c:
        assert c.recv_text() == "hello v1"
        live.script_path.write_text(TEMPLATE.format(v="v3"))
        wait_for(lambda: version(live) == "v3", timeout=10, desc="version v3 after editing the file")
        c.send_text("c")
        assert c.recv_text() == "v3:c:v1"


CATCH_ALL = """\
local ws = {{}}
function ws.on_message(conn, msg) conn:send("{v}:" .. conn.path .. ":" .. msg) end
return {{
  ["/version"] = function(req) return "{v}" end,
  ["*"] = function(method, path)
    if path:match("^/rooms/") then return ws end
  end,
}}
"""


def test_reload_rebinds_a_catch_all_connection_by_its_path(live):
    """A connection routed by the catch-all has no route key: after a reload
    the catch-all is asked again with the connection's path."""
    hup_reload(live, CATCH_ALL.format(v="v1"),
               lambda: version(live) == "v1" and live.http("/rooms/x").status == 426,
               "catch-all script v1")
    with rawws.upgrade(live.port, "/rooms/blue") as c:
        c.send_text("a")
        assert c.recv_text() == "v1:/rooms/blue:a"
        hup_reload(live, CATCH_ALL.format(v="v2"), lambda: version(live) == "v2",
                   "version v2 after SIGHUP")
        c.send_text("b")
        assert c.recv_text() == "v2:/rooms/blue:b", "the same connection, rebound through the catch-all"
