"""wspush.metrics end to end: render() is valid Prometheus text 0.0.4 (a
strict parser, promtext.py, and prometheus_client's own), and its figures
move by exactly what real traffic did: connections, messages and bytes,
refused upgrades by reason (origin, bad handshake, the upgrade hook, no
route), closes by code (1000 and an application code, counted as "other"),
a publish and its deliveries, a Lua error, the script's own counter, gauge
and histogram. With --workers 2 every worker's scrape shows the same
whole-server totals, and a worker killed and started again takes none of
the counts away.
"""
import asyncio
import os
import signal
import socket

import pytest

import promtext
import rawws
from conftest import SCRIPTS, scaled, wait_for
from pushlib import connect, http, http_json, recv, run

APP = SCRIPTS / "metrics_app.lua"


class Scraper:
    """Scrapes /metrics on fresh connections, counting them: each is one
    connection and one request in the figures it reads."""

    def __init__(self, server):
        self.server = server
        self.count = 0

    def scrape(self):
        r = http(self.server, "GET", "/metrics")
        self.count += 1
        assert r.status == 200, r
        assert r.header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8"
        text = r.body.decode("utf-8")
        return promtext.parse(text), int(r.header("X-Worker")), text


async def traffic(server):
    """Two connections: three messages on the first, a publish both get,
    closes with 1000 and 4000."""
    async with connect(server, "/ws") as a, connect(server, "/ws") as b:
        for m in ("a", "bb", "ccc"):
            await a.send(m)
            assert await recv(a) == m
        pub = await asyncio.get_running_loop().run_in_executor(
            None, lambda: http_json(server, "GET", "/publish?msg=pub"))
        assert pub["sent_here"] >= 0
        assert await recv(a) == "pub"
        assert await recv(b) == "pub"
        await a.close(1000)
        await b.close(4000, "app")


def refusals(server):
    """One upgrade refused for each reason the core tells apart."""
    evil = rawws.Conn(server.port)
    with evil:
        assert evil.handshake("/ws", {"Origin": "http://evil.example"}).status == 403
    bad = rawws.Conn(server.port)
    with bad:
        assert bad.handshake("/ws", {"Sec-WebSocket-Key": None}).status == 400
    hooked = rawws.Conn(server.port)
    with hooked:
        assert hooked.handshake("/hooked").status == 403
    nope = rawws.Conn(server.port)
    with nope:
        assert nope.handshake("/nope").status == 404


# Requests (and connections) the scenario makes besides scrapes: two
# upgrades, /publish, four refused upgrades, /boom, three /hit.
REQUESTS = 11


def scenario(server):
    run(traffic(server))
    refusals(server)
    assert http(server, "GET", "/boom").status == 500
    for kind in ("a", "a", "b"):
        http_json(server, "GET", "/hit?kind=" + kind)


EXPECT = {
    ("wspush_connections_opened_total", ()): 2,
    ("wspush_connections_closed_total", (("code", "1000"),)): 1,
    ("wspush_connections_closed_total", (("code", "other"),)): 1,
    ("wspush_upgrades_refused_total", (("reason", "origin"),)): 1,
    ("wspush_upgrades_refused_total", (("reason", "handshake"),)): 1,
    ("wspush_upgrades_refused_total", (("reason", "upgrade_hook"),)): 1,
    ("wspush_upgrades_refused_total", (("reason", "route"),)): 1,
    ("wspush_upgrades_refused_total", (("reason", "limit"),)): 0,
    ("wspush_messages_received_total", ()): 3,
    ("wspush_messages_received_bytes_total", ()): 6,
    # three echoes and two deliveries of "pub"
    ("wspush_messages_sent_total", ()): 5,
    ("wspush_messages_sent_bytes_total", ()): 6 + 2 * 3,
    ("wspush_publishes_total", ()): 1,
    ("wspush_deliveries_total", ()): 2,
    ("wspush_lua_errors_total", ()): 1,
    ("app_hits_total", (("kind", "a"),)): 2,
    ("app_hits_total", (("kind", "b"),)): 1,
    ("app_size_bytes_bucket", (("le", "1"),)): 1,
    ("app_size_bytes_bucket", (("le", "4"),)): 3,
    ("app_size_bytes_bucket", (("le", "+Inf"),)): 3,
    ("app_size_bytes_sum", ()): 6,
    ("app_size_bytes_count", ()): 3,
}


def deltas(before, after):
    return {k: promtext.value(after, k[0], **dict(k[1])) - promtext.value(before, k[0], **dict(k[1]))
            for k in EXPECT}


def closed_both(fams):
    return (promtext.value(fams, "wspush_connections_closed_total", code="1000") >= 1
            and promtext.value(fams, "wspush_connections_closed_total", code="other") >= 1)


def check_request_counts(before, after, scrapes):
    for name in ("wspush_connections_accepted_total", "wspush_http_requests_total"):
        d = promtext.value(after, name) - promtext.value(before, name)
        assert d == REQUESTS + scrapes, (name, d, REQUESTS, scrapes)


def test_render_is_valid_text_format(spawn):
    server = spawn(APP)
    # label values the format must escape: a quote, a backslash, a newline
    http_json(server, "GET", "/hit?kind=q%22b%5Cs%0Aend")
    s = Scraper(server)
    fams, _, text = s.scrape()
    assert promtext.value(fams, "app_hits_total", kind='q"b\\s\nend') == 1
    assert 'kind="q\\"b\\\\s\\nend"' in text
    for name, f in fams.items():
        assert f["help"], name
        if f["type"] == "counter":
            assert name.endswith("_total"), name
    assert fams["wspush_connections_open"]["type"] == "gauge"
    assert fams["app_size_bytes"]["type"] == "histogram"
    # no label takes a topic, a path or a connection id: only these
    keys = {k for f in fams.values() for _, labels, _ in f["samples"] for k in labels}
    assert keys == {"reason", "code", "result", "kind", "le"}, keys


def test_prometheus_client_reads_it(spawn):
    parser = pytest.importorskip("prometheus_client.parser")
    server = spawn(APP)
    http_json(server, "GET", "/hit?kind=x")
    fams, _, text = Scraper(server).scrape()
    theirs = {f.name: f for f in parser.text_string_to_metric_families(text)}
    # prometheus_client strips _total from a counter's family name
    assert theirs["app_hits"].type == "counter"
    assert [s.value for s in theirs["app_hits"].samples if s.labels == {"kind": "x"}] == [1.0]
    assert theirs["app_size_bytes"].type == "histogram"
    assert len(theirs) == len(fams)


def test_figures_move_by_what_happened(spawn):
    server = spawn(APP)
    s = Scraper(server)
    before, _, _ = s.scrape()
    first = s.count
    scenario(server)
    after = wait_for(lambda: (lambda f: closed_both(f) and f)(s.scrape()[0]),
                     desc="both closes counted")
    got = deltas(before, after)
    assert got == {k: float(v) for k, v in EXPECT.items()}
    check_request_counts(before, after, s.count - first)
    assert promtext.value(after, "wspush_connections_open") == 0
    assert promtext.value(after, "wspush_lua_heap_bytes") > 0
    assert promtext.value(after, "wspush_resident_memory_bytes") > 1 << 20
    assert promtext.value(after, "wspush_workers") == 1
    assert delta(before, after, "wspush_worker_relayed_total") == 0


def delta(before, after, name, **labels):
    return promtext.value(after, name, **labels) - promtext.value(before, name, **labels)


def test_a_callback_over_its_budget_is_counted(spawn):
    server = spawn(APP, "--lua-timeout", "0.2")
    s = Scraper(server)
    before, _, _ = s.scrape()
    assert http(server, "GET", "/spin").status == 500
    after, _, _ = s.scrape()
    assert delta(before, after, "wspush_lua_timeouts_total") == 1
    assert delta(before, after, "wspush_lua_errors_total") == 1


def test_tls_handshakes_done_and_failed(spawn, pki):
    server = spawn(APP, "--tls-cert", pki.server, "--tls-key", pki.server_key)
    server.use_tls(pki.client_context())
    s = Scraper(server)
    before, _, _ = s.scrape()
    # plain HTTP to the TLS port: the handshake fails and the server hangs up
    with socket.create_connection(("127.0.0.1", int(server.port)), timeout=scaled(5)) as raw:
        raw.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        for _ in range(100):
            if not raw.recv(4096):
                break
    after, _, _ = s.scrape()
    # the second scrape's own handshake, and the plain one
    assert delta(before, after, "wspush_tls_handshakes_total", result="done") == 1
    assert delta(before, after, "wspush_tls_handshakes_total", result="failed") == 1


def each_worker(s, workers=2, tries=200):
    """Scrapes from fresh connections until every worker answered: {worker: families}."""
    seen = {}
    for _ in range(tries):
        fams, w, _ = s.scrape()
        seen[w] = (fams, s.count)
        if len(seen) == workers:
            return seen
    raise AssertionError("%d scrapes reached only workers %s" % (tries, sorted(seen)))


def test_workers_show_the_whole_server(spawn):
    server = spawn(APP, "--workers", 2)
    s = Scraper(server)
    before, _, _ = s.scrape()
    first = s.count
    scenario(server)
    wait_for(lambda: closed_both(s.scrape()[0]), desc="both closes counted")
    # each worker sets its own rooms gauge to 2: the server shows 4
    rooms = {}
    for _ in range(200):
        rooms[http_json(server, "GET", "/hit?kind=c&rooms=2")["worker"]] = True
        if len(rooms) == 2:
            break
    hits_c = None
    for w, (fams, count) in each_worker(s).items():
        assert deltas(before, fams) == {k: float(v) for k, v in EXPECT.items()}, w
        # this scrape's own connection is counted: every scrape so far is
        hits = promtext.value(fams, "app_hits_total", kind="c")
        hits_c = hits if hits_c is None else hits_c
        assert hits == hits_c
        assert promtext.value(fams, "app_rooms") == 4, w
        for name in ("wspush_connections_accepted_total", "wspush_http_requests_total"):
            d = promtext.value(fams, name) - promtext.value(before, name)
            assert d == REQUESTS + hits + count - first, (w, name, d)
        assert promtext.value(fams, "wspush_workers") == 2, w
    # the scenario's one publish went to the one other worker (sampled once a
    # second by a worker that does not answer the scrape)
    wait_for(lambda: delta(before, s.scrape()[0], "wspush_worker_relayed_total") == 1,
             desc="the publish relayed once")


def children(pid):
    with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
        return {int(p) for p in f.read().split()}


def worker_pid(sup, wid):
    for pid in children(sup):
        try:
            with open("/proc/%d/environ" % pid, "rb") as f:
                if b"WSPUSH_WORKER=%d/" % wid in f.read():
                    return pid
        except OSError:
            pass  # gone (not reaped yet)
    return None


def test_a_dead_worker_takes_no_counts_away(spawn):
    server = spawn(APP, "--workers", 2)
    s = Scraper(server)
    scenario(server)
    wait_for(lambda: closed_both(s.scrape()[0]), desc="both closes counted")
    before = s.scrape()[0]
    sup = server.proc.pid
    victim = worker_pid(sup, 2)
    assert victim, children(sup)
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: worker_pid(sup, 2) not in (None, victim), timeout=10,
             desc="worker 2 started again")
    for w, (fams, _) in each_worker(s).items():
        for name, labels in EXPECT:
            assert (promtext.value(fams, name, **dict(labels))
                    == promtext.value(before, name, **dict(labels))), (w, name, labels)


def test_a_reload_that_redefines_a_metric_is_refused_by_every_worker(spawn, tmp_path):
    """The check (a process of its own) cannot see the workers' metrics: each
    worker refuses the version and says so to the supervisor, which ends the
    round at once; the old version serves on with its counts."""
    script = tmp_path / "app.lua"
    script.write_text(APP.read_text())
    server = spawn(script, "--workers", 2, "--no-watch")
    http_json(server, "GET", "/hit?kind=kept")
    mark = server.log_mark()
    script.write_text(APP.read_text().replace('metrics.gauge("app_rooms", "Rooms open',
                                              'metrics.histogram("app_rooms", "Rooms open'))
    os.kill(server.proc.pid, signal.SIGHUP)
    for w in (1, 2):
        server.wait_log(r"worker %d kept the previous version: .*app_rooms is defined already as a "
                        r"gauge" % w, since=mark, timeout=10)
    server.wait_log(r"2 of 2 workers kept the previous version", since=mark, timeout=10)
    assert "unknown message" not in server.log
    fams, _, _ = Scraper(server).scrape()
    assert fams["app_rooms"]["type"] == "gauge"
    assert promtext.value(fams, "app_hits_total", kind="kept") == 1
