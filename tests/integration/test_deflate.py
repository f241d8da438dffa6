"""permessage-deflate (RFC 7692) end to end: negotiation over real handshakes,
raw frames (RSV1, thresholds, publish, limits, bombs, corrupt data), and
interop with independent implementations (python websockets, node ws, Chromium).

Server routes: tests/integration/scripts/deflate_app.lua.

Longer than our ~600-line guide on purpose: negotiation, raw frames,
limits and three interop peers share one set of frame and zlib helpers.
"""
import asyncio
import json
import os
import random
import shutil
import subprocess
import zlib

import pytest
import websockets
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

import rawws
from rawws import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_TEXT, build_frame
from conftest import HERE, SCRIPTS, cpu_seconds, proc_status, scaled

APP = SCRIPTS / "deflate_app.lua"
NODE_PATH = "/usr/share/nodejs"
CHROMIUM = "/usr/bin/chromium"
TAIL = b"\x00\x00\xff\xff"
RSV1 = 4
KNOWN_PARAMS = {"server_no_context_takeover", "client_no_context_takeover",
                "server_max_window_bits", "client_max_window_bits"}


# --- helpers -------------------------------------------------------------------------------------

def deflate(data, wbits=15, level=6, co=None):
    """One message as a permessage-deflate payload (sync flush, tail removed)."""
    co = co or zlib.compressobj(level, zlib.DEFLATED, -wbits)
    out = co.compress(data) + co.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(TAIL)
    return out[:-4]


def inflate(payload, wbits=15, do=None):
    """Inflate one message payload; raises zlib.error if it needs a bigger window than wbits."""
    do = do or zlib.decompressobj(-wbits)
    out = do.decompress(payload + TAIL)
    assert not do.unconsumed_tail
    return out


def text_of(n):
    """The same text as text_of(n) in deflate_app.lua."""
    words = ["alpha ", "bravo ", "charlie ", "delta ", "echo ", "foxtrot ", "golf "]
    out, length, i = [], 0, 0
    while length < n:
        i += 1
        w = words[(i * 7 + i // 3) % len(words)] + str(i % 97) + " "
        out.append(w)
        length += len(w)
    return "".join(out)[:n].encode()


def far_repeats(seed=1, chunk=3000, times=3):
    """Random bytes repeated at distance `chunk`: a compressor with a window
    bigger than `chunk` refers back that far, one with a smaller window cannot."""
    block = random.Random(seed).randbytes(chunk)
    return block * times


def ext_params(header):
    """'permessage-deflate; a; b=10' -> {'a': None, 'b': '10'} (asserts the name)."""
    parts = [p.strip() for p in header.split(";")]
    assert parts[0] == "permessage-deflate", header
    params = {}
    for p in parts[1:]:
        k, eq, v = p.partition("=")
        k = k.strip()
        assert k not in params, "parameter repeated in response %r" % header
        params[k] = v.strip().strip('"') if eq else None
    return params


def handshake(port, path="/echo", offers=(), timeout=5):
    """Raw upgrade with one Sec-WebSocket-Extensions header per offer string
    (rawws.Conn.handshake folds repeated names, so the request is built here)."""
    c = rawws.Conn(port, timeout=scaled(timeout))
    key = rawws.new_key()
    c.key = key
    lines = ["GET %s HTTP/1.1" % path, "Host: 127.0.0.1:%d" % port, "Upgrade: websocket",
             "Connection: Upgrade", "Sec-WebSocket-Key: " + key, "Sec-WebSocket-Version: 13"]
    lines += ["Sec-WebSocket-Extensions: " + o for o in offers]
    c.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    r = c.read_response()
    c.response = r
    return c, r


def negotiated(r):
    """The response's permessage-deflate parameters, or None; checks the response is sane."""
    assert r.status == 101, r
    assert r.header("Sec-WebSocket-Accept") is not None, r
    exts = r.header_all("Sec-WebSocket-Extensions")
    if not exts:
        return None
    assert len(exts) == 1, "several extension headers: %r" % exts
    assert "," not in exts[0], "more than one extension accepted: %r" % exts
    params = ext_params(exts[0])
    assert set(params) <= KNOWN_PARAMS, params
    for k in ("server_no_context_takeover", "client_no_context_takeover"):
        if k in params:
            assert params[k] is None, params
    for k in ("server_max_window_bits", "client_max_window_bits"):
        if k in params:
            assert params[k] is not None and params[k].isdigit() and 8 <= int(params[k]) <= 15, params
    return params


def connect(port, path="/echo", offer="permessage-deflate", timeout=5):
    c, r = handshake(port, path, [offer] if offer else [], timeout)
    try:
        c.params = negotiated(r)
    except BaseException:
        c.close()
        raise
    return c


def recv_msg(c, timeout=5):
    """Next data message: (opcode, rsv of its first frame, raw payload of all frames)."""
    import time
    deadline = time.monotonic() + scaled(timeout)
    parts, op, rsv = [], None, None
    for _ in range(10000):
        f = c.recv_frame(max(0.001, deadline - time.monotonic()))
        if f.opcode == OP_CLOSE:
            raise AssertionError("expected a message, got close %r (code %r)" % (f, f.close_code))
        if f.opcode in (rawws.OP_PING, rawws.OP_PONG):
            continue
        if op is None:
            op, rsv = f.opcode, f.rsv
        else:
            assert f.opcode == OP_CONT and f.rsv == 0, f
        parts.append(f.payload)
        if f.fin:
            return op, rsv, b"".join(parts)
    raise AssertionError("too many fragments")


def recv_plain(c, do=None, wbits=15, timeout=5):
    """Next message, inflated if it came with RSV1: (opcode, was_compressed, data)."""
    op, rsv, payload = recv_msg(c, timeout)
    assert rsv in (0, RSV1), "rsv=%d" % rsv
    if rsv == RSV1:
        return op, True, inflate(payload, wbits, do)
    return op, False, payload


def expect_close(c, code, timeout=5):
    f, before = c.recv_close(timeout=scaled(timeout))
    assert f.close_code == code, "expected close %d, got %r (%r); frames before: %r" % (
        code, f.close_code, f.close_reason, before)
    c.wait_eof(timeout=scaled(timeout))
    return f


def sanitized(pid):
    """True when the server runs with AddressSanitizer (RSS figures mean nothing then)."""
    with open("/proc/%d/maps" % pid) as fh:
        return "libasan" in fh.read() or bool(os.environ.get("WSPUSH_SANITIZE_LOG"))


@pytest.fixture
def srv(spawn):
    return spawn(APP)


# --- negotiation ---------------------------------------------------------------------------------

# offer -> expected response parameters (None: declined, no extension, still 101).
# "any" means: present or absent, value checked by negotiated().
OFFERS = [
    ("permessage-deflate", {"server_no_context_takeover": None, "client_no_context_takeover": None}),
    ("permessage-deflate; client_max_window_bits", {"client_max_window_bits": "any"}),
    ("permessage-deflate; client_max_window_bits=10", {"client_max_window_bits": "any"}),
    ("permessage-deflate; client_max_window_bits=8", {"client_max_window_bits": "any"}),
    ("permessage-deflate; server_max_window_bits=10", {"server_max_window_bits": "10"}),
    ("permessage-deflate; server_max_window_bits=9", {"server_max_window_bits": "9"}),
    ("permessage-deflate; server_max_window_bits=15", {"server_max_window_bits": "15"}),
    ('permessage-deflate; server_max_window_bits="11"', {"server_max_window_bits": "11"}),
    ("permessage-deflate; server_no_context_takeover", {"server_no_context_takeover": None}),
    ("permessage-deflate; client_no_context_takeover", {}),
    ("permessage-deflate;server_no_context_takeover;client_no_context_takeover;"
     "server_max_window_bits=12;client_max_window_bits=12",
     {"server_no_context_takeover": None, "server_max_window_bits": "12"}),
    # declined offers
    ("permessage-deflate; server_max_window_bits=8", None),
    ("permessage-deflate; server_max_window_bits=7", None),
    ("permessage-deflate; server_max_window_bits=16", None),
    ("permessage-deflate; server_max_window_bits=010", None),
    ("permessage-deflate; server_max_window_bits=abc", None),
    ("permessage-deflate; server_max_window_bits=", None),
    ("permessage-deflate; server_max_window_bits", None),
    ("permessage-deflate; client_max_window_bits=7", None),
    ("permessage-deflate; client_max_window_bits=16", None),
    ("permessage-deflate; client_max_window_bits=1x", None),
    ("permessage-deflate; server_no_context_takeover=1", None),
    ("permessage-deflate; client_no_context_takeover=true", None),
    ("permessage-deflate; server_no_context_takeover; server_no_context_takeover", None),
    ("permessage-deflate; client_max_window_bits; client_max_window_bits=10", None),
    ("permessage-deflate; foo", None),
    ("permessage-deflate; x_max_window_bits=10", None),
    ("x-webkit-deflate-frame", None),
    ("permessage-deflate-x", None),
    # several offers in one header: the first acceptable one wins
    ("permessage-deflate; server_max_window_bits=8, permessage-deflate; client_max_window_bits",
     {"client_max_window_bits": "any"}),
    ("permessage-deflate; foo, permessage-deflate; server_max_window_bits=11",
     {"server_max_window_bits": "11"}),
    ("permessage-deflate; server_max_window_bits=12, permessage-deflate; server_max_window_bits=10",
     {"server_max_window_bits": "12"}),
    ("x-webkit-deflate-frame; no_context_takeover, permessage-deflate; server_max_window_bits=13",
     {"server_max_window_bits": "13"}),
    ("permessage-deflate; foo=1, permessage-deflate; bar", None),
]


def check_offer(port, path, offers, want):
    """Handshake with offers, compare with want, then prove the agreement in
    both directions with a compressed round trip (or RSV1 refused if declined)."""
    c, r = handshake(port, path, offers)
    with c:
        params = negotiated(r)
        if want is None:
            assert params is None, "offer %r should be declined, got %r" % (offers, params)
            c.send_binary(deflate(b"x" * 2000), rsv=RSV1)
            expect_close(c, 1002)
            return None
        assert params is not None, "offer %r should be accepted; response %r" % (offers, r)
        offered = "; ".join(offers)
        for k, v in want.items():
            if v == "any":
                continue
            assert k in params and params[k] == v, "offer %r: want %s=%r in %r" % (offers, k, v, params)
        # RFC 7692 7.1.2.2: no client_max_window_bits in the response unless offered
        if "client_max_window_bits" in params:
            assert "client_max_window_bits" in offered, params
        # RFC 7692 7.1.1.1: server_no_context_takeover offered -> must be in the response
        accepted_offer = offered
        if "server_no_context_takeover" in accepted_offer and len(offers) == 1 and "," not in offers[0]:
            assert "server_no_context_takeover" in params, params
        sw = int(params.get("server_max_window_bits") or 15)
        cw = int(params.get("client_max_window_bits") or 15)
        msg = far_repeats(seed=sw)
        c.send_binary(deflate(msg, wbits=max(cw, 9)), rsv=RSV1)
        op, rsv, payload = recv_msg(c)
        assert op == OP_BINARY and rsv == RSV1, (op, rsv)
        # must inflate within the window the server promised
        assert inflate(payload, wbits=max(sw, 9)) == msg
        c.send_close(1000)
        expect_close(c, 1000)
        return params


@pytest.mark.parametrize("offer, want", OFFERS, ids=[o for o, _ in OFFERS])
def test_negotiation_single_header(srv, offer, want):
    check_offer(srv.port, "/echo", [offer], want)


TWO_HEADERS = [
    (["permessage-deflate; server_max_window_bits=8", "permessage-deflate; server_max_window_bits=11"],
     {"server_max_window_bits": "11"}),
    (["x-foo; bar=1", "permessage-deflate"], {"server_no_context_takeover": None}),
    (["permessage-deflate; server_max_window_bits=12", "permessage-deflate; server_max_window_bits=10"],
     {"server_max_window_bits": "12"}),
    (["permessage-deflate; foo", "permessage-deflate; client_max_window_bits"],
     {"client_max_window_bits": "any"}),
    (["permessage-deflate; foo", "permessage-deflate; server_max_window_bits=7"], None),
    (["permessage-deflate; server_max_window_bits=9, x-foo", "permessage-deflate"],
     {"server_max_window_bits": "9"}),
]


@pytest.mark.parametrize("offers, want", TWO_HEADERS, ids=[" | ".join(o) for o, _ in TWO_HEADERS])
def test_negotiation_across_two_headers(srv, offers, want):
    check_offer(srv.port, "/echo", offers, want)


def test_no_compression_switch_declines_everything(spawn):
    s = spawn(APP, "--no-compression")
    for path in ("/echo", "/w10", "/ctx"):
        check_offer(s.port, path, ["permessage-deflate; client_max_window_bits"], None)
    # and the server sends large messages plain
    with connect(s.port, "/cmd") as c:
        assert c.params is None
        c.send_text("big 5000")
        assert recv_msg(c) == (OP_TEXT, 0, text_of(5000))


def test_route_compression_false_declines(srv):
    check_offer(srv.port, "/plain", ["permessage-deflate"], None)
    check_offer(srv.port, "/plain", ["permessage-deflate; server_max_window_bits=10",
                                     "permessage-deflate"], None)


@pytest.mark.parametrize("offer, want_bits", [
    ("permessage-deflate", "10"),
    ("permessage-deflate; client_max_window_bits", "10"),
    ("permessage-deflate; server_max_window_bits=12", "10"),
    ("permessage-deflate; server_max_window_bits=10", "10"),
    ("permessage-deflate; server_max_window_bits=9", "9"),
])
def test_route_window_bits_in_response_and_honoured(srv, offer, want_bits):
    """/w10 has compression = {window_bits = 10}: the response says so, and the
    server's messages inflate with a 10-bit window (they would not if it used more)."""
    params = check_offer(srv.port, "/w10", [offer], {"server_max_window_bits": want_bits})
    assert params["server_max_window_bits"] == want_bits


def test_server_window_switch_in_response(spawn):
    s = spawn(APP, "--compression-window", "9")
    params = check_offer(s.port, "/echo", ["permessage-deflate"], {"server_max_window_bits": "9"})
    assert params["server_max_window_bits"] == "9"


# --- RSV1 on the wire ----------------------------------------------------------------------------

def test_threshold_default_1k(srv):
    with connect(srv.port, "/cmd") as c:
        assert c.params is not None
        for n, compressed in ((10, False), (1023, False), (1024, True), (1025, True), (100000, True)):
            c.send_text("big %d" % n)
            op, rsv, payload = recv_msg(c)
            assert op == OP_TEXT
            if compressed:
                assert rsv == RSV1, "a %d-byte message should be compressed" % n
                assert len(payload) < n
                assert inflate(payload) == text_of(n)
            else:
                assert rsv == 0 and payload == text_of(n), "a %d-byte message should go plain" % n


def test_threshold_switch_and_route_threshold(spawn):
    s = spawn(APP, "--compression-threshold", "100")
    with connect(s.port, "/echo") as c:
        for n, compressed in ((99, False), (100, True), (0, False)):
            c.send_text(b"a" * n)
            assert recv_plain(c) == (OP_TEXT, compressed, b"a" * n), n
    with connect(s.port, "/small") as c:   # route threshold 16
        for n, compressed in ((15, False), (16, True), (200, True)):
            c.send_binary(b"\x01" * n)
            assert recv_plain(c) == (OP_BINARY, compressed, b"\x01" * n), n


def test_send_with_false_third_argument_goes_uncompressed(srv):
    with connect(srv.port, "/cmd") as c:
        c.send_text("plain 50000")
        assert recv_msg(c) == (OP_TEXT, 0, text_of(50000))
        c.send_text("plainbin 70000")
        assert recv_msg(c) == (OP_BINARY, 0, b"\0" * 70000)
        # the connection still compresses the next message, and the client's
        # inflater state is unaffected by the plain messages in between
        c.send_text("big 50000")
        op, rsv, payload = recv_msg(c)
        assert (op, rsv) == (OP_TEXT, RSV1) and inflate(payload) == text_of(50000)


def test_compressed_message_from_client_and_echo(srv):
    with connect(srv.port, "/echo") as c:
        for data, op in ((text_of(3000), OP_TEXT), (os.urandom(3000), OP_BINARY),
                         ("żółw 🐢 ".encode() * 500, OP_TEXT)):
            c.send_frame(op, deflate(data), rsv=RSV1)
            assert recv_plain(c) == (op, True, data)
        # a tiny compressed message: echoed plain (under the threshold) but inflated correctly
        c.send_text(deflate(b"Hello"), rsv=RSV1)
        assert recv_plain(c) == (OP_TEXT, False, b"Hello")
        # RFC 7692 7.2.3.1: "Hello" compressed, as in the RFC
        c.send_text(bytes.fromhex("f248cdc9c90700"), rsv=RSV1)
        assert recv_plain(c) == (OP_TEXT, False, b"Hello")
        # the empty message: a single 00 byte, and also an empty payload
        c.send_text(b"\x00", rsv=RSV1)
        assert recv_plain(c) == (OP_TEXT, False, b"")
        c.send_binary(b"", rsv=RSV1)
        assert recv_plain(c) == (OP_BINARY, False, b"")


def test_message_ended_with_bfinal_block_is_accepted(srv):
    """A sender may end a message with a final block (Z_FINISH) instead of a sync flush."""
    with connect(srv.port, "/echo") as c:
        for i in range(2):
            co = zlib.compressobj(6, zlib.DEFLATED, -15)
            data = text_of(5000 + i)
            c.send_text(co.compress(data) + co.flush(zlib.Z_FINISH), rsv=RSV1)
            assert recv_plain(c) == (OP_TEXT, True, data)


def test_fragmented_compressed_message(srv):
    """RSV1 on the first frame only; a ping in the middle; several messages in a row."""
    with connect(srv.port, "/echo") as c:
        for data, op in ((text_of(20000), OP_TEXT), (os.urandom(5000), OP_BINARY)):
            z = deflate(data)
            a, b = len(z) // 3, 2 * len(z) // 3
            c.send_frame(op, z[:a], fin=False, rsv=RSV1)
            c.send_frame(OP_CONT, z[a:b], fin=False)
            c.send_frame(OP_PING, b"mid")
            c.send_frame(OP_CONT, z[b:], fin=True)
            assert recv_plain(c) == (op, True, data)
        # single-byte fragments, including an empty first fragment
        z = deflate(b"fragmented hello " * 100)
        c.send_frame(OP_TEXT, b"", fin=False, rsv=RSV1)
        for i, ch in enumerate(z):
            c.send_frame(OP_CONT, bytes([ch]), fin=(i == len(z) - 1))
        assert recv_plain(c) == (OP_TEXT, True, b"fragmented hello " * 100)


def test_rsv1_on_continuation_frame_is_1002(srv):
    with connect(srv.port, "/echo") as c:
        z = deflate(text_of(4000))
        c.send_frame(OP_TEXT, z[:10], fin=False, rsv=RSV1)
        c.send_frame(OP_CONT, z[10:], fin=True, rsv=RSV1)
        expect_close(c, 1002)
    with connect(srv.port, "/echo") as c:    # first frame uncompressed, RSV1 later
        c.send_frame(OP_TEXT, b"abc", fin=False)
        c.send_frame(OP_CONT, deflate(b"def"), fin=True, rsv=RSV1)
        expect_close(c, 1002)


@pytest.mark.parametrize("frame", [
    build_frame(OP_PING, b"p", rsv=RSV1),
    build_frame(OP_TEXT, b"abc", rsv=2),
    build_frame(OP_TEXT, b"abc", rsv=1),
    build_frame(OP_TEXT, deflate(b"abc"), rsv=RSV1 | 2),
], ids=["rsv1-ping", "rsv2", "rsv3", "rsv1+rsv2"])
def test_other_reserved_bits_still_1002(srv, frame):
    with connect(srv.port, "/echo") as c:
        assert c.params is not None
        c.send(frame)
        expect_close(c, 1002)


def test_rsv1_without_negotiation_is_1002(srv):
    with connect(srv.port, "/echo", offer=None) as c:
        assert c.params is None
        c.send_text(deflate(b"hello"), rsv=RSV1)
        expect_close(c, 1002)
    with connect(srv.port, "/plain") as c:   # offered, but the route declined
        assert c.params is None
        c.send_text(deflate(b"hello"), rsv=RSV1)
        expect_close(c, 1002)


@pytest.mark.parametrize("payload", [
    b"\xff\xff\xff\xff",                          # BTYPE 11: reserved block type
    bytes.fromhex("01 0500 0000") + b"hello",    # stored block, LEN/NLEN mismatch
    deflate(b"x" * 100)[:-3] + b"\xfe\xfe\xfe",    # a good start, garbage after
], ids=["btype3", "stored-nlen", "garbage-tail"])
def test_corrupt_deflate_is_1007(srv, payload):
    with connect(srv.port, "/echo") as c:
        c.send_binary(payload, rsv=RSV1)
        expect_close(c, 1007)


def test_compressed_text_inflating_to_invalid_utf8_is_1007(srv):
    with connect(srv.port, "/echo") as c:
        c.send_text(deflate(b"valid start " * 200 + b"\xc3\x28" + b"tail"), rsv=RSV1)
        expect_close(c, 1007)
    with connect(srv.port, "/echo") as c:    # the same bytes as binary are fine
        data = b"valid start " * 200 + b"\xc3\x28" + b"tail"
        c.send_binary(deflate(data), rsv=RSV1)
        assert recv_plain(c) == (OP_BINARY, True, data)
        # a UTF-8 sequence split across fragments of the compressed payload is fine
        data = "żółw🐢".encode() * 300
        z = deflate(data)
        c.send_frame(OP_TEXT, z[:7], fin=False, rsv=RSV1)
        c.send_frame(OP_CONT, z[7:], fin=True)
        assert recv_plain(c) == (OP_TEXT, True, data)


# --- limits and memory -----------------------------------------------------------------------------

@pytest.mark.parametrize("inflated, limit", [(1 << 20, "64k"), (64 << 20, "1m")],
                         ids=["1KB-to-1MiB-limit-64k", "64KB-to-64MiB-limit-1m"])
def test_inflate_bomb_is_1009_and_memory_stays_small(spawn, inflated, limit):
    s = spawn(APP, "--max-message", limit)
    pid = s.proc.pid
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = co.compress(b"\0" * inflated) + co.flush(zlib.Z_SYNC_FLUSH)
    bomb = bomb[:-4]
    assert len(bomb) < inflated // 900
    with connect(s.port, "/echo") as c:     # warm up: a normal compressed exchange
        c.send_binary(deflate(b"w" * 5000), rsv=RSV1)
        assert recv_plain(c) == (OP_BINARY, True, b"w" * 5000)
    hwm0 = proc_status(pid, "VmHWM") * 1024
    with connect(s.port, "/echo", timeout=10) as c:
        c.send_binary(bomb, rsv=RSV1)
        expect_close(c, 1009, timeout=10)
    # fragmented: the first fragment alone is under the limit
    with connect(s.port, "/echo", timeout=10) as c:
        half = len(bomb) // 2
        c.send_frame(OP_BINARY, bomb[:half], fin=False, rsv=RSV1)
        c.send_frame(OP_CONT, bomb[half:], fin=True)
        expect_close(c, 1009, timeout=10)
    grew = proc_status(pid, "VmHWM") * 1024 - hwm0
    assert grew < 12 << 20, "server peak RSS grew by %d KiB for a bomb capped at %s" % (grew >> 10, limit)
    assert s.alive()
    with connect(s.port, "/echo") as c:     # the server is fine
        c.send_text(deflate(b"after " * 300), rsv=RSV1)
        assert recv_plain(c) == (OP_TEXT, True, b"after " * 300)


def test_limit_applies_to_inflated_size_exactly(spawn):
    s = spawn(APP, "--max-message", "100k")
    lim = 100 * 1024
    with connect(s.port, "/echo") as c:
        data = text_of(lim)
        z = deflate(data)
        assert len(z) < lim // 3
        c.send_text(z, rsv=RSV1)
        assert recv_plain(c, timeout=10) == (OP_TEXT, True, data)
        c.send_text(deflate(text_of(lim + 1)), rsv=RSV1)
        expect_close(c, 1009)


def test_limit_counts_inflated_not_compressed_size(spawn):
    """Incompressible data deflates to a few bytes more than itself: a message of
    exactly --max-message bytes must still be accepted when sent compressed."""
    s = spawn(APP, "--max-message", "100k")
    data = random.Random(11).randbytes(100 * 1024)
    z = deflate(data)
    assert len(z) > len(data)
    with connect(s.port, "/echo") as c:
        c.send_binary(z, rsv=RSV1)
        assert recv_plain(c, timeout=10) == (OP_BINARY, True, data), "inflated size is within the limit"


def test_route_max_message_applies_to_inflated_size(spawn, tmp_path):
    script = tmp_path / "deflate_route_limit.lua"
    script.write_text(
        'local r = { max_message = 4096 }\n'
        'function r.on_message(conn, msg, b) conn:send(msg, b) end\n'
        'return { ["/r"] = r }\n')
    s = spawn(script)
    with connect(s.port, "/r") as c:
        c.send_binary(deflate(b"\0" * 4096), rsv=RSV1)
        assert recv_plain(c) == (OP_BINARY, True, b"\0" * 4096)
        c.send_binary(deflate(b"\0" * 4097), rsv=RSV1)
        expect_close(c, 1009)


def test_memory_cap_sends_plain_and_refuses_compressed_input(spawn):
    s = spawn(APP, "--compression-max-memory", "1k")
    with connect(s.port, "/cmd") as c:
        assert c.params is not None
        c.send_text("big 20000")
        assert recv_msg(c) == (OP_TEXT, 0, text_of(20000)), "over the cap, messages go plain"
        c.send_text(deflate(b"compressed " * 200), rsv=RSV1)
        expect_close(c, 1013)
    # publish at the cap: plain too
    with connect(s.port, "/cmd") as c:
        c.send_text("sub capped")
        assert recv_msg(c) == (OP_TEXT, 0, b"subscribed capped")
        r = s.http("/publish?topic=capped&n=9000")
        assert json.loads(r.body) == {"sent": 1}
        assert recv_msg(c) == (OP_TEXT, 0, text_of(9000))


def test_context_mode_declines_the_extension_when_the_cap_is_reached(spawn):
    """With --compression-context each connection keeps ~300 KB of zlib state
    for life: once the cap cannot take one more, the handshake declines the
    extension (plain connection) instead of failing its first message 1013."""
    s = spawn(APP, "--compression-context", "--compression-max-memory", "700k")
    held = []
    try:
        for i in range(6):
            c = connect(s.port, "/cmd")
            held.append(c)
            if c.params is None:
                break
            # a compressed message each way makes this connection hold its state
            c.send_text(deflate(b"hello " * 300), rsv=RSV1)
            c.send_text("big 20000")
            assert recv_msg(c)[0] == OP_TEXT
        negotiated = [c.params is not None for c in held]
        assert negotiated[0] and negotiated[-1] is False, negotiated
        last = held[-1]
        last.send_text("big 20000")
        assert recv_msg(last) == (OP_TEXT, 0, text_of(20000)), "a declined connection works plain"
    finally:
        for c in held:
            c.close()


def test_idle_compressed_connections_hold_no_zlib_memory(spawn):
    """At the defaults (no context takeover) zlib state is freed after each
    message; with --compression-context it is kept (~300 KB a connection).
    The RSS growth per idle connection tells the two apart."""
    n = 120
    msg = far_repeats(seed=5, chunk=12000, times=4)   # 48 KB, touches the windows

    def per_conn(args, path):
        s = spawn(APP, *args)
        if sanitized(s.proc.pid):
            pytest.skip("RSS is meaningless under AddressSanitizer")
        conns = []
        try:
            for _ in range(20):     # warm-up, then measure
                c = connect(s.port, path)
                c.send_binary(deflate(msg), rsv=RSV1)
                assert recv_plain(c)[2] == msg
                conns.append(c)
            rss0 = proc_status(s.proc.pid, "VmRSS") * 1024
            for _ in range(n):
                c = connect(s.port, path)
                conns.append(c)
                c.send_binary(deflate(msg), rsv=RSV1)
                assert recv_plain(c)[2] == msg
            return (proc_status(s.proc.pid, "VmRSS") * 1024 - rss0) / n
        finally:
            for c in conns:
                c.close()

    default = per_conn((), "/echo")
    context = per_conn(("--compression-context",), "/echo")
    assert default < 24 * 1024, "%.0f bytes of RSS per idle compressed connection at the defaults" % default
    assert context > 64 * 1024, ("--compression-context should keep zlib state (~300 KB), "
                                 "measured %.0f bytes per connection" % context)


def test_no_context_mode_costs_about_as_much_cpu_as_context_mode(spawn):
    """Releasing zlib state after each message must not make every message pay
    for fresh memory: server CPU per compressed 4 KB echo at the defaults is
    compared with --compression-context (same work minus the allocations)."""
    msg = text_of(4096)
    z = deflate(msg)
    n = 400

    def us_per_msg(args):
        s = spawn(APP, *args)
        if sanitized(s.proc.pid):
            pytest.skip("CPU figures are meaningless under AddressSanitizer")
        with connect(s.port, "/echo") as c:
            c.send_text(z, rsv=RSV1)
            recv_msg(c)
            cpu0 = cpu_seconds(s.proc.pid)
            for _ in range(n):     # the client always compresses without context
                c.send_text(z, rsv=RSV1)
                op, rsv, payload = recv_msg(c)
                assert rsv == RSV1
            return (cpu_seconds(s.proc.pid) - cpu0) / n * 1e6

    default = us_per_msg(())
    context = us_per_msg(("--compression-context",))
    assert default < 4 * context + 100, (
        "server CPU per compressed 4 KB echo: %.0f us at the defaults vs %.0f us with "
        "--compression-context" % (default, context))


# --- context takeover ------------------------------------------------------------------------------

def test_context_takeover_mode_keeps_context_both_ways(spawn):
    s = spawn(APP, "--compression-context")
    block = os.urandom(4000)
    with connect(s.port, "/echo") as c:
        assert c.params == {}, "with --compression-context the plain offer is accepted as is: %r" % c.params
        co, do = zlib.compressobj(6, zlib.DEFLATED, -15), zlib.decompressobj(-15)
        sizes = []
        for i in range(3):
            # the client keeps its context: the 2nd and 3rd messages refer to the 1st
            z = deflate(block, co=co)
            if i:
                assert len(z) < 200
            c.send_binary(z, rsv=RSV1)
            op, rsv, payload = recv_msg(c)
            assert rsv == RSV1
            sizes.append(len(payload))
            assert inflate(payload, do=do) == block
        assert sizes[1] < 200 and sizes[2] < 200, "server did not keep its context: %r" % sizes


def test_context_mode_honours_client_request_for_no_server_context(spawn):
    s = spawn(APP, "--compression-context")
    block = os.urandom(4000)
    with connect(s.port, "/echo", offer="permessage-deflate; server_no_context_takeover") as c:
        assert "server_no_context_takeover" in c.params, c.params
        for _ in range(3):
            c.send_binary(deflate(block), rsv=RSV1)
            op, rsv, payload = recv_msg(c)
            # each message must inflate on its own
            assert rsv == RSV1 and inflate(payload) == block


def test_route_context_takeover(srv):
    block = os.urandom(4000)
    with connect(srv.port, "/ctx") as c:
        assert "server_no_context_takeover" not in c.params, c.params
        do = zlib.decompressobj(-15)
        first = None
        for i in range(2):
            c.send_binary(block)
            op, rsv, payload = recv_msg(c)
            assert rsv == RSV1 and inflate(payload, do=do) == block
            first = first or len(payload)
        assert len(payload) < first // 4


@pytest.mark.parametrize("args", [(), ("--compression-context",)], ids=["default", "context"])
def test_drop_oldest_backpressure_keeps_the_stream_decodable(spawn, args):
    """--backpressure drop-oldest drops queued frames. Without context takeover
    every compressed message stands alone; with it, a later message refers to
    earlier ones, so dropping a compressed frame that was already compressed
    must not leave the client with a stream it cannot inflate (or inflates wrong)."""
    s = spawn(APP, *args, "--backpressure", "drop-oldest", "--max-buffered", "8k")
    n = 40
    sent = [b"#" * (k % 53) + text_of(6000 + k * 13) + str(k).encode() for k in range(1, n + 1)]
    with connect(s.port, "/cmd") as c:
        do = zlib.decompressobj(-15)
        c.send_text("burst %d" % n)
        got = []
        for _ in range(n + 1):
            op, rsv, payload = recv_msg(c)
            try:
                data = inflate(payload, do=do) if rsv else payload
            except zlib.error as e:
                pytest.fail("message %d after %d good ones does not inflate (%s): a frame it "
                            "refers to was dropped" % (len(got) + 1, len(got), e))
            if data == b"burst done":
                break
            assert data in sent, "message %d inflated to something never sent: %r" % (len(got) + 1, data[:80])
            got.append(sent.index(data))
        assert got == sorted(got) and len(got) < n, got   # some were dropped, order kept


# --- publish --------------------------------------------------------------------------------------

def test_publish_shared_frame_identical_for_subscribers(srv):
    """Compressed subscribers with the same window get byte-identical frames;
    a smaller window gets a frame it can inflate; others get plain text."""
    groups = {"w15": ("/cmd", "permessage-deflate"),
              "w10": ("/cmd", "permessage-deflate; server_max_window_bits=10"),
              "plain": ("/cmd", None)}
    conns = []
    try:
        for name, (path, offer) in groups.items():
            for _ in range(3):
                c = connect(srv.port, path, offer=offer)
                c.group = name
                c.send_text("sub news")
                assert recv_msg(c) == (OP_TEXT, 0, b"subscribed news")
                conns.append(c)
        data = text_of(20000) + far_repeats(seed=3, chunk=1500, times=2).hex().encode()
        r = srv.http("/publish?topic=news&n=%d" % len(data))
        data = text_of(len(data))
        assert json.loads(r.body) == {"sent": len(conns)}, r
        got = {}
        for c in conns:
            op, rsv, payload = recv_msg(c)
            got.setdefault(c.group, set()).add((op, rsv, payload))
        for name in groups:
            assert len(got[name]) == 1, "%s subscribers got different frames" % name
        (op, rsv, p15), = got["w15"]
        (op10, rsv10, p10), = got["w10"]
        (opp, rspp, pp), = got["plain"]
        assert (op, rsv) == (OP_TEXT, RSV1) and inflate(p15) == data
        assert (op10, rsv10) == (OP_TEXT, RSV1) and inflate(p10, wbits=10) == data
        assert (opp, rspp, pp) == (OP_TEXT, 0, data)
        # under the threshold: plain for everyone
        r = srv.http("/publish?topic=news&n=500")
        for c in conns:
            assert recv_msg(c) == (OP_TEXT, 0, text_of(500))
        # binary publish
        r = srv.http("/publish?topic=news&n=3000&bin=1")
        for c in conns:
            assert recv_plain(c, wbits=10 if c.group == "w10" else 15) == (
                OP_BINARY, c.group != "plain", text_of(3000))
    finally:
        for c in conns:
            c.close()


def test_publish_compresses_with_each_routes_own_level(srv):
    """A route's compression level applies to what it receives from a publish:
    /cmd (level 6, the default) and /cmd1 (level 1) subscribers on one topic
    each get the frame zlib makes at their own level (not the first
    subscriber's)."""
    conns = []
    try:
        for path in ("/cmd", "/cmd1", "/cmd", "/cmd1"):
            c = connect(srv.port, path)
            c.path = path
            c.send_text("sub levels")
            assert recv_msg(c) == (OP_TEXT, 0, b"subscribed levels")
            conns.append(c)
        n = 20000
        r = srv.http("/publish?topic=levels&n=%d" % n)
        assert json.loads(r.body) == {"sent": len(conns)}, r
        data = text_of(n)
        for c in conns:
            op, rsv, payload = recv_msg(c)
            assert (op, rsv) == (OP_TEXT, RSV1) and inflate(payload) == data
            level = 1 if c.path == "/cmd1" else 6
            z = zlib.compressobj(level, zlib.DEFLATED, -15, 8)
            want = z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH)
            assert want.endswith(b"\x00\x00\xff\xff")
            assert payload == want[:-4], "%s got a frame not made at level %d" % (c.path, level)
    finally:
        for c in conns:
            c.close()


def test_publish_to_context_keeping_connection_then_direct_send(spawn):
    """With context takeover the client keeps one inflater for all messages:
    a shared publish frame in between must not break the next direct message."""
    s = spawn(APP, "--compression-context")
    with connect(s.port, "/cmd") as c:
        assert "server_no_context_takeover" not in c.params
        do = zlib.decompressobj(-15)
        c.send_text("sub ctx")
        assert recv_msg(c) == (OP_TEXT, 0, b"subscribed ctx")
        for i in range(3):
            c.send_text("big 6000")
            assert recv_plain(c, do=do) == (OP_TEXT, True, text_of(6000))
            r = s.http("/publish?topic=ctx&n=7000")
            assert json.loads(r.body) == {"sent": 1}
            assert recv_plain(c, do=do) == (OP_TEXT, True, text_of(7000))
        c.send_text("big 6000")
        assert recv_plain(c, do=do) == (OP_TEXT, True, text_of(6000))


# --- interop: python websockets -----------------------------------------------------------------

SIZES = [0, 1, 100, 1023, 1024, 1025, 4096, 65536, 1 << 20]


def _messages():
    rnd = random.Random(7)
    for n in SIZES:
        yield text_of(n).decode()
        yield rnd.randbytes(n)
    yield "żółw 🐢 " * 3000
    yield b"\0" * (1 << 20)


def py_round_trip(url, **kw):
    async def go():
        async with websockets.connect(url, max_size=16 << 20, open_timeout=scaled(10),
                                      close_timeout=scaled(5), ping_interval=None, **kw) as ws:
            ext = ws.response_headers.get("Sec-WebSocket-Extensions")
            n = 0
            for m in _messages():
                await ws.send(m)
                got = await asyncio.wait_for(ws.recv(), scaled(10))
                assert type(got) is type(m) and got == m, "echo of a %d-long %s differs" % (
                    len(m), type(m).__name__)
                n += 1
            return ext, n
    return asyncio.run(asyncio.wait_for(go(), scaled(40)))


def test_python_websockets_default_deflate(srv):
    ext, n = py_round_trip(srv.url + "/echo", compression="deflate")
    assert ext and ext.startswith("permessage-deflate"), ext
    assert n == 2 * len(SIZES) + 2


def test_python_websockets_small_windows(srv):
    f = ClientPerMessageDeflateFactory(server_max_window_bits=10, client_max_window_bits=10)
    ext, _ = py_round_trip(srv.url + "/echo", extensions=[f], compression=None)
    params = ext_params(ext)
    assert params.get("server_max_window_bits") == "10", ext
    f = ClientPerMessageDeflateFactory(server_max_window_bits=9, client_max_window_bits=9,
                                       compress_settings={"memLevel": 1})
    ext, _ = py_round_trip(srv.url + "/echo", extensions=[f], compression=None)
    assert ext_params(ext).get("server_max_window_bits") == "9", ext


def test_python_websockets_with_context_takeover(spawn):
    s = spawn(APP, "--compression-context")
    ext, _ = py_round_trip(s.url + "/echo", compression="deflate")
    assert "no_context_takeover" not in ext, ext


# --- interop: node ws ------------------------------------------------------------------------------

def node_echo(url, options):
    node = shutil.which("node")
    assert node, "node is not installed"
    env = dict(os.environ, NODE_PATH=NODE_PATH)
    p = subprocess.run([node, str(HERE / "node" / "deflate_echo.js"), url, json.dumps(options)],
                       env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=scaled(40))
    out = p.stdout.decode().strip().splitlines()
    assert out, "node printed nothing; stderr: %s" % p.stderr.decode()[-3000:]
    res = json.loads(out[-1])
    assert p.returncode == 0 and res["ok"], res
    assert res["sent"] == len(res["steps"]) > 20, res
    assert res["names"] == "permessage-deflate", res
    return res


def test_node_ws_default_per_message_deflate(srv):
    res = node_echo(srv.url + "/echo", True)
    assert res["extensions"].startswith("permessage-deflate"), res


def test_node_ws_with_context_takeover(spawn):
    s = spawn(APP, "--compression-context")
    res = node_echo(s.url + "/echo", {"serverNoContextTakeover": False,
                                      "clientNoContextTakeover": False, "threshold": 0})
    assert res["extensions"].startswith("permessage-deflate"), res
    assert "no_context_takeover" not in res["extensions"], res


def test_node_ws_small_windows(srv):
    res = node_echo(srv.url + "/echo", {"serverMaxWindowBits": 10, "clientMaxWindowBits": 10,
                                        "threshold": 0})
    assert "server_max_window_bits=10" in res["extensions"], res


# --- Chromium --------------------------------------------------------------------------------------

PAGE_JS = """
new Promise((resolve) => {
  const out = {};
  const ws = new WebSocket('ws://127.0.0.1:%d/echo');
  ws.binaryType = 'arraybuffer';
  let text = '';
  for (let i = 0; text.length < 4096; i++) text += 'chromium ' + i + ' ';
  text = text.slice(0, 4096);
  const bin = new Uint8Array(4096);
  for (let i = 0; i < bin.length; i++) bin[i] = (i * 31 + (i >> 7)) & 255;
  const t = setTimeout(() => { out.error = 'timeout'; resolve(out); }, 10000);
  ws.onopen = () => { out.extensions = ws.extensions; ws.send(text); };
  ws.onerror = () => { out.error = 'error event'; };
  ws.onmessage = (e) => {
    if (typeof e.data === 'string') {
      out.text_same = e.data === text;
      out.text_len = e.data.length;
      ws.send(bin);
    } else {
      const got = new Uint8Array(e.data);
      out.bin_len = got.length;
      out.bin_same = got.length === bin.length && got.every((v, i) => v === bin[i]);
      ws.close(1000);
    }
  };
  ws.onclose = (e) => { clearTimeout(t); out.close = e.code; resolve(out); };
})
"""


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="%s is absent (Debian package 'chromium')" % CHROMIUM)
def test_chromium_negotiates_deflate_and_round_trips(srv):
    from browser.cdp import Chromium

    async def go():
        loop = asyncio.get_running_loop()
        browser = await loop.run_in_executor(None, Chromium.launch, scaled(30))
        async with browser:
            page = await browser.new_page()
            await page.navigate("http://127.0.0.1:%d/page" % srv.port)
            await page.wait_for("document.readyState === 'complete'", scaled(15))
            return await page.eval(PAGE_JS % srv.port)
    out = asyncio.run(asyncio.wait_for(go(), scaled(60)))
    assert "error" not in out, out
    assert out["extensions"].startswith("permessage-deflate"), out
    assert out["text_same"] and out["text_len"] == 4096, out
    assert out["bin_same"] and out["bin_len"] == 4096, out
    assert out["close"] == 1000, out
