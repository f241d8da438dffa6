"""The opening handshake (RFC 6455 section 4) and routing of upgrades."""
import base64
import json

import pytest

import rawws
from conftest import SCRIPTS


def handshake(server, path="/echo", headers=None, **kw):
    with rawws.Conn(server.port) as c:
        return c.handshake(path, headers, **kw)


def raw_request(server, text):
    with rawws.Conn(server.port) as c:
        return c.request(text.replace("\n", "\r\n"))


@pytest.mark.valgrind
def test_valid_upgrade_gets_101_with_correct_accept(app):
    with rawws.Conn(app.port) as c:
        r = c.handshake("/echo", key="dGhlIHNhbXBsZSBub25jZQ==")
        assert r.status == 101, r
        # the RFC 6455 section 1.3 example
        assert r.header("Sec-WebSocket-Accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        assert r.header("Upgrade", "").lower() == "websocket"
        assert "upgrade" in r.header("Connection", "").lower()
        # and the connection is a working WebSocket
        c.send_text("after handshake")
        assert c.recv_text() == "after handshake"


def test_frame_sent_right_after_request_in_same_packet_is_processed(app):
    with rawws.Conn(app.port) as c:
        r = c.handshake("/echo", extra=rawws.build_frame(rawws.OP_TEXT, b"eager"))
        assert r.status == 101, r
        assert c.recv_text() == "eager"


def test_non_get_upgrade_is_405(app):
    r = raw_request(app, "POST /echo HTTP/1.1\nHost: 127.0.0.1:%d\nUpgrade: websocket\nConnection: Upgrade\n"
                    "Sec-WebSocket-Key: %s\nSec-WebSocket-Version: 13\nContent-Length: 0\n\n"
                    % (app.port, rawws.new_key()))
    assert r.status == 405, r


def test_http_1_0_upgrade_is_400(app):
    r = raw_request(app, "GET /echo HTTP/1.0\nHost: 127.0.0.1:%d\nUpgrade: websocket\nConnection: Upgrade\n"
                    "Sec-WebSocket-Key: %s\nSec-WebSocket-Version: 13\n\n" % (app.port, rawws.new_key()))
    assert r.status == 400, r


def test_upgrade_without_host_is_400(app):
    r = handshake(app, headers={"Host": None})
    assert r.status == 400, r


def test_upgrade_header_without_websocket_is_400(app):
    r = handshake(app, headers={"Upgrade": "h2c"})
    assert r.status == 400, r


@pytest.mark.parametrize("value", ["WebSocket", "WEBSOCKET", "foo, websocket"])
def test_upgrade_header_token_is_case_insensitive_and_found_in_list(app, value):
    r = handshake(app, headers={"Upgrade": value})
    assert r.status == 101, r


def test_connection_header_without_upgrade_is_400(app):
    r = handshake(app, headers={"Connection": "keep-alive"})
    assert r.status == 400, r


@pytest.mark.parametrize("value", ["keep-alive, Upgrade", "UPGRADE", "upgrade", "Upgrade,keep-alive",
                                   "  keep-alive ,  upgrade  "])
def test_connection_header_upgrade_token_accepted_in_list_any_case(app, value):
    r = handshake(app, headers={"Connection": value})
    assert r.status == 101, r


@pytest.mark.parametrize("key", [
    None,                                           # missing
    "",                                             # empty
    "abc",                                          # not base64 of 16 bytes
    base64.b64encode(b"x" * 15).decode(),           # 15 bytes
    base64.b64encode(b"x" * 17).decode(),           # 17 bytes
    "!!!!!!!!!!!!!!!!!!!!!!==",                     # right length, not base64
], ids=["missing", "empty", "short", "15-bytes", "17-bytes", "not-base64"])
def test_bad_sec_websocket_key_is_400(app, key):
    r = handshake(app, headers={"Sec-WebSocket-Key": key})
    assert r.status == 400, r


@pytest.mark.parametrize("version", ["8", "12", "14", None], ids=["8", "12", "14", "missing"])
def test_unsupported_version_is_426_naming_13(app, version):
    r = handshake(app, headers={"Sec-WebSocket-Version": version})
    assert r.status == 426, r
    assert r.header("Sec-WebSocket-Version") == "13", r


def test_header_block_over_max_header_is_431(spawn):
    s = spawn(SCRIPTS / "app.lua", "--max-header", "4096")
    r = handshake(s, headers={"X-Padding": "a" * 8000})
    assert r.status == 431, r


def test_header_block_under_max_header_is_accepted(spawn):
    s = spawn(SCRIPTS / "app.lua", "--max-header", "4096")
    r = handshake(s, headers={"X-Padding": "a" * 2000})
    assert r.status == 101, r


def test_many_small_headers_over_max_header_is_431(spawn):
    s = spawn(SCRIPTS / "app.lua", "--max-header", "4096")
    r = handshake(s, headers=[("X-H%d" % i, "v" * 40) for i in range(200)])
    assert r.status == 431, r


def test_upgrade_on_unknown_path_is_404(app):
    r = handshake(app, path="/no/such/route")
    assert r.status == 404, r


def test_plain_get_on_unknown_path_is_404(app):
    assert app.http("/no/such/route").status == 404


def test_plain_get_on_websocket_route_is_426(app):
    r = app.http("/echo")
    assert r.status == 426, r


def test_cross_origin_upgrade_without_check_origin_is_403(app):
    r = handshake(app, headers={"Origin": "http://evil.example"})
    assert r.status == 403, r


def test_same_origin_upgrade_without_check_origin_is_accepted(app):
    r = handshake(app, headers={"Origin": "http://127.0.0.1:%d" % app.port})
    assert r.status == 101, r


def test_upgrade_without_origin_is_accepted(app):
    r = handshake(app, headers={"Origin": None})
    assert r.status == 101, r


def test_check_origin_can_allow_a_cross_origin(app):
    with rawws.Conn(app.port) as c:
        r = c.handshake("/strict_origin", headers={"Origin": "http://allowed.example"})
        assert r.status == 101, r
        assert c.recv_text() == "in"


def test_check_origin_can_reject_an_origin(app):
    r = handshake(app, path="/strict_origin", headers={"Origin": "http://other.example"})
    assert r.status == 403, r


def test_check_origin_rejecting_same_origin_is_403(app):
    r = handshake(app, path="/strict_origin", headers={"Origin": "http://127.0.0.1:%d" % app.port})
    assert r.status == 403, r


def test_select_subprotocol_picks_offered_protocol(app):
    with rawws.Conn(app.port) as c:
        r = c.handshake("/proto", headers={"Sec-WebSocket-Protocol": "chat.v1, chat.v2"})
        assert r.status == 101, r
        assert r.header("Sec-WebSocket-Protocol") == "chat.v2", r
        assert c.recv_text() == "chat.v2"


def test_select_subprotocol_returning_nil_omits_header(app):
    with rawws.Conn(app.port) as c:
        r = c.handshake("/proto", headers={"Sec-WebSocket-Protocol": "foo, bar"})
        assert r.status == 101, r
        assert r.header("Sec-WebSocket-Protocol") is None, r
        assert c.recv_text() == "none"


def test_no_subprotocol_offered_means_none(app):
    with rawws.Conn(app.port) as c:
        r = c.handshake("/proto")
        assert r.status == 101, r
        assert r.header("Sec-WebSocket-Protocol") is None, r
        assert c.recv_text() == "none"


def test_failed_handshake_does_not_upgrade(app):
    """After a 400 the server must not treat the socket as a WebSocket."""
    with rawws.Conn(app.port) as c:
        r = c.handshake("/echo", headers={"Sec-WebSocket-Key": "abc"})
        assert r.status == 400
        try:
            c.send(rawws.build_frame(rawws.OP_TEXT, b"sneaky"))
        except OSError:
            return
        # whatever comes back (nothing, or an HTTP error) must not be an echo frame
        c.sock.settimeout(2)
        try:
            data = c.sock.recv(100)
        except (OSError, TimeoutError):
            data = b""
        assert b"sneaky" not in data


def test_server_survives_garbage_request(app):
    with rawws.Conn(app.port) as c:
        c.send(b"\x16\x03\x01\x02\x00garbage that is not HTTP\r\n\r\n")
        try:
            c.wait_eof(timeout=5)
        except TimeoutError:
            pytest.fail("server neither answered nor closed a connection that sent garbage")
    # and keeps serving
    assert app.http("/status").status == 201
