"""RFC 6455 framing: what a server must reject, and what it must accept.

All tests use the /echo route of scripts/app.lua (echoes every message back
with the same type, sends nothing on open), on a server started with
--close-timeout 10: after failing a connection (1002/1007/1009) the server must
close TCP itself, promptly, without waiting for the client's close reply.
"""
import struct

import pytest

import rawws
from rawws import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, build_frame
from conftest import SCRIPTS, scaled

PROMPT = 3.0   # seconds within which the TCP close must follow a failing close frame


def expect_fail(c, code):
    """The server sends a close frame with `code`, then closes TCP without waiting for us."""
    try:
        f, before = c.recv_close(timeout=scaled(5))
    except EOFError:
        pytest.fail("server closed TCP without sending a close frame (expected %d)" % code)
    assert f.close_code == code, "expected close %d, got %r (frames before: %r)" % (code, f.close_code, before)
    assert not f.masked, "server frames must not be masked"
    assert not [b for b in before if b.opcode in (OP_TEXT, OP_BINARY)], \
        "server delivered data before failing: %r" % before
    try:
        c.wait_eof(timeout=scaled(PROMPT))
    except TimeoutError:
        pytest.fail("server sent close %d but did not close TCP within %ss" % (code, PROMPT))


def echo_conn(server):
    return rawws.upgrade(server.port, "/echo", timeout=scaled(5))


# --- must fail with 1002 ---------------------------------------------------------

@pytest.mark.valgrind
def test_unmasked_frame_closes_1002(app):
    with echo_conn(app) as c:
        c.send_frame(OP_TEXT, b"hello", mask=False)
        expect_fail(c, 1002)


@pytest.mark.parametrize("rsv", [4, 2, 1], ids=["rsv1", "rsv2", "rsv3"])
def test_rsv_bit_without_extension_closes_1002(app, rsv):
    with echo_conn(app) as c:
        c.send_frame(OP_TEXT, b"hello", rsv=rsv)
        expect_fail(c, 1002)


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcode_closes_1002(app, opcode):
    with echo_conn(app) as c:
        c.send_frame(opcode, b"x")
        expect_fail(c, 1002)


@pytest.mark.valgrind
def test_control_frame_over_125_bytes_closes_1002(app):
    with echo_conn(app) as c:
        c.send_frame(OP_PING, b"p" * 126)
        expect_fail(c, 1002)


def test_fragmented_control_frame_closes_1002(app):
    with echo_conn(app) as c:
        c.send_frame(OP_PING, b"frag", fin=False)
        expect_fail(c, 1002)


def test_continuation_without_start_closes_1002(app):
    with echo_conn(app) as c:
        c.send_frame(OP_CONT, b"orphan", fin=True)
        expect_fail(c, 1002)


@pytest.mark.parametrize("second", [OP_TEXT, OP_BINARY], ids=["text", "binary"])
def test_new_data_frame_inside_fragmented_message_closes_1002(app, second):
    with echo_conn(app) as c:
        c.send_frame(OP_TEXT, b"part one", fin=False)
        c.send_frame(second, b"intruder", fin=True)
        expect_fail(c, 1002)


# --- UTF-8: 1007 ----------------------------------------------------------------

@pytest.mark.parametrize("payload", [
    b"\xff",
    b"abc\xc0\xafdef",              # overlong '/'
    b"\xed\xa0\x80",                # UTF-16 surrogate
    b"\xf4\x90\x80\x80",            # > U+10FFFF
    b"ok then \xe2\x82",            # truncated at the end of the message
], ids=["ff", "overlong", "surrogate", "too-big", "truncated"])
@pytest.mark.valgrind
def test_invalid_utf8_text_closes_1007(app, payload):
    with echo_conn(app) as c:
        c.send_frame(OP_TEXT, payload)
        expect_fail(c, 1007)


def test_invalid_utf8_split_across_fragments_closes_1007(app):
    with echo_conn(app) as c:
        # each fragment could be a prefix/suffix of valid text, together they are not
        c.send_frame(OP_TEXT, b"euro \xe2\x82", fin=False)
        c.send_frame(OP_CONT, b"\x28 no", fin=True)
        expect_fail(c, 1007)


def test_invalid_utf8_in_first_fragment_fails_fast_1007(app):
    with echo_conn(app) as c:
        c.send_frame(OP_TEXT, b"bad \xff start", fin=False)
        # no further fragment is sent: the server must not wait for FIN
        expect_fail(c, 1007)


def test_valid_utf8_split_inside_a_code_point_is_reassembled(app):
    text = "a€b😀c"
    raw = text.encode()
    with echo_conn(app) as c:
        # cut in the middle of the euro sign and of the emoji
        c.send_frame(OP_TEXT, raw[:2], fin=False)
        c.send_frame(OP_CONT, raw[2:6], fin=False)
        c.send_frame(OP_CONT, raw[6:], fin=True)
        assert c.recv_text() == text


# --- message size: 1009 ----------------------------------------------------------

@pytest.fixture
def small(spawn):
    return spawn(SCRIPTS / "app.lua", "--max-message", "1024", "--close-timeout", "10")


@pytest.mark.valgrind
def test_huge_length_header_closes_1009_before_payload(small):
    with echo_conn(small) as c:
        # only the header (and mask key) claiming a 1 TiB payload
        c.send(build_frame(OP_BINARY, b"", length=1 << 40))
        expect_fail(c, 1009)


def test_frame_just_over_max_message_closes_1009(small):
    with echo_conn(small) as c:
        c.send_frame(OP_BINARY, b"x" * 1025)
        expect_fail(c, 1009)


def test_message_exactly_max_message_is_accepted(small):
    with echo_conn(small) as c:
        c.send_frame(OP_BINARY, b"y" * 1024)
        op, data = c.recv_message()
        assert op == OP_BINARY and data == b"y" * 1024


def test_fragmented_message_over_max_message_closes_1009(small):
    with echo_conn(small) as c:
        c.send_frame(OP_TEXT, b"a" * 600, fin=False)
        c.send_frame(OP_CONT, b"b" * 600, fin=False)
        expect_fail(c, 1009)


def test_fragments_under_max_message_each_but_over_in_total_header_only_closes_1009(small):
    with echo_conn(small) as c:
        c.send_frame(OP_TEXT, b"a" * 1000, fin=False)
        c.send(build_frame(OP_CONT, b"", fin=True, length=1000))
        expect_fail(c, 1009)


# --- control frames ---------------------------------------------------------------

@pytest.mark.parametrize("payload", [b"", b"ping-payload", bytes(range(125))],
                         ids=["empty", "short", "125-bytes"])
@pytest.mark.valgrind
def test_ping_gets_pong_with_same_payload(app, payload):
    with echo_conn(app) as c:
        c.send_frame(OP_PING, payload)
        f = c.recv_frame()
        assert f.opcode == OP_PONG, f
        assert f.fin and not f.masked
        assert f.payload == payload


def test_unsolicited_pong_is_ignored(app):
    with echo_conn(app) as c:
        c.send_frame(OP_PONG, b"nobody asked")
        c.send_text("still open")
        assert c.recv_text() == "still open"


def test_fragmented_message_with_interleaved_pings_is_reassembled(app):
    with echo_conn(app) as c:
        c.send_frame(OP_TEXT, b"Hel", fin=False)
        c.send_frame(OP_PING, b"p1")
        c.send_frame(OP_CONT, b"lo ", fin=False)
        c.send_frame(OP_PING, b"p2")
        c.send_frame(OP_CONT, b"world", fin=True)
        frames = []
        for _ in range(10):
            f = c.recv_frame()
            frames.append(f)
            if f.opcode in (OP_TEXT, OP_CONT) and f.fin:
                break
        pongs = [f.payload for f in frames if f.opcode == OP_PONG]
        data = b"".join(f.payload for f in frames if f.opcode in (OP_TEXT, OP_CONT))
        assert pongs == [b"p1", b"p2"], frames
        assert data == b"Hello world", frames
        assert frames[0].opcode in (OP_PONG, OP_TEXT)


# --- data frames the server must accept ------------------------------------------

@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 200000])
def test_payload_length_encodings_round_trip(app, size):
    data = bytes((i * 7) & 0xFF for i in range(size))
    with echo_conn(app) as c:
        c.send_frame(OP_BINARY, data)
        op, got = c.recv_message(timeout=scaled(10))
        assert op == OP_BINARY
        assert got == data


def test_text_stays_text_and_binary_stays_binary(app):
    with echo_conn(app) as c:
        c.send_frame(OP_BINARY, b"\x00\xff\xfe")
        assert c.recv_message() == (OP_BINARY, b"\x00\xff\xfe")
        c.send_text("héllo")
        assert c.recv_message() == (OP_TEXT, "héllo".encode())


def test_fragmented_binary_message_is_reassembled(app):
    parts = [b"\x00\x01", b"", b"\xff" * 300, b"end"]
    with echo_conn(app) as c:
        c.send_frame(OP_BINARY, parts[0], fin=False)
        for p in parts[1:-1]:
            c.send_frame(OP_CONT, p, fin=False)
        c.send_frame(OP_CONT, parts[-1], fin=True)
        assert c.recv_message() == (OP_BINARY, b"".join(parts))


def test_frame_delivered_one_byte_at_a_time(app):
    frame = build_frame(OP_TEXT, b"slowly but surely")
    with echo_conn(app) as c:
        for i in range(len(frame)):
            c.send(frame[i:i + 1])
        assert c.recv_text() == "slowly but surely"


def test_many_frames_in_one_write_are_all_processed_in_order(app):
    msgs = ["m%d" % i for i in range(200)]
    with echo_conn(app) as c:
        c.send(b"".join(build_frame(OP_TEXT, m.encode()) for m in msgs))
        got = [c.recv_text() for _ in msgs]
        assert got == msgs


def test_server_frames_are_unmasked_and_have_no_rsv(app):
    with echo_conn(app) as c:
        c.send_text("x" * 300)
        f = c.recv_frame()
        assert not f.masked and f.rsv == 0 and f.opcode == OP_TEXT


# --- independence of connections ----------------------------------------------------

def test_protocol_violation_on_one_connection_does_not_disturb_another(app):
    with echo_conn(app) as good, echo_conn(app) as bad:
        good.send_frame(OP_TEXT, b"first ", fin=False)   # a message in progress
        bad.send_frame(OP_TEXT, b"unmasked", mask=False)
        expect_fail(bad, 1002)
        good.send_frame(OP_CONT, b"second", fin=True)
        assert good.recv_text() == "first second"
        good.send_text("again")
        assert good.recv_text() == "again"


def test_interleaved_fragmented_messages_on_two_connections_stay_separate(app):
    with echo_conn(app) as a, echo_conn(app) as b:
        a.send_frame(OP_TEXT, b"A1", fin=False)
        b.send_frame(OP_TEXT, b"B1", fin=False)
        a.send_frame(OP_CONT, b"A2", fin=False)
        b.send_frame(OP_CONT, b"B2", fin=True)
        assert b.recv_text() == "B1B2"
        a.send_frame(OP_CONT, b"A3", fin=True)
        assert a.recv_text() == "A1A2A3"


def test_abrupt_tcp_close_mid_frame_does_not_disturb_others(app):
    with echo_conn(app) as good:
        with echo_conn(app) as dying:
            dying.send(build_frame(OP_TEXT, b"x" * 1000)[:500])
        good.send_text("alive?")
        assert good.recv_text() == "alive?"
