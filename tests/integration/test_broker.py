"""--broker end to end: several wspush nodes (separate processes, or supervisors
with --workers) joined through a real redis-server on 127.0.0.1 (redislib.py).

The server side is scripts/broker_app.lua: /ws subscribes to ?topic= (default
"all") and says hello with its worker; /pub publishes and answers
{n =, err =}; /status is wspush.broker_status(); /events lists what
wspush.on_broker reported (each event is also logged, "on_broker EVENT ...",
so a test can wait for it).

What is checked:
 - publishes from every node reach every subscriber on every node exactly
   once, in each publisher's order (3 nodes; and 2 nodes x 2 workers);
 - a node SUBSCRIBEs to PREFIX..topic only while it has local subscribers
   (PUBSUB NUMSUB / CHANNELS), with the default prefix and --broker-prefix;
 - a node's own publishes, echoed back by Redis, are not delivered twice;
 - binary stays binary across nodes, for plain and permessage-deflate
   subscribers (a raw client sees the compressed frame, RSV1);
 - Redis killed (SIGKILL) and restarted on the same port: local traffic goes
   on with "broker unavailable", "lost" and "back after" are logged,
   "down"/"up" reach on_broker, and publishes cross again within
   RECONNECT_BOUND; only what was published meanwhile is lost;
 - a Redis that stops answering (SIGSTOP) is found out by the PING within
   SILENT_BOUND, and traffic crosses again once it answers; while it is
   frozen the node must not report the broker back ("up", connected);
 - handlers/broadcast.lua across two nodes (/receive's answer);
 - a gap (messages a node missed while its subscriber connection was gone)
   is reported by on_broker with the exact count missed (and in the Redis
   restart tests, the gaps add up to what the node lacks);
 - a node killed with SIGKILL: the others go on;
 - a stuck client on one node slows no one on any node;
 - two Redis servers: each topic's channel lives on the one FNV-1a 64 of the
   topic name picks (predicted here), PUBLISHes go there too;
 - credentials from --broker-file and $WSPUSH_BROKER, never logged; a wrong
   password is logged as refused, without it;
 - a bad --broker is a start-up error of one line.

Waiting: on log lines, on messages, or polling Redis (PUBSUB) with a
deadline; every loop is bounded. The two silent-Redis tests wait for the 5 s
PING and its 3 s timeout (~8 s each, marked slow); the rest take ~5 s.
"""
import asyncio
import json
import os
import re
import signal
import socket
import time
import urllib.parse
import zlib
from collections import Counter

import pytest
import websockets

import rawws
from conftest import SCRIPTS, report, scaled, wait_for
from pushlib import connect, log_errors, recv, run
from redislib import MISSING, REDIS_SERVER, RedisServer, process_tcp_peers
from test_startup import assert_start_error, run_server

APP = SCRIPTS / "broker_app.lua"

# After Redis answers again the broker client reconnects with backoff (50 ms
# doubling to 2 s, jittered: the delay is within [backoff/2, backoff]) and
# subscribes again to every topic; the publishing connection does the same.
# So within ~2 s of the restart plus a round trip, publishes cross again.
# 5 s is the bound the tests allow.
RECONNECT_BOUND = 5.0


# --- fixtures and helpers -------------------------------------------------------------

@pytest.fixture(autouse=True)
def _no_broker_env(monkeypatch):
    """No WSPUSH_BROKER from the caller's environment reaches a server."""
    monkeypatch.delenv("WSPUSH_BROKER", raising=False)
    monkeypatch.delenv("WSPUSH_NODE", raising=False)


@pytest.fixture
def redises(tmp_path):
    """Factory: a redis-server of the test's own (make(requirepass=...)), started;
    all stopped at teardown (after the servers: ask for it before spawn)."""
    if not REDIS_SERVER.exists():
        pytest.fail(MISSING, pytrace=False)
    made = []

    def make(**kw):
        r = RedisServer(tmp_path / ("redis%d" % len(made)), scale=scaled(1), **kw)
        made.append(r)
        return r.start()

    yield make
    for r in made:
        r.stop()


def connected_re(display, worker=None):
    w = r"\[worker %d\] " % worker if worker else ""
    return r"\[info\] %sbroker %s: connected, 0 topics" % (w, re.escape(display))


def node(spawn, broker=None, *args, workers=0, display=None):
    """A wspush node on broker_app.lua (--broker broker unless None), once every
    worker's broker client logged that it is connected to each Redis in display
    (a URL or a list; default: broker's URLs)."""
    argv = ["--broker", broker] if broker else []
    if workers:
        argv += ["--workers", workers]
    s = spawn(APP, *argv, *args)
    if display is None:
        display = broker.split(",")
    elif isinstance(display, str):
        display = [display]
    for d in display:
        for w in (range(1, workers + 1) if workers else [None]):
            s.wait_log(connected_re(d, w), timeout=10)
    return s


def pub(server, topic="all", **params):
    """GET /pub on a fresh connection: {"n":, "err":, "worker":[, "results":]}."""
    q = dict(params, topic=topic)
    return server.json("/pub?" + urllib.parse.urlencode(q), timeout=10)


def status(server):
    return server.json("/status")["status"]


def events(server):
    ev = server.json("/events")["events"]
    return [] if isinstance(ev, dict) else ev  # an empty Lua table is {} in JSON


def numsub(r, channel):
    with r.client() as c:
        reply = c.call("PUBSUB", "NUMSUB", channel)
    return int(reply[1])


def channels(r):
    with r.client() as c:
        return sorted(x.decode() for x in c.call("PUBSUB", "CHANNELS"))


def wait_numsub(r, channel, n, timeout=5):
    """Poll Redis until channel has n subscribers (broker connections: a worker
    SUBSCRIBEs on its own connection after its first local subscriber)."""
    wait_for(lambda: numsub(r, channel) == n, timeout=timeout,
             desc="PUBSUB NUMSUB %s == %d (now %d)" % (channel, n, numsub(r, channel)))


def fnv1a64(s):
    h = 1469598103934665603
    for b in s.encode():
        h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


async def in_thread(fn, *args, **kw):
    return await asyncio.get_running_loop().run_in_executor(None, lambda: fn(*args, **kw))


class Client:
    """A /ws client whose messages a background task collects into .got."""

    def __init__(self, ws, hello, where):
        self.ws, self.hello, self.where = ws, hello, where
        self.got = []
        self.closed = None
        self._changed = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self):
        try:
            async for m in self.ws:
                self.got.append(m)
                self._changed.set()
            self.closed = "closed (%s)" % self.ws.close_code
        except websockets.ConnectionClosed as e:
            self.closed = "closed (%r)" % e
        finally:
            if self.closed is None:
                self.closed = "reader stopped"
            self._changed.set()

    async def wait(self, pred, timeout=10, desc="messages"):
        """Until pred(self.got) holds; bounded."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + scaled(timeout)
        for _ in range(1000000):
            if pred(self.got):
                return self.got
            left = deadline - loop.time()
            if self.closed is not None or left <= 0:
                raise AssertionError("%s: %s not within %ss (%s); got %d: %r" % (
                    self.where, desc, timeout, self.closed or "open", len(self.got),
                    [g if isinstance(g, str) and len(g) < 80 else "<%d>" % len(g)
                     for g in self.got[-12:]]))
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except asyncio.TimeoutError:
                pass
        raise AssertionError("unbounded wait")

    async def wait_n(self, n, timeout=10):
        return await self.wait(lambda g: len(g) >= n, timeout, "%d messages" % n)

    async def wait_for_msg(self, msg, timeout=10):
        return await self.wait(lambda g: msg in g, timeout, "message %r" % (msg,))

    async def close(self):
        try:
            await asyncio.wait_for(self.ws.close(), scaled(5))
        except BaseException:
            self.ws.transport.abort()
        self._task.cancel()


async def open_clients(server, n, path="/ws", where="", compression=None, parallel=50):
    """n /ws clients of server, each with its hello read."""
    sem = asyncio.Semaphore(parallel)

    async def one(i):
        async with sem:
            ws = await connect(server, path, compression=compression)
        try:
            hello = json.loads(await recv(ws, 10))
        except BaseException:
            ws.transport.abort()
            raise
        assert hello.get("hello") == "broker_app", hello
        return Client(ws, hello, "%s client %d (worker %s)" % (where, i, hello["worker"]))

    results = await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)
    ok = [r for r in results if isinstance(r, Client)]
    errors = [r for r in results if not isinstance(r, Client)]
    if errors:
        await close_all(ok)
        raise AssertionError("%d of %d connects to %s failed: %r" % (len(errors), n, where,
                                                                     errors[:3]))
    return ok


async def close_all(clients):
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


def check_once_in_order(got, published, who):
    """got: what one client received; published: [(msg, publisher)]. Every
    message exactly once, each publisher's in its order."""
    msgs = [m for m, _ in published]
    dups = [m for m, k in Counter(got).items() if k > 1]
    assert not dups, "%s got duplicates %r" % (who, dups[:5])
    assert sorted(got) == sorted(msgs), "%s: missing %r, unexpected %r" % (
        who, sorted(set(msgs) - set(got))[:10], sorted(set(got) - set(msgs))[:10])
    for p in {p for _, p in published}:
        want = [m for m, q in published if q == p]
        mine = set(want)
        have = [m for m in got if m in mine]
        assert have == want, "%s: publisher %r's messages out of order: %r" % (who, p, have)


async def probe_until_it_crosses(publisher, client, t0, bound, why):
    """Publish probe-001, probe-002, ... on publisher (every ~0.1 s) until client
    has one; fail if that takes more than bound seconds from t0. Returns
    [(probe, err)]: err as /pub said (None: the broker took it)."""
    probes = []
    for k in range(1, 10000):
        msg = "probe-%03d" % k
        res = await in_thread(pub, publisher, msg=msg)
        probes.append((msg, res.get("err")))
        try:
            await client.wait(lambda g: any(m.startswith("probe-") for m in g), 0.1)
            return probes
        except AssertionError:
            if client.closed is not None:
                raise
        if time.monotonic() - t0 > scaled(bound):
            raise AssertionError("no probe reached %s within %ss of %s (%d sent: %r)"
                                 % (client.where, bound, why, len(probes), probes[-5:]))
    raise AssertionError("unbounded probing")


def missed_by(records, got):
    """How many of records ([(msg, err)], one publisher's, in order) the broker
    took (err None: they carry a sequence number) and got lacks."""
    have = set(got)
    return sum(1 for m, err in records if err is None and m not in have)


def gap_events(server, topic):
    return [e for e in events(server) if e["event"] == "gap" and e.get("topic") == topic]


def no_errors(server, mark=0):
    errs = log_errors(server, mark)
    assert not errs, "errors in the server log:\n" + "".join(errs[:20])


# --- 1. three nodes -------------------------------------------------------------------

def test_three_nodes_every_client_gets_every_publish_once_in_order(redises, spawn, capsys):
    r = redises()
    nodes = [node(spawn, r.url) for _ in range(3)]
    names = "ABC"
    per_node = 30
    rounds = 6

    async def go():
        clients = []
        try:
            for s, name in zip(nodes, names):
                clients += await open_clients(s, per_node, where="node " + name)
            await in_thread(wait_numsub, r, "wspush:all", 3)
            t0 = time.monotonic()
            published = []
            for i in range(rounds):  # interleaved: A, B, C, A, B, C, ...
                for s, name in zip(nodes, names):
                    msg = "%s-%02d" % (name, i)
                    res = await in_thread(pub, s, msg=msg)
                    assert res["n"] == per_node and "err" not in res, (msg, res)
                    published.append((msg, name))
            await asyncio.gather(*(c.wait_n(len(published), 20) for c in clients))
            took = time.monotonic() - t0
            # the end: one more from each node; once a client has all three,
            # every earlier message of every publisher is in (per-publisher order)
            ends = []
            for s, name in zip(nodes, names):
                await in_thread(pub, s, msg="end-" + name)
                ends.append("end-" + name)
            await asyncio.gather(*(c.wait(lambda g: all(e in g for e in ends), 10, "the ends")
                                   for c in clients))
            for c in clients:
                check_once_in_order(c.got, published + [(e, e[-1]) for e in ends], c.where)
            return took
        finally:
            await close_all(clients)

    took = run(go(), timeout=60)
    report(capsys, "broker: 3 nodes x %d clients, %d publishes delivered everywhere in %.2f s"
           % (per_node, rounds * 3, took))
    for s in nodes:
        st = status(s)
        # each node heard the other two nodes' 7 publishes each, and nothing of its own
        assert st["published"] == rounds + 1 and st["publish_failed"] == 0, st
        assert st["received"] == 2 * (rounds + 1), st
        assert st["gaps"] == 0 and st["missed"] == 0 and st["connected"] is True, st
        assert st["brokers"] == 1 and st["up"] == 1 and st["reconnects"] == 0, st
        no_errors(s)


# --- 2. subscriptions follow the local subscribers ---------------------------------------

def test_a_node_subscribes_only_while_it_has_local_subscribers(redises, spawn):
    r = redises()
    a = node(spawn, r.url)
    b = node(spawn, r.url)
    assert numsub(r, "wspush:t") == 0
    assert channels(r) == []
    assert status(a)["topics"] == 0

    async def go():
        c = (await open_clients(a, 1, "/ws?topic=t", "node A"))[0]
        try:
            await in_thread(wait_numsub, r, "wspush:t", 1)
            assert channels(r) == ["wspush:t"]
            assert status(a)["topics"] == 1 and status(b)["topics"] == 0
            # a second subscriber on the same node: still one subscription
            c2 = (await open_clients(a, 1, "/ws?topic=t", "node A"))[0]
            res = await in_thread(pub, b, "t", msg="hello-t")
            assert res == {"n": 0, "worker": 1}, res
            await c.wait_for_msg("hello-t")
            await c2.wait_for_msg("hello-t")
            assert numsub(r, "wspush:t") == 1
            # one of the two leaves (its close handshake done: A has seen it go):
            # A stays subscribed, and still hears B
            await c2.close()
            assert status(a)["topics"] == 1
            await in_thread(pub, b, "t", msg="still-t")
            await c.wait_for_msg("still-t")
            assert numsub(r, "wspush:t") == 1
        finally:
            await c.close()
        await in_thread(wait_numsub, r, "wspush:t", 0)
        assert channels(r) == []
        assert status(a)["topics"] == 0

    run(go(), timeout=30)

    # --broker-prefix: the channel is PREFIX..topic; nodes of another prefix do
    # not hear them
    p1 = node(spawn, r.url, "--broker-prefix", "app1:")
    p2 = node(spawn, r.url, "--broker-prefix", "app1:")

    async def prefixed():
        cp = (await open_clients(p2, 1, "/ws?topic=t", "node P2"))[0]
        cd = (await open_clients(b, 1, "/ws?topic=t", "node B (default prefix)"))[0]
        try:
            await in_thread(wait_numsub, r, "app1:t", 1)
            await in_thread(wait_numsub, r, "wspush:t", 1)
            assert channels(r) == ["app1:t", "wspush:t"]
            await in_thread(pub, p1, "t", msg="from-app1")
            await cp.wait_for_msg("from-app1")
            # the message is through Redis; a default-prefix node would have it
            # by now: publish on that node itself and see that comes first
            await in_thread(pub, b, "t", msg="local-b")
            await cd.wait_for_msg("local-b")
            assert cd.got == ["local-b"], cd.got
            # and the other way: B's publish did not reach app1's node
            await in_thread(pub, p2, "t", msg="local-p2")
            await cp.wait_for_msg("local-p2")
            assert cp.got == ["from-app1", "local-p2"], cp.got
        finally:
            await close_all([cp, cd])
        await in_thread(wait_numsub, r, "app1:t", 0)
        await in_thread(wait_numsub, r, "wspush:t", 0)

    run(prefixed(), timeout=30)
    for s in (a, b, p1, p2):
        no_errors(s)


# --- 3. a node's own publishes -----------------------------------------------------------

def test_own_publishes_are_not_delivered_twice(redises, spawn):
    r = redises()
    a = node(spawn, r.url)
    b = node(spawn, r.url)
    n = 10

    async def go():
        ca = await open_clients(a, 5, where="node A")
        cb = await open_clients(b, 1, where="node B")
        tap = await in_thread(r.client)
        try:
            # a subscriber of our own on the channel: it sees what Redis
            # forwards, so once it has A's messages, so has A's subscription
            assert (await in_thread(tap.call, "SUBSCRIBE", "wspush:all"))[0] == b"subscribe"
            await in_thread(wait_numsub, r, "wspush:all", 3)
            res = await in_thread(pub, a, msg="m", count=n)
            assert [x["n"] for x in res["results"]] == [5] * n, res
            assert all("err" not in x for x in res["results"]), res
            want = ["m-%03d" % i for i in range(1, n + 1)]
            for i in range(n):
                m = await in_thread(tap.read, scaled(5))
                assert m[0] == b"message" and m[1] == b"wspush:all", m
                assert m[2].endswith(want[i].encode()), (i, m)
            # Redis has pushed A's ten back to A's subscriber connection; B's
            # marker comes after them on it. A's clients: the ten, then the marker.
            await in_thread(pub, b, msg="marker")
            for c in ca:
                await c.wait_for_msg("marker")
                assert c.got == want + ["marker"], (c.where, c.got)
            await cb[0].wait_for_msg("marker")
            assert cb[0].got == want + ["marker"], cb[0].got
            # and nothing late either
            await asyncio.sleep(scaled(0.5))
            for c in ca + cb:
                assert len(c.got) == n + 1, (c.where, c.got)
        finally:
            tap.close()
            await close_all(ca + cb)

    run(go(), timeout=30)
    sa, sb = status(a), status(b)
    assert sa["published"] == n and sa["received"] == 1, sa  # only B's marker
    assert sb["published"] == 1 and sb["received"] == n, sb
    no_errors(a)
    no_errors(b)


# --- 4. binary and compression -----------------------------------------------------------

def test_binary_stays_binary_across_nodes_for_plain_and_deflate_clients(redises, spawn):
    r = redises()
    a = node(spawn, r.url)
    b = node(spawn, r.url)
    small = bytes(range(256)) + b"\xff\xfe\x00\xc3\x28" + os.urandom(64)  # not UTF-8
    unit = b"wspush binary \x00\xff "
    big = unit * 256                     # ~4.3 KB, repetitive: compressed on deflate clients
    text = "text over two nodes " * 205  # ~4.1 KB text

    raw = rawws.upgrade(b.port, "/ws", headers={"Sec-WebSocket-Extensions": "permessage-deflate"},
                        timeout=scaled(10))

    async def go():
        plain = (await open_clients(b, 1, where="node B plain"))[0]
        deflate = (await open_clients(b, 1, where="node B deflate", compression="deflate"))[0]
        try:
            assert deflate.ws.extensions and \
                deflate.ws.extensions[0].name == "permessage-deflate", deflate.ws.extensions
            await in_thread(wait_numsub, r, "wspush:all", 1)
            for q in ({"hex": small.hex(), "binary": "1"},
                      {"hex": unit.hex(), "rep": "256", "binary": "1"},
                      {"msg": "text over two nodes ", "rep": "205"}):
                res = await in_thread(pub, a, **q)
                assert res["n"] == 0 and "err" not in res, res
            for c in (plain, deflate):
                got = await c.wait_n(3)
                assert got[0] == small, (c.where, got[0][:40])
                assert got[1] == big, (c.where, type(got[1]), len(got[1]))
                assert got[2] == text, (c.where, type(got[2]), len(got[2]))
        finally:
            await close_all([plain, deflate])

    try:
        ext = raw.response.header("Sec-WebSocket-Extensions") or ""
        assert "permessage-deflate" in ext, raw.response
        run(go(), timeout=30)
        # the raw deflate client: hello, then the three, the big ones compressed
        inflater = zlib.decompressobj(-15)

        def message():
            f = raw.recv_frame(scaled(5))
            assert f.fin, f
            data = f.payload
            if f.rsv & 4:
                data = inflater.decompress(data + b"\x00\x00\xff\xff")
            return f.opcode, f.rsv, data

        op, _, hello = message()
        assert op == rawws.OP_TEXT and json.loads(hello)["hello"] == "broker_app"
        op, _, data = message()
        assert (op, data) == (rawws.OP_BINARY, small)
        op, rsv, data = message()
        assert (op, rsv) == (rawws.OP_BINARY, 4) and data == big, (op, rsv, len(data))
        op, rsv, data = message()
        assert (op, rsv) == (rawws.OP_TEXT, 4) and data == text.encode(), (op, rsv, len(data))
    finally:
        raw.close()
    no_errors(a)
    no_errors(b)


# --- 5. Redis killed and restarted --------------------------------------------------------

def test_redis_killed_and_restarted_mid_stream(redises, spawn, capsys):
    r = redises()
    a = node(spawn, r.url)
    b = node(spawn, r.url)
    disp = "redis://127.0.0.1:%d" % r.port

    async def go():
        ca = await open_clients(a, 2, where="node A")
        cb = await open_clients(b, 2, where="node B")
        try:
            await in_thread(wait_numsub, r, "wspush:all", 2)
            res = await in_thread(pub, a, msg="before", count=5)
            assert all(x == {"n": 2} for x in res["results"]), res
            before = ["before-%03d" % i for i in range(1, 6)]
            for c in ca + cb:
                await c.wait_for_msg(before[-1])

            mark_a, mark_b = a.log_mark(), b.log_mark()
            await in_thread(r.kill)
            lost = r"\[warn\] broker %s: lost; " % re.escape(disp)
            await in_thread(b.wait_log, lost, since=mark_b)
            await in_thread(a.wait_log, lost, since=mark_a)

            # during the gap: A's publishes reach A's clients, and say so
            gap, unavailable = [], 0
            deadline = time.monotonic() + scaled(5)
            for k in range(1, 200):
                msg = "gap-%03d" % k
                res = await in_thread(pub, a, msg=msg)
                assert res["n"] == 2, (msg, res)
                gap.append((msg, res.get("err")))
                if res.get("err") == "broker unavailable":
                    unavailable += 1
                else:
                    # not noticed yet: the broker took it, Redis is gone: lost
                    assert "err" not in res, res
                if unavailable >= 3 or time.monotonic() > deadline:
                    break
            assert unavailable >= 3, "no publish said 'broker unavailable' with Redis down"
            for c in ca:
                await c.wait_for_msg(gap[-1][0])
            st = await in_thread(status, b)
            assert st["connected"] is False and st["up"] == 0, st

            # back: publishes cross again within RECONNECT_BOUND
            await in_thread(r.start)
            t_up = time.monotonic()
            probes = await probe_until_it_crosses(a, cb[0], t_up, RECONNECT_BOUND,
                                                  "the restart")
            back = time.monotonic() - t_up
            res = await in_thread(pub, a, msg="after", count=5)
            assert all(x == {"n": 2} for x in res["results"]), res
            after = ["after-%03d" % i for i in range(1, 6)]
            for c in ca + cb:
                await c.wait_for_msg(after[-1])
            pnames = [m for m, _ in probes]
            for c in ca:
                check_once_in_order(c.got, [(m, "A") for m in before + [m for m, _ in gap]
                                            + pnames + after], c.where)
            for c in cb:
                # before, none of the gap, the probes from the first that made it, after
                got_probes = [m for m in c.got if m.startswith("probe-")]
                assert got_probes and got_probes == pnames[pnames.index(got_probes[0]):], (
                    c.where, got_probes, probes)
                assert c.got == before + got_probes + after, (c.where, c.got)
            # what B lacks of what the broker took from A, B reported as a gap
            missed = missed_by(gap + probes, cb[0].got)
            return back, len(gap), unavailable, missed

        finally:
            await close_all(ca + cb)

    back, ngap, unavailable, missed = run(go(), timeout=60)
    report(capsys, "broker: Redis restarted; node B heard node A again %.2f s later "
           "(%d publishes in the gap, %d said 'broker unavailable'; B missed %d the broker took)"
           % (back, ngap, unavailable, missed))
    gaps = gap_events(b, "all")
    assert sum(e["missed"] for e in gaps) == missed, (missed, gaps)
    assert status(b)["missed"] == missed, status(b)
    # B was back with its topic (the probe crossed); A may come back later, after
    # its clients left (its own backoff): 1 or 0 topics then
    for s, topics in ((b, "1"), (a, "[01]")):
        s.wait_log(r"\[warn\] broker %s: back after [0-9.]+ s, subscribed again to %s topics; "
                   % (re.escape(disp), topics), timeout=RECONNECT_BOUND)
        ev = [e["event"] for e in events(s) if e["event"] != "gap"]
        assert ev == ["up", "down", "up"], (s.cmd, events(s))
        assert all(e["broker"] == disp for e in events(s)), events(s)
        st = status(s)
        assert st["reconnects"] >= 1 and st["connected"] is True and st["up"] == 1, st
    sa = status(a)
    assert sa["publish_failed"] >= unavailable, sa


# --- 5b. Redis up but silent ----------------------------------------------------------------

# A PING every 5 s on the subscriber connection, its answer due within 3 s:
# a Redis that stops answering (SIGSTOP: TCP stays up, nothing is read) is
# found out within 8 s; 9 s is the bound allowed.
SILENT_BOUND = 9.0


def freeze(r):
    os.kill(r.proc.pid, signal.SIGSTOP)


def thaw(r):
    os.kill(r.proc.pid, signal.SIGCONT)


@pytest.mark.slow
def test_a_silent_redis_is_caught_by_the_ping_and_traffic_crosses_again_after(redises, spawn,
                                                                           capsys):
    r = redises()
    a = node(spawn, r.url)
    b = node(spawn, r.url)
    disp = "redis://127.0.0.1:%d" % r.port

    async def go():
        ca = (await open_clients(a, 1, where="node A"))[0]
        cb = (await open_clients(b, 1, where="node B"))[0]
        try:
            await in_thread(wait_numsub, r, "wspush:all", 2)
            await in_thread(pub, a, msg="before")
            await cb.wait_for_msg("before")
            mark = b.log_mark()
            freeze(r)
            try:
                t0 = time.monotonic()
                await in_thread(b.wait_log, r"\[warn\] broker %s: lost; " % re.escape(disp),
                                since=mark, timeout=SILENT_BOUND + 1)
                found = time.monotonic() - t0
                assert found <= scaled(SILENT_BOUND), found
                # B's own traffic goes on meanwhile
                res = await in_thread(pub, b, msg="local-b")
                assert res["n"] == 1, res
                await cb.wait_for_msg("local-b")
            finally:
                thaw(r)
            t1 = time.monotonic()
            probes = await probe_until_it_crosses(a, cb, t1, RECONNECT_BOUND,
                                                  "Redis answering again")
            back = time.monotonic() - t1
            await in_thread(pub, a, msg="after")
            await cb.wait_for_msg("after")
            pnames = [m for m, _ in probes]
            got_probes = [m for m in cb.got if m.startswith("probe-")]
            assert got_probes == pnames[pnames.index(got_probes[0]):], (got_probes, probes)
            assert cb.got == ["before", "local-b"] + got_probes + ["after"], cb.got
            await ca.wait_for_msg("after")
            return found, back, missed_by(probes, cb.got)
        finally:
            await close_all([ca, cb])

    found, back, missed = run(go(), timeout=40)
    report(capsys, "broker: a silent Redis found out after %.1f s; traffic crossed again "
           "%.2f s after it answered (B missed %d probes)" % (found, back, missed))
    assert "no answer within the timeout" in b.log
    ev = [e["event"] for e in events(b) if e["event"] != "gap"]
    assert ev[:2] == ["up", "down"] and ev[-1] == "up", ev
    assert sum(e["missed"] for e in gap_events(b, "all")) == missed, events(b)
    assert status(b)["connected"] is True and status(b)["reconnects"] >= 1


@pytest.mark.slow
def test_a_silent_redis_is_not_reported_back_while_it_does_not_answer(redises, spawn):
    """While Redis is frozen the kernel still completes TCP connects (the listen
    backlog), so a new connection is not a Redis that answers: the node must
    not log "back after", fire on_broker "up", or show connected = true
    before Redis answers (its SUBSCRIBEs, a PING)."""
    r = redises()
    b = node(spawn, r.url)
    disp = "redis://127.0.0.1:%d" % r.port

    async def go():
        cb = (await open_clients(b, 1, where="node B"))[0]
        try:
            await in_thread(wait_numsub, r, "wspush:all", 1)
            mark = b.log_mark()
            freeze(r)
            try:
                await in_thread(b.wait_log, r"\[warn\] broker %s: lost; " % re.escape(disp),
                                since=mark, timeout=SILENT_BOUND + 1)
                lost_at = b.log_mark()
                # the reconnect backoff starts at 50 ms: 2 s is many attempts
                m = await in_thread(b.wait_log, r"broker %s: back after|on_broker up"
                                    % re.escape(disp), since=lost_at, timeout=2, must=False)
                st = await in_thread(status, b)
                frozen_log = "".join(b._lines[mark:])
            finally:
                thaw(r)
            assert m is None and st["connected"] is False, (
                "node B reported the broker back while Redis was frozen (SIGSTOP): "
                "status %r; log:\n%s" % (st, frozen_log))
            await in_thread(b.wait_log, r"broker %s: back after" % re.escape(disp),
                            since=lost_at, timeout=RECONNECT_BOUND)
        finally:
            await cb.close()

    run(go(), timeout=40)


# --- 5c. the demo handler ---------------------------------------------------------------

def test_the_broadcast_demo_across_two_nodes(redises, spawn):
    """handlers/broadcast.lua with --broker: /receive on one node reaches the
    /ws pages of the other; its answer says what this node knows."""
    r = redises()
    demo = SCRIPTS.parents[2] / "handlers" / "broadcast.lua"
    disp = "redis://127.0.0.1:%d" % r.port
    a = spawn(demo, "--broker", r.url)
    b = spawn(demo, "--broker", r.url)
    for s in (a, b):
        s.wait_log(connected_re(disp), timeout=10)

    async def go():
        ws = await connect(b, "/ws")
        try:
            assert await recv(ws) == "Welcome"
            await in_thread(wait_numsub, r, "wspush:all", 1)
            j = await in_thread(a.json, "/receive?msg=hello%20from%20A")
            assert j == {"sent_here": 0, "worker": 1, "workers": 1}, j
            assert await recv(ws) == "hello from A"
            j = await in_thread(b.json, "/receive?msg=hello%20from%20B")
            assert j == {"sent_here": 1, "worker": 1, "workers": 1}, j
            assert await recv(ws) == "hello from B"
            # Redis gone: the answer says the other nodes will not have it
            mark = b.log_mark()
            await in_thread(r.kill)
            await in_thread(b.wait_log, r"broker %s: lost; " % re.escape(disp), since=mark)
            for _ in range(100):
                j = await in_thread(b.json, "/receive?msg=alone")
                assert j["sent_here"] == 1, j
                assert await recv(ws) == "alone"
                if "broker" in j:
                    break
            assert j == {"sent_here": 1, "worker": 1, "workers": 1,
                         "broker": "broker unavailable"}, j
        finally:
            await ws.close()

    run(go(), timeout=30)


# --- 6. gaps -----------------------------------------------------------------------------

def test_gap_reported_with_the_count_of_missed_messages(redises, spawn):
    """Node B misses messages deterministically: B is stopped (SIGSTOP), Redis
    closes B's subscriber connection (CLIENT KILL ID, the one connection with a
    subscription whose local port belongs to B), A publishes N (Redis has no
    subscriber for them: gone for B), B resumes (SIGCONT), sees its connection
    lost, comes back and subscribes again; A's next publish shows B the jump in
    A's sequence: a "gap" with missed = N."""
    r = redises()
    a = node(spawn, r.url)
    b = node(spawn, r.url)
    disp = "redis://127.0.0.1:%d" % r.port
    n_missed = 5

    async def go():
        cb = await open_clients(b, 2, "/ws?topic=t", where="node B")
        try:
            await in_thread(wait_numsub, r, "wspush:t", 1)
            await in_thread(pub, a, "t", msg="before", count=3)
            for c in cb:
                await c.wait_for_msg("before-003")

            with r.client() as rc:
                ports = set(process_tcp_peers(b.proc.pid, r.port))
                subs = [c for c in rc.client_list()
                        if int(c["addr"].rsplit(":", 1)[1]) in ports and c["sub"] != "0"]
                assert len(subs) == 1, (ports, rc.client_list())
                mark = b.log_mark()
                os.kill(b.proc.pid, signal.SIGSTOP)
                try:
                    assert rc.call("CLIENT", "KILL", "ID", subs[0]["id"]) == 1
                    await in_thread(wait_numsub, r, "wspush:t", 0)
                    res = await in_thread(pub, a, "t", msg="during", count=n_missed)
                    assert all(x == {"n": 0} for x in res["results"]), res
                finally:
                    os.kill(b.proc.pid, signal.SIGCONT)
            await in_thread(b.wait_log, r"\[warn\] broker %s: lost; " % re.escape(disp),
                            since=mark)
            await in_thread(b.wait_log, r"\[warn\] broker %s: back after [0-9.]+ s, "
                            r"subscribed again to 1 topics" % re.escape(disp), since=mark,
                            timeout=RECONNECT_BOUND)
            await in_thread(wait_numsub, r, "wspush:t", 1)
            await in_thread(pub, a, "t", msg="after", count=1)
            for c in cb:
                await c.wait_for_msg("after-001")
                assert c.got == ["before-001", "before-002", "before-003", "after-001"], c.got
            await in_thread(b.wait_log, r"on_broker gap worker=1 broker=%s topic=t missed=\d+"
                            % re.escape(disp), since=mark)
        finally:
            await close_all(cb)

    run(go(), timeout=30)
    published = 3 + n_missed + 1
    delivered = 4  # what each of B's clients got (checked above)
    ev = events(b)
    assert [e["event"] for e in ev] == ["up", "down", "up", "gap"], ev
    assert ev[3] == {"event": "gap", "broker": disp, "topic": "t",
                     "missed": published - delivered}, ev
    st = status(b)
    assert st["gaps"] == 1 and st["missed"] == n_missed, st
    assert st["received"] == delivered and st["reconnects"] == 1, st
    assert status(a)["gaps"] == 0


# --- 7. a node killed ---------------------------------------------------------------------

def test_a_node_killed_the_others_go_on(redises, spawn):
    r = redises()
    a, b, c = (node(spawn, r.url) for _ in range(3))

    async def go():
        ca = await open_clients(a, 10, where="node A")
        cb = await open_clients(b, 10, where="node B")
        cc = await open_clients(c, 10, where="node C")
        try:
            await in_thread(wait_numsub, r, "wspush:all", 3)
            published = []
            for s, name in ((a, "A"), (b, "B"), (c, "C")):
                await in_thread(pub, s, msg="one-" + name)
                published.append(("one-" + name, name))
            for cl in ca + cb + cc:
                await cl.wait_n(3)
            # B dies (SIGKILL) mid-stream: A and C keep publishing meanwhile
            for k in range(3):
                for s, name in ((a, "A"), (c, "C")):
                    msg = "two-%s-%d" % (name, k)
                    res = await in_thread(pub, s, msg=msg)
                    assert res["n"] == 10 and "err" not in res, res
                    published.append((msg, name))
                if k == 0:
                    await in_thread(b._kill)
            # B's clients see their connections end
            await asyncio.wait_for(asyncio.gather(*(cl._task for cl in cb)), scaled(10))
            assert all(cl.closed for cl in cb), [cl.closed for cl in cb]
            await in_thread(wait_numsub, r, "wspush:all", 2)
            for k in range(3):
                for s, name in ((c, "C"), (a, "A")):
                    msg = "three-%s-%d" % (name, k)
                    res = await in_thread(pub, s, msg=msg)
                    assert res["n"] == 10 and "err" not in res, res
                    published.append((msg, name))
            for cl in ca + cc:
                await cl.wait_n(len(published))
                await cl.wait_for_msg("three-A-2")
                check_once_in_order(cl.got, published, cl.where)
        finally:
            await close_all(ca + cb + cc)

    run(go(), timeout=40)
    for s in (a, c):
        st = status(s)
        assert st["publish_failed"] == 0 and st["connected"] is True, st
        no_errors(s)


# --- 8. a stuck client ---------------------------------------------------------------------

def stuck_client(port, path="/ws"):
    """Upgrade on a socket with a tiny receive buffer, then never read."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(scaled(5))
    s.connect(("127.0.0.1", port))
    key = rawws.new_key()
    s.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
               % (path, port, key)).encode())
    head = b""
    for _ in range(100):
        head += s.recv(1)
        if head.endswith(b"\r\n\r\n"):
            break
    assert head.startswith(b"HTTP/1.1 101 "), head
    return s


def test_a_stuck_client_on_one_node_slows_no_one(redises, spawn, capsys):
    r = redises()
    a = node(spawn, r.url)
    b = node(spawn, r.url, "--max-buffered", "64k", "--close-timeout", "1")
    c = node(spawn, r.url)
    # A batch: 8 requests of 4 x 32 KB (1 MB), each request's messages read by
    # every reader before the next (so that a reader's queue holds at most
    # 128 KB: under the default --max-buffered of 256 KiB on A and C; B's
    # readers use /ws_roomy). B's stuck client gets all of it: some 3-4 MB fill
    # the kernel's buffers here, then its 64 KiB queue overflows.
    size, per_req, reqs = 32000, 4, 8
    NB = 6
    done = [0]

    async def batch(label, publisher, clients):
        """One batch from publisher (its name, its server); seconds until every
        reader had all of it."""
        name, s = publisher
        t0 = time.monotonic()
        for i in range(reqs):
            res = await in_thread(pub, s, msg="%s-%s-%d" % (label, name, i), count=per_req,
                                  pad=size)
            assert all("err" not in x for x in res["results"]), res
            done[0] += per_req
            await asyncio.gather(*(cl.wait_n(done[0], 30) for cl in clients))
        return time.monotonic() - t0

    stuck = None

    async def go():
        nonlocal stuck
        readers = (await open_clients(a, 2, where="node A") + await open_clients(c, 2, where="node C")
                   + await open_clients(b, 2, "/ws_roomy", where="node B"))
        try:
            await in_thread(wait_numsub, r, "wspush:all", 3)
            base = await batch("base", ("A", a), readers)
            stuck = await in_thread(stuck_client, b.port)
            await in_thread(wait_for, lambda: b.json("/status")["count"] == 3,
                            desc="the stuck client on B")
            times = []
            for k in range(NB):  # NB MB from C and A to every reader, and B's stuck one
                times.append(await batch("b%d" % k, ("A", a) if k % 2 else ("C", c), readers))
            # the stuck one is closed by backpressure (1008), the readers are not
            await in_thread(wait_for, lambda: b.json("/status")["closes"].get("1008") == 1,
                            timeout=10, desc="close 1008 of the stuck client")
            sb = b.json("/status")
            assert sb["count"] == 2 and sb["closes"] == {"1008": 1}, sb
            want = []
            for label, name in [("base", "A")] + [("b%d" % k, "AC"[k % 2 == 0]) for k in range(NB)]:
                want += ["%s-%s-%d-%03d" % (label, name, i, j) for i in range(reqs)
                         for j in range(1, per_req + 1)]
            for cl in readers:
                assert cl.closed is None, cl.where
                assert [m[:-size] for m in cl.got] == want, cl.where
            return base, times
        finally:
            await close_all(readers)

    try:
        base, times = run(go(), timeout=90)
    finally:
        if stuck:
            stuck.close()
    report(capsys, "broker: 1 MB to 6 readers on 3 nodes: %.2f s alone; with a stuck client "
           "on node B: %s s" % (base, " ".join("%.2f" % t for t in times)))
    # "normal speed": no batch with the stuck client took much longer than the one without
    assert max(times) <= 3 * base + scaled(1.0), (base, times)
    for s in (a, b, c):
        assert status(s)["publish_failed"] == 0


# --- 9. two Redis servers ------------------------------------------------------------------

def test_two_redis_servers_each_topic_on_the_one_its_hash_picks(redises, spawn, tmp_path):
    r1, r2 = redises(), redises()
    urls = [r1.url, r2.url]
    a = node(spawn, ",".join(urls))
    # B reads the same two from a file, one a line
    f = tmp_path / "brokers"
    f.write_text("  %s\n%s\n" % (urls[0], urls[1]))
    b = spawn(APP, "--broker-file", f)
    for u in urls:
        b.wait_log(connected_re(u), timeout=10)
    topics = ["t%d" % i for i in range(20)]
    home = {t: fnv1a64(t) % 2 for t in topics}
    on = [sorted("wspush:" + t for t in topics if home[t] == i) for i in (0, 1)]
    assert on[0] and on[1], home

    async def go():
        cl = (await open_clients(b, 1, "/ws?topic=" + ",".join(topics), "node B"))[0]
        try:
            await in_thread(wait_for, lambda: (channels(r1), channels(r2)) == (on[0], on[1]),
                            desc="each topic's channel on its Redis (%r)" % on)
            for rr in (r1, r2):
                with rr.client() as rc:
                    rc.call("CONFIG", "RESETSTAT")
            for t in topics:
                res = await in_thread(pub, a, t, msg="m-" + t)
                assert res["n"] == 0 and "err" not in res, (t, res)
            await cl.wait_n(len(topics))
            # (no order across topics on two Redis servers: each is its own path)
            assert sorted(cl.got) == sorted("m-" + t for t in topics), cl.got
            # every PUBLISH went to the topic's Redis
            for i, rr in enumerate((r1, r2)):
                with rr.client() as rc:
                    calls = rc.command_calls().get("publish", 0)
                assert calls == len(on[i]), (rr.url, calls, on[i])
            st = await in_thread(status, a)
            assert st["brokers"] == 2 and st["up"] == 2 and st["connected"] is True, st
            sb = await in_thread(status, b)
            assert sb["topics"] == 20 and sb["received"] == 20, sb
        finally:
            await cl.close()
        await in_thread(wait_for, lambda: channels(r1) == [] and channels(r2) == [],
                        desc="no channel left")

    run(go(), timeout=30)
    no_errors(a)
    no_errors(b)


# --- 10. nodes with workers ---------------------------------------------------------------

def test_two_nodes_of_two_workers_every_client_gets_every_publish_once(redises, spawn, capsys):
    r = redises()
    nodes = {"A": node(spawn, r.url, workers=2), "B": node(spawn, r.url, workers=2)}

    async def go():
        clients = []
        try:
            for name, s in nodes.items():
                mine = []
                for _ in range(10):  # the kernel picks the worker: open more until both have some
                    mine += await open_clients(s, 20, where="node " + name)
                    if {cl.hello["worker"] for cl in mine} == {1, 2}:
                        break
                assert {cl.hello["worker"] for cl in mine} == {1, 2}, (
                    "%d clients of node %s all on one worker" % (len(mine), name))
                for cl in mine:
                    cl.node = name
                clients += mine
            share = Counter((cl.node, cl.hello["worker"]) for cl in clients)
            await in_thread(wait_numsub, r, "wspush:all", 4)
            published = []
            for i in range(80):  # alternate nodes; fresh connections reach either worker
                name = "AB"[i % 2]
                msg = "%s-%03d" % (name, i)
                res = await in_thread(pub, nodes[name], msg=msg)
                assert "err" not in res and res["n"] == share[(name, res["worker"])], (msg, res, share)
                published.append((msg, (name, res["worker"])))
                if i >= 15 and len({p for _, p in published}) == 4:
                    break
            assert len({p for _, p in published}) == 4, Counter(p for _, p in published)
            await asyncio.gather(*(cl.wait_n(len(published), 20) for cl in clients))
            for name in "AB":
                await in_thread(pub, nodes[name], msg="end-" + name)
            await asyncio.gather(*(cl.wait_n(len(published) + 2, 10) for cl in clients))
            for cl in clients:
                assert sorted(cl.got[-2:]) == ["end-A", "end-B"], (cl.where, cl.got[-4:])
                check_once_in_order(cl.got[:-2], published, "%s of node %s" % (cl.where, cl.node))
            return share, Counter(p for _, p in published)
        finally:
            await close_all(clients)

    share, pubs = run(go(), timeout=60)
    report(capsys, "broker: 2 nodes x 2 workers, clients %r, publishes %r"
           % (dict(share), dict(pubs)))
    for s in nodes.values():
        no_errors(s)


# --- 11. credentials -----------------------------------------------------------------------

def test_credentials_from_a_file_or_the_environment_are_never_logged(redises, spawn, tmp_path,
                                                                    monkeypatch):
    r = redises(requirepass="secret")
    url = "redis://:secret@127.0.0.1:%d" % r.port
    shown = "redis://:***@127.0.0.1:%d" % r.port
    f = tmp_path / "broker.url"
    f.write_text(url + "\n")
    a = spawn(APP, "--broker-file", f)
    a.wait_log(connected_re(shown), timeout=10)
    monkeypatch.setenv("WSPUSH_BROKER", url)
    b = spawn(APP)
    monkeypatch.delenv("WSPUSH_BROKER")
    b.wait_log(connected_re(shown), timeout=10)
    # a wrong password: refused, and said so without the password
    c = spawn(APP, "--broker", "redis://:nottheword42@127.0.0.1:%d" % r.port)
    m = c.wait_log(r"AUTH refused", timeout=10)

    async def go():
        ca = (await open_clients(a, 1, where="node A (file)"))[0]
        cb = (await open_clients(b, 1, where="node B (env)"))[0]
        cc = (await open_clients(c, 1, where="node C (wrong password)"))[0]
        try:
            await in_thread(wait_numsub, r, "wspush:all", 2)
            await in_thread(pub, a, msg="from-a")
            await in_thread(pub, b, msg="from-b")
            for cl in (ca, cb):
                await cl.wait(lambda g: "from-a" in g and "from-b" in g, 10, "both")
                assert sorted(cl.got) == ["from-a", "from-b"], cl.got
            res = await in_thread(pub, c, msg="from-c")
            assert res == {"n": 1, "err": "broker unavailable", "worker": 1}, res
            await cc.wait_for_msg("from-c")
            await in_thread(pub, a, msg="from-a-2")
            await ca.wait_for_msg("from-a-2")
            await cb.wait_for_msg("from-a-2")
            assert "from-a" not in cc.got and "from-a-2" not in cc.got, cc.got
        finally:
            await close_all([ca, cb, cc])

    run(go(), timeout=30)
    st = status(c)
    assert st["connected"] is False and st["up"] == 0 and st["publish_failed"] >= 1, st
    assert status(a)["connected"] is True and status(b)["connected"] is True
    line = c.log[c.log.rfind("\n", 0, m.start()) + 1:].splitlines()[0]
    assert "redis://:***@127.0.0.1:%d" % r.port in line, line
    for s in (a, b):
        assert "secret" not in s.log, s.log
        assert "secret" not in " ".join(s.cmd)
        no_errors(s)
    assert "nottheword42" not in c.log, c.log


# --- 12. start-up errors -------------------------------------------------------------------

@pytest.mark.parametrize("args, words", [
    (["--broker", "http://127.0.0.1:6379"], ["--broker", "scheme"]),
    (["--broker", "rediss://:pw4711@127.0.0.1:6380"], ["--broker", "rediss"]),
    (["--broker", "redis://127.0.0.1:6379,ftp://127.0.0.1"], ["--broker", "scheme"]),
    (["--broker", "redis://127.0.0.1:6379?db=1"], ["--broker"]),
    (["--broker-file", "/nonexistent/broker.url"], ["--broker-file", "/nonexistent/broker.url"]),
    (["--broker", "redis://127.0.0.1:6379", "--broker-file", "/etc/hostname"],
     ["--broker", "--broker-file"]),
    (["--broker", "http://127.0.0.1:6379", "--workers", "2"], ["--broker", "scheme"]),
], ids=["http", "rediss", "second-url-bad", "query", "missing-file", "both", "workers"])
def test_a_bad_broker_is_a_start_error_of_one_line(args, words):
    rc, err = run_server("--host", "127.0.0.1", "--port", "0", *args, APP, timeout=10)
    assert_start_error(rc, err, *words)
    assert "pw4711" not in err, err


def test_an_empty_broker_file_is_a_start_error(tmp_path):
    f = tmp_path / "empty"
    f.write_text(" \n")
    rc, err = run_server("--host", "127.0.0.1", "--port", "0", "--broker-file", f, APP)
    assert_start_error(rc, err, "--broker-file")


def test_without_broker_status_is_nil_and_publish_says_nothing_more(spawn):
    s = spawn(APP)
    assert "status" not in s.json("/status")
    assert pub(s, msg="x") == {"n": 0, "worker": 1}
    assert events(s) == []
