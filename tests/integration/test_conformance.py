"""Protocol conformance, organised like the Autobahn WebSocket testsuite.

Written from RFC 6455 (and RFC 7692 for 12.x/13.x) and run against the real
binary with scripts/conformance_echo.lua, a plain echo: every message comes
back with the same type and the same bytes. Case ids follow the Autobahn
categories (1 framing, 2 ping/pong, 3 reserved bits, 4 opcodes, 5
fragmentation, 6 UTF-8, 7 close, 9 limits, 12/13 compression); within a
category the numbers follow Autobahn where such a case exists there, and the
extra cases are numbered after them (1.3.x, 5.21+, 6.5+, 7.1.7, 9.9.x for
--max-message, ...). ".f" cases are the same payload sent in 1-byte fragments.
The 12.x/13.x cases run only when the server negotiates permessage-deflate and
are skipped otherwise.

Every case is strict:
  - echoes are byte-exact and of the same type; server frames are unmasked with
    RSV bits clear;
  - a failed connection gets exactly the RFC close code (1002 protocol, 1007
    invalid data, 1009 too big) and no data after the offending frame, and the
    server closes TCP itself promptly (the server runs with --close-timeout 10, so
    waiting for our close reply would be noticed);
  - a clean close (we send 1000) is answered with the same code, nothing else
    follows the close frame, and TCP is closed.

The whole suite runs twice: over ws:// and over wss:// (the `transport`
fixture; the server then has --tls-cert/--tls-key from the test PKI and every
raw client wraps its socket in TLS, through rawws.TLSPort). `-k ws-` or
`-k wss-` picks one. For each, one server serves the whole module (started with
--ping-interval 0 so no unsolicited ping can interleave); its liveness is checked after every case and
its stderr for sanitizer reports at the end (WSPUSH_SANITIZE_LOG=1). A summary
line "conformance: N cases ran ..." is printed at the end of the session.

Longer than our ~600-line guide on purpose: one case per Autobahn id, in
the suite's order, so a failing id is found by its number.
"""
import struct
import time
import zlib

import pytest

import conftest
import rawws
from conftest import SCRIPTS, Server, scaled
from rawws import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, build_frame

ECHO = SCRIPTS / "conformance_echo.lua"
PROMPT = 3.0          # seconds within which TCP must close after the close frame
TIMEOUT = 10.0        # bound on any single wait for the server
LIMIT = 65536         # --max-message of the second server (9.9.x)


# --- servers ------------------------------------------------------------------

def _start(transport, *args):
    if transport.pki is None:
        return Server(ECHO, ("--ping-interval", "0", "--close-timeout", "10", *args),
                      valgrind=conftest.VALGRIND)
    pki = transport.pki
    s = Server(ECHO, ("--ping-interval", "0", "--close-timeout", "10", "--tls-cert", pki.fullchain,
                      "--tls-key", pki.server_key, *args), valgrind=conftest.VALGRIND)
    return s.use_tls(pki.client_context())


def _stop(server):
    problems = server.stop()
    if problems:
        pytest.fail("conformance server (%s):\n  %s\n--- stderr tail ---\n%s"
                    % (" ".join(server.cmd), "\n  ".join(problems), server.log[-6000:]),
                    pytrace=False)


class _Transport:
    def __init__(self, name, pki):
        self.name, self.pki = name, pki


@pytest.fixture(scope="module", params=["ws", "wss"])
def transport(request):
    """ws: plain TCP; wss: the same cases over TLS (a server with the test certificate)."""
    pki = request.getfixturevalue("pki") if request.param == "wss" else None
    return _Transport(request.param, pki)


@pytest.fixture(scope="module")
def server(transport):
    s = _start(transport)
    yield s
    _stop(s)


@pytest.fixture(scope="module")
def limited_server(transport):
    s = _start(transport, "--max-message", str(LIMIT))
    yield s
    _stop(s)


# --- summary line ---------------------------------------------------------------

class _Summary:
    """Counts this module's cases and prints one line at the end of the run."""

    def __init__(self):
        self.counts = {"passed": 0, "failed": 0, "skipped": 0}

    def pytest_runtest_logreport(self, report):
        if "test_conformance.py::test_case[" not in report.nodeid and \
                "test_conformance.py::test_compression[" not in report.nodeid:
            return
        if report.when == "call" or (report.when == "setup" and not report.passed):
            if report.passed:
                self.counts["passed"] += 1
            elif report.skipped:
                self.counts["skipped"] += 1
            else:
                self.counts["failed"] += 1

    def pytest_terminal_summary(self, terminalreporter):
        c = self.counts
        ran = c["passed"] + c["failed"]
        terminalreporter.write_line(
            "conformance: %d cases ran (%d passed, %d failed), %d skipped"
            % (ran, c["passed"], c["failed"], c["skipped"]))


_SUMMARY = _Summary()


@pytest.fixture(scope="session", autouse=True)
def _conformance_summary(request):
    pm = request.config.pluginmanager
    if not pm.is_registered(_SUMMARY):
        pm.register(_SUMMARY, "conformance-summary")
    yield


# --- a strict client session ------------------------------------------------------

class Session:
    def __init__(self, port):
        self.c = rawws.upgrade(port, "/ws", timeout=scaled(TIMEOUT))

    # sending
    def send(self, data, chop=None):
        """Send bytes at once, or in pieces of `chop` bytes (each its own send)."""
        if not chop:
            self.c.send(data)
            return
        for i in range(0, len(data), chop):
            self.c.send(data[i:i + chop])

    def frames(self, *frames, chop=None, each=False):
        """Send frames in one write, in chops of `chop` bytes, or each in its own write."""
        if each:
            for f in frames:
                self.c.send(f)
        else:
            self.send(b"".join(frames), chop)

    # receiving
    def frame(self):
        try:
            f = self.c.recv_frame(timeout=scaled(TIMEOUT))
        except EOFError as e:
            pytest.fail("server closed TCP unexpectedly: %s" % e)
        assert not f.masked, "server frame is masked: %r" % f
        assert f.rsv == 0, "server frame has RSV bits: %r" % f
        return f

    def expect_message(self, op, payload):
        """The next frames form exactly this data message (no control frames in between)."""
        f = self.frame()
        assert f.opcode == op, "expected %s, got %r" % (_opname(op), f)
        parts = [f.payload]
        for _ in range(1 << 20):
            if f.fin:
                break
            f = self.frame()
            assert f.opcode == OP_CONT, "expected a continuation, got %r" % f
            parts.append(f.payload)
        got = b"".join(parts)
        if got != payload:
            at = next((i for i, (a, b) in enumerate(zip(got, payload)) if a != b),
                      min(len(got), len(payload)))
            pytest.fail("echo differs: sent %d bytes, got %d; first difference at %d"
                        % (len(payload), len(got), at))

    def expect_pong(self, payload):
        f = self.frame()
        assert f.opcode == OP_PONG, "expected a pong, got %r" % f
        assert f.payload == payload, "pong payload %r != ping payload %r" % (f.payload, payload)

    def expect_close(self, code, failed=True):
        """The next frame is a close with `code` (None: empty payload); then TCP closes
        and nothing at all follows the close frame."""
        f = self.frame()
        assert f.opcode == OP_CLOSE, "expected close %r, got %r" % (code, f)
        if code is None:
            assert f.payload == b"", "expected an empty close, got %r" % f
        else:
            assert f.close_code == code, "expected close %d, got %r (reason %r)" % (
                code, f.close_code, f.close_reason)
            assert _utf8_ok(f.close_reason), "close reason is not UTF-8: %r" % f.close_reason
        self.expect_eof(PROMPT if failed else TIMEOUT)

    def expect_eof(self, timeout):
        assert not self.c.buf, "bytes after the close frame: %r" % bytes(self.c.buf[:80])
        deadline = time.monotonic() + scaled(timeout)
        try:
            while self.c._fill(deadline):
                pytest.fail("bytes after the close frame: %r" % bytes(self.c.buf[:80]))
        except TimeoutError:
            pytest.fail("server did not close TCP within %ss after its close frame" % timeout)

    def close(self, code=1000, reason=b""):
        """Clean close: we send `code`, the server answers with the same code."""
        self.frames(_f(OP_CLOSE, rawws.close_payload(code, reason)))
        self.expect_close(code, failed=False)

    def shutdown(self):
        self.c.close()


def _f(op, payload=b"", fin=True, rsv=0, **kw):
    return build_frame(op, payload, fin=fin, rsv=rsv, **kw)


def _opname(op):
    return {0: "continuation", 1: "text", 2: "binary", 8: "close", 9: "ping", 10: "pong"}.get(
        op, "opcode %d" % op)


def _utf8_ok(b):
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _text(n):
    """n bytes of ASCII text (a repeating, position-dependent pattern)."""
    pat = b"Hello, wspush! 0123456789 abcdefghijklmnopqrstuvwxyz *"
    return (pat * (n // len(pat) + 1))[:n]


def _binary(n):
    return bytes((i * 7 + (i >> 8)) & 0xFF for i in range(min(n, 65536))) * (n // 65536) + \
        bytes((i * 7 + (i >> 8)) & 0xFF for i in range(n % 65536))


# --- the case registry ---------------------------------------------------------------

CASES = []


def case(cid, desc, srv="server"):
    def deco(fn):
        CASES.append(pytest.param(cid, desc, srv, fn, id=cid))
        return fn
    return deco


def add(cid, desc, fn, srv="server"):
    CASES.append(pytest.param(cid, desc, srv, fn, id=cid))


# === 1 Framing ==========================================================================

_LENGTHS = [(1, 0), (2, 125), (3, 126), (4, 127), (5, 128), (6, 65535), (7, 65536)]


def _echo_case(op, payload, chop=None):
    def run(s):
        s.frames(_f(op, payload), chop=chop)
        s.expect_message(op, payload)
        s.close()
    return run


for _i, _n in _LENGTHS:
    add("1.1.%d" % _i, "text message, %d bytes" % _n, _echo_case(OP_TEXT, _text(_n)))
    add("1.2.%d" % _i, "binary message, %d bytes" % _n, _echo_case(OP_BINARY, _binary(_n)))
add("1.1.8", "text message, 65536 bytes, sent in chops of 997 bytes",
    _echo_case(OP_TEXT, _text(65536), chop=997))
add("1.2.8", "binary message, 65536 bytes, sent in chops of 997 bytes",
    _echo_case(OP_BINARY, _binary(65536), chop=997))


@case("1.3.1", "non-minimal length encodings (16-bit for 5 bytes, 64-bit for 200) are accepted")
def _(s):
    key = b"\x01\x02\x03\x04"
    p1 = b"short"
    s.send(bytes([0x81, 0x80 | 126]) + struct.pack("!H", len(p1)) + key + rawws.mask_bytes(p1, key))
    s.expect_message(OP_TEXT, p1)
    p2 = _binary(200)
    s.send(bytes([0x82, 0x80 | 127]) + struct.pack("!Q", len(p2)) + key + rawws.mask_bytes(p2, key))
    s.expect_message(OP_BINARY, p2)
    s.close()


@case("1.3.2", "unmasked client frame -> 1002")
def _(s):
    s.frames(_f(OP_TEXT, b"hello", mask=False))
    s.expect_close(1002)


@case("1.3.3", "64-bit length with the most significant bit set -> 1002")
def _(s):
    s.send(bytes([0x82, 0x80 | 127]) + b"\x80" + b"\x00" * 7 + b"\x00\x00\x00\x00")
    s.expect_close(1002)


@case("1.3.4", "header split byte by byte, all-zero mask key")
def _(s):
    s.frames(_f(OP_TEXT, _text(300), key=b"\x00\x00\x00\x00"), chop=1)
    s.expect_message(OP_TEXT, _text(300))
    s.close()


# === 2 Pings / Pongs =====================================================================

def _ping_case(payload, chop=None):
    def run(s):
        s.frames(_f(OP_PING, payload), chop=chop)
        s.expect_pong(payload)
        s.close()
    return run


add("2.1", "ping, empty payload -> pong, empty", _ping_case(b""))
add("2.2", "ping, small text payload -> pong echoes it", _ping_case(b"Hello, world!"))
add("2.3", "ping, small binary payload -> pong echoes it", _ping_case(b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff"))
add("2.4", "ping, 125-byte binary payload -> pong echoes it", _ping_case(bytes([0xFE]) * 125))


@case("2.5", "ping, 126-byte payload -> 1002")
def _(s):
    s.frames(_f(OP_PING, bytes([0xFE]) * 126))
    s.expect_close(1002)


add("2.6", "ping, 125-byte payload sent in 1-byte chops -> pong",
    _ping_case(bytes(range(125)), chop=1))


@case("2.7", "unsolicited pong, empty payload: ignored")
def _(s):
    s.frames(_f(OP_PONG))
    s.close()


@case("2.8", "unsolicited pong with payload: ignored")
def _(s):
    s.frames(_f(OP_PONG, b"unsolicited pong payload"))
    s.close()


@case("2.9", "unsolicited pong, then ping -> only the ping's pong")
def _(s):
    s.frames(_f(OP_PONG, b"unsolicited pong payload"), _f(OP_PING, b"ping payload"))
    s.expect_pong(b"ping payload")
    s.close()


@case("2.10", "10 pings in a row -> 10 pongs, in order")
def _(s):
    s.frames(*[_f(OP_PING, b"payload-%d" % i) for i in range(10)])
    for i in range(10):
        s.expect_pong(b"payload-%d" % i)
    s.close()


@case("2.11", "10 pings in a row, sent in 1-byte chops -> 10 pongs, in order")
def _(s):
    s.frames(*[_f(OP_PING, b"payload-%d" % i) for i in range(10)], chop=1)
    for i in range(10):
        s.expect_pong(b"payload-%d" % i)
    s.close()


# === 3 Reserved bits ======================================================================

@case("3.1", "text with RSV1 (no extension negotiated) -> 1002")
def _(s):
    s.frames(_f(OP_TEXT, b"Hello", rsv=4))
    s.expect_close(1002)


def _rsv_after_echo(rsv, op, chop=None, each=False):
    """Valid text, then the bad frame, then a ping, in one write (or chopped):
    the text is echoed, then 1002 and no pong."""
    def run(s):
        bad = _f(op, b"Hello" if op != OP_CLOSE else rawws.close_payload(1000), rsv=rsv)
        s.frames(_f(OP_TEXT, b"Hello"), bad, _f(OP_PING, b"ping"), chop=chop, each=each)
        s.expect_message(OP_TEXT, b"Hello")
        s.expect_close(1002)
    return run


add("3.2", "text, then text with RSV2, then ping -> echo, 1002, no pong", _rsv_after_echo(2, OP_TEXT))
add("3.3", "text, text with RSV3 = 3, ping, written frame-wise -> echo, 1002",
    _rsv_after_echo(3, OP_TEXT, each=True))
add("3.4", "text, text with RSV1|RSV2|RSV3, ping, in 1-byte chops -> echo, 1002",
    _rsv_after_echo(7, OP_TEXT, chop=1))
add("3.5", "text, binary with RSV1|RSV3 -> echo, 1002", _rsv_after_echo(5, OP_BINARY))
add("3.6", "text, ping with RSV2|RSV3 -> echo, 1002", _rsv_after_echo(3, OP_PING))
add("3.7", "text, close with RSV1|RSV2|RSV3 -> echo, 1002", _rsv_after_echo(7, OP_CLOSE))


# === 4 Opcodes ==============================================================================

def _reserved_op(op, payload, lead_text, chop=None):
    def run(s):
        frames = [_f(op, payload), _f(OP_PING, b"ping")]
        if lead_text:
            frames.insert(0, _f(OP_TEXT, b"Hello"))
        s.frames(*frames, chop=chop)
        if lead_text:
            s.expect_message(OP_TEXT, b"Hello")
        s.expect_close(1002)
    return run


for _base, _ops in (("4.1", (3, 4, 5, 6, 7)), ("4.2", (11, 12, 13, 14, 15))):
    _kind = "non-control" if _base == "4.1" else "control"
    add(_base + ".1", "reserved %s opcode %d -> 1002" % (_kind, _ops[0]),
        _reserved_op(_ops[0], b"", False))
    add(_base + ".2", "reserved %s opcode %d with payload -> 1002" % (_kind, _ops[1]),
        _reserved_op(_ops[1], b"reserved opcode payload", False))
    add(_base + ".3", "text, reserved %s opcode %d, ping -> echo, 1002, no pong" % (_kind, _ops[2]),
        _reserved_op(_ops[2], b"", True))
    add(_base + ".4", "text, reserved %s opcode %d with payload, ping -> echo, 1002" % (_kind, _ops[3]),
        _reserved_op(_ops[3], b"reserved opcode payload", True))
    add(_base + ".5", "text, reserved %s opcode %d, ping, in 1-byte chops -> echo, 1002"
        % (_kind, _ops[4]), _reserved_op(_ops[4], b"reserved opcode payload", True, chop=1))


# === 5 Fragmentation ===========================================================================

@case("5.1", "ping fragmented into 2 frames -> 1002")
def _(s):
    s.frames(_f(OP_PING, b"frag", fin=False), _f(OP_CONT, b"ment"))
    s.expect_close(1002)


@case("5.2", "pong fragmented into 2 frames -> 1002")
def _(s):
    s.frames(_f(OP_PONG, b"frag", fin=False), _f(OP_CONT, b"ment"))
    s.expect_close(1002)


def _frag_text(chop=None, pings=False, parts=(b"fragment1", b"fragment2"), each=False):
    def run(s):
        frames = []
        for i, p in enumerate(parts):
            last = i == len(parts) - 1
            frames.append(_f(OP_TEXT if i == 0 else OP_CONT, p, fin=last))
            if pings and not last:
                frames.append(_f(OP_PING, b"ping-%d" % i))
        s.frames(*frames, chop=chop, each=each)
        if pings:
            for i in range(len(parts) - 1):
                s.expect_pong(b"ping-%d" % i)
        s.expect_message(OP_TEXT, b"".join(parts))
        s.close()
    return run


add("5.3", "text in 2 fragments -> echo", _frag_text())
add("5.4", "text in 2 fragments, each frame its own write", _frag_text(each=True))
add("5.5", "text in 2 fragments, in 1-byte chops", _frag_text(chop=1))
add("5.6", "text in 2 fragments with a ping between -> pong, then echo", _frag_text(pings=True))
add("5.7", "text in 2 fragments with a ping between, in 7-byte chops", _frag_text(chop=7, pings=True))
add("5.8", "text in 2 fragments with a ping between, in 1-byte chops", _frag_text(chop=1, pings=True))


def _cont_without_start(fin, chop=None):
    def run(s):
        s.frames(_f(OP_CONT, b"non-continuation payload", fin=fin), _f(OP_TEXT, b"Hello, world!"),
                 chop=chop)
        s.expect_close(1002)
    return run


add("5.9", "continuation (FIN) with nothing to continue, then text -> 1002", _cont_without_start(True))
add("5.10", "same, in 5-byte chops -> 1002", _cont_without_start(True, chop=5))
add("5.11", "same, in 1-byte chops -> 1002", _cont_without_start(True, chop=1))
add("5.12", "continuation (no FIN) with nothing to continue, then text -> 1002",
    _cont_without_start(False))
add("5.13", "same, in 5-byte chops -> 1002", _cont_without_start(False, chop=5))
add("5.14", "same, in 1-byte chops -> 1002", _cont_without_start(False, chop=1))


@case("5.15", "text in 2 fragments, then continuation (no FIN) with nothing to continue -> echo, 1002")
def _(s):
    s.frames(_f(OP_TEXT, b"fragment1", fin=False), _f(OP_CONT, b"fragment2"),
             _f(OP_CONT, b"fragment3", fin=False), _f(OP_TEXT, b"fragment4"))
    s.expect_message(OP_TEXT, b"fragment1fragment2")
    s.expect_close(1002)


@case("5.16", "continuation (no FIN) with nothing to continue, then fragmented text -> 1002")
def _(s):
    s.frames(*[_f(OP_CONT, b"fragment1", fin=False), _f(OP_TEXT, b"fragment2", fin=False),
               _f(OP_CONT, b"fragment3")] * 2)
    s.expect_close(1002)


@case("5.17", "continuation (FIN) with nothing to continue, then fragmented text -> 1002")
def _(s):
    s.frames(*[_f(OP_CONT, b"fragment1"), _f(OP_TEXT, b"fragment2", fin=False),
               _f(OP_CONT, b"fragment3")] * 2)
    s.expect_close(1002)


@case("5.18", "text fragment, then a new text frame instead of a continuation -> 1002")
def _(s):
    s.frames(_f(OP_TEXT, b"fragment1", fin=False), _f(OP_TEXT, b"fragment2"))
    s.expect_close(1002)


add("5.19", "text in 5 fragments with pings between -> 4 pongs, then echo",
    _frag_text(pings=True, parts=(b"fragment1", b"fragment2", b"fragment3", b"fragment4", b"fragment5")))
add("5.20", "text in 5 fragments with pings between, in 1-byte chops",
    _frag_text(chop=1, pings=True,
               parts=(b"fragment1", b"fragment2", b"fragment3", b"fragment4", b"fragment5")))


@case("5.21", "binary in 3 fragments with an empty middle fragment -> echo")
def _(s):
    s.frames(_f(OP_BINARY, b"\x00\x01", fin=False), _f(OP_CONT, b"", fin=False),
             _f(OP_CONT, b"\xfe\xff"))
    s.expect_message(OP_BINARY, b"\x00\x01\xfe\xff")
    s.close()


@case("5.22", "close between fragments -> close handshake, no echo")
def _(s):
    s.frames(_f(OP_TEXT, b"fragment1", fin=False), _f(OP_CLOSE, rawws.close_payload(1000)),
             _f(OP_CONT, b"fragment2"))
    s.expect_close(1000, failed=False)


# === 6 UTF-8 handling ============================================================================

@case("6.1.1", "empty text message")
def _(s):
    s.frames(_f(OP_TEXT, b""))
    s.expect_message(OP_TEXT, b"")
    s.close()


@case("6.1.2", "text in 3 empty fragments")
def _(s):
    s.frames(_f(OP_TEXT, b"", fin=False), _f(OP_CONT, b"", fin=False), _f(OP_CONT, b""))
    s.expect_message(OP_TEXT, b"")
    s.close()


@case("6.1.3", "text: empty, non-empty, empty fragments")
def _(s):
    s.frames(_f(OP_TEXT, b"", fin=False), _f(OP_CONT, b"middle frame payload", fin=False),
             _f(OP_CONT, b""))
    s.expect_message(OP_TEXT, b"middle frame payload")
    s.close()


HELLO = "Hello-µ@ßöäüàá-UTF-8!!".encode()
KOSME = "κόσμε".encode()


def _utf8_frag_case(payload, sizes):
    """Valid UTF-8 split into fragments of the given sizes (cycled), code points split."""
    def run(s):
        frames, i, k = [], 0, 0
        while i < len(payload):
            n = sizes[k % len(sizes)]
            k += 1
            chunk = payload[i:i + n]
            frames.append(_f(OP_TEXT if i == 0 else OP_CONT, chunk, fin=i + n >= len(payload)))
            i += n
        s.frames(*frames)
        s.expect_message(OP_TEXT, payload)
        s.close()
    return run


add("6.2.1", "valid UTF-8, one frame", _echo_case(OP_TEXT, HELLO))
add("6.2.2", "valid UTF-8 in 2 fragments split at a code point boundary",
    _utf8_frag_case(HELLO, [7]))
add("6.2.3", "valid UTF-8 in 1-byte fragments (code points split across frames)",
    _utf8_frag_case(HELLO, [1]))
add("6.2.4", "'κόσμε' in 1-byte fragments", _utf8_frag_case(KOSME, [1]))
add("6.2.5", "4-byte code points split 1+3, 2+2, 3+1 across frames",
    _utf8_frag_case("\U0001F600\U0001F601\U0010FFFF".encode(), [1, 4, 2, 4, 3]))


def _utf8_bad_case(payload, frag=None, chop=None):
    def run(s):
        if frag:
            frames = [_f(OP_TEXT if i == 0 else OP_CONT, payload[i:i + frag],
                         fin=i + frag >= len(payload)) for i in range(0, len(payload), frag)]
        else:
            frames = [_f(OP_TEXT, payload)]
        s.frames(*frames, chop=chop)
        s.expect_close(1007)
    return run


BAD_KOSME = KOSME + b"\xed\xa0\x80" + b"edited"
add("6.3.1", "invalid UTF-8 (surrogate) in one frame -> 1007", _utf8_bad_case(BAD_KOSME))
add("6.3.2", "invalid UTF-8 in 1-byte fragments -> 1007", _utf8_bad_case(BAD_KOSME, frag=1))


@case("6.4.1", "fail fast: bad code point in the 2nd of 3 fragments -> 1007 before the 3rd is sent")
def _(s):
    s.frames(_f(OP_TEXT, KOSME, fin=False), _f(OP_CONT, b"\xf4\x90\x80\x80", fin=False))
    s.expect_close(1007)


@case("6.4.2", "fail fast: invalid byte ends a fragment (0xF4 0x90 split) -> 1007, message unfinished")
def _(s):
    s.frames(_f(OP_TEXT, KOSME + b"\xf4", fin=False), _f(OP_CONT, b"\x90", fin=False))
    s.expect_close(1007)


@case("6.4.3", "fail fast: invalid bytes inside a frame whose payload is only half sent -> 1007")
def _(s):
    payload = KOSME + b"\xf4\x90\x80\x80" + b"x" * 200
    frame = _f(OP_TEXT, payload)
    hdr = 2 + 2 + 4  # 16-bit length, mask
    s.send(frame[:hdr + len(KOSME) + 4])  # the header and the payload up to the bad code point
    s.expect_close(1007)


@case("6.4.4", "fail fast: the first bad byte alone, rest of the frame never sent -> 1007")
def _(s):
    payload = KOSME + b"\xc0" + b"y" * 500
    frame = _f(OP_TEXT, payload)
    hdr = 2 + 2 + 4  # 16-bit length, mask
    s.send(frame[:hdr + len(KOSME) + 1])
    s.expect_close(1007)


# Valid and invalid sequences (after Markus Kuhn's UTF-8 decoder stress test, as in Autobahn 6.5-6.23).
UTF8_VALID = [
    ("6.5.1", "U+0000 .. U+007F ASCII incl. NUL", bytes(range(0x80))),
    ("6.5.2", "first 2-byte code point U+0080", b"\xc2\x80"),
    ("6.5.3", "last 2-byte code point U+07FF", b"\xdf\xbf"),
    ("6.5.4", "first 3-byte code point U+0800", b"\xe0\xa0\x80"),
    ("6.5.5", "last 3-byte code point U+FFFF", b"\xef\xbf\xbf"),
    ("6.5.6", "first 4-byte code point U+10000", b"\xf0\x90\x80\x80"),
    ("6.5.7", "last code point U+10FFFF", b"\xf4\x8f\xbf\xbf"),
    ("6.5.8", "U+D7FF, U+E000, U+FFFD (around the surrogates)", b"\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbd"),
    ("6.5.9", "noncharacters U+FFFE, U+FFFF, U+FDD0 are valid UTF-8", b"\xef\xbf\xbe\xef\xbf\xbf\xef\xb7\x90"),
    ("6.5.10", "BOM U+FEFF", b"\xef\xbb\xbf"),
]
UTF8_INVALID = [
    ("6.6.1", "lone continuation byte 0x80", b"\x80"),
    ("6.6.2", "lone continuation byte 0xBF", b"\xbf"),
    ("6.6.3", "continuation bytes 0x80..0xBF", bytes(range(0x80, 0xC0))),
    ("6.6.4", "2-byte lead followed by space", b"\xc2 "),
    ("6.6.5", "3-byte lead followed by space", b"\xe0 "),
    ("6.6.6", "4-byte lead followed by space", b"\xf0 "),
    ("6.6.7", "0xF8 (old 5-byte lead)", b"\xf8\x88\x80\x80\x80"),
    ("6.6.8", "0xFC (old 6-byte lead)", b"\xfc\x84\x80\x80\x80\x80"),
    ("6.6.9", "0xFE", b"\xfe"),
    ("6.6.10", "0xFF", b"\xff"),
    ("6.6.11", "0xFE 0xFE 0xFF 0xFF", b"\xfe\xfe\xff\xff"),
    ("6.7.1", "truncated 2-byte sequence at the end", b"ab\xc2"),
    ("6.7.2", "truncated 3-byte sequence at the end", b"ab\xe0\xa0"),
    ("6.7.3", "truncated 4-byte sequence at the end", b"ab\xf0\x90\x80"),
    ("6.7.4", "truncated sequences concatenated", b"\xc0\xe0\x80\xf0\x80\x80\xdf\xef\xbf\xf7\xbf\xbf"),
    ("6.8.1", "overlong '/' C0 AF", b"\xc0\xaf"),
    ("6.8.2", "overlong '/' E0 80 AF", b"\xe0\x80\xaf"),
    ("6.8.3", "overlong '/' F0 80 80 AF", b"\xf0\x80\x80\xaf"),
    ("6.8.4", "maximum overlong C1 BF", b"\xc1\xbf"),
    ("6.8.5", "maximum overlong E0 9F BF", b"\xe0\x9f\xbf"),
    ("6.8.6", "maximum overlong F0 8F BF BF", b"\xf0\x8f\xbf\xbf"),
    ("6.8.7", "overlong NUL C0 80", b"\xc0\x80"),
    ("6.9.1", "surrogate U+D800", b"\xed\xa0\x80"),
    ("6.9.2", "surrogate U+DB7F", b"\xed\xad\xbf"),
    ("6.9.3", "surrogate U+DBFF", b"\xed\xaf\xbf"),
    ("6.9.4", "surrogate U+DC00", b"\xed\xb0\x80"),
    ("6.9.5", "surrogate U+DFFF", b"\xed\xbf\xbf"),
    ("6.9.6", "surrogate pair U+D800 U+DC00 (CESU-8)", b"\xed\xa0\x80\xed\xb0\x80"),
    ("6.10.1", "beyond U+10FFFF: F4 90 80 80", b"\xf4\x90\x80\x80"),
    ("6.10.2", "beyond U+10FFFF: F7 BF BF BF", b"\xf7\xbf\xbf\xbf"),
    ("6.10.3", "valid text, then F5", b"hello \xf5\x80\x80\x80"),
]
for _cid, _desc, _p in UTF8_VALID:
    add(_cid, "valid: " + _desc, _echo_case(OP_TEXT, _p))
    add(_cid + ".f", "valid, in 1-byte fragments: " + _desc, _utf8_frag_case(_p, [1]))
for _cid, _desc, _p in UTF8_INVALID:
    add(_cid, "invalid: %s -> 1007" % _desc, _utf8_bad_case(_p))
    add(_cid + ".f", "invalid, in 1-byte fragments: %s -> 1007" % _desc, _utf8_bad_case(_p, frag=1))


@case("6.11.1", "invalid UTF-8 in a binary message is not checked -> echo")
def _(s):
    s.frames(_f(OP_BINARY, b"\xed\xa0\x80\xff\xfe"))
    s.expect_message(OP_BINARY, b"\xed\xa0\x80\xff\xfe")
    s.close()


@case("6.11.2", "invalid UTF-8 in a ping payload is not checked -> pong")
def _(s):
    s.frames(_f(OP_PING, b"\xed\xa0\x80\xff"))
    s.expect_pong(b"\xed\xa0\x80\xff")
    s.close()


# === 7 Close handling ==============================================================================

@case("7.1.1", "echo a text message, then a clean close")
def _(s):
    s.frames(_f(OP_TEXT, b"Hello World!"))
    s.expect_message(OP_TEXT, b"Hello World!")
    s.close()


@case("7.1.2", "close, then a second close -> one close reply, TCP closed")
def _(s):
    s.frames(_f(OP_CLOSE, rawws.close_payload(1000)), _f(OP_CLOSE, rawws.close_payload(1000)))
    s.expect_close(1000, failed=False)


@case("7.1.3", "close, then ping -> no pong")
def _(s):
    s.frames(_f(OP_CLOSE, rawws.close_payload(1000)), _f(OP_PING, b"Hello World!"))
    s.expect_close(1000, failed=False)


@case("7.1.4", "close, then text -> no echo")
def _(s):
    s.frames(_f(OP_CLOSE, rawws.close_payload(1000)), _f(OP_TEXT, b"Hello World!"))
    s.expect_close(1000, failed=False)


@case("7.1.5", "text fragment, close, final fragment -> no echo")
def _(s):
    s.frames(_f(OP_TEXT, b"fragment1", fin=False), _f(OP_CLOSE, rawws.close_payload(1000)),
             _f(OP_CONT, b"fragment2"))
    s.expect_close(1000, failed=False)


@case("7.1.6", "256 KiB text, close, ping in one write -> echo, close, no pong")
def _(s):
    big = _text(256 * 1024)
    s.frames(_f(OP_TEXT, big), _f(OP_CLOSE, rawws.close_payload(1000)), _f(OP_PING, b"Hello World!"))
    s.expect_message(OP_TEXT, big)
    s.expect_close(1000, failed=False)


@case("7.1.7", "close, then garbage that is not even a frame -> ignored")
def _(s):
    s.frames(_f(OP_CLOSE, rawws.close_payload(1000)), b"\xff\xff\xff\xff not websocket")
    s.expect_close(1000, failed=False)


@case("7.3.1", "close with an empty payload -> empty close")
def _(s):
    s.frames(_f(OP_CLOSE, b""))
    s.expect_close(None, failed=False)


@case("7.3.2", "close with a 1-byte payload -> 1002")
def _(s):
    s.frames(_f(OP_CLOSE, b"\x03"))
    s.expect_close(1002)


@case("7.3.3", "close 1000, no reason -> 1000")
def _(s):
    s.close(1000)


@case("7.3.4", "close 1000 with a reason -> 1000")
def _(s):
    s.close(1000, b"Hello World!")


@case("7.3.5", "close 1000 with a 123-byte reason (125-byte payload) -> 1000")
def _(s):
    s.close(1000, b"*" * 123)


@case("7.3.6", "close 1000 with a 124-byte reason (126-byte payload) -> 1002")
def _(s):
    s.frames(_f(OP_CLOSE, rawws.close_payload(1000, b"*" * 124)))
    s.expect_close(1002)


@case("7.3.7", "close 1000 with a multi-byte UTF-8 reason -> 1000")
def _(s):
    s.close(1000, KOSME * 10)


@case("7.5.1", "close with an invalid UTF-8 reason -> 1007")
def _(s):
    s.frames(_f(OP_CLOSE, rawws.close_payload(1000, BAD_KOSME)))
    s.expect_close(1007)


@case("7.5.2", "close reason ending inside a code point -> 1007")
def _(s):
    s.frames(_f(OP_CLOSE, rawws.close_payload(1000, KOSME[:3])))
    s.expect_close(1007)


_VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
                1012, 1013, 1014]
_INVALID_CODES = [0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999, 1015, 5000, 65535]


def _close_code(code, valid):
    def run(s):
        s.frames(_f(OP_CLOSE, rawws.close_payload(code)))
        s.expect_close(code if valid else 1002, failed=not valid)
    return run


for _i, _c in enumerate(_VALID_CODES, 1):
    add("7.7.%d" % _i, "close with valid code %d -> echoed" % _c, _close_code(_c, True))
for _i, _c in enumerate(_INVALID_CODES, 1):
    add("7.9.%d" % _i, "close with invalid code %d -> 1002" % _c, _close_code(_c, False))


@case("7.13.1", "close in 1-byte chops -> 1000")
def _(s):
    s.frames(_f(OP_CLOSE, rawws.close_payload(1000, b"bye")), chop=1)
    s.expect_close(1000, failed=False)


# === 9 Limits and performance ==========================================================================

def _big_echo(op, n, frag=None, chop=None):
    def run(s):
        payload = _text(n) if op == OP_TEXT else _binary(n)
        if frag:
            frames = [_f(op if i == 0 else OP_CONT, payload[i:i + frag], fin=i + frag >= n)
                      for i in range(0, n, frag)]
        else:
            frames = [_f(op, payload)]
        s.frames(*frames, chop=chop)
        s.expect_message(op, payload)
        s.close()
    return run


MiB = 1 << 20
add("9.1.1", "text message, 64 KiB", _big_echo(OP_TEXT, 64 * 1024))
add("9.1.2", "text message, 256 KiB", _big_echo(OP_TEXT, 256 * 1024))
add("9.1.3", "text message, 1 MiB", _big_echo(OP_TEXT, MiB))
add("9.1.4", "text message, 4 MiB", _big_echo(OP_TEXT, 4 * MiB))
add("9.2.1", "binary message, 64 KiB", _big_echo(OP_BINARY, 64 * 1024))
add("9.2.3", "binary message, 1 MiB", _big_echo(OP_BINARY, MiB))
add("9.2.4", "binary message, 4 MiB", _big_echo(OP_BINARY, 4 * MiB))
add("9.3.1", "1 MiB text in 64-byte fragments", _big_echo(OP_TEXT, MiB, frag=64))
add("9.3.2", "1 MiB text in 4 KiB fragments", _big_echo(OP_TEXT, MiB, frag=4096))
add("9.4.1", "4 MiB binary in 64 KiB fragments", _big_echo(OP_BINARY, 4 * MiB, frag=65536))
add("9.5.1", "1 MiB text in one frame, sent in 1 KiB chops", _big_echo(OP_TEXT, MiB, chop=1024))


def _many(op, count, size):
    def run(s):
        msgs = [(b"%06d:" % i + (_text(size) if op == OP_TEXT else _binary(size)))[:max(size, 7)]
                for i in range(count)]
        s.frames(*[_f(op, m) for m in msgs])
        for m in msgs:
            s.expect_message(op, m)
        s.close()
    return run


add("9.7.1", "1000 text messages of 16 bytes in one write, echoed in order", _many(OP_TEXT, 1000, 16))
add("9.7.2", "1000 binary messages of 128 bytes in one write, echoed in order",
    _many(OP_BINARY, 1000, 128))
add("9.7.3", "5000 text messages of 8 bytes in one write, echoed in order", _many(OP_TEXT, 5000, 8))


@case("9.9.1", "text message of max-message bytes -> echo", srv="limited_server")
def _(s):
    _big_echo(OP_TEXT, LIMIT)(s)


@case("9.9.2", "binary message of max-message + 1 bytes -> 1009, before the payload arrives",
      srv="limited_server")
def _(s):
    frame = _f(OP_BINARY, bytes(LIMIT + 1))
    s.send(frame[:14])  # the header alone must be enough to refuse it
    s.expect_close(1009)


@case("9.9.3", "fragmented text whose total exceeds max-message -> 1009", srv="limited_server")
def _(s):
    half = _text(LIMIT // 2 + 1)
    s.frames(_f(OP_TEXT, half, fin=False), _f(OP_CONT, half))
    s.expect_close(1009)


@case("9.9.4", "control frames do not count toward max-message", srv="limited_server")
def _(s):
    part = _text(LIMIT // 2)
    s.frames(_f(OP_TEXT, part, fin=False), _f(OP_PING, b"p" * 125), _f(OP_CONT, part))
    s.expect_pong(b"p" * 125)
    s.expect_message(OP_TEXT, part + part)
    s.close()


# === 12 / 13 Compression (RFC 7692) ======================================================================
# These run only when the server negotiates permessage-deflate (it may be off by
# default, or not built yet); otherwise each case is skipped with that reason.

def _ext_params(value, response=True):
    """Parse one permessage-deflate element: {param: value-or-None}; asserts RFC 7692 syntax
    (in a response, client_max_window_bits must carry a value)."""
    parts = [p.strip() for p in value.split(";")]
    assert parts[0].lower() == "permessage-deflate", "unexpected extension %r" % value
    params = {}
    for p in parts[1:]:
        k, eq, v = p.partition("=")
        k = k.strip().lower()
        assert k in ("server_no_context_takeover", "client_no_context_takeover",
                     "server_max_window_bits", "client_max_window_bits"), "unknown param %r" % p
        assert k not in params, "repeated param %r in %r" % (k, value)
        if eq:
            v = v.strip().strip('"')
            assert v.isdigit() and 8 <= int(v) <= 15 and not v.startswith("0"), "bad value %r" % p
            params[k] = int(v)
        else:
            assert k.endswith("takeover") or (not response and k == "client_max_window_bits"), \
                "%s needs a value in a response (RFC 7692 7.1.2.2)" % k
            params[k] = None
    return params


class Deflate:
    """A client side of permessage-deflate, following what was agreed."""

    def __init__(self, port, offer):
        self.c = rawws.Conn(port, timeout=scaled(TIMEOUT))
        r = self.c.handshake("/ws", headers={"Sec-WebSocket-Extensions": offer})
        try:
            self._negotiated(r, offer)
        except BaseException:
            self.c.close()
            raise

    def _negotiated(self, r, offer):
        assert r.status == 101, r
        ext = r.header("Sec-WebSocket-Extensions")
        if not ext or "permessage-deflate" not in ext.lower():
            pytest.skip("permessage-deflate is not negotiated by this server")
        assert "," not in ext, "more than one extension accepted: %r" % ext
        self.params = _ext_params(ext)
        if "," not in offer:  # a single offer: the response must stay within it
            offered = _ext_params(offer, response=False)
            if "client_max_window_bits" in self.params:
                assert "client_max_window_bits" in offered, "client_max_window_bits not offered"
            if offered.get("server_max_window_bits"):
                assert self.params.get("server_max_window_bits", 15) <= \
                    offered["server_max_window_bits"], "server window above the offer: %r" % ext
            for k in ("server_no_context_takeover",):
                if k in offered:
                    assert k in self.params, "%s offered but not in the response %r" % (k, ext)
        self.wbits = self.params.get("client_max_window_bits") or 15
        self.co = None
        self.do = zlib.decompressobj(-15)

    def compress(self, payload):
        if self.co is None or "client_no_context_takeover" in self.params:
            self.co = zlib.compressobj(6, zlib.DEFLATED, -max(self.wbits, 9))
        data = self.co.compress(payload) + self.co.flush(zlib.Z_SYNC_FLUSH)
        assert data.endswith(b"\x00\x00\xff\xff")
        return data[:-4]

    def send(self, op, payload, frag=None):
        data = self.compress(payload)
        if not frag:
            self.c.send(build_frame(op, data, rsv=4))
            return
        pieces = [data[i:i + frag] for i in range(0, len(data), frag)] or [b""]
        out = b""
        for i, p in enumerate(pieces):
            out += build_frame(op if i == 0 else OP_CONT, p, fin=i == len(pieces) - 1,
                               rsv=4 if i == 0 else 0)
        self.c.send(out)

    def expect(self, op, payload):
        f = self.c.recv_frame(timeout=scaled(TIMEOUT))
        assert f.opcode == op and not f.masked, f
        compressed = bool(f.rsv & 4)
        assert f.rsv & 3 == 0, f
        parts = [f.payload]
        while not f.fin:
            f = self.c.recv_frame(timeout=scaled(TIMEOUT))
            assert f.opcode == OP_CONT and f.rsv == 0, "RSV1 on a continuation: %r" % f
            parts.append(f.payload)
        body = b"".join(parts)
        if compressed:
            if "server_no_context_takeover" in self.params:
                self.do = zlib.decompressobj(-15)
            body = self.do.decompress(body + b"\x00\x00\xff\xff")
        assert body == payload, "echo differs (%d vs %d bytes)" % (len(body), len(payload))

    def expect_close(self, code):
        f, before = self.c.recv_close(timeout=scaled(TIMEOUT))
        assert f.close_code == code, "expected close %d, got %r" % (code, f.close_code)
        assert not [b for b in before if b.opcode in (OP_TEXT, OP_BINARY)], before
        try:
            self.c.wait_eof(timeout=scaled(PROMPT))
        except TimeoutError:
            pytest.fail("server did not close TCP after close %d" % code)

    def close(self):
        self.c.send_close(1000)
        self.expect_close(1000)


PMD = "permessage-deflate"


def _pmd_echo(offer, op, sizes, frag=None):
    def run(port):
        d = Deflate(port, offer)
        try:
            for n in sizes:  # several messages: exercises context takeover both ways
                payload = _text(n) if op == OP_TEXT else _binary(n)
                d.send(op, payload, frag)
                d.expect(op, payload)
            d.close()
        finally:
            d.c.close()
    return run


def _pmd_fail(code, make):
    def run(port):
        d = Deflate(port, PMD)
        try:
            d.c.send(make(d))
            d.expect_close(code)
        finally:
            d.c.close()
    return run


def _pmd_declined(offer):
    def run(port):
        c = rawws.Conn(port, timeout=scaled(TIMEOUT))
        with c:
            r = c.handshake("/ws", headers={"Sec-WebSocket-Extensions": offer})
            assert r.status == 101, r
            assert r.header("Sec-WebSocket-Extensions") is None, r
    return run


_DEFLATE = [
    ("12.1.1", "compressed text, 16 bytes x3", _pmd_echo(PMD, OP_TEXT, [16, 16, 16])),
    ("12.1.2", "compressed text, 64/256/1024 bytes", _pmd_echo(PMD, OP_TEXT, [64, 256, 1024])),
    ("12.1.3", "compressed text, 4 KiB x3", _pmd_echo(PMD, OP_TEXT, [4096] * 3)),
    ("12.1.4", "compressed text, 64 KiB x2", _pmd_echo(PMD, OP_TEXT, [65536] * 2)),
    ("12.1.5", "compressed text, 1 MiB", _pmd_echo(PMD, OP_TEXT, [MiB])),
    ("12.2.1", "compressed binary, 1 KiB / 64 KiB", _pmd_echo(PMD, OP_BINARY, [1024, 65536])),
    ("12.3.1", "compressed text in 7-byte fragments (RSV1 on the first only)",
     _pmd_echo(PMD, OP_TEXT, [2000, 2000], frag=7)),
    ("12.4.1", "RSV1 on a continuation frame -> 1002",
     _pmd_fail(1002, lambda d: build_frame(OP_TEXT, d.compress(b"abc"), fin=False, rsv=4)
               + build_frame(OP_CONT, b"", rsv=4))),
    ("12.4.2", "RSV1 on a ping -> 1002", _pmd_fail(1002, lambda d: build_frame(OP_PING, b"x", rsv=4))),
    ("12.4.3", "RSV2 is still refused -> 1002", _pmd_fail(1002, lambda d: build_frame(OP_TEXT, b"x", rsv=2))),
    ("12.4.4", "invalid deflate data -> 1007",
     _pmd_fail(1007, lambda d: build_frame(OP_TEXT, b"\xff\xff\xff\xff\xff", rsv=4))),
    ("12.4.5", "compressed text that inflates to invalid UTF-8 -> 1007",
     _pmd_fail(1007, lambda d: build_frame(OP_TEXT, d.compress(BAD_KOSME), rsv=4))),
    ("12.4.6", "uncompressed message on a deflate connection -> echo",
     lambda port: _pmd_plain(port)),
    ("13.1.1", "offer client_max_window_bits (no value)",
     _pmd_echo(PMD + "; client_max_window_bits", OP_TEXT, [3000, 3000])),
    ("13.2.1", "offer client_no_context_takeover",
     _pmd_echo(PMD + "; client_no_context_takeover", OP_TEXT, [3000, 3000])),
    ("13.3.1", "offer server_no_context_takeover",
     _pmd_echo(PMD + "; server_no_context_takeover", OP_TEXT, [3000, 3000])),
    ("13.4.1", "offer server_max_window_bits=9", _pmd_echo(PMD + "; server_max_window_bits=9",
                                                          OP_TEXT, [5000, 5000])),
    ("13.5.1", "offer client_max_window_bits=9", _pmd_echo(PMD + "; client_max_window_bits=9",
                                                          OP_TEXT, [5000, 5000])),
    ("13.6.1", "both no_context_takeover, both windows 10",
     _pmd_echo(PMD + "; client_no_context_takeover; server_no_context_takeover; "
               "client_max_window_bits=10; server_max_window_bits=10", OP_TEXT, [5000, 5000])),
    ("13.7.1", "a declined first offer, an acceptable second one",
     _pmd_echo(PMD + "; server_max_window_bits=8, " + PMD, OP_TEXT, [3000, 3000])),
    ("13.9.1", "offer with an unknown parameter is declined", _pmd_declined(PMD + "; foo=1")),
    ("13.9.2", "offer with a repeated parameter is declined",
     _pmd_declined(PMD + "; server_no_context_takeover; server_no_context_takeover")),
    ("13.9.3", "server_max_window_bits=16 is declined", _pmd_declined(PMD + "; server_max_window_bits=16")),
    ("13.9.4", "only an unknown extension: none accepted", _pmd_declined("x-webkit-deflate-frame")),
]


def _pmd_plain(port):
    d = Deflate(port, PMD)
    try:
        d.c.send(build_frame(OP_TEXT, b"not compressed"))
        d.expect(OP_TEXT, b"not compressed")
        d.close()
    finally:
        d.c.close()


DEFLATE_CASES = [pytest.param(cid, desc, fn, id=cid) for cid, desc, fn in _DEFLATE]


# === the runners ===========================================================================================

@pytest.mark.parametrize("cid, desc, srv, fn", CASES)
def test_case(request, transport, cid, desc, srv, fn):
    srv_obj = request.getfixturevalue(srv)
    s = Session(srv_obj.port)
    try:
        fn(s)
    finally:
        s.shutdown()
    assert srv_obj.alive(), "server died during case %s (rc=%r):\n%s" % (
        cid, srv_obj.proc.poll(), srv_obj.log[-4000:])


@pytest.mark.parametrize("cid, desc, fn", DEFLATE_CASES)
def test_compression(server, cid, desc, fn):
    fn(server.port)
    assert server.alive()


def test_case_ids_are_unique():
    ids = [p.id for p in CASES] + [p.id for p in DEFLATE_CASES]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    assert not dup, "duplicate case ids: %s" % dup
