"""The Tornado WebSocket demo, for tests/bench/run.sh (Debian python3-tornado, 6.2).

    /usr/bin/python3 tornado_demo.py [PORT]     (0 or none picks a free one; printed on stderr)

It is the well-known demo -- a WebSocketHandler with open/on_message/on_close that greets with
"Welcome", answers "new message :" + message and keeps a broadcast collection, plus an HTTP
handler that pushes to every client -- with its bugs fixed:

- @tornado.web.asynchronous is gone since Tornado 6: the HTTP handler is a plain get().
- `clients` was a list with `if self not in clients` / `clients.remove(self)`, O(n) per
  connection (quadratic with 10k clients): it is a set.
- Broadcasting iterated the collection while on_close could remove from it, and
  write_message on a client that just went away raised WebSocketClosedError out of the loop
  (or, since Tornado 6, logged "Task exception was never retrieved" for each queued message):
  it iterates over a copy, skips closed clients and retrieves the failed writes.
- The broadcast took its payload from ?id=&value= without checking them (MissingArgumentError
  as a 400 page); /receive?msg= answers {"sent": n} or a JSON 400, like handlers/broadcast.lua.
- Tornado refuses cross-origin upgrades by default; the demo meant to accept them
  (check_origin returns True), like handlers/echo.lua.

WS_DEFLATE=1 in the environment enables permessage-deflate on /ws (get_compression_options
returns {}: Tornado's defaults, context takeover both ways); Tornado's default is off.

/pub is the fan-out variant used by the benchmark: each message on it is broadcast to every /ws
client.
"""
import os
import sys

import tornado.httpserver
import tornado.ioloop
import tornado.netutil
import tornado.web
import tornado.websocket

clients = set()


def _retrieve(future):
    # A client that leaves with messages queued fails their futures; retrieving the error
    # keeps asyncio from logging "Task exception was never retrieved" once per message.
    if not future.cancelled():
        future.exception()


def broadcast(message, binary=False):
    sent = 0
    for c in list(clients):
        try:
            c.write_message(message, binary=binary).add_done_callback(_retrieve)
            sent += 1
        except tornado.websocket.WebSocketClosedError:
            clients.discard(c)
    return sent


class IndexHandler(tornado.web.RequestHandler):
    def get(self):
        self.write("Hello world")


class ReceiveHandler(tornado.web.RequestHandler):
    def get(self):
        msg = self.get_argument("msg", None)
        if msg is None:
            self.set_status(400)
            self.write({"error": "missing ?msg="})
            return
        self.write({"sent": broadcast(msg)})


class WebSocketHandler(tornado.websocket.WebSocketHandler):
    def check_origin(self, origin):
        return True

    def get_compression_options(self):
        return {} if os.environ.get("WS_DEFLATE") == "1" else None

    def open(self):
        clients.add(self)
        self.write_message("Welcome")

    def on_message(self, message):
        binary = isinstance(message, bytes)
        self.write_message((b"new message :" if binary else "new message :") + message,
                           binary=binary)

    def on_close(self):
        clients.discard(self)


class PublishHandler(tornado.websocket.WebSocketHandler):
    def check_origin(self, origin):
        return True

    def on_message(self, message):
        broadcast(message, binary=isinstance(message, bytes))


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    app = tornado.web.Application([
        (r"/index", IndexHandler),
        (r"/receive", ReceiveHandler),
        (r"/ws", WebSocketHandler),
        (r"/pub", PublishHandler),
    ])
    sockets = tornado.netutil.bind_sockets(port, "127.0.0.1", backlog=1024)
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets(sockets)
    bound = sockets[0].getsockname()[1]
    print("tornado: listening on http://127.0.0.1:%d" % bound, file=sys.stderr, flush=True)
    tornado.ioloop.IOLoop.current().start()


if __name__ == "__main__":
    main()
