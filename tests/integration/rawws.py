"""rawws: a tiny, deliberately dumb WebSocket/HTTP client for protocol tests.

It builds frames by hand (so tests can send exactly the bytes they want, broken
ones included), performs the opening handshake on a plain socket, and reads
frames back. Nothing here is clever: every read has a timeout, every loop is
bounded.
"""
import base64
import hashlib
import os
import socket
import ssl
import struct
import time

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

DEFAULT_TIMEOUT = 5.0


class ProtocolError(AssertionError):
    pass


def accept_for(key):
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def new_key():
    return base64.b64encode(os.urandom(16)).decode()


def mask_bytes(payload, key):
    if not payload:
        return b""
    n = len(payload)
    rep = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(rep, "little")).to_bytes(n, "little")


def build_frame(opcode, payload=b"", fin=True, rsv=0, mask=True, key=None, length=None):
    """Build one frame. rsv is the 3-bit RSV1..RSV3 field (4 = RSV1).
    length overrides the announced payload length (the payload is still appended as given)."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0x0F)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if mask:
        key = key if key is not None else os.urandom(4)
        return head + key + mask_bytes(payload, key)
    return head + payload


def close_payload(code=None, reason=b""):
    if code is None:
        return b""
    if isinstance(reason, str):
        reason = reason.encode("utf-8")
    return struct.pack("!H", code) + reason


class Frame:
    __slots__ = ("fin", "rsv", "opcode", "masked", "payload")

    def __init__(self, fin, rsv, opcode, masked, payload):
        self.fin, self.rsv, self.opcode, self.masked, self.payload = fin, rsv, opcode, masked, payload

    @property
    def close_code(self):
        assert self.opcode == OP_CLOSE
        if len(self.payload) >= 2:
            return struct.unpack("!H", self.payload[:2])[0]
        return None

    @property
    def close_reason(self):
        assert self.opcode == OP_CLOSE
        return self.payload[2:]

    def __repr__(self):
        p = self.payload if len(self.payload) <= 40 else self.payload[:40] + b"..."
        return "Frame(fin=%s rsv=%d op=0x%x masked=%s len=%d %r)" % (
            self.fin, self.rsv, self.opcode, self.masked, len(self.payload), p)


class HTTPResponse:
    def __init__(self, status, reason, headers, body, raw_head):
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value)
        self.body = body
        self.raw_head = raw_head

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def __repr__(self):
        return "HTTPResponse(%d %s, %r, body=%r)" % (self.status, self.reason, self.headers, self.body[:200])


class TLSPort(int):
    """A port number that says "speak TLS to me": a Conn made with it wraps its
    socket in `tls` (an ssl.SSLContext), checking the certificate against
    `server_hostname`. Code that only passes ports around (the conformance
    cases) runs over TLS unchanged."""

    def __new__(cls, port, tls, server_hostname="localhost"):
        self = super().__new__(cls, port)
        self.tls = tls
        self.server_hostname = server_hostname
        return self


class Conn:
    """A socket plus a receive buffer, able to speak raw HTTP and raw frames.
    Over TLS when `tls` (an ssl.SSLContext) is given or the port is a TLSPort."""

    def __init__(self, port, host="127.0.0.1", timeout=DEFAULT_TIMEOUT, tls=None,
                 server_hostname=None, suppress_ragged_eofs=True, source=None):
        self.timeout = timeout
        self.sock = socket.create_connection((host, int(port)), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tls = tls or getattr(port, "tls", None)
        if tls is not None:
            name = server_hostname or getattr(port, "server_hostname", None) or "localhost"
            try:
                self.sock = tls.wrap_socket(self.sock, server_hostname=name,
                                            suppress_ragged_eofs=suppress_ragged_eofs)
            except BaseException:
                self.sock.close()
                raise
        self.port = port
        self.buf = bytearray()
        self.eof = False

    # -- plumbing -------------------------------------------------------
    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def local_port(self):
        return self.sock.getsockname()[1]

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        """Read more bytes into buf; return False on EOF."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out waiting for data from server")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(1 << 20)
        except socket.timeout:
            raise TimeoutError("timed out waiting for data from server")
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def _read_exact(self, n, deadline):
        while len(self.buf) < n:
            if not self._fill(deadline):
                raise EOFError("connection closed by server (wanted %d bytes, have %d)" % (n, len(self.buf)))
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def _read_until(self, sep, deadline, limit=1 << 20):
        while True:
            i = self.buf.find(sep)
            if i >= 0:
                out = bytes(self.buf[:i + len(sep)])
                del self.buf[:i + len(sep)]
                return out
            if len(self.buf) > limit:
                raise ProtocolError("no %r within %d bytes" % (sep, limit))
            if not self._fill(deadline):
                raise EOFError("connection closed by server before %r (have %r)" % (sep, bytes(self.buf[:200])))

    # -- HTTP -----------------------------------------------------------
    def read_response(self, timeout=None, head_only=False):
        deadline = time.monotonic() + (timeout or self.timeout)
        head = self._read_until(b"\r\n\r\n", deadline)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise ProtocolError("bad status line %r" % lines[0])
        status = int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
        headers = []
        for line in lines[1:]:
            if not line:
                continue
            k, _, v = line.partition(":")
            headers.append((k.strip(), v.strip()))
        resp = HTTPResponse(status, reason, headers, b"", head)
        if status == 101 or head_only or status in (204, 304):
            return resp
        te = resp.header("Transfer-Encoding")
        cl = resp.header("Content-Length")
        if te and "chunked" in te.lower():
            body = bytearray()
            for _ in range(100000):
                size_line = self._read_until(b"\r\n", deadline)
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    # trailers until empty line
                    for _ in range(1000):
                        if self._read_until(b"\r\n", deadline) == b"\r\n":
                            break
                    break
                body += self._read_exact(size, deadline)
                self._read_exact(2, deadline)
            resp.body = bytes(body)
        elif cl is not None:
            resp.body = self._read_exact(int(cl), deadline)
        else:
            # body delimited by close
            while self._fill(deadline):
                pass
            resp.body = bytes(self.buf)
            self.buf.clear()
        return resp

    def request(self, raw, timeout=None):
        if isinstance(raw, str):
            raw = raw.encode("latin-1")
        self.send(raw)
        return self.read_response(timeout)

    # -- WebSocket --------------------------------------------------------
    def handshake(self, path="/ws", headers=None, key=None, host=None, extra=b""):
        """Send an upgrade request and read the response (not checked)."""
        key = key or new_key()
        self.key = key
        lines = ["GET %s HTTP/1.1" % path]
        base = [
            ("Host", host or "127.0.0.1:%d" % self.port),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", key),
            ("Sec-WebSocket-Version", "13"),
        ]
        override = {}
        if headers:
            for k, v in (headers.items() if isinstance(headers, dict) else headers):
                override[k.lower()] = (k, v)
        for k, v in base:
            if k.lower() in override:
                k2, v2 = override.pop(k.lower())
                if v2 is not None:
                    lines.append("%s: %s" % (k2, v2))
            else:
                lines.append("%s: %s" % (k, v))
        for k, v in override.values():
            if v is not None:
                lines.append("%s: %s" % (k, v))
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + extra
        self.send(raw)
        return self.read_response()

    def send_frame(self, opcode, payload=b"", **kw):
        self.send(build_frame(opcode, payload, **kw))

    def send_text(self, text, **kw):
        self.send_frame(OP_TEXT, text.encode("utf-8") if isinstance(text, str) else text, **kw)

    def send_binary(self, data, **kw):
        self.send_frame(OP_BINARY, data, **kw)

    def send_close(self, code=None, reason=b"", **kw):
        self.send_frame(OP_CLOSE, close_payload(code, reason), **kw)

    def recv_frame(self, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        b0, b1 = self._read_exact(2, deadline)
        fin = bool(b0 & 0x80)
        rsv = (b0 >> 4) & 7
        opcode = b0 & 0x0F
        masked = bool(b1 & 0x80)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read_exact(2, deadline))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read_exact(8, deadline))[0]
        key = self._read_exact(4, deadline) if masked else None
        payload = self._read_exact(n, deadline) if n else b""
        if masked:
            payload = mask_bytes(payload, key)
        return Frame(fin, rsv, opcode, masked, payload)

    def recv_message(self, timeout=None):
        """Next complete data message as (opcode, payload), answering nothing.
        Control frames in between are returned only if they are close frames."""
        deadline = time.monotonic() + (timeout or self.timeout)
        parts, op = [], None
        for _ in range(100000):
            f = self.recv_frame(max(0.001, deadline - time.monotonic()))
            if f.opcode == OP_CLOSE:
                raise ProtocolError("expected a message, got close %r (code %r)" % (f, f.close_code))
            if f.opcode in (OP_PING, OP_PONG):
                continue
            if op is None:
                op = f.opcode
            parts.append(f.payload)
            if f.fin:
                return op, b"".join(parts)
        raise ProtocolError("too many fragments")

    def recv_text(self, timeout=None):
        op, data = self.recv_message(timeout)
        if op != OP_TEXT:
            raise ProtocolError("expected text, got opcode %d: %r" % (op, data[:100]))
        return data.decode("utf-8")

    def recv_close(self, timeout=None, max_frames=1000):
        """Read frames until a close frame; return (close_frame, frames_before)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        before = []
        for _ in range(max_frames):
            f = self.recv_frame(max(0.001, deadline - time.monotonic()))
            if f.opcode == OP_CLOSE:
                return f, before
            before.append(f)
        raise ProtocolError("no close frame within %d frames" % max_frames)

    def wait_read_by_server(self, timeout=None):
        """Wait until the server process has read every byte we sent so far:
        our side has none unacknowledged (tx_queue) and the server's socket of
        this connection has none unread (rx_queue), as the kernel reports them
        in /proc/net/tcp (Linux; both ends are on this host). Bytes sent after
        this returns reach the server in a later read. Polls (the kernel offers
        no event for it), bounded; raises TimeoutError."""
        deadline = time.monotonic() + (timeout or self.timeout)
        me, srv = self.local_port, self.port
        for _ in range(1000000):
            mine = theirs = None
            for name in ("/proc/net/tcp", "/proc/net/tcp6"):
                try:
                    with open(name) as f:
                        lines = f.read().splitlines()[1:]
                except OSError:
                    continue
                for line in lines:
                    fields = line.split()
                    lport = int(fields[1].rsplit(":", 1)[1], 16)
                    rport = int(fields[2].rsplit(":", 1)[1], 16)
                    tx, rx = (int(x, 16) for x in fields[4].split(":"))
                    if (lport, rport) == (me, srv):
                        mine = tx
                    elif (lport, rport) == (srv, me):
                        theirs = rx
            if mine is None or theirs is None:
                raise ProtocolError("connection %d <-> %d not in /proc/net/tcp" % (me, srv))
            if mine == 0 and theirs == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError("server did not read our bytes (unacked %d, unread %d)"
                                   % (mine, theirs))
            time.sleep(0.001)
        raise TimeoutError("server did not read our bytes")

    def wait_eof(self, timeout=None):
        """Wait until the server closes TCP (recv returns b"" or reset); discard
        anything that arrives before. Returns seconds waited. Raises TimeoutError."""
        t0 = time.monotonic()
        deadline = t0 + (timeout or self.timeout)
        self.buf.clear()
        while self._fill(deadline):
            self.buf.clear()
        return time.monotonic() - t0


def upgrade(port, path="/ws", headers=None, timeout=DEFAULT_TIMEOUT, **conn_kw):
    """Connect and complete a valid handshake; raise unless 101 with a correct accept.
    conn_kw go to Conn (tls=, suppress_ragged_eofs=...)."""
    c = Conn(port, timeout=timeout, **conn_kw)
    try:
        r = c.handshake(path, headers)
        if r.status != 101:
            raise ProtocolError("handshake to %s failed: %r" % (path, r))
        if r.header("Sec-WebSocket-Accept") != accept_for(c.key):
            raise ProtocolError("bad Sec-WebSocket-Accept: %r" % r)
    except BaseException:
        c.close()
        raise
    c.response = r
    return c


def http_get(port, path, headers=None, method="GET", body=b"", timeout=DEFAULT_TIMEOUT, version="HTTP/1.1"):
    """One request on a fresh connection (Connection: close)."""
    hs = {"Host": "127.0.0.1:%d" % port, "Connection": "close"}
    if body:
        hs["Content-Length"] = str(len(body))
    if headers:
        hs.update(headers)
    raw = "%s %s %s\r\n" % (method, path, version)
    raw += "".join("%s: %s\r\n" % kv for kv in hs.items() if kv[1] is not None) + "\r\n"
    with Conn(port, timeout=timeout) as c:
        c.send(raw.encode("latin-1") + body)
        return c.read_response(head_only=(method == "HEAD"))
