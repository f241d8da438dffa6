#!/usr/bin/env python3
"""Regenerate the seed corpora in tests/fuzz/corpus/<target>/ (deterministic).

Each target's input starts with a few parameter bytes (see the comment at the
top of fuzz_<target>.c); the seeds here use neutral parameters (server side,
modest chunking) followed by real-world bytes: the RFC 6455 section 5.7
example frames, the RFC 6455 section 1.3 handshake, Chromium's and python
websockets' upgrade requests, and a few plain HTTP requests.

Usage: python3 tests/fuzz/gen_corpus.py   (rewrites only the files it names)
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
KEY = bytes([0x37, 0xFA, 0x21, 0x3D])  # the masking key of RFC 6455 5.7


def mask(payload, key=KEY):
    return bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def frame(op, payload=b"", fin=True, rsv=0, masked=True, key=KEY):
    n = len(payload)
    b0 = (0x80 if fin else 0) | rsv | op
    m = 0x80 if masked else 0
    if n < 126:
        head = bytes([b0, m | n])
    elif n < 65536:
        head = bytes([b0, m | 126]) + struct.pack("!H", n)
    else:
        head = bytes([b0, m | 127]) + struct.pack("!Q", n)
    return head + (key + mask(payload, key) if masked else payload)


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- RFC 6455 5.7 examples, verbatim --------------------------------------
RFC = {
    "rfc_text_unmasked": bytes.fromhex("810548656c6c6f"),
    "rfc_text_masked": bytes.fromhex("818537fa213d7f9f4d5158"),
    "rfc_fragmented_unmasked": bytes.fromhex("010348656c") + bytes.fromhex("80026c6f"),
    "rfc_ping_unmasked": bytes.fromhex("890548656c6c6f"),
    "rfc_pong_masked": bytes.fromhex("8a8537fa213d7f9f4d5158"),
    "rfc_binary_256_unmasked": bytes.fromhex("827e0100") + bytes(256),
    "rfc_binary_64k_unmasked": bytes.fromhex("827f0000000000010000") + bytes(64),
}

# frame: [rsv_allowed | require_mask, mask split] + header bytes
for name, data in RFC.items():
    write("frame", name + "_client", b"\x00\x03" + data)
    write("frame", name + "_server", b"\x01\x03" + data)
write("frame", "rsv1_allowed_compressed", b"\x41\x05" + frame(0x1, b"abc", rsv=0x40))
write("frame", "close_1000", b"\x01\x00" + frame(0x8, struct.pack("!H", 1000) + b"bye"))
write("frame", "len16_masked", b"\x01\x07" + frame(0x2, bytes(300))[:20])
write("frame", "len64_masked", b"\x01\x09" + frame(0x2, bytes(70000))[:24])

# message: [max lo, max hi, flags, chunk seed, chunk max, 0] + stream (client frames are masked)
P_WHOLE = bytes([0x05, 0x00, 0x00, 0x01, 0x00, 0x00])  # 1 MiB, whole feed
P_SMALL = bytes([0x05, 0x00, 0x00, 0x07, 0x03, 0x00])  # 1 MiB, chunks of 1..3
P_DEFL = bytes([0x05, 0x00, 0x03, 0x02, 0x05, 0x00])   # RSV1 allowed, stop after each frame
hello_frag = frame(0x1, b"Hel", fin=False) + frame(0x0, b"lo")
streams = {
    "rfc_text_masked": RFC["rfc_text_masked"],
    "rfc_pong_masked": RFC["rfc_pong_masked"],
    "fragmented_hello": hello_frag,
    "ping_between_fragments": frame(0x1, b"Hel", fin=False) + frame(0x9, b"p") + frame(0x0, b"lo"),
    "binary_256": frame(0x2, bytes(range(256))),
    "utf8_split_fragments": frame(0x1, "κόσμε".encode()[:3], fin=False)
    + frame(0x0, "κόσμε".encode()[3:]),
    "close_1000_reason": frame(0x8, struct.pack("!H", 1000) + b"bye"),
    "close_empty": frame(0x8, b""),
    "close_bad_code": frame(0x8, struct.pack("!H", 1005)),
    "empty_text_then_binary": frame(0x1, b"") + frame(0x2, b"\x00\xff"),
    "bad_utf8_text": frame(0x1, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"),
    "continuation_without_start": frame(0x0, b"x"),
    "unmasked": RFC["rfc_text_unmasked"],
}
for name, s in streams.items():
    write("message", name, P_WHOLE + s)
    write("message", name + "_chunked", P_SMALL + s)
write("message", "compressed_rsv1", P_DEFL + frame(0x1, b"\xf2\x48\xcd\xc9\xc9\x07\x00", rsv=0x40))
write("message", "too_big", bytes([0x0A, 0x00, 0, 1, 4, 0]) + frame(0x2, bytes(10)))

# utf8: [chunk seed, chunk max] + text
texts = {
    "hello_autobahn_6_2": "Hello-µ@ßöäüàá-UTF-8!!".encode(),
    "kosme": "κόσμε".encode(),
    "four_byte": "\U0001F600\U0010FFFF".encode(),
    "boundaries": "\u0080\u07ff\u0800\uffff\U00010000".encode(),
    "surrogate": b"\xed\xa0\x80",
    "overlong_slash": b"\xc0\xaf",
    "overlong_e0": b"\xe0\x80\xaf",
    "beyond_max": b"\xf4\x90\x80\x80",
    "truncated": b"\xe2\x82",
    "ascii_long": b"The quick brown fox jumps over the lazy dog. " * 4,
}
for name, t in texts.items():
    write("utf8", name, b"\x05\x07" + t)

# http: [chunk seed, chunk max, max_header pick] + request
CHROMIUM = (
    b"GET /chat HTTP/1.1\r\n"
    b"Host: example.com:8000\r\n"
    b"Connection: Upgrade\r\n"
    b"Pragma: no-cache\r\n"
    b"Cache-Control: no-cache\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    b"Chrome/120.0.0.0 Safari/537.36\r\n"
    b"Upgrade: websocket\r\n"
    b"Origin: http://example.com:8000\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"Accept-Encoding: gzip, deflate, br\r\n"
    b"Accept-Language: en-US,en;q=0.9\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    b"\r\n"
)
PY_WEBSOCKETS = (
    b"GET /ws HTTP/1.1\r\n"
    b"Host: localhost:8765\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    b"User-Agent: Python/3.11 websockets/12.0\r\n"
    b"\r\n"
)
RFC_HS = (
    b"GET /chat HTTP/1.1\r\n"
    b"Host: server.example.com\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Origin: http://example.com\r\n"
    b"Sec-WebSocket-Protocol: chat, superchat\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"\r\n"
)
requests = {
    "chromium_upgrade": CHROMIUM,
    "python_websockets_upgrade": PY_WEBSOCKETS,
    "rfc6455_upgrade": RFC_HS,
    "upgrade_then_frame": PY_WEBSOCKETS + RFC["rfc_text_masked"],
    "get_index": b"GET /index HTTP/1.1\r\nHost: localhost:8000\r\nAccept: */*\r\n\r\n",
    "pipelined": b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b?x=1&y=%20 HTTP/1.1\r\nHost: h\r\n\r\n",
    "post_body": b"POST /feed HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
    b"Content-Length: 13\r\n\r\n{\"msg\":\"hi\"}\n",
    "post_chunked": b"POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n0\r\n\r\n",
    "http10": b"GET / HTTP/1.0\r\n\r\n",
    "bad_version_upgrade": RFC_HS.replace(b"Version: 13", b"Version: 8"),
    "folded_connection": b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n"
    b"Connection: Upgrade\r\nUpgrade: WebSocket\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n\r\n",
    "empty_header_value": b"GET / HTTP/1.1\r\nX-Empty:\r\nHost: h\r\n\r\n",
}
for name, r in requests.items():
    write("http", name, b"\x03\x00\x00" + r)
    write("http", name + "_chunked", b"\x03\x07\x00" + r)

# tokens: [0] + a \0 b
pairs = {
    "connection_list": b"keep-alive, Upgrade\x00upgrade",
    "extensions": b"permessage-deflate; client_max_window_bits, x-webkit-deflate-frame\x00"
    b"permessage-deflate",
    "origin_port": b"https://example.com:8443\x00example.com:8443",
    "origin_default": b"http://Example.com\x00example.com:80",
    "origin_ipv6": b"http://[::1]:8080\x00[::1]:8080",
    "origin_null": b"null\x00example.com",
    "headers": b"Host\nUpgrade\nSec-WebSocket-Key\x00sec-websocket-key",
    "base64_key": b"dGhlIHNhbXBsZSBub25jZQ==",
}
for name, p in pairs.items():
    write("tokens", name, b"\x00" + p)

# deflate: [config, chunk seed, chunk max, max_out pick] + offer \0 payload
# Payloads: the RFC 7692 section 7.2.3 examples ("Hello" in various forms).
RFC7692 = {
    "hello": bytes.fromhex("f248cdc9c90700"),
    "hello_context": bytes.fromhex("f248cdc9c90700") + bytes.fromhex("f20011000000"),
    "stored_block": bytes.fromhex("000500faff48656c6c6f00"),
    "bfinal": bytes.fromhex("f348cdc9c9070000"),
    "two_blocks": bytes.fromhex("f248050000 00ffff cac9c90700".replace(" ", "")),
}
offers = {
    "plain": b"permessage-deflate",
    "client_bits": b"permessage-deflate; client_max_window_bits",
    "chromium": b"permessage-deflate; client_max_window_bits",
    "firefox": b"permessage-deflate",
    "all_params": b"permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
    b"server_max_window_bits=10; client_max_window_bits=12",
    "fallback": b"permessage-deflate; server_max_window_bits=8, permessage-deflate",
    "quoted": b'permessage-deflate; client_max_window_bits="10"',
    "unknown_then_pmd": b"x-webkit-deflate-frame, permessage-deflate; foo, permessage-deflate",
}
for oname, o in offers.items():
    for pname, pl in RFC7692.items():
        if oname in ("plain", "all_params") or pname == "hello":
            write("deflate", "%s_%s" % (oname, pname), bytes([0x07 | 0xE0, 3, 4, 6]) + o + b"\x00" + pl)
write("deflate", "text_roundtrip", bytes([0x0F, 1, 0, 4]) + b"permessage-deflate\x00"
      + "Hello-µ@ßöäüàá-UTF-8!! ".encode() * 20)

# route: "method\nrequest-target\ncontent-type\nbody" (see fuzz_route.c); the
# route table is in fuzz_route.lua.
routes = {
    "room_space": b"GET\n/room/abc%20d",
    "room_exact": b"GET\n/room/lobby?x=1",
    "room_post_form": b"POST\n/room/big%2Froom\napplication/x-www-form-urlencoded\nmsg=hi+there&to=%40all",
    "files_dotdot": b"GET\n/files/a/b/../c",
    "static_dotdot": b"GET\n/static/..%2F..%2Fetc/passwd",
    "static_double": b"GET\n/static/%252e%252e/x.txt?v=2",
    "query_plus_pct": b"GET\n/api/users/42?q=a+b%2Bc&sort=%7Ename&lang=fr%2Dca",
    "query_repeat": b"GET\n/api/a/b?tag=x&tag=y&tag=z&=empty&&flag",
    "query_bad_escapes": b"GET\n/any/k/r/e/s/t?a=%zz&b=%&c=%4&d=%%41&%=1",
    "query_long": b"GET\n/?k=" + b"v" * 1500 + b"&big=" + b"%41" * 300,
    "items_405": b"PATCH\n/items/7",
    "items_delete": b"DELETE\n/items/%37",
    "ws_get": b"GET\n/ws/lobby",
    "ws_post": b"POST\n/ws/lobby",
    "head_h": b"HEAD\n/h",
    "json_body": b"POST\n/dyn/x/y?z\napplication/json; charset=utf-8\n{\"a\":[1,2,{\"b\":null}]}",
    "json_bad": b"PUT\n/items/3\napplication/vnd.api+json\n{\"a\":",
    "fragment": b"GET\n/room/a#frag?x=1",
    "options_star": b"OPTIONS\n*",
    "absolute_form": b"GET\nhttp://example.com/room/x?y=1",
    "literal_pct_route": b"GET\n/a%20b/c%2Fd",
    "dynws_post": b"POST\n/dynws",
    "static_file": b"GET\n/static/css/./site.css?v=3",
}
for name, data in routes.items():
    write("route", name, data)

# httpc: [flags (1 HEAD, 2 skip redirect body, 4 pipelined), max_body pick,
# split point (2 bytes), chunk seed, chunk max] + what a server answered
# (see fuzz_httpc.c).
RESPONSES = {
    "nginx_200": (0, 4, b"HTTP/1.1 200 OK\r\nServer: nginx/1.24.0\r\nDate: Sat, 05 Dec 2026 10:00:00 GMT\r\n"
                        b"Content-Type: text/html\r\nContent-Length: 13\r\nConnection: keep-alive\r\n"
                        b"ETag: \"6560c4c8-d\"\r\n\r\n<html></html>"),
    "json_api": (0, 5, b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n"
                       b"Content-Length: 27\r\nCache-Control: no-store\r\nX-Multi: one\r\nx-multi: two\r\n"
                       b"\r\n{\"user\":\"alice\",\"ok\":true}\n"),
    "chunked_trailers": (0, 4, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
                               b"6\r\nhello \r\n8;ext=1\r\nchunked \r\n5\r\nworld\r\n0\r\nX-Sum: 42\r\n\r\n"),
    "no_content": (0, 4, b"HTTP/1.1 204 No Content\r\nDate: Sat, 05 Dec 2026 10:00:00 GMT\r\n\r\n"),
    "not_modified_with_length": (0, 4, b"HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\nETag: \"x\"\r\n\r\n"),
    "head_with_length": (1, 4, b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5000\r\n\r\n"),
    "redirect_with_body": (2, 2, b"HTTP/1.1 302 Found\r\nLocation: /next?x=1\r\nContent-Type: text/html\r\n"
                                 b"Content-Length: 120\r\n\r\n" + b"r" * 120),
    "redirect_kept": (0, 3, b"HTTP/1.1 301 Moved Permanently\r\nLocation: https://example.com/\r\n"
                            b"Content-Length: 0\r\n\r\n"),
    "interim_then_200": (0, 4, b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
                               b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
    "close_delimited_10": (0, 4, b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nthe body runs until the close"),
    "pipelined_two": (4, 4, b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none"
                            b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found"),
    "switching": (0, 4, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x02hi"),
    "too_large": (0, 1, b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"z" * 64),
    "set_cookies": (0, 4, b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1; Path=/\r\nSet-Cookie: b=2; HttpOnly\r\n"
                          b"Vary: Accept-Encoding\r\nVary: Origin\r\nContent-Length: 0\r\n\r\n"),
    "header_lines": (0xC1, 4, b"Authorization: Bearer abc\r\nX-A: 1\r\nHost: other.example\r\n"
                              b"Content-Type: application/json\r\n"),
}
for name, (flags, mb, resp) in RESPONSES.items():
    k = len(resp) // 2
    write("httpc", name, bytes([flags, mb, k >> 8, k & 255, 7, 16]) + resp)

# url: [split point (2 bytes)] + a base URL + a reference (fuzz_url.c);
# the whole is parsed as one URL too. The references are RFC 3986 section
# 5.4's examples, normal and abnormal, against its base.
RFC3986_BASE = b"http://a/b/c/d;p?q"
RFC3986_REFS = [b"g:h", b"g", b"./g", b"g/", b"/g", b"//g", b"?y", b"g?y", b"#s", b"g#s", b"g?y#s",
                b";x", b"g;x", b"g;x?y#s", b"", b".", b"./", b"..", b"../", b"../g", b"../..",
                b"../../", b"../../g", b"../../../g", b"../../../../g", b"/./g", b"/../g", b"g.",
                b".g", b"g..", b"..g", b"./../g", b"./g/.", b"g/./h", b"g/../h", b"g;x=1/./y",
                b"g;x=1/../y", b"g?y/./x", b"g?y/../x", b"g#s/./x", b"g#s/../x", b"http:g"]
for i, ref in enumerate(RFC3986_REFS):
    n = len(RFC3986_BASE)
    write("url", "rfc3986_%02d" % i, bytes([n >> 8, n & 255]) + RFC3986_BASE + ref)
URLS = {
    "userinfo_port": (b"http://us%40er:pa%20ss@Example.COM:8080/p/a?q=1#frag", b"../x?y"),
    "ipv6_port": (b"https://[2001:DB8::1]:8443", b"/api/v1"),
    "ipv6_mapped": (b"http://[::ffff:169.254.169.254]/latest", b"//[::1]:80/x"),
    "empty_port": (b"http://h:/", b"?only"),
    "last_at": (b"http://a@b@c.example/", b"d@e"),
    "query_only_base": (b"http://host?x=1", b"rel/../path"),
    "upper_scheme": (b"HTTPS://HOST.EXAMPLE/Dir/", b"./File"),
    "bad_port": (b"http://h:65536/", b"x"),
    "zone_id": (b"http://[fe80::1%25eth0]/", b"x"),
    "no_scheme": (b"localhost:8080/x", b"y"),
}
for name, (base, ref) in URLS.items():
    n = len(base)
    write("url", name, bytes([n >> 8, n & 255]) + base + ref)

# proxy: lines of X-Forwarded-For values ('#' starts a header of another
# name; fuzz_proxy.c), behind 10.0.0.0/8, 127.0.0.1, fd00::/8 and
# ::ffff:192.168.0.0/112.
PROXY = {
    "chain": b"1.2.3.4, 10.0.0.2",
    "two_headers": b"6.6.6.6, 1.2.3.4\n#x\n10.0.0.3",
    "garbage": b"unknown, 10.0.0.2",
    "ipv6": b"2001:db8::7, [fd00::2]\n::ffff:192.168.1.1",
    "all_trusted": b"10.0.0.7,,127.0.0.1, ",
    "port": b"1.2.3.4:80",
}
for name, data in PROXY.items():
    write("proxy", name, data)
