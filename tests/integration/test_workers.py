"""--workers N end to end: a supervisor and N worker processes (fork + exec),
each with its own listening socket on the one port (SO_REUSEPORT).

What is checked: publishes cross workers (every subscriber in every worker,
exactly once, in order per publisher); a worker killed with SIGKILL costs its
own connections only and is started again; a reload (an edit, or a broken
edit) reaches every worker or none; SIGTERM closes every connection with 1001
and runs on_shutdown in every worker; --port 0 gives one port; count_all,
conn.id, --max-connections and --max-per-ip hold for the whole server (one
by one and in a burst); a broken script starts nothing; worker log records
reach stderr whole.

The kernel picks a worker for each new TCP connection (a hash of the
4-tuple), so a test that must reach both workers opens fresh connections
(new source ports) until both have answered, bounded, and every route of
scripts/workers_app.lua says which worker answered.
"""
import asyncio
import json
import os
import re
import signal
import subprocess
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

import rawws
from conftest import BIN, LISTEN_RE, SCRIPTS, report, scaled, script_line, wait_for
from pushlib import connect, http_json, log_errors, recv, run

APP = SCRIPTS / "workers_app.lua"
WORKERS = 2
CONNECT_PARALLEL = 100
TS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \[(?:error|warn|info|debug)\] "


def start(spawn, *args, script=APP):
    return spawn(script, "--workers", WORKERS, *args)


def publish(server, msg):
    """One publish on a fresh connection: {"sent_here": n, "worker": id}."""
    return http_json(server, "GET", "/publish?msg=" + msg, timeout=15)


def who_each(server, tries=200):
    """/who from fresh connections until every worker answered: {worker: answer}."""
    seen = {}
    for _ in range(tries):
        j = http_json(server, "GET", "/who")
        seen.setdefault(j["worker"], j)
        if len(seen) == WORKERS:
            return seen
    raise AssertionError("%d fresh connections reached only workers %s" % (tries, sorted(seen)))


def log_since(server, mark):
    with server._cond:
        return "".join(server._lines[mark:])


def worker_pids(server):
    """{worker id: pid} of the supervisor's live worker children, from /proc
    (ppid in /proc/PID/stat, WSPUSH_ROLE/WSPUSH_WORKER in /proc/PID/environ)."""
    sup = server.proc.pid
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                stat = f.read()
            if int(stat.rsplit(")", 1)[1].split()[1]) != sup:
                continue
            with open("/proc/%s/environ" % d, "rb") as f:
                env = f.read().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if b"WSPUSH_ROLE=worker" not in env:
            continue
        spec = [e for e in env if e.startswith(b"WSPUSH_WORKER=")]
        if spec:
            out[int(spec[0].split(b"=", 1)[1].split(b"/")[0])] = int(d)
    return out


async def open_clients(server, n, timeout=60):
    """n /ws clients, each with its hello read: a list of (ws, hello)."""
    sem = asyncio.Semaphore(CONNECT_PARALLEL)

    async def one():
        async with sem:
            ws = await connect(server, "/ws", open_timeout=scaled(30))
        try:
            hello = json.loads(await recv(ws, timeout))
        except BaseException:
            ws.transport.abort()
            raise
        return ws, hello

    results = await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)
    ok = [r for r in results if not isinstance(r, BaseException)]
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        await close_all([ws for ws, _ in ok])
        raise AssertionError("%d of %d connects failed: %r" % (len(errors), n, errors[:3]))
    return ok


async def close_all(clients):
    await asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True)


async def in_thread(fn, *args):
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


async def publish_from_both(server, prefix, at_least, limit):
    """Publish prefix-0, prefix-1, ... (fresh connection each) until at least
    `at_least` went out and both workers published; [(msg, worker, sent_here)]."""
    out = []
    for i in range(limit):
        r = await in_thread(publish, server, "%s-%03d" % (prefix, i))
        out.append(("%s-%03d" % (prefix, i), r["worker"], r["sent_here"]))
        if len(out) >= at_least and {w for _, w, _ in out} == set(range(1, WORKERS + 1)):
            return out
    raise AssertionError("%d publishes all landed on worker(s) %s"
                         % (limit, sorted({w for _, w, _ in out})))


def check_received(got, published, who):
    """got: what one client received; published: [(msg, worker, _)].
    Every message exactly once, and each publisher's messages in its order."""
    msgs = [m for m, _, _ in published]
    dups = [m for m, k in Counter(got).items() if k > 1]
    assert not dups, "%s got duplicates %r" % (who, dups[:5])
    assert sorted(got) == sorted(msgs), "%s got %r, expected %r" % (who, got, msgs)
    for w in range(1, WORKERS + 1):
        want = [m for m, pw, _ in published if pw == w]
        have = [m for m in got if m in set(want)]
        assert have == want, "%s: worker %d's publishes out of order: %r" % (who, w, have)


async def echo_round(clients, tag):
    """Each client sends one message and the very next thing it gets is the
    echo (so nothing else was queued for it): [(worker, version)]."""
    async def one(i, ws):
        await ws.send("%s-%d" % (tag, i))
        reply = await recv(ws, 30)
        version, worker, text = reply.split(":", 2)
        assert text == "%s-%d" % (tag, i), "client %d: expected its echo, got %r" % (i, reply)
        return int(worker), version
    return await asyncio.gather(*(one(i, ws) for i, ws in enumerate(clients)))


# ---------------------------------------------------------------------------

def test_1000_clients_on_two_workers_get_every_publish_once_in_order(spawn, capsys):
    s = start(spawn)
    mark = s.log_mark()
    n = 1000

    async def go():
        pairs = await open_clients(s, n)
        clients = [ws for ws, _ in pairs]
        try:
            share = Counter(h["worker"] for _, h in pairs)
            assert set(share) == {1, 2}, "clients did not spread over both workers: %r" % share
            published = await publish_from_both(s, "m", at_least=20, limit=60)
            for msg, w, sent_here in published:
                assert sent_here == share[w], (
                    "publish %s on worker %d reached %d of its %d subscribers"
                    % (msg, w, sent_here, share[w]))

            async def collect(ws):
                return [await recv(ws, 30) for _ in range(len(published))]
            got = await asyncio.gather(*(collect(ws) for ws in clients), return_exceptions=True)
            failed = [(i, g) for i, g in enumerate(got) if isinstance(g, BaseException)]
            assert not failed, "%d clients did not get %d messages: %r" % (
                len(failed), len(published), failed[:3])
            for i, g in enumerate(got):
                check_received(g, published, "client %d (worker %d)" % (i, pairs[i][1]["worker"]))
            # nothing more was queued for anyone (no late duplicate)
            await echo_round(clients, "end")
            return share, Counter(w for _, w, _ in published)
        finally:
            await close_all(clients)

    share, pubs = run(go(), timeout=120)
    report(capsys, "workers: 1000 clients split %r, publishes per worker %r"
           % (dict(share), dict(pubs)))
    errs = log_errors(s, mark)
    assert not errs, "errors in the server log:\n" + "".join(errs[:20])


def test_kill_9_of_a_worker_drops_only_its_clients_and_it_is_started_again(spawn):
    s = start(spawn)

    async def go():
        pairs = await open_clients(s, 100)
        new = []
        try:
            by = {1: [], 2: []}
            for ws, h in pairs:
                by[h["worker"]].append(ws)
            assert by[1] and by[2], "clients did not spread: %r" % {k: len(v) for k, v in by.items()}
            pids = worker_pids(s)
            assert set(pids) == {1, 2}, pids
            victim, survivor = 2, 1
            mark = s.log_mark()
            os.kill(pids[victim], signal.SIGKILL)

            # the victim's clients see their TCP connection end without a close frame
            async def dropped(ws):
                await asyncio.wait_for(ws.wait_closed(), scaled(10))
                return ws.close_code
            codes = await asyncio.gather(*(dropped(ws) for ws in by[victim]))
            assert set(codes) == {1006}, Counter(codes)
            await in_thread(lambda: s.wait_log(
                r"\[error\] worker 2 \(pid %d\) was killed by signal 9 \(Killed\); "
                r"starting it again in 100 ms" % pids[victim], since=mark))

            # the survivor's clients are still there and get every publish
            assert all(ws.open for ws in by[survivor])
            after_kill = []
            for i in range(5):
                msg = "after-kill-%d" % i
                r = await in_thread(publish, s, msg)
                after_kill.append((msg, r["worker"], r["sent_here"]))

            async def collect(ws, k):
                return [await recv(ws, 30) for _ in range(k)]
            got = await asyncio.gather(*(collect(ws, len(after_kill)) for ws in by[survivor]))
            for i, g in enumerate(got):
                check_received(g, after_kill, "survivor %d" % i)

            # the victim is back, as a new process
            await in_thread(lambda: s.wait_log(
                r"\[info\] worker 2 \(pid (\d+)\) serves again", since=mark, timeout=10))
            pids2 = worker_pids(s)
            assert pids2[survivor] == pids[survivor] and pids2[victim] != pids[victim], (pids, pids2)

            # new clients reach both workers again
            new_pairs = await open_clients(s, 40)
            new.extend(ws for ws, _ in new_pairs)
            new_share = Counter(h["worker"] for _, h in new_pairs)
            assert set(new_share) == {1, 2}, "new clients did not reach both workers: %r" % new_share
            # the restarted worker did not start its conn.ids over
            reused = {h["id"] for _, h in new_pairs} & {h["id"] for _, h in pairs}
            assert not reused, "conn.id reused after the restart: %r" % sorted(reused)[:10]
            # the tally forgot the dead worker's connections
            counts = await in_thread(who_each, s)
            total = len(by[survivor]) + len(new)
            for w, j in counts.items():
                assert j["count_all"] == total, (w, j, total)
            assert counts[victim]["count"] == new_share[victim], counts

            after_restart = await publish_from_both(s, "after-restart", at_least=6, limit=40)
            got = await asyncio.gather(*(collect(ws, len(after_restart)) for ws in by[survivor]))
            for i, g in enumerate(got):
                check_received(g, after_restart, "survivor %d" % i)
            # The new clients subscribed after the after-kill publishes: they
            # get the after-restart ones only (nothing stale from the dead
            # worker's mailbox).
            got = await asyncio.gather(*(collect(ws, len(after_restart)) for ws in new))
            for i, g in enumerate(got):
                check_received(g, after_restart, "new client %d (worker %d)"
                               % (i, new_pairs[i][1]["worker"]))
            await echo_round(by[survivor] + new, "end")
        finally:
            await close_all([ws for ws, _ in pairs] + new)

    run(go(), timeout=60)


def _reload_re(why=None):
    return (r"\[info\] reloaded \S*workers_app\.lua \((%s)\) on 2 workers in [0-9.]+ ms; "
            r"(\d+) connections? kept" % (why or "[^)]*"))


def test_reload_by_edit_reaches_both_workers_and_a_broken_edit_neither(spawn, tmp_path):
    path = tmp_path / "workers_app.lua"
    v1 = APP.read_text()
    assert 'local VERSION = "v1"' in v1
    path.write_text(v1)
    s = start(spawn, script=path)
    assert {w: j["version"] for w, j in who_each(s).items()} == {1: "v1", 2: "v1"}

    async def go():
        pairs = await open_clients(s, 40)
        clients = [ws for ws, _ in pairs]
        try:
            share = Counter(h["worker"] for _, h in pairs)
            assert set(share) == {1, 2}, share
            assert sorted(await echo_round(clients, "a")) == sorted((h["worker"], "v1") for _, h in pairs)

            # a good edit: every worker loads it, connections stay
            mark = s.log_mark()
            path.write_text(v1.replace('local VERSION = "v1"', 'local VERSION = "v2"'))
            m = await in_thread(lambda: s.wait_log(_reload_re(), since=mark, timeout=10))
            assert int(m.group(2)) == len(clients), m.group(0)
            for w in (1, 2):
                s.wait_log(r"\[info\] \[worker %d\] reloaded " % w, since=mark, timeout=1)
            answers = await in_thread(who_each, s)
            assert {w: j["version"] for w, j in answers.items()} == {1: "v2", 2: "v2"}, answers
            # live connections of both workers are served by the new version
            replies = await echo_round(clients, "b")
            assert sorted(replies) == sorted((h["worker"], "v2") for _, h in pairs), Counter(replies)

            # a broken edit: refused by the supervisor's check; no worker changes
            mark = s.log_mark()
            broken = v1.replace('local VERSION = "v1"', 'local VERSION = "v3" +* 1')
            path.write_text(broken)
            line = script_line(path, "local VERSION")
            m = await in_thread(lambda: s.wait_log(
                r"\[error\] reload failed \(([^)]*)\), the previous version keeps serving: "
                r"\S*workers_app\.lua:%d:" % line, since=mark, timeout=10))
            answers = await in_thread(who_each, s)
            assert {w: j["version"] for w, j in answers.items()} == {1: "v2", 2: "v2"}, answers
            assert all(ws.open for ws in clients)
            replies = await echo_round(clients, "c")
            assert sorted(replies) == sorted((h["worker"], "v2") for _, h in pairs), Counter(replies)
            after = log_since(s, mark)
            assert not re.search(r"\[worker \d\] reloaded|reloaded \S*workers_app\.lua", after), after

            # SIGHUP asks the supervisor too: still broken, still refused
            mark = s.log_mark()
            s.proc.send_signal(signal.SIGHUP)
            await in_thread(lambda: s.wait_log(
                r"\[error\] reload failed \(SIGHUP\), the previous version keeps serving: "
                r"\S*workers_app\.lua:%d:" % line, since=mark, timeout=10))
            assert not re.search(r"\[worker \d\] reloaded", log_since(s, mark))

            # the fix reaches both workers; then a SIGHUP reloads it on both again
            mark = s.log_mark()
            path.write_text(v1.replace('local VERSION = "v1"', 'local VERSION = "v4"'))
            await in_thread(lambda: s.wait_log(_reload_re(), since=mark, timeout=10))
            answers = await in_thread(who_each, s)
            assert {w: j["version"] for w, j in answers.items()} == {1: "v4", 2: "v4"}, answers
            replies = await echo_round(clients, "d")
            assert sorted(replies) == sorted((h["worker"], "v4") for _, h in pairs), Counter(replies)
            mark = s.log_mark()
            s.proc.send_signal(signal.SIGHUP)
            m = await in_thread(lambda: s.wait_log(_reload_re("SIGHUP"), since=mark, timeout=10))
            assert int(m.group(2)) == len(clients), m.group(0)
        finally:
            await close_all(clients)

    run(go(), timeout=60)


def test_sigterm_closes_every_connection_with_1001_and_runs_on_shutdown_in_each_worker(spawn):
    s = start(spawn)

    async def go():
        pairs = await open_clients(s, 40)
        share = Counter(h["worker"] for _, h in pairs)
        assert set(share) == {1, 2}, share
        s.terminate()

        async def closed(ws):
            await asyncio.wait_for(ws.wait_closed(), scaled(10))
            return ws.close_code
        codes = await asyncio.gather(*(closed(ws) for ws, _ in pairs), return_exceptions=True)
        return share, codes

    share, codes = run(go(), timeout=30)
    assert Counter(codes) == Counter({1001: 40}), Counter(map(repr, codes))
    assert s.wait_exit(10) == 0
    s._thread.join(timeout=5)  # the whole of stderr, up to its end
    log = s.log
    assert re.search(r"\[info\] SIGTERM: stopping 2 workers", log), log[-3000:]
    for w in (1, 2):
        assert re.search(r"\[info\] \[worker %d\] \S*workers_app\.lua:\d+: on_shutdown ran in "
                         r"worker %d of 2 with %d connections" % (w, w, share[w]), log), log[-3000:]
    assert re.search(r"\[info\] all 2 workers stopped\n\Z", log), log[-3000:]


def _listening_ports(pids):
    """{pid: [port, ...]} of the TCP sockets in LISTEN state each pid holds."""
    inodes = {}
    for pid in pids:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            m = re.match(r"socket:\[(\d+)\]$", target)
            if m:
                inodes.setdefault(int(m.group(1)), []).append(pid)
    out = {pid: [] for pid in pids}
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] != "0A":  # LISTEN
                continue
            for pid in inodes.get(int(fields[9]), ()):
                out[pid].append(int(fields[1].rsplit(":", 1)[1], 16))
    return out


def test_port_0_gives_one_port_that_reaches_both_workers(spawn):
    s = start(spawn)
    lines = LISTEN_RE.findall(s.log)
    assert lines == [str(s.port)], s.log
    assert re.search(r"listening on http://127\.0\.0\.1:%d \(script \S*workers_app\.lua, 2 workers, "
                     r"a listening socket each\)" % s.port, s.log), s.log
    answers = who_each(s)
    assert sorted(answers) == [1, 2]
    assert all(j["workers"] == 2 for j in answers.values()), answers
    pids = worker_pids(s)
    assert sorted(pids) == [1, 2], pids
    ports = _listening_ports([s.proc.pid] + list(pids.values()))
    for w, pid in pids.items():
        assert ports[pid] == [s.port], "worker %d listens on %r" % (w, ports[pid])
    assert set(ports[s.proc.pid]) == {s.port}, ports


def test_worker_id_count_and_count_all(spawn):
    s = start(spawn)
    k = 30

    async def go():
        pairs = await open_clients(s, k)
        try:
            share = Counter(h["worker"] for _, h in pairs)
            assert set(share) == {1, 2}, share
            answers = await in_thread(who_each, s)
            for w, j in answers.items():
                assert j["worker"] == w and j["workers"] == 2, j
                assert j["count"] == share[w], (j, share)
                assert j["count_all"] == k, (j, k)
            # 10 leave with a close handshake: the counts follow (the close
            # reaches the tally asynchronously, so poll what /who says)
            leaving = [ws for ws, _ in pairs[:10]]
            await close_all(leaving)
            left = share - Counter(h["worker"] for _, h in pairs[:10])

            def settled():
                a = who_each(s)
                return all(j["count_all"] == k - 10 and j["count"] == left[w]
                           for w, j in a.items()) and a
            await in_thread(lambda: wait_for(settled, timeout=5, desc="counts after 10 closes"))
        finally:
            await close_all([ws for ws, _ in pairs])

    run(go(), timeout=30)


def test_conn_id_is_unique_across_workers(spawn):
    s = start(spawn)

    async def go():
        pairs = await open_clients(s, 200)
        try:
            return [h for _, h in pairs]
        finally:
            await close_all([ws for ws, _ in pairs])

    hellos = run(go(), timeout=60)
    assert set(Counter(h["worker"] for h in hellos)) == {1, 2}
    ids = [h["id"] for h in hellos]
    assert all(isinstance(i, int) for i in ids), ids[:10]
    dups = [(i, [h["worker"] for h in hellos if h["id"] == i]) for i, c in Counter(ids).items() if c > 1]
    assert not dups, "conn.id shared by connections (id, workers): %r" % dups[:10]


@pytest.mark.parametrize("option", ["--max-connections", "--max-per-ip"])
def test_a_limit_of_10_counts_both_workers_together(spawn, option):
    """With 10 WebSockets open over both workers, the 11th upgrade gets 503
    (not the 21st), on whichever worker it lands."""
    s = start(spawn, option, "10")
    conns = []

    def open_one():
        c = rawws.upgrade(s.port, "/ws", timeout=scaled(5))
        conns.append((c, json.loads(c.recv_text())))

    def close_one():
        c, _ = conns.pop(0)
        c.send_close(1000)
        c.recv_close()
        c.close()
        # the slot is given back asynchronously: poll the count (bounded)
        wait_for(lambda: all(j["count_all"] == len(conns) for j in who_each(s).values()),
                 desc="count_all %d after a close" % len(conns))

    def attempt():
        with rawws.Conn(s.port, timeout=scaled(5)) as c:
            return c.handshake("/ws")

    try:
        for _ in range(10):
            open_one()
        # both workers should hold some of the 10; if the kernel put all on
        # one, swap connections until the other has one (bounded)
        for _ in range(40):
            if len({h["worker"] for _, h in conns}) == 2:
                break
            close_one()
            open_one()
        share = Counter(h["worker"] for _, h in conns)
        assert set(share) == {1, 2}, share
        for w, j in who_each(s).items():
            assert j["count_all"] == 10 and j["count"] == share[w], (j, share)

        refused = [attempt() for _ in range(20)]
        assert [r.status for r in refused] == [503] * 20, (
            "upgrades over %s 10 (10 open: %r): %r" % (option, dict(share), refused))
        for w, j in who_each(s).items():
            assert j["count_all"] == 10, j

        # one leaves: one more fits again, and then no more
        close_one()
        open_one()
        assert attempt().status == 503
    finally:
        for c, _ in conns:
            c.close()


async def _upgrade_status(port):
    """One upgrade on a fresh connection: (status, hello or None, writer)."""
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(("GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
             % (port, rawws.new_key())).encode())
    head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), scaled(10))
    status = int(head.split(b" ", 2)[1])
    hello = None
    if status == 101:
        b0, b1 = await asyncio.wait_for(r.readexactly(2), scaled(10))
        assert b0 == 0x81 and b1 < 126, (b0, b1)
        hello = json.loads(await asyncio.wait_for(r.readexactly(b1), scaled(10)))
    return status, hello, w


@pytest.mark.parametrize("option", ["--max-connections", "--max-per-ip"])
def test_a_burst_of_upgrades_over_both_workers_gets_exactly_the_limit(spawn, option):
    """100 upgrades at once, spread by the kernel over both workers, with a
    limit of 10: exactly 10 open, whichever workers they land on (each
    worker checks the shared count, then adds to it)."""
    s = start(spawn, option, "10")

    async def go():
        results = []
        for _ in range(5):
            got = await asyncio.gather(*(_upgrade_status(s.port) for _ in range(100)))
            opened = [h for st, h, _ in got if st == 101]
            results.append((len(opened), Counter(h["worker"] for h in opened),
                            Counter(st for st, _, _ in got)))
            for _, _, w in got:
                w.close()
            await in_thread(lambda: wait_for(
                lambda: all(j["count_all"] == 0 for j in who_each(s).values()),
                desc="count_all 0 after the burst's connections closed"))
        return results

    results = run(go(), timeout=60)
    assert all(n == 10 and set(statuses) == {101, 503} for n, _, statuses in results), results


def test_broken_script_with_workers_exits_1_with_file_line_and_starts_nothing(tmp_path):
    bad = tmp_path / "workers_broken.lua"
    bad.write_text('local ws = {}\nlocal x = = 1\nreturn { ["/ws"] = ws }\n')
    p = subprocess.run([str(BIN), "--workers", "2", "--host", "127.0.0.1", "--port", "0", str(bad)],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=scaled(15))
    err = p.stderr.decode("utf-8", "replace")
    assert p.returncode == 1, (p.returncode, err)
    assert re.search(r"^wspush: \S*workers_broken\.lua:2: ", err, re.M), err
    assert "listening on" not in err, err
    assert "[worker" not in err, err


# 12000: a record of 24 KB, larger than a pipe's atomic write (4 KiB) and
# than the log's first buffer (8 KiB).
@pytest.mark.parametrize("n", [3000, 12000])
def test_worker_log_records_reach_stderr_whole(spawn, n):
    """Long two-line records (n x's, newline, n y's) logged at once by both
    workers: each leaves whole, its continuation line right after it, nothing
    in between."""
    s = start(spawn)
    requests = 40

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: http_json(s, "GET", "/biglog?n=%d" % n, timeout=15),
                                range(requests)))
    by_worker = Counter(a["worker"] for a in answers)
    assert set(by_worker) == {1, 2}, by_worker
    wait_for(lambda: s.log.count("x" * n) >= requests, timeout=10, desc="all big records in the log")

    rec_re = re.compile(r"^" + TS + r"(\[worker (\d)\] )?(.*)$")
    big_re = re.compile(r"^\S*workers_app\.lua:\d+: (x+)$")
    lines = s.log.split("\n")
    assert lines[-1] == "", "the log ends mid-line: %r" % lines[-1][-200:]
    seen = Counter()
    current = None  # (worker, is_big) of the record the last line belongs to
    expect_y = False
    for i, line in enumerate(lines[:-1]):
        m = rec_re.match(line)
        if m:
            assert not expect_y, "line %d: the y line of a big record is missing: %r" % (i, line[:200])
            worker = m.group(2)
            big = big_re.match(m.group(3))
            if "xxxxxxxx" in line or "yyyyyyyy" in line:
                assert big and worker, "line %d: a mangled big record: %r" % (i, line[:300])
            if big:
                assert len(big.group(1)) == n, "line %d: an x-run of %d" % (i, len(big.group(1)))
                seen[int(worker)] += 1
                expect_y = True
            current = worker
            continue
        assert line.startswith("  ") and current is not None, (
            "line %d is neither a record nor a continuation of one: %r" % (i, line[:300]))
        if expect_y:
            assert line == "  " + "y" * n, "line %d: not the y line: %r ... %r (len %d)" % (
                i, line[:100], line[-100:], len(line))
            expect_y = False
        else:
            assert "xxxxxxxx" not in line and "yyyyyyyy" not in line, (
                "line %d: a stray x/y continuation: %r" % (i, line[:300]))
    assert not expect_y
    assert seen == by_worker, "big records per worker in the log %r, requests answered %r" % (
        dict(seen), dict(by_worker))
