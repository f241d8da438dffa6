"""A redis-server of the test's own and a tiny RESP client, for test_redis.py
(and tests/bench/redis.py).

RedisServer runs Debian's /usr/bin/redis-server on 127.0.0.1 (or a unix
socket only) in a directory of its own, waits for its "Ready to accept
connections" line and then for an answer to PING, and is stopped, killed
(SIGKILL) and restarted on the same port by its PID. RedisClient speaks RESP2
over a plain socket: replies come back as Python values (status -> str, bulk
-> bytes, integer -> int, null -> None, array -> list, error -> ReplyError,
raised by call() and returned by read()). Every wait has a deadline.
"""
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

REDIS_SERVER = Path("/usr/bin/redis-server")
READY_RE = re.compile(r"(?i)ready to accept connections")
MISSING = ("%s is missing: the wspush.redis tests run a real Redis. Install it with "
           "`bash tests/deps.sh --test` (Debian's redis-server package)." % REDIS_SERVER)


class ReplyError(Exception):
    """An error reply (-ERR ..., -WRONGTYPE ...); str() is Redis's text."""


def free_port():
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        elif isinstance(a, int):
            a = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class RedisClient:
    def __init__(self, port=None, path=None, password=None, user=None, db=None, timeout=5.0):
        self.timeout = timeout
        if path:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            try:
                self.sock.connect(str(path))
            except BaseException:
                self.sock.close()
                raise
        else:
            self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = bytearray()
        try:
            if password is not None:
                self.call("AUTH", *([user] if user else []), password)
            if db:
                self.call("SELECT", db)
        except BaseException:
            self.close()
            raise

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, *args):
        self.sock.sendall(encode(args))

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no reply from redis in time")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(1 << 16)
        except socket.timeout:
            raise TimeoutError("no reply from redis in time")
        if not chunk:
            raise EOFError("redis closed the connection")
        self.buf += chunk

    def _line(self, deadline):
        for _ in range(1 << 20):
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return line
            self._fill(deadline)
        raise AssertionError("unbounded line")

    def _exact(self, n, deadline):
        for _ in range(1 << 20):
            if len(self.buf) >= n:
                out = bytes(self.buf[:n])
                del self.buf[:n]
                return out
            self._fill(deadline)
        raise AssertionError("unbounded read")

    def _reply(self, deadline):
        line = self._line(deadline)
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return ReplyError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self._exact(n + 2, deadline)
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            if n < 0:
                return None
            return [self._reply(deadline) for _ in range(n)]
        raise AssertionError("bad RESP line %r" % line)

    def read(self, timeout=None):
        return self._reply(time.monotonic() + (timeout or self.timeout))

    def call(self, *args, timeout=None):
        self.send(*args)
        r = self.read(timeout)
        if isinstance(r, ReplyError):
            raise r
        return r

    # -- introspection --------------------------------------------------------
    def info(self, section=None):
        text = self.call("INFO", *([section] if section else [])).decode()
        out = {}
        for line in text.splitlines():
            if ":" in line and not line.startswith("#"):
                k, _, v = line.partition(":")
                out[k] = v
        return out

    def connections_received(self):
        return int(self.info("stats")["total_connections_received"])

    def client_list(self):
        out = []
        for line in self.call("CLIENT", "LIST").decode().splitlines():
            fields = {}
            for kv in line.split(" "):
                k, _, v = kv.partition("=")
                fields[k] = v
            out.append(fields)
        return out

    def command_calls(self):
        """{command name: calls} from INFO commandstats (subcommands as "client|list")."""
        out = {}
        for k, v in self.info("commandstats").items():
            if k.startswith("cmdstat_"):
                out[k[len("cmdstat_"):]] = int(re.search(r"calls=(\d+)", v).group(1))
        return out


class RedisServer:
    """A redis-server process of the test's own. port=None picks a free one;
    unixsocket= serves on that path only (port 0)."""

    def __init__(self, workdir, port=None, unixsocket=None, requirepass=None, appendonly=False,
                 extra=(), scale=1.0):
        if not REDIS_SERVER.exists():
            raise AssertionError(MISSING)
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.unixsocket = str(unixsocket) if unixsocket else None
        self.auto_port = port is None and not unixsocket
        self.port = 0 if unixsocket else (port or free_port())
        self.requirepass = requirepass
        self.appendonly = appendonly
        self.extra = list(extra)
        self.scale = scale
        self.proc = None
        self.starts = 0

    def argv(self):
        conf = {"port": str(self.port), "bind": "127.0.0.1", "save": "",
                "appendonly": "yes" if self.appendonly else "no",
                "enable-debug-command": "yes", "dir": str(self.dir), "logfile": "",
                "daemonize": "no"}
        if self.appendonly:
            conf["appendfsync"] = "always"
        if self.unixsocket:
            conf["unixsocket"] = self.unixsocket
            conf["unixsocketperm"] = "700"
        if self.requirepass is not None:
            conf["requirepass"] = self.requirepass
        argv = [str(REDIS_SERVER)]
        for k, v in conf.items():
            argv += ["--" + k, v]
        return argv + self.extra

    @property
    def url(self):
        return "redis://127.0.0.1:%d" % self.port

    def start(self):
        """Start (or start again, on the same port and directory); return once it answers PING."""
        for attempt in range(5):
            if self._start_once():
                self.starts += 1
                return self
            if not (self.auto_port and self.starts == 0 and "in use" in self.log):
                break
            self.port = free_port()  # lost a race for the free port: take another
        raise AssertionError("redis-server did not start (rc=%r):\n%s"
                             % (self.proc.returncode if self.proc else None, self.log[-3000:]))

    def _start_once(self):
        self._lines = []
        self._cond = threading.Condition()
        self._eof = False
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, cwd=str(self.dir))
        threading.Thread(target=self._drain, args=(self.proc, self._lines, self._cond),
                         daemon=True).start()
        deadline = time.monotonic() + 10 * self.scale
        with self._cond:
            while not READY_RE.search("".join(self._lines)):
                left = deadline - time.monotonic()
                if self._eof or left <= 0:
                    break
                self._cond.wait(left)
            ready = READY_RE.search("".join(self._lines)) is not None
        if not ready:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGKILL)
            self._reap()
            return False
        with self.client() as c:
            assert c.call("PING") == "PONG"
        return True

    def _drain(self, proc, lines, cond):
        for raw in iter(proc.stdout.readline, b""):
            with cond:
                lines.append(raw.decode("utf-8", "replace"))
                cond.notify_all()
        with cond:
            if lines is self._lines:
                self._eof = True
            cond.notify_all()

    @property
    def log(self):
        with self._cond:
            return "".join(self._lines)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def client(self, password=None, user=None, db=None, timeout=5.0):
        pw = password if password is not None else self.requirepass
        if self.unixsocket:
            return RedisClient(path=self.unixsocket, password=pw, user=user, db=db, timeout=timeout)
        return RedisClient(port=self.port, password=pw, user=user, db=db, timeout=timeout)

    def kill(self):
        """SIGKILL, by PID; return once it is gone (its port free again)."""
        assert self.alive(), "redis-server is not running"
        os.kill(self.proc.pid, signal.SIGKILL)
        self._reap()

    def restart(self):
        if self.alive():
            self.kill()
        return self.start()

    def _reap(self):
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
        self._reap()


def process_tcp_peers(pid, remote_port):
    """Local ports of the established TCP sockets of process pid whose peer is
    127.0.0.1:remote_port (from /proc/PID/fd and /proc/net/tcp)."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    ports = []
    with open("/proc/%d/net/tcp" % pid) as f:
        for line in f.read().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "01":  # ESTABLISHED
                continue
            if fields[9] in inodes and int(fields[2].rsplit(":", 1)[1], 16) == remote_port:
                ports.append(int(fields[1].rsplit(":", 1)[1], 16))
    return ports
