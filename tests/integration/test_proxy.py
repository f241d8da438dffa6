"""--trusted-proxy: behind a trusted reverse proxy the client's address is the
one X-Forwarded-For names (the rightmost address that is not itself a trusted
hop), for conn.remote, req.remote, the refusal log and --max-per-ip; from any
other peer the header means nothing. The proxy here is the test itself,
connecting from 127.0.0.1."""
import json
import re
import subprocess

import rawws
from conftest import BIN, SCRIPTS, scaled, wait_for

APP = SCRIPTS / "proxy_app.lua"
PEER = re.compile(r"^127\.0\.0\.1:\d+$")


def start(spawn, *args):
    return spawn(APP, *args)


def behind(spawn, *args):
    """A server that trusts this test (127.0.0.1) and 10.0.0.0/8 as proxies."""
    return start(spawn, "--trusted-proxy", "127.0.0.1/32", "--trusted-proxy", "10.0.0.0/8", *args)


def ws_remote(server, xff=None):
    """conn.remote of a WebSocket opened with that X-Forwarded-For (None: no header)."""
    with rawws.upgrade(server.port, "/ws", headers={"X-Forwarded-For": xff}) as c:
        first = c.recv_text()
        c.send_text("remote")
        again = c.recv_text()
    assert first == again, (first, again)
    assert first.startswith("remote "), first
    return first[len("remote "):]


def http_remote(server, xff=None):
    r = server.http("/remote", headers={"X-Forwarded-For": xff})
    assert r.status == 200, r
    return r.body.decode()


def test_the_client_is_the_rightmost_address_that_is_not_a_trusted_hop(spawn):
    s = behind(spawn)
    assert ws_remote(s, "1.2.3.4, 10.0.0.2") == "1.2.3.4"
    assert http_remote(s, "1.2.3.4, 10.0.0.2") == "1.2.3.4"
    assert ws_remote(s, "1.2.3.4") == "1.2.3.4"
    # every hop trusted: the leftmost began the chain
    assert http_remote(s, "10.9.9.9, 10.0.0.2") == "10.9.9.9"


def test_a_forged_leftmost_address_is_ignored(spawn):
    s = behind(spawn)
    assert ws_remote(s, "6.6.6.6, 1.2.3.4, 10.0.0.2") == "1.2.3.4"
    assert http_remote(s, "127.0.0.1, 6.6.6.6, 1.2.3.4") == "1.2.3.4"


def test_an_untrusted_peers_header_is_ignored(spawn):
    s = start(spawn, "--trusted-proxy", "10.0.0.0/8")
    assert PEER.match(ws_remote(s, "1.2.3.4")), "127.0.0.1 is not trusted here"
    assert PEER.match(http_remote(s, "1.2.3.4, 10.0.0.2"))
    plain = start(spawn)
    assert PEER.match(ws_remote(plain, "1.2.3.4"))
    assert PEER.match(http_remote(plain, "1.2.3.4"))


def test_without_a_header_the_peer_is_the_client(spawn):
    s = behind(spawn)
    assert PEER.match(ws_remote(s))
    assert PEER.match(http_remote(s))
    assert PEER.match(http_remote(s, ""))


def test_ipv6_entries(spawn):
    s = start(spawn, "--trusted-proxy", "127.0.0.1", "--trusted-proxy", "fd00::/8")
    assert ws_remote(s, "2001:db8::7, fd00::2") == "2001:db8::7"
    assert http_remote(s, "[2001:DB8::8], [fd00::3]") == "2001:db8::8"
    # the IPv4-mapped form is the IPv4 client it names
    assert http_remote(s, "::ffff:1.2.3.4") == "1.2.3.4"


def test_a_garbage_entry_stops_the_walk_and_the_peer_is_the_client(spawn):
    s = behind(spawn)
    for bad in ("unknown, 10.0.0.2", "1.2.3.4:5678", "[2001:db8::1]:443", "example.com",
                "1.2.3.4 5.6.7.8", "01.2.3.4", "_hidden, 10.0.0.2"):
        assert PEER.match(http_remote(s, bad)), bad
    assert PEER.match(ws_remote(s, "unknown, 10.0.0.2"))
    # garbage left of the client is never reached
    assert http_remote(s, "unknown, 1.2.3.4, 10.0.0.2") == "1.2.3.4"
    # empty elements are not garbage (RFC 9110 5.6.1)
    assert http_remote(s, ", 1.2.3.4,, 10.0.0.2,") == "1.2.3.4"


def test_every_header_counts_in_order_and_each_request_names_its_client(spawn):
    """A proxy's keep-alive connection carries many clients' requests."""
    s = behind(spawn)
    host = "Host: 127.0.0.1:%d\r\n" % s.port
    with rawws.Conn(s.port) as c:
        r = c.request("GET /remote HTTP/1.1\r\n" + host + "X-Forwarded-For: 6.6.6.6, 1.2.3.4\r\n"
                      "X-Other: x\r\nX-Forwarded-For: 10.0.0.3\r\n\r\n")
        assert (r.status, r.body) == (200, b"1.2.3.4"), r
        r = c.request("GET /remote HTTP/1.1\r\n" + host + "X-Forwarded-For: 10.0.0.1\r\n"
                      "X-Forwarded-For: 5.6.7.8\r\n\r\n")
        assert (r.status, r.body) == (200, b"5.6.7.8"), r
        r = c.request("GET /remote HTTP/1.1\r\n" + host + "\r\n")
        assert r.status == 200 and PEER.match(r.body.decode()), r


def test_max_per_ip_counts_each_forwarded_address(spawn):
    s = behind(spawn, "--max-per-ip", "1")
    a = rawws.upgrade(s.port, "/ws", headers={"X-Forwarded-For": "1.2.3.4"})
    b = rawws.upgrade(s.port, "/ws", headers={"X-Forwarded-For": "5.6.7.8, 10.0.0.2"})
    peer = rawws.upgrade(s.port, "/ws")  # the proxy's own address has its own quota
    try:
        mark = s.log_mark()
        with rawws.Conn(s.port) as c:
            r = c.handshake("/ws", headers={"X-Forwarded-For": "1.2.3.4, 10.0.0.9"})
            assert r.status == 503, r
        s.wait_log(r"503 too many connections from your address \(first: 1\.2\.3\.4\)", since=mark)
        with rawws.Conn(s.port) as c:
            assert c.handshake("/ws").status == 503
        # the address is released under the name it was counted under
        a.close()

        def again():
            with rawws.Conn(s.port) as c:
                r = c.handshake("/ws", headers={"X-Forwarded-For": "1.2.3.4"})
                return r.status == 101
        wait_for(again, timeout=scaled(5), desc="1.2.3.4 admitted again once its connection closed")
    finally:
        for c in (a, b, peer):
            c.close()


def test_tcp_limits_stay_on_the_peer_address(spawn):
    """--max-tcp-per-ip counts TCP connections before any header is read."""
    s = behind(spawn, "--max-tcp-per-ip", "1")
    with rawws.upgrade(s.port, "/ws", headers={"X-Forwarded-For": "1.2.3.4"}):
        with rawws.Conn(s.port) as c:
            r = c.handshake("/ws", headers={"X-Forwarded-For": "5.6.7.8"})
            assert r.status == 503, r


def test_every_worker_reads_the_forwarded_address(spawn):
    s = behind(spawn, "--workers", "2")
    seen = set()

    def both():
        r = s.http("/worker", headers={"X-Forwarded-For": "1.2.3.4"})
        assert r.status == 200, r
        remote, worker = r.body.decode().split()
        assert remote == "1.2.3.4", r
        seen.add(worker)
        return len(seen) == 2
    wait_for(both, timeout=scaled(20), desc="both workers answered")


def test_a_bad_trusted_proxy_is_a_one_line_error_naming_the_option(tmp_path):
    for bad, why in (("10.0.0.0/33", "prefix length over 32"), ("nope", "invalid address"),
                     ("::/129", "prefix length over 128")):
        p = subprocess.run([str(BIN), "--trusted-proxy", "127.0.0.1", "--trusted-proxy", bad,
                            "--port", "0", str(APP)], capture_output=True, text=True,
                           timeout=scaled(10))
        assert p.returncode == 1, p
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("wspush: --trusted-proxy " + bad + ": "), p
        assert why in lines[0], p


def test_over_tls_the_forwarded_address_is_read_the_same(spawn, pki):
    s = behind(spawn, "--tls-cert", pki.fullchain, "--tls-key", pki.server_key)
    s.use_tls(pki.client_context())
    assert ws_remote(s, "1.2.3.4, 10.0.0.2") == "1.2.3.4"
    assert http_remote(s, "6.6.6.6, 1.2.3.4") == "1.2.3.4"


def test_an_upgrade_refused_after_a_wait_releases_the_forwarded_address(spawn):
    """The limit is checked again when a waiting upgrade(req) decides: that
    refusal has counted the forwarded address, and must release it under the
    same name, or the address would stay blocked."""
    s = behind(spawn, "--max-per-ip", "1")
    xff = {"X-Forwarded-For": "1.2.3.4"}
    slow = rawws.Conn(s.port, timeout=scaled(10))
    try:
        slow.send(("GET /slow?wait=%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                   "X-Forwarded-For: 1.2.3.4\r\n\r\n" % (scaled(2), s.port, rawws.new_key()))
                  .encode())
        with rawws.upgrade(s.port, "/ws", headers=xff):
            r = slow.read_response(timeout=scaled(10))
            assert r.status == 503, "the place was taken while /slow waited: %r" % r
    finally:
        slow.close()

    def admitted():
        with rawws.Conn(s.port) as c:
            return c.handshake("/ws", headers=xff).status == 101
    wait_for(admitted, timeout=scaled(5), desc="1.2.3.4 admitted once both connections closed")


def test_the_access_log_names_the_forwarded_client(spawn):
    """An HTTP request's record and a closed WebSocket's record name the
    client the proxy forwarded for, not the proxy."""
    s = behind(spawn, "--access-log", "-", "--log-format", "json")
    assert http_remote(s, "1.2.3.4, 10.0.0.2") == "1.2.3.4"
    assert ws_remote(s, "5.6.7.8") == "5.6.7.8"

    def records():
        recs = [json.loads(line) for line in s.log.splitlines()]
        return [r for r in recs if r["msg"] == "access"]
    recs = wait_for(lambda: (lambda a: len(a) == 2 and a)(records()),
                    desc="the request's and the WebSocket's access records")
    assert [(r["kind"], r["remote"]) for r in recs] == [("http", "1.2.3.4"), ("ws", "5.6.7.8")], recs
