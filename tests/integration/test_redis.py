"""wspush.redis end to end (docs/api.md, "Handlers that wait"): handlers call a
real redis-server that this test runs on 127.0.0.1 (Debian's
/usr/bin/redis-server, see redislib.py); the wspush side is
scripts/redis_app.lua, which gets the URL in its environment (REDIS_URL,
REDIS_TIMEOUT, REDIS_MAX_QUEUED) and reports every result with its Lua type.

One Redis serves the module (flushed before each test); tests that kill,
restart, or configure Redis (a password, ACL users, a unix socket, an
append-only file so that counts survive a SIGKILL) run one of their own.
A missing redis-server fails every test here with a message saying how to
install it: nothing is skipped.
"""
import json
import os
import selectors
import shutil
import signal
import struct
import tempfile
import time
from collections import namedtuple

import pytest

import rawws
from conftest import SCRIPTS, report, scaled, wait_for
from redislib import MISSING, REDIS_SERVER, RedisServer, free_port, process_tcp_peers
from test_startup import assert_start_error, run_server

APP = SCRIPTS / "redis_app.lua"
JSON = {"Content-Type": "application/json"}
WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"

# After Redis comes back, the client reconnects with backoff: 50 ms doubling
# up to 2 s, with jitter. A call queued meanwhile waits for the connection.
# So the first call that succeeds comes at most ~2 s (the longest backoff)
# plus jitter after Redis answers again; 4 s is the bound these tests allow.
RECONNECT_BOUND = 4.0


# --- fixtures ---------------------------------------------------------------------------

def need_redis():
    if not REDIS_SERVER.exists():
        pytest.fail(MISSING, pytrace=False)


@pytest.fixture(scope="module")
def redis_module(tmp_path_factory):
    need_redis()
    r = RedisServer(tmp_path_factory.mktemp("redis"), scale=scaled(1))
    r.start()
    yield r
    r.stop()


@pytest.fixture
def redis(redis_module):
    """The module's Redis, running and empty, its command statistics reset."""
    if not redis_module.alive():
        redis_module.start()
    with redis_module.client() as c:
        c.call("FLUSHALL")
        c.call("CONFIG", "RESETSTAT")
    return redis_module


@pytest.fixture
def make_redis(tmp_path):
    """Factory: a Redis of the test's own (make_redis(requirepass=..., appendonly=True,
    unix=True)); stopped at teardown."""
    need_redis()
    made, dirs = [], []

    def make(unix=False, **kw):
        d = tmp_path / ("redis%d" % len(made))
        if unix:
            # a unix socket path must stay under 108 bytes: not under tmp_path
            sd = tempfile.mkdtemp(prefix="wsredis", dir="/tmp")
            dirs.append(sd)
            kw["unixsocket"] = os.path.join(sd, "redis.sock")
        r = RedisServer(d, scale=scaled(1), **kw)
        made.append(r)
        return r.start()

    yield make
    for r in made:
        r.stop()
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


def start(spawn, monkeypatch, url, timeout=None, max_queued=None, args=()):
    """wspush on redis_app.lua, its client made for url (opts from the environment)."""
    monkeypatch.setenv("REDIS_URL", url)
    for name, v in (("REDIS_TIMEOUT", timeout), ("REDIS_MAX_QUEUED", max_queued)):
        if v is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, str(v))
    monkeypatch.delenv("REDIS_CALL_AT_LOAD", raising=False)
    return spawn(APP, *args)


# --- what the script reports -------------------------------------------------------------

Result = namedtuple("Result", "value err elapsed n")


def val(d):
    """A value described by redis_app.lua's describe() as Python: nil -> None,
    booleans -> bool, integers -> int, floats -> float, strings -> bytes,
    tables -> list (1..n), dict (other keys) or {"arr":, "keys":} (both)."""
    t = d["t"]
    if t == "nil":
        return None
    if t == "bool":
        return d["v"]
    if t == "integer":
        return int(d["v"])
    if t == "float":
        return float(d["v"])
    if t == "str":
        return bytes.fromhex(d["hex"])
    if t == "table":
        arr = [val(x) for x in d["arr"]]
        keys = {k: val(x) for k, x in d["keys"].items()} if isinstance(d["keys"], dict) else {}
        if keys and arr:
            return {"arr": arr, "keys": keys}
        return keys if keys else arr
    raise AssertionError("unexpected Lua value %r" % d)


def same(a, b):
    """Equal, with the same types all the way down (True is not 1, b"1" is not 1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


def result(out):
    assert "raised" not in out, "the call raised: %s" % out.get("raised")
    err = val(out["err"])
    if err is not None:
        assert isinstance(err, bytes), "err is not a string: %r" % (err,)
        err = err.decode("utf-8", "replace")
    return Result(val(out["v"]), err, out["elapsed"], out["n"])


def A(v):
    """An argument for /call in the script's JSON form."""
    if isinstance(v, bool):
        return {"bool": v}
    if isinstance(v, int):
        return {"int": v}
    if isinstance(v, float):
        return {"float": v}
    if isinstance(v, bytes):
        return {"hex": v.hex()}
    return v


def post(s, path, obj, timeout=10):
    return s.json(path, method="POST", body=json.dumps(obj).encode(), headers=JSON,
                  timeout=timeout)


def call_out(s, *args, timeout=10):
    return post(s, "/call", {"args": [A(a) for a in args]}, timeout)


def call(s, *args, timeout=10):
    """r:call(args...) in an HTTP handler; its (value, err, elapsed, n)."""
    return result(call_out(s, *args, timeout=timeout))


def ok(s, *args, timeout=10):
    """r:call(args...) that must succeed; its value."""
    r = call(s, *args, timeout=timeout)
    assert r.err is None, "%r failed: %r" % (args, r)
    return r.value


def expect(s, args, want):
    r = call(s, *args)
    assert r.err is None and same(r.value, want), "%r -> %r, want %r" % (args, r, want)


def raised(s, *args):
    """r:call(args...) must raise: its message."""
    out = call_out(s, *args)
    assert "raised" in out, "r:call%r did not raise: %r" % (args, result(out))
    return out["raised"]


def transaction(s, cmds, timeout=10):
    return post(s, "/transaction", {"cmds": [[A(a) for a in c] for c in cmds]}, timeout)


def stats(s):
    return s.json("/stats")


def ws(s, path="/ws", timeout=5):
    return rawws.upgrade(s.port, path, timeout=scaled(timeout))


def ws_send(c, *args):
    c.send_text("\t".join(args))


def ws_result(c, timeout=10):
    return result(json.loads(c.recv_text(timeout=scaled(timeout))))


def wspush_clients(direct, server, redis):
    """The entries of CLIENT LIST that are the wspush process's connections."""
    ports = process_tcp_peers(server.proc.pid, redis.port)
    return [e for e in direct.client_list() if int(e["addr"].rsplit(":", 1)[1]) in ports]


def until_ok(s, args, bound, what):
    """Call args again and again (each call bounded by the client's timeout)
    until one succeeds; the seconds that took and its value. Bounded by `bound`."""
    t0 = time.monotonic()
    seen = []
    for _ in range(10000):
        r = call(s, *args, timeout=bound + 10)
        if r.err is None:
            return time.monotonic() - t0, r.value
        seen.append(r.err)
        if time.monotonic() - t0 > scaled(bound):
            break
        time.sleep(0.02)  # a failed call returned at once: do not spin on it
    raise AssertionError("%s: no call of %r succeeded within %ss; errors: %r"
                         % (what, args, bound, seen[-5:]))


# --- many clients from one thread ---------------------------------------------------------

def parse_frames(buf):
    """Whole server frames at the front of buf (consumed): [(opcode, payload, fin)]."""
    out = []
    for _ in range(100000):
        if len(buf) < 2:
            break
        b0, b1 = buf[0], buf[1]
        n, off = b1 & 0x7F, 2
        if n == 126:
            if len(buf) < 4:
                break
            n, off = struct.unpack("!H", bytes(buf[2:4]))[0], 4
        elif n == 127:
            if len(buf) < 10:
                break
            n, off = struct.unpack("!Q", bytes(buf[2:10]))[0], 10
        if len(buf) < off + n:
            break
        out.append((b0 & 0x0F, bytes(buf[off:off + n]), bool(b0 & 0x80)))
        del buf[:off + n]
    return out


class Swarm:
    """n WebSocket clients of one path, driven from one thread with a selector."""

    def __init__(self, s, path, n):
        self.conns = []
        try:
            for _ in range(n):
                self.conns.append(ws(s, path, timeout=10))
        except BaseException:
            self.close()
            raise

    def close(self):
        for c in self.conns:
            c.close()

    def send(self, i, texts):
        self.conns[i].send(b"".join(rawws.build_frame(rawws.OP_TEXT, t) for t in texts))

    def collect(self, want, timeout):
        """Read until client i has want[i] text messages; their texts, per client."""
        got = [[] for _ in self.conns]

        def take(i):
            for op, payload, fin in parse_frames(self.conns[i].buf):
                if op in (rawws.OP_PING, rawws.OP_PONG):
                    continue
                assert op == rawws.OP_TEXT and fin, "client %d: unexpected frame op=%d %r" % (
                    i, op, payload[:100])
                got[i].append(payload.decode())

        sel = selectors.DefaultSelector()
        try:
            for i, c in enumerate(self.conns):
                take(i)
                if len(got[i]) < want[i]:
                    sel.register(c.sock, selectors.EVENT_READ, i)
            deadline = time.monotonic() + scaled(timeout)
            for _ in range(10 ** 7):
                if not sel.get_map():
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    waiting = [i for i in range(len(self.conns)) if len(got[i]) < want[i]]
                    raise AssertionError("timed out after %ss: %d clients still wait, e.g. client %d "
                                         "has %d of %d answers" % (timeout, len(waiting), waiting[0],
                                                                   len(got[waiting[0]]),
                                                                   want[waiting[0]]))
                for key, _ in sel.select(min(left, 1.0)):
                    i = key.data
                    c = self.conns[i]
                    chunk = c.sock.recv(1 << 16)
                    assert chunk, "client %d: the server closed the connection after %d answers" % (
                        i, len(got[i]))
                    c.buf += chunk
                    take(i)
                    if len(got[i]) >= want[i]:
                        sel.unregister(c.sock)
            raise AssertionError("unbounded collect")
        finally:
            sel.close()


# --- 1. replies and their Lua shapes --------------------------------------------------------

@pytest.mark.valgrind
def test_set_get_del_and_a_missing_key(spawn, monkeypatch, redis):
    s = start(spawn, monkeypatch, redis.url)
    expect(s, ("SET", "k", "v"), True)
    expect(s, ("GET", "k"), b"v")
    r = call(s, "GET", "missing")
    assert r.value is None and r.err is None, r  # a null bulk is nil, and no error
    expect(s, ("INCR", "n"), 1)
    expect(s, ("INCR", "n"), 2)
    expect(s, ("DEL", "k", "n", "missing"), 2)
    expect(s, ("EXISTS", "k"), 0)
    # what wspush wrote is what a direct client reads
    expect(s, ("SET", "shared", "from wspush"), True)
    with redis.client() as c:
        assert c.call("GET", "shared") == b"from wspush"
        c.call("SET", "direct", "from a client")
    expect(s, ("GET", "direct"), b"from a client")


def test_status_ok_is_true_and_other_status_replies_are_strings(spawn, monkeypatch, redis):
    s = start(spawn, monkeypatch, redis.url)
    expect(s, ("PING",), b"PONG")
    expect(s, ("SET", "k", "v"), True)
    expect(s, ("TYPE", "k"), b"string")
    expect(s, ("TYPE", "nothing"), b"none")
    expect(s, ("RPUSH", "l", "a"), 1)
    expect(s, ("TYPE", "l"), b"list")
    expect(s, ("LSET", "l", "0", "b"), True)
    # a bulk string that reads "OK" is a string, not true
    expect(s, ("SET", "ok", "OK"), True)
    expect(s, ("GET", "ok"), b"OK")
    expect(s, ("ECHO", "OK"), b"OK")


def test_integers_negative_and_beyond_double_precision(spawn, monkeypatch, redis):
    s = start(spawn, monkeypatch, redis.url)
    expect(s, ("DECRBY", "n", "10"), -10)
    expect(s, ("INCR", "n"), -9)
    expect(s, ("GET", "n"), b"-9")  # stored as a string: a bulk reply
    expect(s, ("SET", "big", "9007199254740993"), True)  # 2^53 + 1: a double cannot hold it
    expect(s, ("INCR", "big"), 9007199254740994)
    expect(s, ("SET", "max", str(2 ** 63 - 2)), True)
    expect(s, ("INCR", "max"), 2 ** 63 - 1)
    expect(s, ("DECRBY", "min", str(2 ** 63 - 1)), -(2 ** 63 - 1))
    expect(s, ("DECR", "min"), -(2 ** 63))
    expect(s, ("STRLEN", "nothing"), 0)


def test_number_arguments_are_sent_as_redis_expects(spawn, monkeypatch, redis):
    """Arguments may be numbers: an integer goes as its digits, an integer-valued
    float too (without ".0", which INCRBY would refuse), another float as tostring."""
    s = start(spawn, monkeypatch, redis.url)
    expect(s, ("INCRBY", "n", 5), 5)
    expect(s, ("INCRBY", "n", 5.0), 10)
    expect(s, ("INCRBY", "n", -3), 7)
    expect(s, ("INCRBYFLOAT", "f", 1.5), b"1.5")
    expect(s, ("SET", 42, 7), True)
    with redis.client() as c:
        assert c.call("GET", "42") == b"7"
        assert c.call("GET", "n") == b"7"
    expect(s, ("LPUSH", "l", 1, 2.0, 2.5), 3)
    expect(s, ("LRANGE", "l", 0, -1), [b"2.5", b"2", b"1"])


def test_arrays_with_null_elements_empty_arrays_and_a_null_array(spawn, monkeypatch, redis):
    s = start(spawn, monkeypatch, redis.url)
    expect(s, ("MSET", "a", "1", "b", "2"), True)
    expect(s, ("MGET", "a", "missing", "b", "missing2"), [b"1", False, b"2", False])
    expect(s, ("MGET", "missing"), [False])
    expect(s, ("LRANGE", "nolist", "0", "-1"), [])
    expect(s, ("HSET", "h", "f1", "v1", "f2", "v2"), 2)
    expect(s, ("HMGET", "h", "f1", "nope", "f2"), [b"v1", False, b"v2"])
    # XREAD without BLOCK on a stream with nothing new: a null array -> nil
    r = call(s, "XREAD", "STREAMS", "nostream", "0")
    assert r.value is None and r.err is None, r


def test_nested_arrays_and_error_elements(spawn, monkeypatch, redis):
    s = start(spawn, monkeypatch, redis.url)
    expect(s, ("EVAL", "return {1, {2, {3, 'x'}}, {}, 'y'}", "0"), [1, [2, [3, b"x"]], [], b"y"])
    # an error inside an array is {err = text} at its place; false in a script is a null
    expect(s, ("EVAL", "return {1, redis.error_reply('boom'), false, 'z'}", "0"),
           [1, {"err": b"ERR boom"}, False, b"z"])
    # a real command's nested reply: XREAD's streams, entries, fields
    with redis.client() as c:
        eid = c.call("XADD", "st", "1-1", "f", "v", "g", "w")
        assert eid == b"1-1"
    expect(s, ("XREAD", "COUNT", "5", "STREAMS", "st", "0"),
           [[b"st", [[b"1-1", [b"f", b"v", b"g", b"w"]]]]])


def test_error_replies_come_back_as_nil_and_redis_text(spawn, monkeypatch, redis):
    s = start(spawn, monkeypatch, redis.url)
    expect(s, ("RPUSH", "l", "x"), 1)
    r = call(s, "GET", "l")
    assert r.value is None and r.err == WRONGTYPE, r
    assert r.n == 2, r  # nil, err: two values
    r = call(s, "NOSUCHCMD", "x")
    assert r.value is None and r.err.startswith("ERR unknown command"), r
    assert "NOSUCHCMD" in r.err, r
    r = call(s, "GET")
    assert r.value is None and r.err == "ERR wrong number of arguments for 'get' command", r
    r = call(s, "EVAL", "return redis.error_reply('MYERR custom text')", "0")
    assert r.value is None and r.err == "MYERR custom text", r
    # the connection is as good as before: each next reply is its own
    expect(s, ("SET", "k", "after errors"), True)
    expect(s, ("GET", "k"), b"after errors")


def test_binary_safe_arguments_keys_and_values(spawn, monkeypatch, redis):
    s = start(spawn, monkeypatch, redis.url)
    value = bytes(range(256)) + b"\r\n$5\r\n*1\r\n:1\r\n" + bytes(range(255, -1, -1))
    key = b"k\x00\r\n\xff"
    expect(s, ("SET", key, value), True)
    expect(s, ("GET", key), value)
    expect(s, ("STRLEN", key), len(value))
    with redis.client() as c:  # it went to Redis as those very bytes
        assert c.call("GET", key) == value
        c.call("SET", "crlf", b"\r\n-ERR not an error\r\n+OK\r\n")
    expect(s, ("GET", "crlf"), b"\r\n-ERR not an error\r\n+OK\r\n")
    expect(s, ("SET", "empty", b""), True)
    expect(s, ("GET", "empty"), b"")
    expect(s, ("MGET", key, "empty", "none"), [value, b"", False])


@pytest.mark.valgrind
def test_binary_websocket_messages_round_trip_through_set_and_get(spawn, monkeypatch, redis):
    s = start(spawn, monkeypatch, redis.url)
    with ws(s, "/bin") as c:
        for data in (bytes(range(256)), b"", b"\r\n" * 1000, os.urandom(1 << 20)):
            c.send_binary(data)
            op, got = c.recv_message(timeout=scaled(10))
            assert op == rawws.OP_BINARY, (op, got[:100])
            assert got == data, "%d bytes sent, %d came back" % (len(data), len(got))


def test_arguments_that_are_not_strings_or_numbers_raise(spawn, monkeypatch, redis):
    s = start(spawn, monkeypatch, redis.url)
    raised(s, "SET", "k", {"a": "table"})
    raised(s, "GET", True)
    raised(s, "SET", "k", False)
    r = call(s, "GET", "k")
    assert r.value is None and r.err is None, r  # nothing was set


# --- 2. transactions ------------------------------------------------------------------------

@pytest.mark.valgrind
def test_transaction_returns_the_exec_reply(spawn, monkeypatch, redis):
    s = start(spawn, monkeypatch, redis.url)
    r = result(transaction(s, [["INCR", "a"], ["GET", "a"]]))
    assert r.err is None and same(r.value, [1, b"1"]), r
    r = result(transaction(s, [["INCR", "a"], ["GET", "a"]]))
    assert r.err is None and same(r.value, [2, b"2"]), r
    r = result(transaction(s, [["SET", "b", "x"], ["GET", "missing"], ["MGET", "b", "missing"],
                               ["PING"], ["DEL", "b"]]))
    assert r.err is None and same(r.value, [True, False, [b"x", False], b"PONG", 1]), r
    with redis.client() as c:
        assert c.call("GET", "a") == b"2"
        assert c.call("EXISTS", "b") == 0


def test_a_command_failing_inside_a_transaction_gives_err_at_its_place(spawn, monkeypatch, redis):
    s = start(spawn, monkeypatch, redis.url)
    r = result(transaction(s, [["SET", "t", "str"], ["LPUSH", "t", "x"], ["GET", "t"],
                               ["INCR", "c"]]))
    assert r.err is None, r
    assert same(r.value, [True, {"err": WRONGTYPE.encode()}, b"str", 1]), r


def test_a_transaction_refused_at_queue_time_returns_execabort(spawn, monkeypatch, redis):
    s = start(spawn, monkeypatch, redis.url)
    r = result(transaction(s, [["SET", "a", "1"], ["NOSUCHCMD", "x"], ["INCR", "c"]]))
    assert r.value is None and r.err.startswith("EXECABORT"), r
    with redis.client() as c:  # none of it ran
        assert c.call("EXISTS", "a", "c") == 0
    # and the connection is out of MULTI: plain calls go on
    expect(s, ("SET", "a", "2"), True)
    expect(s, ("GET", "a"), b"2")


def test_transaction_with_a_refused_command_or_no_command_raises_and_sends_nothing(
        spawn, monkeypatch, redis):
    s = start(spawn, monkeypatch, redis.url)
    for cmds in ([["SET", "z", "1"], ["blpop", "l", "0"]],
                 [["SET", "z", "1"], ["SUBSCRIBE", "ch"]],
                 [["SET", "z", "1"], ["MULTI"]],
                 [["SET", "z", "1"], ["exec"]],
                 [["SET", "z", "1"], ["SELECT", "2"]]):
        out = transaction(s, cmds)
        assert "raised" in out, (cmds, out)
        name = cmds[-1][0].upper()
        assert "wspush.redis" in out["raised"] and name in out["raised"] \
            and "refused" in out["raised"], (cmds, out["raised"])
    out = transaction(s, [])
    assert "raised" in out, out
    with redis.client() as c:
        assert c.call("EXISTS", "z") == 0
        calls = c.command_calls()
    assert "multi" not in calls and "set" not in calls, calls


def test_transactions_from_many_handlers_do_not_interleave(spawn, monkeypatch, redis):
    """50 connections each send 10 messages at once, alternately a plain INCR and a
    transaction of two INCRs on a key of their own, all over the one Redis
    connection: nobody else's command may land between a MULTI and its EXEC
    (it would be answered QUEUED, and the counts would not follow)."""
    s = start(spawn, monkeypatch, redis.url)
    n, m = 50, 10
    sw = Swarm(s, "/ws", n)
    try:
        for i in range(n):
            msgs = []
            for j in range(m):
                key = "tx:%d" % i
                msgs.append("INCR\t" + key if j % 2 == 0 else "TX\nINCR\t%s\nINCR\t%s" % (key, key))
            sw.send(i, msgs)
        got = sw.collect([m] * n, timeout=20)
    finally:
        sw.close()
    for i in range(n):
        want, count = [], 0
        for j in range(m):
            if j % 2 == 0:
                count += 1
                want.append(count)
            else:
                want.append([count + 1, count + 2])
                count += 2
        values = []
        for text in got[i]:
            r = result(json.loads(text))
            assert r.err is None, (i, r)
            values.append(r.value)
        assert same(values, want), "client %d: %r, want %r" % (i, values, want)
    with redis.client() as c:
        assert c.call("MGET", *["tx:%d" % i for i in range(n)]) == [b"15"] * n
        calls = c.command_calls()
    assert calls.get("multi") == n * m // 2 and calls.get("exec") == n * m // 2, calls


# --- 3. refused commands --------------------------------------------------------------------

REFUSED = [
    ("SUBSCRIBE", "ch"), ("psubscribe", "c*"), ("SSUBSCRIBE", "ch"), ("UNSUBSCRIBE",),
    ("punsubscribe",), ("SUNSUBSCRIBE", "ch"), ("MONITOR",), ("WATCH", "k"), ("unwatch",),
    ("MULTI",), ("Exec",), ("DISCARD",), ("BLPOP", "l", "0"), ("brpop", "l", "0"),
    ("BRPOPLPUSH", "a", "b", "0"), ("BLMOVE", "a", "b", "LEFT", "RIGHT", "0"),
    ("blmpop", "0", "1", "l", "LEFT"), ("BZPOPMIN", "z", "0"), ("bzpopmax", "z", "0"),
    ("BZMPOP", "0", "1", "z", "MIN"), ("WAIT", "1", "0"), ("waitaof", "1", "0", "0"),
    ("XREAD", "BLOCK", "0", "STREAMS", "s", "$"),
    ("xread", "COUNT", "1", "block", "10", "STREAMS", "s", "$"),
    ("XREADGROUP", "GROUP", "g", "c", "BLOCK", "0", "STREAMS", "s", ">"),
    ("QUIT",), ("RESET",), ("SELECT", "1"), ("auth", "pw"), ("AUTH", "user", "pw"), ("HELLO", "3"),
    ("CLIENT", "REPLY", "OFF"), ("client", "reply", "skip"), ("SYNC",), ("psync", "?", "-1"),
]


def test_refused_commands_raise_and_nothing_is_sent(spawn, monkeypatch, redis):
    s = start(spawn, monkeypatch, redis.url)
    for args in REFUSED:
        msg = raised(s, *args)
        assert "wspush.redis" in msg and "refused" in msg, (args, msg)
        assert args[0].upper() in msg, (args, msg)
    expect(s, ("PING",), b"PONG")
    with redis.client() as c:
        calls = c.command_calls()
    refused_names = {a[0].lower() for a in REFUSED} | {"client|reply"}
    assert not refused_names & set(calls), calls
    assert calls.get("ping", 0) >= 1, calls  # the statistics are live


def test_plain_xread_is_allowed_and_xread_block_is_refused(spawn, monkeypatch, redis):
    s = start(spawn, monkeypatch, redis.url)
    expect(s, ("XADD", "s", "5-1", "k", "v"), b"5-1")
    expect(s, ("XREAD", "STREAMS", "s", "0"), [[b"s", [[b"5-1", [b"k", b"v"]]]]])
    expect(s, ("XREAD", "COUNT", "1", "STREAMS", "s", "5-1"), None)
    expect(s, ("XGROUP", "CREATE", "s", "g", "0"), True)
    expect(s, ("XREADGROUP", "GROUP", "g", "c", "COUNT", "1", "STREAMS", "s", ">"),
           [[b"s", [[b"5-1", [b"k", b"v"]]]]])
    for args in (("XREAD", "BLOCK", "100", "STREAMS", "s", "$"),
                 ("XREADGROUP", "GROUP", "g", "c", "block", "100", "STREAMS", "s", ">")):
        msg = raised(s, *args)
        assert "wspush.redis" in msg and args[0] in msg and "refused" in msg, msg


# --- 4. the client object -------------------------------------------------------------------

def test_one_client_per_url_and_its_tostring(spawn, monkeypatch, redis):
    s = start(spawn, monkeypatch, redis.url + "/0")
    info = s.json("/client")
    assert info["same"] is True and info["other_differs"] is True, info
    assert info["tostring"] == "wspush.redis(%s/0)" % redis.url, info
    assert info["other_tostring"] == "wspush.redis(redis://127.0.0.1:1/15)", info


def test_creating_a_client_does_not_connect_the_first_call_does(spawn, monkeypatch, redis):
    with redis.client() as c:
        before = c.connections_received()
        s = start(spawn, monkeypatch, redis.url)
        assert s.http("/ping").body == b"pong"
        assert s.json("/client")["same"] is True
        assert c.connections_received() == before, "wspush connected before any call"
        assert wspush_clients(c, s, redis) == []
        expect(s, ("PING",), b"PONG")
        assert c.connections_received() == before + 1
        assert len(wspush_clients(c, s, redis)) == 1


# --- 5. pipelining ---------------------------------------------------------------------------

def test_10000_calls_from_1000_connections_share_one_redis_connection(spawn, monkeypatch, redis,
                                                                      capsys):
    """1000 WebSocket clients each send 10 messages at once; every message is one
    call (odd ones INCR a key of the client's own, even ones ECHO a token unique
    to the message), so 1000 handlers wait at once and 10,000 calls go over
    one connection. Every answer is checked against its own caller."""
    n, m = 1000, 10
    with redis.client() as c:
        before = c.connections_received()
        s = start(spawn, monkeypatch, redis.url)
        sw = Swarm(s, "/ws", n)
        try:
            t0 = time.monotonic()
            for i in range(n):
                sw.send(i, ["INCR\tpipe:%d" % i if j % 2 == 0 else "ECHO\ttok:%d:%d" % (i, j)
                            for j in range(m)])
            got = sw.collect([m] * n, timeout=40)
            took = time.monotonic() - t0
            # while the clients are still connected: one connection, from wspush
            mine = wspush_clients(c, s, redis)
            peers = process_tcp_peers(s.proc.pid, redis.port)
            received = c.connections_received() - before
        finally:
            sw.close()
        bad = []
        for i in range(n):
            want = [(j // 2 + 1) if j % 2 == 0 else ("tok:%d:%d" % (i, j)).encode() for j in range(m)]
            values = []
            for text in got[i]:
                r = result(json.loads(text))
                values.append(r.value if r.err is None else ("err", r.err))
            if not same(values, want):
                bad.append((i, values, want))
        assert not bad, "%d clients got wrong answers, e.g. %r" % (len(bad), bad[:3])
        assert c.call("MGET", *["pipe:%d" % i for i in range(n)]) == [b"5"] * n
        calls = c.command_calls()
    assert calls.get("incr") == n * m // 2 and calls.get("echo") == n * m // 2, calls
    assert received == 1, "Redis saw %d connections from wspush" % received
    assert len(mine) == 1 and len(peers) == 1, (mine, peers)
    report(capsys, "redis: %d calls from %d connections over one Redis connection in %.2f s "
           "(%.0f calls/s)" % (n * m, n, took, n * m / took))
    assert took < scaled(30), took


# --- 6. Redis goes away, answers late, or is not there ---------------------------------------

def test_redis_killed_between_calls_then_back(spawn, monkeypatch, make_redis):
    """Redis with an append-only file (so its counts survive a SIGKILL). A call
    after the kill fails at once or at the timeout; wspush keeps serving; after
    a restart on the same port, calls succeed again within RECONNECT_BOUND."""
    rs = make_redis(appendonly=True)
    s = start(spawn, monkeypatch, rs.url, timeout=0.5)
    for i in (1, 2, 3):
        expect(s, ("INCR", "k"), i)
    rs.kill()
    t0 = time.monotonic()
    r = call(s, "GET", "k")
    took = time.monotonic() - t0
    assert r.value is None and r.err in ("connection lost", "timeout"), r
    assert took < scaled(2), took
    # queued while Redis is down: the timeout
    r = call(s, "GET", "k")
    assert r.value is None and r.err == "timeout", r
    assert 0.45 <= r.elapsed <= scaled(1.5), r
    assert s.http("/ping").body == b"pong"  # everyone else is served meanwhile
    rs.restart()
    took, value = until_ok(s, ("PING",), RECONNECT_BOUND, "after the restart")
    assert value == b"PONG"
    assert took <= scaled(RECONNECT_BOUND), took
    # nothing was lost, nothing was counted twice
    expect(s, ("INCR", "k"), 4)
    with rs.client() as c:
        assert len(wspush_clients(c, s, rs)) == 1


def test_redis_killed_mid_pipeline_calls_fail_with_connection_lost_and_none_runs_twice(
        spawn, monkeypatch, make_redis):
    """DEBUG SLEEP holds Redis; 50 INCRs pile up behind it on the one connection;
    Redis is SIGKILLed. Every call in flight returns nil, "connection lost" at
    once, and none of them is executed, then or after the reconnect (Redis keeps
    an append-only file, so the counts from before the kill survive it)."""
    n = 50
    rs = make_redis(appendonly=True)
    s = start(spawn, monkeypatch, rs.url, timeout=scaled(20))
    sleeper = ws(s)
    clients = []
    try:
        for i in range(n):
            clients.append(ws(s))
        for i, c in enumerate(clients):  # each key counts 1, and the connection is up
            ws_send(c, "INCR", "pile:%d" % i)
            r = ws_result(c)
            assert r.err is None and same(r.value, 1), r
        base = stats(s)["inflight"]
        assert base == 0, base
        ws_send(sleeper, "DEBUG", "SLEEP", "%g" % scaled(5))
        wait_for(lambda: stats(s)["inflight"] == 1, timeout=5, desc="DEBUG SLEEP in flight")
        for i, c in enumerate(clients):
            ws_send(c, "INCR", "pile:%d" % i)
        wait_for(lambda: stats(s)["inflight"] == n + 1, timeout=5, desc="the INCRs in flight")
        rs.kill()
        t_kill = time.monotonic()
        r = ws_result(sleeper, timeout=5)
        assert r.value is None and r.err == "connection lost", r
        for i, c in enumerate(clients):
            r = ws_result(c, timeout=5)
            assert r.value is None and r.err == "connection lost", (i, r)
        assert time.monotonic() - t_kill < scaled(2)  # at once, not at the 20 s timeout
        assert stats(s)["inflight"] == 0
    finally:
        sleeper.close()
        for c in clients:
            c.close()
    rs.restart()
    # a call made now waits for the reconnect (its timeout is long)
    r = call(s, "MGET", *["pile:%d" % i for i in range(n)], timeout=scaled(30))
    assert r.err is None and same(r.value, [b"1"] * n), r
    assert r.elapsed <= scaled(RECONNECT_BOUND), r
    with rs.client() as c:
        assert c.call("MGET", *["pile:%d" % i for i in range(n)]) == [b"1"] * n
        calls = c.command_calls()
    assert "incr" not in calls and "debug" not in calls, "re-sent after the reconnect: %r" % calls


def test_timeout_while_redis_sleeps_and_others_are_served(spawn, monkeypatch, redis):
    s = start(spawn, monkeypatch, redis.url, timeout=0.3)
    expect(s, ("SET", "k", "v"), True)
    with ws(s) as c, redis.client(timeout=scaled(10)) as direct:
        t0 = time.monotonic()
        ws_send(c, "DEBUG", "SLEEP", "1")
        wait_for(lambda: stats(s)["inflight"] == 1, timeout=2, desc="DEBUG SLEEP in flight")
        t1 = time.monotonic()
        assert s.http("/ping").body == b"pong"
        served = time.monotonic() - t1
        r = ws_result(c, timeout=5)
        took = time.monotonic() - t0
        assert r.value is None and r.err == "timeout", r
        assert 0.28 <= r.elapsed <= scaled(0.8), r
        assert took < scaled(0.95), "the timeout came with Redis's answer (%.2f s)" % took
        assert served < 0.25, "a plain route took %.3f s while a call waited" % served
        # Redis answers again when its sleep ends (a direct PING waits for that)
        assert direct.call("PING") == "PONG"
    # the late OK of DEBUG SLEEP must not reach anyone: each reply is its caller's
    deadline = time.monotonic() + scaled(3)
    for _ in range(1000):
        r = call(s, "GET", "k")
        if r.err in ("timeout", "connection lost") and time.monotonic() < deadline:
            continue
        break
    assert r.err is None and same(r.value, b"v"), r
    expect(s, ("SET", "k2", "w"), True)
    expect(s, ("GET", "k2"), b"w")
    expect(s, ("GET", "k"), b"v")


def test_later_opts_replace_the_timeout(spawn, monkeypatch, redis):
    s = start(spawn, monkeypatch, redis.url)  # the default timeout: 5 s
    expect(s, ("SET", "k", "x"), True)
    assert s.json("/opts?timeout=0.2")["same"] is True
    with redis.client(timeout=scaled(10)) as direct:
        r = call(s, "DEBUG", "SLEEP", "0.6")
        assert r.value is None and r.err == "timeout" and r.elapsed < 0.5, r
        assert direct.call("PING") == "PONG"  # awake again
    assert s.json("/opts?timeout=5")["same"] is True
    deadline = time.monotonic() + scaled(3)
    for _ in range(1000):
        r = call(s, "GET", "k")
        if r.err in ("timeout", "connection lost") and time.monotonic() < deadline:
            continue
        break
    assert r.err is None and same(r.value, b"x"), r
    r = call(s, "DEBUG", "SLEEP", "0.4")
    assert r.err is None and r.value is True and r.elapsed >= 0.38, r


def test_redis_unavailable_when_max_queued_calls_already_wait(spawn, monkeypatch, tmp_path):
    """Nothing listens at the URL: calls wait for a connection, at most
    max_queued (3) of them; the next ones get nil, "redis unavailable" at once."""
    port = free_port()
    s = start(spawn, monkeypatch, "redis://127.0.0.1:%d" % port, timeout=1.5, max_queued=3)
    clients = [ws(s) for _ in range(5)]
    try:
        for k, c in enumerate(clients[:3]):
            ws_send(c, "PING")
            wait_for(lambda: stats(s)["inflight"] == k + 1, timeout=2, desc="call %d queued" % k)
        for c in clients[3:]:
            t0 = time.monotonic()
            ws_send(c, "PING")
            r = ws_result(c, timeout=1)
            assert r.value is None and r.err == "redis unavailable", r
            assert r.elapsed < 0.1 and time.monotonic() - t0 < 0.5, r
        for c in clients[:3]:
            r = ws_result(c, timeout=5)
            assert r.value is None and r.err == "timeout" and r.elapsed >= 1.45, r
    finally:
        for c in clients:
            c.close()
    # the queue has room again: the next call waits its timeout, not refused
    r = call(s, "PING")
    assert r.value is None and r.err == "timeout", r


# --- 7. AUTH, ACL users, SELECT, unix sockets ----------------------------------------------

def test_requirepass_auth_is_replayed_after_a_restart(spawn, monkeypatch, make_redis):
    rs = make_redis(requirepass="s3cretpw")
    url = "redis://:s3cretpw@127.0.0.1:%d" % rs.port
    s = start(spawn, monkeypatch, url, timeout=0.5, args=("--log-level", "debug"))
    expect(s, ("SET", "k", "v"), True)
    expect(s, ("ACL", "WHOAMI"), b"default")
    assert s.json("/client")["tostring"] == "wspush.redis(redis://:***@127.0.0.1:%d)" % rs.port
    rs.kill()
    rs.restart()
    until_ok(s, ("PING",), RECONNECT_BOUND, "after the restart")
    expect(s, ("SET", "k2", "v2"), True)  # NOAUTH if AUTH were not replayed
    expect(s, ("GET", "k2"), b"v2")
    assert "s3cretpw" not in s.log, "the password is in the server's log"


def test_acl_user_and_password(spawn, monkeypatch, make_redis):
    rs = make_redis(requirepass="adminpw")
    with rs.client() as c:
        assert c.call("ACL", "SETUSER", "alice", "on", ">alicepw", "~*", "&*", "+@all") == "OK"
    url = "redis://alice:alicepw@127.0.0.1:%d/2" % rs.port
    s = start(spawn, monkeypatch, url, args=("--log-level", "debug"))
    expect(s, ("ACL", "WHOAMI"), b"alice")
    expect(s, ("SET", "k", "alice's"), True)
    with rs.client(db=2) as c:
        assert c.call("GET", "k") == b"alice's"
        me = wspush_clients(c, s, rs)
    assert len(me) == 1 and me[0]["user"] == "alice" and me[0]["db"] == "2", me
    assert s.json("/client")["tostring"] == "wspush.redis(redis://alice:***@127.0.0.1:%d/2)" % rs.port
    assert "alicepw" not in s.log, "the password is in the server's log"


@pytest.mark.parametrize("userinfo", [":wrongpw", "alice:wrongpw", ""],
                         ids=["wrong-password", "wrong-user-password", "no-password"])
def test_wrong_or_missing_password_returns_redis_text_and_the_log_hides_it(
        spawn, monkeypatch, make_redis, userinfo):
    rs = make_redis(requirepass="rightpw")
    with rs.client() as c:
        c.call("ACL", "SETUSER", "alice", "on", ">alicepw", "~*", "+@all")
    url = "redis://%s127.0.0.1:%d" % (userinfo + "@" if userinfo else "", rs.port)
    s = start(spawn, monkeypatch, url, timeout=3, args=("--log-level", "debug"))
    for _ in range(2):
        t0 = time.monotonic()
        r = call(s, "GET", "k")
        assert r.value is None, r
        assert r.err.startswith("WRONGPASS") or r.err.startswith("NOAUTH"), r
        assert time.monotonic() - t0 < scaled(1.5), "the call waited for %.2f s" % (
            time.monotonic() - t0)
    assert s.http("/ping").body == b"pong"
    if userinfo:
        # the log names the client, its password replaced
        user = userinfo.split(":")[0]
        s.wait_log(r"redis://%s:\*\*\*@127\.0\.0\.1:%d" % (user, rs.port), timeout=3)
        assert "wrongpw" not in s.log, "the password is in the server's log"


def test_select_db_from_the_url_is_replayed_after_a_reconnect(spawn, monkeypatch, make_redis):
    rs = make_redis()
    s = start(spawn, monkeypatch, rs.url + "/3", timeout=0.5)
    expect(s, ("SET", "sel:a", "1"), True)
    with rs.client() as c:
        assert c.call("GET", "sel:a") is None  # not in db 0
        c.call("SELECT", "3")
        assert c.call("GET", "sel:a") == b"1"
        me = wspush_clients(c, s, rs)
        assert len(me) == 1 and me[0]["db"] == "3", me
    rs.kill()
    rs.restart()  # without persistence: empty again
    until_ok(s, ("PING",), RECONNECT_BOUND, "after the restart")
    expect(s, ("SET", "sel:b", "2"), True)
    expect(s, ("GET", "sel:b"), b"2")
    with rs.client() as c:
        assert c.call("GET", "sel:b") is None
        c.call("SELECT", "3")
        assert c.call("GET", "sel:b") == b"2"
        me = wspush_clients(c, s, rs)
        assert len(me) == 1 and me[0]["db"] == "3", me


def test_unix_socket_url_with_db(spawn, monkeypatch, make_redis):
    rs = make_redis(unix=True)
    url = "unix://%s?db=2" % rs.unixsocket
    s = start(spawn, monkeypatch, url)
    expect(s, ("PING",), b"PONG")
    expect(s, ("SET", "u", "over a unix socket"), True)
    with rs.client(db=2) as c:
        assert c.call("GET", "u") == b"over a unix socket"
        entries = [e for e in c.client_list() if e["cmd"] != "client|list"]
    assert len(entries) == 1 and entries[0]["db"] == "2" and "U" in entries[0]["flags"], entries
    with rs.client() as c:
        assert c.call("GET", "u") is None
    assert s.json("/client")["tostring"] == "wspush.redis(%s)" % url


# --- 8. start-up errors ------------------------------------------------------------------------

def start_error(monkeypatch, url, *env):
    monkeypatch.setenv("REDIS_URL", url)
    for name in ("REDIS_TIMEOUT", "REDIS_MAX_QUEUED", "REDIS_CALL_AT_LOAD"):
        monkeypatch.delenv(name, raising=False)
    for name in env:
        monkeypatch.setenv(name, "1")
    return run_server("--host", "127.0.0.1", "--port", "0", APP)


@pytest.mark.parametrize("url, word", [
    ("http://127.0.0.1:6379", "scheme"),
    ("127.0.0.1:6379", "scheme"),
    ("redis://127.0.0.1:99999", "port"),
    ("redis://127.0.0.1:12ab", "port"),
    ("redis://u:s3cretpw@127.0.0.1:70000/1", "port"),
    ("redis://127.0.0.1:6379/abc", "db"),
    ("redis://127.0.0.1:6379/-1", "db"),
    ("redis://:s3cretpw@127.0.0.1:6379/x", "db"),
    ("redis://", "host"),
    ("redis://:s3cretpw@:6379/0", "host"),
    ("unix:///tmp/redis.sock?db=x", "db"),
])
def test_a_bad_url_is_a_start_error_naming_the_problem(monkeypatch, url, word):
    rc, err = start_error(monkeypatch, url)
    assert_start_error(rc, err, "wspush.redis: invalid url: ", word)
    assert "s3cretpw" not in err, "the password is in the error: %r" % err


def test_rediss_is_a_start_error_naming_tls(monkeypatch):
    rc, err = start_error(monkeypatch, "rediss://:s3cretpw@127.0.0.1:6380")
    assert_start_error(rc, err, "rediss:// is not supported", "TLS")
    assert "s3cretpw" not in err, err


def test_a_url_that_is_not_a_string_is_a_start_error(monkeypatch):
    rc, err = start_error(monkeypatch, "(number)")
    assert_start_error(rc, err, "wspush.redis: url must be a string")


def test_a_call_while_the_script_loads_is_a_start_error(monkeypatch, redis):
    # as for wspush.sleep and wspush.fetch (core/ltask.c): "... can only wait in a handler"
    rc, err = start_error(monkeypatch, redis.url, "REDIS_CALL_AT_LOAD")
    assert_start_error(rc, err, "can only wait in a handler")


# --- 9. hot reload ---------------------------------------------------------------------------

def test_the_connection_is_kept_across_a_script_reload(spawn, monkeypatch, redis):
    s = start(spawn, monkeypatch, redis.url)
    cid = ok(s, "CLIENT", "ID")
    assert isinstance(cid, int), cid
    with redis.client() as c:
        before = c.connections_received()
        s.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: stats(s)["generation"] > 1, timeout=10, desc="the reload")
        assert s.json("/client")["same"] is True
        expect(s, ("CLIENT", "ID"), cid)
        assert c.connections_received() == before, "wspush connected again after the reload"
        assert [int(e["id"]) for e in wspush_clients(c, s, redis)] == [cid]
