"""The closing handshake (RFC 6455 sections 5.5.1, 7)."""
import time

import pytest

import rawws
from rawws import OP_CLOSE, OP_TEXT
from conftest import SCRIPTS, scaled, wait_for
from test_framing import echo_conn, expect_fail

PROMPT_EOF = 3.0   # after its close reply the server closes TCP promptly (close timeout is 10 s)


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535])
def test_close_with_invalid_code_closes_1002(app, code):
    with echo_conn(app) as c:
        c.send_close(code)
        expect_fail(c, 1002)


def test_close_with_one_byte_payload_closes_1002(app):
    with echo_conn(app) as c:
        c.send_frame(OP_CLOSE, b"\x03")
        expect_fail(c, 1002)


def test_close_with_invalid_utf8_reason_closes_1007(app):
    with echo_conn(app) as c:
        c.send_close(1000, b"bad \xff reason")
        expect_fail(c, 1007)


def test_close_with_too_long_payload_closes_1002(app):
    with echo_conn(app) as c:
        c.send_frame(OP_CLOSE, rawws.close_payload(1000, b"r" * 124))   # 126 bytes
        expect_fail(c, 1002)


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1007, 1011, 3000, 4000, 4999])
@pytest.mark.valgrind
def test_close_with_valid_code_is_echoed(app, code):
    with echo_conn(app) as c:
        c.send_close(code, "reason %d" % code)
        f, before = c.recv_close()
        assert f.close_code == code, f
        assert not f.masked
        c.wait_eof(timeout=scaled(PROMPT_EOF))


def test_empty_close_is_answered_with_empty_close_or_1000(app):
    with echo_conn(app) as c:
        c.send_close()
        f, _ = c.recv_close()
        assert f.payload == b"" or f.close_code == 1000, f
        c.wait_eof(timeout=scaled(PROMPT_EOF))


def test_close_after_half_sent_fragmented_message_is_echoed(app):
    with echo_conn(app) as c:
        c.send_frame(OP_TEXT, b"never finished", fin=False)
        c.send_close(1000)
        f, before = c.recv_close()
        assert f.close_code == 1000
        assert not before, "an unfinished message must not be delivered: %r" % before


def test_data_after_close_is_ignored(app):
    with echo_conn(app) as c:
        c.send(rawws.build_frame(OP_CLOSE, rawws.close_payload(1000)) +
               rawws.build_frame(OP_TEXT, b"too late"))
        f, before = c.recv_close()
        assert f.close_code == 1000
        # nothing may follow the close frame
        assert not c.buf, "bytes after the server's close frame: %r" % bytes(c.buf)
        c.wait_eof(timeout=scaled(PROMPT_EOF))
        assert not [b for b in before if b.opcode == OP_TEXT]


@pytest.mark.valgrind
def test_server_close_arrives_with_code_and_reason(app):
    with rawws.upgrade(app.port, "/state") as c:
        c.send_text("close me")
        f, before = c.recv_close()
        assert f.close_code == 4000, f
        assert f.close_reason == b"bye", f
        c.send_close(4000)
        c.wait_eof(timeout=scaled(PROMPT_EOF))


def test_server_closes_tcp_after_close_timeout_when_peer_never_answers(spawn):
    s = spawn(SCRIPTS / "app.lua", "--close-timeout", "0.5")
    with rawws.upgrade(s.port, "/state") as c:
        c.send_text("close me")
        f, _ = c.recv_close()
        assert f.close_code == 4000
        t0 = time.monotonic()
        # we never answer the close
        waited = c.wait_eof(timeout=scaled(10))
        assert waited >= 0.35, "server closed after %.3fs, before --close-timeout 0.5" % waited
        assert waited < scaled(3.0), "server took %.3fs to close after --close-timeout 0.5" % waited


def test_server_closes_tcp_after_close_reply(spawn):
    s = spawn(SCRIPTS / "app.lua", "--close-timeout", "10")
    with rawws.upgrade(s.port, "/state") as c:
        c.send_text("close me")
        f, _ = c.recv_close()
        c.send_close(4000, "ok")
        # with a 10 s close timeout, a prompt close proves the reply was understood
        waited = c.wait_eof(timeout=scaled(3))
        assert waited < scaled(3)


def test_on_close_gets_peer_code_and_reason(app):
    with rawws.upgrade(app.port, "/state") as c:
        c.send_text("id")
        cid = c.recv_text()
        c.send_close(4321, "see ya")
        f, _ = c.recv_close()
        assert f.close_code == 4321
        c.wait_eof(timeout=scaled(PROMPT_EOF))
    st = wait_for(lambda: (lambda j: j if j["seen"] else None)(app.json("/closes?id=" + cid)),
                  desc="on_close of %s" % cid)
    assert st["code"] == 4321 and st["reason"] == "see ya", st


def test_on_close_gets_1005_for_empty_close(app):
    with rawws.upgrade(app.port, "/state") as c:
        c.send_text("id")
        cid = c.recv_text()
        c.send_close()
        c.recv_close()
    st = wait_for(lambda: (lambda j: j if j["seen"] else None)(app.json("/closes?id=" + cid)),
                  desc="on_close of %s" % cid)
    assert st["code"] == 1005, st


def test_on_close_gets_1006_when_tcp_dies_without_close(app):
    c = rawws.upgrade(app.port, "/state")
    c.send_text("id")
    cid = c.recv_text()
    c.close()
    st = wait_for(lambda: (lambda j: j if j["seen"] else None)(app.json("/closes?id=" + cid)),
                  desc="on_close of %s" % cid)
    assert st["code"] == 1006, st


def test_on_close_gets_server_code_when_server_closed_with_protocol_error(app):
    c = rawws.upgrade(app.port, "/state")
    try:
        c.send_text("id")
        cid = c.recv_text()
        c.send_frame(OP_TEXT, b"x", mask=False)
        expect_fail(c, 1002)
    finally:
        c.close()
    st = wait_for(lambda: (lambda j: j if j["seen"] else None)(app.json("/closes?id=" + cid)),
                  desc="on_close of %s" % cid)
    assert st["code"] == 1002, st
