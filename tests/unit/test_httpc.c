/* httpc.h: request heads (exact bytes), header-line checks, and responses
 * fed at once and byte by byte: lengths, chunks, close-delimited bodies,
 * HEAD/204/304, interim responses, limits, garbage. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "httpc.h"
#include "mem.h"

static void test_httpc_method_and_header_lines_are_checked(void **state)
{
    (void)state;
    assert_true(ws_httpc_method_valid("GET"));
    assert_true(ws_httpc_method_valid("M-SEARCH"));
    assert_false(ws_httpc_method_valid(""));
    assert_false(ws_httpc_method_valid("GE T"));
    assert_false(ws_httpc_method_valid("GET\r\n"));
    assert_false(ws_httpc_method_valid("GET /x HTTP/1.1\r\nX:"));
    assert_false(ws_httpc_method_valid("ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFG")); /* 33 */

    static const char *const good[] = {"", "A: b\r\n", "A: b\r\nC-D: \r\n", "X:y\r\n"};
    static const char *const bad[] = {
        "A: b", "A: b\r", "A b\r\n", ": b\r\n", "A: b\nC: d\r\n", "A: b\r\r\n", "A: b\rc\r\n",
        "Content-Length: 1\r\n", "transfer-encoding: chunked\r\n", "A\r\n: b\r\n", "A B: c\r\n",
    };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        if (!ws_httpc_headers_valid(good[i], strlen(good[i])))
            fail_msg("refused: %s", good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (ws_httpc_headers_valid(bad[i], strlen(bad[i])))
            fail_msg("accepted: %s", bad[i]);
    assert_false(ws_httpc_headers_valid("A: b\0c\r\n", 8));
}

static void test_httpc_finds_and_drops_header_lines(void **state)
{
    (void)state;
    const char *h = "Host: x\r\nCookie: a=1\r\nX-Host: y\r\nauthorization: z\r\n";
    assert_true(ws_httpc_has_header(h, strlen(h), "host"));
    assert_true(ws_httpc_has_header(h, strlen(h), "AUTHORIZATION"));
    assert_false(ws_httpc_has_header(h, strlen(h), "ost"));
    assert_false(ws_httpc_has_header(h, strlen(h), "user-agent"));
    ws_buf_t b;
    ws_buf_init(&b);
    ws_buf_append_str(&b, h);
    static const char *const drop[] = {"host", "authorization", "cookie", NULL};
    ws_httpc_drop_headers(&b, drop);
    ws_buf_append(&b, "", 1);
    assert_string_equal((char *)b.data, "X-Host: y\r\n");
    ws_buf_free(&b);
}

static char *head(const char *method, const char *url, const char *hdrs, size_t body_len, ws_buf_t *b)
{
    ws_url_t u;
    char err[128];
    assert_int_equal(ws_url_parse(&u, url, strlen(url), err, sizeof err), 0);
    ws_buf_init(b);
    ws_httpc_head(b, method, &u, hdrs, strlen(hdrs), body_len);
    ws_buf_append(b, "", 1);
    ws_url_free(&u);
    return (char *)b->data;
}

#define UA "User-Agent: wspush/" WSPUSH_VERSION "\r\n"

static void test_httpc_builds_request_heads(void **state)
{
    (void)state;
    ws_buf_t b;
    assert_string_equal(head("GET", "http://h/", "", 0, &b), "GET / HTTP/1.1\r\nHost: h\r\n" UA "\r\n");
    ws_buf_free(&b);
    /* "u:p" is dTpw in base64; the port is in Host; the fragment is not sent */
    assert_string_equal(head("GET", "http://u:p@h:8080/x?y#f", "X-A: 1\r\n", 0, &b),
                        "GET /x?y HTTP/1.1\r\nHost: h:8080\r\n" UA
                        "Authorization: Basic dTpw\r\nX-A: 1\r\n\r\n");
    ws_buf_free(&b);
    assert_string_equal(head("POST", "http://[::1]:81/p", "", 0, &b),
                        "POST /p HTTP/1.1\r\nHost: [::1]:81\r\n" UA "Content-Length: 0\r\n\r\n");
    ws_buf_free(&b);
    assert_string_equal(head("DELETE", "http://h/", "", 3, &b),
                        "DELETE / HTTP/1.1\r\nHost: h\r\n" UA "Content-Length: 3\r\n\r\n");
    ws_buf_free(&b);
    /* the caller's Host, User-Agent and Authorization win */
    assert_string_equal(head("PUT", "http://u:p@h/", "host: other\r\nUser-Agent: me\r\nAuthorization: Bearer t\r\n", 0, &b),
                        "PUT / HTTP/1.1\r\nhost: other\r\nUser-Agent: me\r\nAuthorization: Bearer t\r\n"
                        "Content-Length: 0\r\n\r\n");
    ws_buf_free(&b);
}

typedef struct {
    const char *name;
    const char *in;
    int head;
    size_t max_body;
    int skip_redirect;
    int eof;            /* feed the end of the stream after the bytes */
    /* expected */
    int complete;
    const char *error;  /* NULL: none */
    int status;
    const char *body;
    int keep_alive;
    long rest;          /* bytes after the response, left unconsumed */
    int skipped;
} res_case_t;

static const res_case_t RES[] = {
    {"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Y: z \r\n\r\nhello", 0, 100, 0, 0,
     1, NULL, 200, "hello", 1, 0, 0},
    {"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nT: v\r\n\r\n",
     0, 100, 0, 0, 1, NULL, 200, "hello world", 1, 0, 0},
    {"close-delimited", "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end", 0, 100, 0, 1,
     1, NULL, 200, "until the end", 0, 0, 0},
    {"close-delimited without eof", "HTTP/1.1 200 OK\r\n\r\nabc", 0, 100, 0, 0, 0, NULL, 200, "abc", 0, 0, 0},
    {"head", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", 1, 100, 0, 0, 1, NULL, 200, "", 1, 0, 0},
    {"204 with a length", "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello", 0, 100, 0, 0,
     1, NULL, 204, "", 1, 5, 0},
    {"304", "HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n", 0, 100, 0, 0, 1, NULL, 304, "", 1, 0, 0},
    {"interim", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n"
                "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
     0, 100, 0, 0, 1, NULL, 201, "ok", 1, 0, 0},
    {"101", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\nxyz", 0, 100, 0, 0,
     1, NULL, 101, "", 0, 3, 0},
    {"http/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 0, 100, 0, 0, 1, NULL, 200, "ok", 0, 0, 0},
    {"connection close", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", 0, 100, 0, 0,
     1, NULL, 200, "ok", 0, 0, 0},
    {"bytes after", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1", 0, 100, 0, 0,
     1, NULL, 200, "ok", 1, 8, 0},
    {"length over max", "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n", 0, 10, 0, 0,
     0, "response too large", 200, "", 0, 0, 0},
    {"length at max", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789", 0, 10, 0, 0,
     1, NULL, 200, "0123456789", 1, 0, 0},
    {"chunks over max", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n",
     0, 10, 0, 0, 0, "response too large", 200, NULL, 0, 0, 0},
    {"close-delimited over max", "HTTP/1.1 200 OK\r\n\r\n0123456789A", 0, 10, 0, 0,
     0, "response too large", 200, NULL, 0, 0, 0},
    {"redirect skipped", "HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 20\r\n\r\n01234567890123456789",
     0, 10, 1, 0, 1, NULL, 302, "", 1, 0, 1},
    {"redirect kept", "HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 3\r\n\r\nabc", 0, 10, 0, 0,
     1, NULL, 302, "abc", 1, 0, 0},
    {"redirect without location", "HTTP/1.1 302 Found\r\nContent-Length: 3\r\n\r\nabc", 0, 10, 1, 0,
     1, NULL, 302, "abc", 1, 0, 0},
    {"eof mid-body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 0, 100, 0, 1,
     0, NULL, 200, "abc", 0, 0, 0},
    {"eof mid-head", "HTTP/1.1 200 OK\r\nContent-Le", 0, 100, 0, 1, 0, NULL, 0, NULL, 0, 0, 0},
    {"garbage", "FOO BAR\r\n\r\n", 0, 100, 0, 0, 0, "invalid response", 0, NULL, 0, 0, 0},
    {"request, not response", "GET / HTTP/1.1\r\n\r\n", 0, 100, 0, 0, 0, "invalid response", 0, NULL, 0, 0, 0},
    {"bad length", "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", 0, 100, 0, 0, 0, "invalid response", 0, NULL, 0, 0, 0},
    {"two lengths", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 0, 100, 0, 0,
     0, "invalid response", 0, NULL, 0, 0, 0},
};

static void run_case(const res_case_t *c, size_t chunk)
{
    ws_httpc_res_t r;
    memset(&r, 0, sizeof r);
    ws_httpc_res_init(&r, c->head, c->max_body, c->skip_redirect);
    size_t len = strlen(c->in), off = 0;
    long rest = 0;
    int failed = 0;
    while (off < len) {
        size_t n = len - off < chunk ? len - off : chunk;
        long used = ws_httpc_res_feed(&r, (const uint8_t *)c->in + off, n);
        if (used < 0) {
            failed = 1;
            break;
        }
        if (r.complete) {
            rest = (long)(len - off) - used;
            break;
        }
        off += n;
    }
    if (c->eof && !failed)
        ws_httpc_res_eof(&r);
    if (r.complete != c->complete)
        fail_msg("%s (chunk %zu): complete %d", c->name, chunk, r.complete);
    if (c->error) {
        assert_true(failed);
        assert_string_equal(r.error, c->error);
    } else {
        if (failed)
            fail_msg("%s (chunk %zu): failed with %s", c->name, chunk, r.error);
        assert_null(r.error);
    }
    if (c->status)
        assert_int_equal(r.status, c->status);
    if (c->body) {
        size_t bl;
        const uint8_t *b = ws_httpc_res_body(&r, &bl);
        assert_int_equal(bl, strlen(c->body));
        assert_memory_equal(b, c->body, bl);
    }
    if (c->complete) {
        assert_int_equal(r.keep_alive, c->keep_alive);
        assert_int_equal(rest, c->rest);
        assert_int_equal(r.skipped, c->skipped);
        /* a complete response takes no more bytes */
        assert_int_equal(ws_httpc_res_feed(&r, (const uint8_t *)"x", 1), 0);
    }
    ws_httpc_res_free(&r);
}

static void test_httpc_reads_responses(void **state)
{
    (void)state;
    size_t before = ws_mem_used(WS_MEM_BUFFERS);
    for (size_t i = 0; i < sizeof RES / sizeof *RES; i++) {
        run_case(&RES[i], 1 << 20);
        run_case(&RES[i], 1);
        run_case(&RES[i], 7);
    }
    assert_int_equal(ws_mem_used(WS_MEM_BUFFERS), before);
}

static void test_httpc_keeps_headers_as_received(void **state)
{
    (void)state;
    const char *in = "HTTP/1.1 200 OK\r\nX-Thing:  a b  \r\nset-cookie: 1\r\nSet-Cookie: 2\r\nEmpty:\r\n"
                     "Content-Length: 0\r\n\r\n";
    ws_httpc_res_t r;
    memset(&r, 0, sizeof r);
    ws_httpc_res_init(&r, 0, 100, 0);
    assert_int_equal(ws_httpc_res_feed(&r, (const uint8_t *)in, strlen(in)), (long)strlen(in));
    assert_true(r.complete);
    assert_int_equal(ws_httpc_res_nheaders(&r), 5);
    ws_header_t h[5];
    ws_httpc_res_headers(&r, h);
    assert_int_equal(h[0].name_len, 7);
    assert_memory_equal(h[0].name, "X-Thing", 7);
    assert_int_equal(h[0].value_len, 3); /* surrounding whitespace trimmed */
    assert_memory_equal(h[0].value, "a b", 3);
    assert_memory_equal(h[1].name, "set-cookie", 10);
    assert_memory_equal(h[2].name, "Set-Cookie", 10);
    assert_memory_equal(h[2].value, "2", 1);
    assert_int_equal(h[3].value_len, 0);
    size_t vl;
    const char *v = ws_httpc_res_header(&r, "SET-COOKIE", &vl);
    assert_non_null(v);
    assert_memory_equal(v, "1", 1); /* the first */
    assert_null(ws_httpc_res_header(&r, "location", &vl));

    /* init starts the next response on the same buffers */
    const char *next = "HTTP/1.1 404 Not Found\r\nContent-Length: 1\r\n\r\n!";
    ws_httpc_res_init(&r, 0, 100, 0);
    assert_int_equal(ws_httpc_res_feed(&r, (const uint8_t *)next, strlen(next)), (long)strlen(next));
    assert_int_equal(r.status, 404);
    assert_int_equal(ws_httpc_res_nheaders(&r), 1);
    ws_httpc_res_free(&r);
}

static void test_httpc_caps_the_head(void **state)
{
    (void)state;
    ws_buf_t in;
    ws_buf_init(&in);
    ws_buf_append_str(&in, "HTTP/1.1 200 OK\r\n");
    /* many small headers: the separators count, so this is over the cap */
    for (int i = 0; i < WS_HTTPC_MAX_HEAD / 4; i++)
        ws_buf_append_str(&in, "A: b\r\n");
    ws_buf_append_str(&in, "\r\n");
    ws_httpc_res_t r;
    memset(&r, 0, sizeof r);
    ws_httpc_res_init(&r, 0, 100, 0);
    assert_int_equal(ws_httpc_res_feed(&r, in.data, in.len), -1);
    assert_string_equal(r.error, "invalid response");
    assert_int_equal(ws_httpc_res_feed(&r, (const uint8_t *)"x", 1), -1); /* stays failed */
    ws_httpc_res_free(&r);

    /* endless interim responses count too */
    ws_buf_reset(&in, 0);
    for (int i = 0; i < WS_HTTPC_MAX_HEAD / 20; i++)
        ws_buf_append_str(&in, "HTTP/1.1 100 Continue\r\n\r\n");
    memset(&r, 0, sizeof r);
    ws_httpc_res_init(&r, 0, 100, 0);
    assert_int_equal(ws_httpc_res_feed(&r, in.data, in.len), -1);
    ws_httpc_res_free(&r);
    ws_buf_free(&in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_httpc_method_and_header_lines_are_checked),
        cmocka_unit_test(test_httpc_finds_and_drops_header_lines),
        cmocka_unit_test(test_httpc_builds_request_heads),
        cmocka_unit_test(test_httpc_reads_responses),
        cmocka_unit_test(test_httpc_keeps_headers_as_received),
        cmocka_unit_test(test_httpc_caps_the_head),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
