#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "error.h"
#include "http.h"

static const char UPGRADE[] = "GET /ws?x=1 HTTP/1.1\r\n"
                              "Host: localhost:8000\r\n"
                              "Upgrade: websocket\r\n"
                              "Connection: keep-alive, Upgrade\r\n"
                              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                              "Sec-WebSocket-Version: 13   \r\n"
                              "\r\n";

static void feed_all(ws_http_t *h, const char *s, size_t len, size_t chunk, long *consumed)
{
    size_t off = 0;
    *consumed = 0;
    while (off < len && !h->complete) {
        size_t n = len - off < chunk ? len - off : chunk;
        long r = ws_http_feed(h, s + off, n);
        if (r < 0) {
            *consumed = r;
            return;
        }
        off += (size_t)r;
        *consumed += r;
    }
}

static void check_upgrade_parsed(size_t chunk)
{
    ws_http_t h;
    ws_http_init(&h, 16384, 1 << 20);
    const char *frames = "\x81\x85";
    char in[sizeof UPGRADE + 2];
    memcpy(in, UPGRADE, sizeof UPGRADE - 1);
    memcpy(in + sizeof UPGRADE - 1, frames, 2);
    long consumed;
    feed_all(&h, in, sizeof in - 1 + 0, chunk, &consumed);
    assert_int_equal(h.complete, 1);
    assert_int_equal(h.upgrade, 1);
    /* The WebSocket bytes after the request are not consumed as HTTP. */
    assert_int_equal(consumed, (long)(sizeof UPGRADE - 1));

    ws_hs_request_t req;
    ws_header_t hdrs[WS_HTTP_MAX_HEADERS];
    ws_http_request(&h, &req, hdrs);
    assert_int_equal(req.nheaders, 5);
    assert_int_equal(req.http_major, 1);
    assert_int_equal(req.http_minor, 1);
    assert_memory_equal(req.method, "GET", 3);
    size_t ulen;
    const char *url = ws_http_url(&h, &ulen);
    assert_int_equal(ulen, 7);
    assert_memory_equal(url, "/ws?x=1", 7);
    long v = ws_header_find(hdrs, req.nheaders, "sec-websocket-version");
    assert_true(v >= 0);
    /* Trailing whitespace of a value is trimmed. */
    assert_int_equal(hdrs[v].value_len, 2);
    ws_hs_result_t res;
    assert_int_equal(ws_handshake_check(&req, &res), 0);
    assert_string_equal(res.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    ws_http_free(&h);
}

static void test_http_status_text_knows_rfc_9110_and_falls_back_to_the_class(void **state)
{
    (void)state;
    assert_string_equal(ws_http_status_text(200), "OK");
    assert_string_equal(ws_http_status_text(418), "I'm a teapot");
    assert_string_equal(ws_http_status_text(451), "Unavailable For Legal Reasons");
    assert_string_equal(ws_http_status_text(504), "Gateway Timeout");
    assert_string_equal(ws_http_status_text(299), "Success");
    assert_string_equal(ws_http_status_text(499), "Client Error");
    assert_string_equal(ws_http_status_text(599), "Server Error");
    assert_string_equal(ws_http_status_text(99), "Unknown");
    assert_string_equal(ws_http_status_text(600), "Unknown");
}

static void test_http_parses_upgrade_request_at_once(void **state)
{
    (void)state;
    check_upgrade_parsed(4096);
}

static void test_http_parses_upgrade_request_byte_by_byte(void **state)
{
    (void)state;
    check_upgrade_parsed(1);
}

static void test_http_keep_alive_pipelined_requests(void **state)
{
    (void)state;
    const char two[] = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                       "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc";
    ws_http_t h;
    ws_http_init(&h, 16384, 1 << 20);
    long r = ws_http_feed(&h, two, sizeof two - 1);
    assert_true(r > 0);
    assert_int_equal(h.complete, 1);
    assert_int_equal(h.keep_alive, 1);
    size_t ulen;
    assert_memory_equal(ws_http_url(&h, &ulen), "/a", 2);
    ws_http_next(&h);
    long r2 = ws_http_feed(&h, two + r, sizeof two - 1 - (size_t)r);
    assert_int_equal(r2, (long)(sizeof two - 1 - (size_t)r));
    assert_int_equal(h.complete, 1);
    size_t blen;
    const char *body = ws_http_body(&h, &blen);
    assert_int_equal(blen, 3);
    assert_memory_equal(body, "abc", 3);
    assert_memory_equal(ws_http_url(&h, &ulen), "/b", 2);
    ws_http_free(&h);
}

static void test_http_rejects_oversized_headers_with_431(void **state)
{
    (void)state;
    char big[4096];
    int n = snprintf(big, sizeof big, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(big + n, 'a', 2000);
    memcpy(big + n + 2000, "\r\n\r\n", 4);
    ws_http_t h;
    ws_http_init(&h, 1024, 1 << 20);
    long r = ws_http_feed(&h, big, (size_t)n + 2004);
    assert_int_equal(r, WS_EHDRTOOBIG);
    assert_int_equal(ws_http_error_status((int)r), 431);
    ws_http_free(&h);
}

static void test_http_rejects_oversized_body_with_413(void **state)
{
    (void)state;
    const char req[] = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n";
    ws_http_t h;
    ws_http_init(&h, 16384, 10);
    long r = ws_http_feed(&h, req, sizeof req - 1);
    assert_int_equal(r, WS_EBODYTOOBIG);
    assert_int_equal(ws_http_error_status((int)r), 413);
    ws_http_free(&h);
}

static void test_http_rejects_garbage_with_400(void **state)
{
    (void)state;
    const char req[] = "HELLO\x01 there\r\n\r\n";
    ws_http_t h;
    ws_http_init(&h, 16384, 10);
    long r = ws_http_feed(&h, req, sizeof req - 1);
    assert_int_equal(r, WS_EHTTP);
    assert_int_equal(ws_http_error_status((int)r), 400);
    ws_http_free(&h);
}

static void test_http_rejects_empty_header_name_with_400(void **state)
{
    (void)state;
    /* llhttp 8 passes ": value" to the callbacks; we must not make a nameless header of it. */
    const char *cases[] = {"GET / HTTP/1.1\r\nHost: h\r\n: evil\r\n\r\n",
                           "GET / HTTP/1.1\r\n: evil\r\nHost: h\r\n\r\n", "GET /\n:\r\n\n"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ws_http_t h;
        ws_http_init(&h, 16384, 10);
        long r = ws_http_feed(&h, cases[i], strlen(cases[i]));
        assert_int_equal(r, WS_EHTTP);
        ws_http_free(&h);
    }
}

static void test_http_header_add_keeps_safe_headers_and_drops_the_rest(void **state)
{
    (void)state;
    ws_buf_t b;
    ws_buf_init(&b);
    assert_int_equal(ws_http_header_add(&b, "X-Ok", 4, "yes", 3), 1);
    /* Response splitting: refused (-1) and nothing of it added. */
    assert_int_equal(ws_http_header_add(&b, "X-Bad", 5, "a\r\nSet-Cookie: x=1", 18), -1);
    assert_int_equal(ws_http_header_add(&b, "X-Bad", 5, "a\nb", 3), -1);
    assert_int_equal(ws_http_header_add(&b, "X-Bad", 5, "a\rb", 3), -1);
    assert_int_equal(ws_http_header_add(&b, "X-Bad\n", 6, "v", 1), -1);
    assert_int_equal(ws_http_header_add(&b, "X-Nul", 5, "a\0b", 3), -1);
    /* The ones the protocol frames itself, in any case, and an empty name: 0. */
    assert_int_equal(ws_http_header_add(&b, "", 0, "v", 1), 0);
    assert_int_equal(ws_http_header_add(&b, "Content-Length", 14, "0", 1), 0);
    assert_int_equal(ws_http_header_add(&b, "content-length", 14, "0", 1), 0);
    assert_int_equal(ws_http_header_add(&b, "CONNECTION", 10, "keep-alive", 10), 0);
    assert_int_equal(ws_http_header_add(&b, "Transfer-Encoding", 17, "chunked", 7), 0);
    /* Names that only start like the protected ones are the host's. */
    assert_int_equal(ws_http_header_add(&b, "Content-Type", 12, "x", 1), 1);
    assert_int_equal(ws_http_header_add(&b, "Connection-Id", 13, "7", 1), 1);
    static const char want[] = "X-Ok: yes\r\nContent-Type: x\r\nConnection-Id: 7\r\n";
    assert_int_equal(b.len, sizeof want - 1);
    assert_memory_equal(b.data, want, b.len);
    ws_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_status_text_knows_rfc_9110_and_falls_back_to_the_class),
        cmocka_unit_test(test_http_parses_upgrade_request_at_once),
        cmocka_unit_test(test_http_parses_upgrade_request_byte_by_byte),
        cmocka_unit_test(test_http_keep_alive_pipelined_requests),
        cmocka_unit_test(test_http_rejects_oversized_headers_with_431),
        cmocka_unit_test(test_http_rejects_oversized_body_with_413),
        cmocka_unit_test(test_http_rejects_garbage_with_400),
        cmocka_unit_test(test_http_rejects_empty_header_name_with_400),
        cmocka_unit_test(test_http_header_add_keeps_safe_headers_and_drops_the_rest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
