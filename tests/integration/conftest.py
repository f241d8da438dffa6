"""Fixtures for the wspush end-to-end tests.

Environment:
  WSPUSH_BIN            server binary (default: <repo>/build/wspush)
  WSPUSH_SANITIZE_LOG   if set, fail a test whose server stderr has ASan/UBSan/LSan reports
  WSPUSH_VALGRIND=1     run the servers of tests marked `valgrind` under valgrind
  WSPUSH_TIMEOUT_SCALE  multiply every timeout (default 1; 10 under valgrind)
  WSPUSH_ARGS           extra options for every server, e.g. "--no-io-uring" (run-all.sh
                        runs a subset so, to cover the writev send path)
"""
import json
import os
import re
import resource
import signal
import subprocess
import threading
import time
import warnings
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SCRIPTS = HERE / "scripts"
BIN = Path(os.environ.get("WSPUSH_BIN") or REPO / "build" / "wspush")
VALGRIND = os.environ.get("WSPUSH_VALGRIND") == "1"
SANITIZE_LOG = bool(os.environ.get("WSPUSH_SANITIZE_LOG"))
SCALE = float(os.environ.get("WSPUSH_TIMEOUT_SCALE") or 1)
EXTRA_ARGS = (os.environ.get("WSPUSH_ARGS") or "").split()

LISTEN_RE = re.compile(r"listening on https?://127\.0\.0\.1:(\d+)")
SANITIZER_RE = re.compile(r"ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer")
VALGRIND_ERR_RE = re.compile(r"ERROR SUMMARY: [1-9]|definitely lost: [1-9]")

# 1000 concurrent connections need ~2000 descriptors (both ends live here);
# the 10,000-subscriber tests need ~11,000 in the server.
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
_want = 32768 if _hard == resource.RLIM_INFINITY else min(32768, _hard)
if _soft != resource.RLIM_INFINITY and _soft < _want:
    resource.setrlimit(resource.RLIMIT_NOFILE, (_want, _hard))


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "valgrind: also run the server under valgrind when WSPUSH_VALGRIND=1")
    config.addinivalue_line("markers", "slow: load tests (many connections, big messages)")


def report(capsys, msg):
    """Print a figure so that it shows in the test output even without -s."""
    with capsys.disabled():
        print("\n[figure] " + msg, flush=True)


def proc_status(pid, field):
    """A size field of /proc/PID/status (VmRSS, VmHWM, ...), in KiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s in /proc/%d/status" % (field, pid))


def rss_kb(pid):
    return proc_status(pid, "VmRSS")


def cpu_seconds(pid):
    """A process's CPU time so far (user + system), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state): utime is field 14, stime field 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bin_is_sanitized():
    """True when the server binary is an ASan build (RSS figures mean little then)."""
    try:
        return b"__asan_init" in BIN.read_bytes()
    except OSError:
        return False


def scaled(seconds):
    return seconds * SCALE


class ServerError(AssertionError):
    pass


class Server:
    """A running wspush process with its stderr drained into a buffer."""

    def __init__(self, script, args=(), valgrind=False, bin=None):
        self.script = str(script)
        self.valgrind = valgrind
        bin = Path(bin or BIN)
        if not bin.exists():
            raise ServerError("server binary %s does not exist (build it, or set WSPUSH_BIN)" % bin)
        cmd = [str(bin), "--host", "127.0.0.1", "--port", "0", *EXTRA_ARGS, *map(str, args),
               self.script]
        if valgrind:
            cmd = ["valgrind", "--error-exitcode=99", "--leak-check=full",
                   "--errors-for-leak-kinds=definite", "--track-fds=no", *cmd]
        self.cmd = cmd
        self._lines = []
        self._cond = threading.Condition()
        self._eof = False
        self._flowing = threading.Event()  # cleared: stderr is not read (a stalled consumer)
        self._flowing.set()
        self.sent_signal = None
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, cwd=str(REPO))
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()
        self.port = None
        timeout = scaled(60 if valgrind else 15)
        m = self.wait_log(LISTEN_RE, timeout=timeout, must=False)
        if not m:
            self._kill()
            raise ServerError("server did not print 'listening on http://127.0.0.1:PORT' within %ss "
                              "(rc=%r); stderr:\n%s" % (timeout, self.proc.returncode, self.log))
        self.port = int(m.group(1))

    # -- stderr ---------------------------------------------------------------
    def _drain(self):
        while True:
            self._flowing.wait()
            raw = self.proc.stderr.readline()
            if not raw:
                break
            with self._cond:
                self._lines.append(raw.decode("utf-8", "replace"))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def stall_log(self):
        """Stop reading the server's stderr: once the pipe is full, the server
        finds its log stalled (what journald does when it cannot keep up)."""
        self._flowing.clear()

    def resume_log(self):
        self._flowing.set()

    @property
    def log(self):
        with self._cond:
            return "".join(self._lines)

    def log_mark(self):
        """An index into the log; pass it to wait_log(since=...) to ignore older lines."""
        with self._cond:
            return len(self._lines)

    def wait_log(self, pattern, timeout=5.0, since=0, must=True):
        """Wait until a stderr line (or the joined log) matches pattern; return the match."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + scaled(timeout)
        with self._cond:
            while True:
                text = "".join(self._lines[since:])
                m = rx.search(text)
                if m:
                    return m
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    if must:
                        raise AssertionError("pattern %r not found in server stderr within %ss:\n%s"
                                             % (rx.pattern, timeout, text[-4000:]))
                    return None
                self._cond.wait(remaining)

    # -- helpers --------------------------------------------------------------
    @property
    def tls(self):
        """The client ssl context of a TLS server (see use_tls), else None."""
        return getattr(self.port, "tls", None)

    def use_tls(self, ctx):
        """This server speaks TLS: clients made from its port (rawws, http) wrap
        their sockets in ctx, and url is wss://."""
        import rawws
        self.port = rawws.TLSPort(int(self.port), ctx)
        return self

    @property
    def url(self):
        return "%s://127.0.0.1:%d" % ("wss" if self.tls else "ws", self.port)

    def http(self, path, **kw):
        import rawws
        return rawws.http_get(self.port, path, timeout=scaled(kw.pop("timeout", 5)), **kw)

    def json(self, path, **kw):
        r = self.http(path, **kw)
        assert r.status == 200, "GET %s -> %r" % (path, r)
        return json.loads(r.body.decode("utf-8"))

    def terminate(self):
        """Send SIGTERM now (a test of graceful shutdown); teardown still checks the exit."""
        self.sent_signal = signal.SIGTERM
        self.proc.send_signal(signal.SIGTERM)

    def wait_exit(self, timeout=5.0):
        try:
            return self.proc.wait(timeout=scaled(timeout))
        except subprocess.TimeoutExpired:
            raise AssertionError("server still running %ss after SIGTERM" % timeout)

    def alive(self):
        return self.proc.poll() is None

    # -- shutdown -------------------------------------------------------------
    def _kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.sent_signal = signal.SIGKILL
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        self._thread.join(timeout=5)

    def stop(self):
        """SIGTERM, wait up to 5s, SIGKILL. Returns a list of problems found."""
        self.resume_log()
        problems = []
        rc = self.proc.poll()
        if rc is not None and self.sent_signal is None:
            problems.append("server exited on its own before teardown (rc=%r%s)"
                            % (rc, _describe_rc(rc)))
        else:
            if rc is None and self.sent_signal is None:
                self.proc.send_signal(signal.SIGTERM)
                self.sent_signal = signal.SIGTERM
            try:
                self.proc.wait(timeout=scaled(30 if self.valgrind else 5))
            except subprocess.TimeoutExpired:
                warnings.warn("wspush did not exit within 5s of SIGTERM; sent SIGKILL")
                self.proc.kill()
                self.sent_signal = signal.SIGKILL
                self.proc.wait(timeout=30)
            rc = self.proc.returncode
            if rc < 0 and -rc not in (signal.SIGTERM, signal.SIGKILL):
                problems.append("server died by signal %d after SIGTERM" % -rc)
            elif rc < 0 and -rc == signal.SIGKILL and self.sent_signal != signal.SIGKILL:
                problems.append("server was SIGKILLed by someone else")
            elif rc > 0:
                problems.append("server exited with status %d after SIGTERM%s" % (rc, _describe_rc(rc)))
        self._thread.join(timeout=5)
        log = self.log
        if SANITIZE_LOG:
            bad = [l for l in log.splitlines() if SANITIZER_RE.search(l)]
            if bad:
                problems.append("sanitizer reports in server stderr: %s" % bad[:5])
        if self.valgrind and VALGRIND_ERR_RE.search(log):
            problems.append("valgrind reported errors")
        return problems


def _describe_rc(rc):
    if rc is None:
        return ""
    if rc < 0:
        try:
            return " = killed by %s" % signal.Signals(-rc).name
        except ValueError:
            return " = killed by signal %d" % -rc
    if rc == 99:
        return " = valgrind errors"
    if rc == 23:
        return " = LeakSanitizer"
    return ""


@pytest.fixture
def spawn(request):
    """Factory: spawn(script, *args) -> Server. Every server is stopped and
    checked (no crash, no sanitizer/valgrind report) at teardown."""
    servers = []
    use_valgrind = VALGRIND and request.node.get_closest_marker("valgrind") is not None

    def _spawn(script, *args):
        s = Server(script, args, valgrind=use_valgrind)
        servers.append(s)
        return s

    yield _spawn
    problems = []
    for s in servers:
        p = s.stop()
        if p:
            problems.append("%s:\n  %s\n--- server stderr (tail) ---\n%s"
                            % (" ".join(s.cmd), "\n  ".join(p), s.log[-6000:]))
        else:
            # visible on failure only (pytest captures it)
            print("--- stderr of %s ---\n%s" % (" ".join(s.cmd), s.log[-6000:]))
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """A test CA and server certificates made with the openssl CLI (tlspki.py)."""
    import tlspki
    return tlspki.make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def echo_server(spawn):
    """handlers/echo.lua, the Tornado demo 1."""
    return spawn(REPO / "handlers" / "echo.lua")


@pytest.fixture
def app(spawn):
    """tests/integration/scripts/app.lua with a long close timeout, so that a
    server that waits for the peer's close reply (instead of closing TCP after
    failing a connection) is noticed."""
    return spawn(SCRIPTS / "app.lua", "--close-timeout", "10")


def script_line(path, marker):
    """1-based line number of the first line of the script that contains marker."""
    for i, line in enumerate(Path(path).read_text().splitlines(), 1):
        if marker in line:
            return i
    raise AssertionError("marker %r not in %s" % (marker, path))


def wait_for(fn, timeout=5.0, interval=0.02, desc="condition"):
    """Poll fn() until it returns a truthy value (bounded); return that value.
    Only for server-side state that no client can await directly."""
    deadline = time.monotonic() + scaled(timeout)
    last = None
    for _ in range(100000):
        last = fn()
        if last:
            return last
        if time.monotonic() > deadline:
            break
        time.sleep(interval)
    raise AssertionError("timed out after %ss waiting for %s (last value %r)" % (timeout, desc, last))
