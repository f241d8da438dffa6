"""Helpers shared by the push/routing/static/chat/browser end-to-end tests.

Everything here is bounded: every wait has a deadline (scaled by
WSPUSH_TIMEOUT_SCALE through conftest.scaled).
"""
import asyncio
import json
import re

import websockets

import rawws
from conftest import REPO, SCRIPTS, scaled

HANDLERS = REPO / "handlers"

# A server log line at error level, or anything that smells like a crash.
LOG_ERROR_RE = re.compile(r"\[error\]|\[warn\]|stack traceback|AddressSanitizer|runtime error:")


def run(coro, timeout=20):
    """Run a coroutine with a hard deadline."""
    return asyncio.run(asyncio.wait_for(coro, scaled(timeout)))


def connect(server, path, **kw):
    kw.setdefault("compression", None)
    kw.setdefault("open_timeout", scaled(10))
    kw.setdefault("close_timeout", scaled(5))
    kw.setdefault("max_queue", None)
    return websockets.connect(server.url + path, **kw)


async def recv(ws, timeout=5):
    return await asyncio.wait_for(ws.recv(), scaled(timeout))


async def recv_json(ws, timeout=5):
    return json.loads(await recv(ws, timeout))


async def recv_until(ws, pred, timeout=5, limit=1000):
    """Receive messages until pred(msg) is true; return (msg, messages_before)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + scaled(timeout)
    before = []
    for _ in range(limit):
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        msg = await asyncio.wait_for(ws.recv(), remaining)
        if pred(msg):
            return msg, before
        before.append(msg)
    raise AssertionError("no matching message within %ss; got %r" % (timeout, before[-20:]))


def http(server, method, path, body=b"", headers=None, timeout=5):
    """One raw HTTP request (path sent exactly as given)."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    return rawws.http_get(server.port, path, headers=headers, method=method, body=body,
                          timeout=scaled(timeout))


def http_json(server, method, path, **kw):
    r = http(server, method, path, **kw)
    assert r.status == 200, "%s %s -> %r" % (method, path, r)
    return json.loads(r.body.decode("utf-8"))


def raw_request(server, target, method="GET", timeout=5):
    """Send a request line with the target byte for byte (no client-side
    normalisation of '..', '%2e' or '//')."""
    req = "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n" % (
        method, target, server.port)
    with rawws.Conn(server.port, timeout=scaled(timeout)) as c:
        return c.request(req.encode("latin-1"))


def log_errors(server, since=0):
    """Lines of the server log (from log_mark `since`) that report an error."""
    with server._cond:
        lines = server._lines[since:]
    return [l for l in lines if LOG_ERROR_RE.search(l)]


def push_script(name):
    return SCRIPTS / name
