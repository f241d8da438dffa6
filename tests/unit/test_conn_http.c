/*
 * The connection (conn.c, conn_recv.c) before it is a WebSocket: the
 * upgrade and its refusals, answers the host gives later, plain HTTP, and
 * the deadlines of the HTTP phase. A fake host over the in-memory transport,
 * on a fake clock: each test plays the peer byte by byte and asserts what
 * the host was told and what went back on the wire.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "error.h"
#include "http.h"
#include "proto_harness.h"

/* --- helpers --- */

static void feed_upgrade(harness_t *h, ws_memio_t *m, const char *key, const char *version,
                         const char *extra)
{
    ws_buf_t req;
    ws_buf_init(&req);
    hs_upgrade_request(&req, "/ws", key, version, extra);
    ws_memio_feed(m, req.data, req.len);
    ws_buf_free(&req);
    hs_pump(h);
}

/* --- the upgrade --- */

static void test_conn_upgrade_accepted_sends_101_and_opens(void **state)
{
    harness_t *h = *state;
    h->host.subprotocol = "chat";
    hs_start(h);
    ws_memio_t *m;
    ws_conn_t *c = hs_conn(h, &m);
    ws_buf_t req;
    ws_buf_init(&req);
    hs_upgrade_request(&req, "/chat?room=1", NULL, NULL,
                       "Sec-WebSocket-Protocol: chat, superchat\r\n");
    ws_memio_feed(m, req.data, req.len);
    ws_buf_free(&req);
    hs_pump(h);

    const hs_response_t *r = hs_take_response(h, m, 1);
    assert_non_null(r);
    assert_int_equal(r->status, 101);
    assert_true(hs_has_header(r, "Sec-WebSocket-Accept: " HS_ACCEPT));
    assert_true(hs_has_header(r, "Upgrade: websocket"));
    assert_true(hs_has_header(r, "Connection: Upgrade"));
    assert_true(hs_has_header(r, "Sec-WebSocket-Protocol: chat"));
    assert_int_equal(hs_pending_output(m), 0);

    assert_string_equal(hs_log(h), "upgrade:/chat?room=1;open;");
    assert_int_equal(h->host.n_upgrade, 1);
    assert_int_equal(h->host.n_open, 1);
    assert_int_equal(h->host.n_http, 0);
    assert_true(h->host.has_protocols);
    assert_string_equal(h->host.protocols, "chat, superchat");
    assert_int_equal(ws_conn_state(c), WS_CONN_OPEN);
    assert_int_equal(h->hub.nopen, 1);
    assert_false(ws_memio_shut(m));
}

static void refuse_with_header(fake_host_t *fh, ws_upgrade_t *up)
{
    (void)fh;
    ws_http_header_add(&up->headers, "WWW-Authenticate", 16, "Bearer", 6);
}

static void test_conn_upgrade_refused_by_host_answers_its_status_then_ends(void **state)
{
    harness_t *h = *state;
    h->host.upgrade_status = 401;
    h->host.upgrade_reason = "token required";
    h->host.fill_upgrade = refuse_with_header;
    hs_start(h);
    ws_memio_t *m;
    ws_conn_t *c = hs_conn(h, &m);
    /* A peer that does not read yet: the end must wait for the answer to leave. */
    ws_memio_hold(m, 1);
    feed_upgrade(h, m, NULL, NULL, NULL);
    assert_int_equal(hs_pending_output(m), 0);
    assert_false(ws_memio_shut(m));

    ws_memio_hold(m, 0);
    hs_pump(h);
    const hs_response_t *r = hs_take_response(h, m, 0);
    assert_non_null(r);
    assert_int_equal(r->status, 401);
    assert_true(hs_has_header(r, "WWW-Authenticate: Bearer"));
    assert_true(hs_has_header(r, "Connection: close"));
    assert_string_equal((const char *)r->body.data, "token required\n");
    assert_int_equal(hs_pending_output(m), 0);
    assert_true(ws_memio_shut(m));

    assert_string_equal(hs_log(h), "upgrade:/ws;");
    assert_int_equal(h->host.n_open, 0);
    assert_int_equal(h->hub.nopen, 0);
    assert_int_equal(ws_conn_state(c), WS_CONN_HTTP);

    /* Our FIN is out; the peer's ends it. A connection that never opened is
     * not the host's to hear about. */
    ws_memio_end(m);
    hs_pump(h);
    assert_true(ws_memio_closed(m));
    assert_int_equal(h->hub.nconns, 0);
    assert_int_equal(h->host.n_closed, 0);
    assert_int_equal(h->host.n_cancel, 0);
}

static void test_conn_upgrade_without_key_is_400_and_never_reaches_host(void **state)
{
    harness_t *h = *state;
    hs_start(h);
    ws_memio_t *m;
    hs_conn(h, &m);
    feed_upgrade(h, m, "", NULL, NULL);
    const hs_response_t *r = hs_take_response(h, m, 0);
    assert_non_null(r);
    assert_int_equal(r->status, 400);
    assert_true(hs_has_header(r, "Connection: close"));
    assert_true(ws_memio_shut(m));
    assert_string_equal(hs_log(h), "");
}

static void test_conn_upgrade_version_12_is_426_naming_13_and_never_reaches_host(void **state)
{
    harness_t *h = *state;
    hs_start(h);
    ws_memio_t *m;
    hs_conn(h, &m);
    feed_upgrade(h, m, NULL, "12", NULL);
    const hs_response_t *r = hs_take_response(h, m, 0);
    assert_non_null(r);
    assert_int_equal(r->status, 426);
    assert_true(hs_has_header(r, "Sec-WebSocket-Version: 13"));
    assert_true(ws_memio_shut(m));
    assert_string_equal(hs_log(h), "");
}

static void refuse_with_long_header(fake_host_t *fh, ws_upgrade_t *up)
{
    (void)fh;
    char value[600];
    memset(value, 'v', sizeof value);
    ws_http_header_add(&up->headers, "X-Long", 6, value, sizeof value);
}

/* A refusal's extra headers may be longer than any fixed buffer: the
 * response must go out whole, every header byte and then the body. */
static void test_conn_refused_upgrade_with_long_headers_is_sent_whole(void **state)
{
    harness_t *h = *state;
    h->host.upgrade_status = 403;
    h->host.upgrade_reason = "forbidden";
    h->host.fill_upgrade = refuse_with_long_header;
    hs_start(h);
    ws_memio_t *m;
    hs_conn(h, &m);
    feed_upgrade(h, m, NULL, NULL, NULL);
    const hs_response_t *r = hs_take_response(h, m, 0);
    assert_non_null(r);
    assert_int_equal(r->status, 403);
    char line[700] = "X-Long: ";
    memset(line + 8, 'v', 600);
    line[608] = '\0';
    assert_true(hs_has_header(r, line));
    assert_string_equal((const char *)r->body.data, "forbidden\n");
}

static void abort_in_open(fake_host_t *fh, ws_conn_t *c)
{
    (void)fh;
    ws_conn_abort(c, WS_CLOSE_INTERNAL);
}

/* host.h lets the host close the connection from inside open. By then the
 * upgrade is answered, so the host hears closed and no cancel: cancel is for
 * a pending question that will never be answered. */
static void test_conn_abort_inside_open_reports_closed_without_cancel(void **state)
{
    harness_t *h = *state;
    h->host.on_open = abort_in_open;
    hs_start(h);
    ws_memio_t *m;
    hs_conn(h, &m);
    feed_upgrade(h, m, NULL, NULL, NULL);
    assert_true(ws_memio_closed(m));
    assert_int_equal(h->host.closed_code, WS_CLOSE_INTERNAL);
    assert_string_equal(hs_log(h), "upgrade:/ws;open;closed:1011;");
}

/* --- answers that come later --- */

/* Bytes behind a request the host has not answered yet are given back to
 * the transport, into a stash that was empty until then: they wait there,
 * in order, with reading paused, and reach the host only after the answer. */
static void test_conn_pending_upgrade_holds_following_frames_until_done(void **state)
{
    harness_t *h = *state;
    h->host.upgrade_pending = 1;
    hs_start(h);
    ws_memio_t *m;
    ws_conn_t *c = hs_conn(h, &m);
    /* The request and two frames in one read, as a client that does not wait
     * for the 101 sends them. */
    ws_buf_t b;
    ws_buf_init(&b);
    hs_upgrade_request(&b, "/ws", NULL, NULL, NULL);
    hs_client_frame(&b, WS_FRAME_FIN | WS_OP_TEXT, "one", 3);
    hs_client_frame(&b, WS_FRAME_FIN | WS_OP_TEXT, "two", 3);
    ws_memio_feed(m, b.data, b.len);
    b.len = 0;
    hs_pump(h);
    assert_string_equal(hs_log(h), "upgrade:/ws;");
    assert_int_equal(hs_pending_output(m), 0);
    /* Not read, but watched: a client that leaves is seen. */
    assert_false(ws_memio_reading(m));
    assert_true(ws_memio_watching(m));
    assert_ptr_equal(h->host.pending_conn, c);

    /* More while the host thinks; and the handshake deadline passes: the
     * delay is the host's, not the peer's. */
    hs_client_frame(&b, WS_FRAME_FIN | WS_OP_TEXT, "three", 5);
    ws_memio_feed(m, b.data, b.len);
    ws_buf_free(&b);
    hs_advance(h, (uint64_t)(h->cfg.handshake_timeout * 1000) + 1000);
    hs_tick(h);
    assert_string_equal(hs_log(h), "upgrade:/ws;");
    assert_int_equal(hs_pending_output(m), 0);

    ws_conn_upgrade_done(c);
    /* The stashed bytes are delivered from the loop, not from inside the call. */
    assert_string_equal(hs_log(h), "upgrade:/ws;open;");
    hs_pump(h);
    assert_string_equal(hs_log(h), "upgrade:/ws;open;msg:one;msg:two;msg:three;");
    assert_true(ws_memio_reading(m));
    const hs_response_t *r = hs_take_response(h, m, 1);
    assert_non_null(r);
    assert_int_equal(r->status, 101);
    assert_true(hs_has_header(r, "Sec-WebSocket-Accept: " HS_ACCEPT));
    assert_int_equal(ws_conn_state(c), WS_CONN_OPEN);
}

static void body_is_url(fake_host_t *fh, const ws_request_t *req, ws_response_t *res)
{
    (void)fh;
    res->body.len = 0;
    ws_buf_append(&res->body, req->url, req->url_len);
}

/* A pipelined request behind a pending answer waits in the same stash: it is
 * asked only once the first is answered, and answered after it. */
static void test_conn_pending_http_answers_pipelined_request_only_after_done(void **state)
{
    harness_t *h = *state;
    h->host.http_pending = 1;
    h->host.fill_http = body_is_url;
    hs_start(h);
    ws_memio_t *m;
    ws_conn_t *c = hs_conn(h, &m);
    hs_feed_str(h, m, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_string_equal(hs_log(h), "http:/a;");
    assert_int_equal(hs_pending_output(m), 0);

    ws_conn_http_done(c);
    assert_string_equal(hs_log(h), "http:/a;");
    hs_pump(h);
    /* /a is answered; /b is asked only now, and waits in turn. */
    assert_string_equal(hs_log(h), "http:/a;http:/b;");
    const hs_response_t *r = hs_take_response(h, m, 0);
    assert_non_null(r);
    assert_int_equal(r->status, 200);
    assert_string_equal((const char *)r->body.data, "/a");
    assert_false(hs_has_header(r, "Connection: close"));
    assert_int_equal(hs_pending_output(m), 0);

    ws_conn_http_done(c);
    hs_pump(h);
    r = hs_take_response(h, m, 0);
    assert_non_null(r);
    assert_string_equal((const char *)r->body.data, "/b");
    assert_int_equal(hs_pending_output(m), 0);
    assert_int_equal(h->host.n_cancel, 0);
    assert_false(ws_memio_shut(m));
}

/* A pending upgrade with a frame stashed behind it, whose connection goes
 * away: the host hears cancel once, and neither open nor closed. */
static void test_conn_pending_upgrade_cancelled_when_connection_goes_away(void **state)
{
    harness_t *h = *state;
    h->host.upgrade_pending = 1;
    hs_start(h);
    ws_memio_t *m;
    hs_conn(h, &m);
    ws_buf_t b;
    ws_buf_init(&b);
    hs_upgrade_request(&b, "/ws", NULL, NULL, NULL);
    hs_client_frame(&b, WS_FRAME_FIN | WS_OP_TEXT, "early", 5);
    ws_memio_feed(m, b.data, b.len);
    ws_buf_free(&b);
    hs_pump(h);
    assert_string_equal(hs_log(h), "upgrade:/ws;");

    ws_hub_shutdown(&h->hub, "going away");
    assert_string_equal(hs_log(h), "upgrade:/ws;cancel;");
    hs_pump(h);
    assert_string_equal(hs_log(h), "upgrade:/ws;cancel;");
    assert_true(ws_memio_closed(m));
    assert_int_equal(h->hub.nconns, 0);
    assert_int_equal(h->host.n_open, 0);
    assert_int_equal(h->host.n_closed, 0);
}

static void test_conn_pending_http_cancelled_when_aborted(void **state)
{
    harness_t *h = *state;
    h->host.http_pending = 1;
    hs_start(h);
    ws_memio_t *m;
    ws_conn_t *c = hs_conn(h, &m);
    hs_feed_str(h, m, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_ptr_equal(h->host.pending_conn, c);
    ws_conn_abort(c, WS_CLOSE_GOING_AWAY);
    hs_pump(h);
    assert_string_equal(hs_log(h), "http:/slow;cancel;");
    assert_true(ws_memio_closed(m));
    assert_int_equal(hs_pending_output(m), 0);
    assert_int_equal(h->hub.nconns, 0);
}

/* --- plain HTTP --- */

static void headers_with_forbidden(fake_host_t *fh, const ws_request_t *req, ws_response_t *res)
{
    (void)fh;
    (void)req;
    ws_http_header_add(&res->headers, "Content-Type", 12, "text/plain", 10);
    /* None of these may reach the wire: they would desync or split the response. */
    ws_http_header_add(&res->headers, "Content-Length", 14, "999", 3);
    ws_http_header_add(&res->headers, "Transfer-Encoding", 17, "chunked", 7);
    ws_http_header_add(&res->headers, "X-Split", 7, "a\r\nSet-Cookie: x=1", 18);
    res->body.len = 0;
    ws_buf_append_str(&res->body, "hello");
}

static void test_conn_http_response_framed_with_length_and_connection_close(void **state)
{
    harness_t *h = *state;
    h->host.fill_http = headers_with_forbidden;
    hs_start(h);
    ws_memio_t *m;
    hs_conn(h, &m);
    hs_feed_str(h, m, "GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    static const char want[] = "HTTP/1.1 200 OK\r\n"
                               "Content-Type: text/plain\r\n"
                               "Content-Length: 5\r\n"
                               "Connection: close\r\n"
                               "\r\n"
                               "hello";
    size_t len;
    const uint8_t *out = ws_memio_output(m, &len);
    assert_int_equal(len, sizeof want - 1);
    assert_memory_equal(out, want, len);
    assert_int_equal(h->host.keep_alive, 0);
    assert_true(ws_memio_shut(m));
}

static void test_conn_http_keep_alive_response_stays_open_for_the_next(void **state)
{
    harness_t *h = *state;
    h->host.fill_http = body_is_url;
    hs_start(h);
    ws_memio_t *m;
    hs_conn(h, &m);
    hs_feed_str(h, m, "GET /one HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(h->host.keep_alive, 1);
    const hs_response_t *r = hs_take_response(h, m, 0);
    assert_non_null(r);
    assert_true(hs_has_header(r, "Content-Length: 4"));
    assert_false(hs_has_header(r, "Connection: close"));
    assert_string_equal((const char *)r->body.data, "/one");
    assert_false(ws_memio_shut(m));

    /* HTTP/1.0 without keep-alive: this one is the last. */
    hs_feed_str(h, m, "GET /two HTTP/1.0\r\n\r\n");
    r = hs_take_response(h, m, 0);
    assert_non_null(r);
    assert_true(hs_has_header(r, "Connection: close"));
    assert_string_equal((const char *)r->body.data, "/two");
    assert_true(ws_memio_shut(m));
    assert_string_equal(hs_log(h), "http:/one;http:/two;");
}

static void test_conn_http_head_gets_headers_without_body(void **state)
{
    harness_t *h = *state;
    h->host.http_body = "hello";
    hs_start(h);
    ws_memio_t *m;
    hs_conn(h, &m);
    /* A GET right behind the HEAD: its answer must start where the HEAD's
     * headers end, with no body bytes between. */
    hs_feed_str(h, m, "HEAD /x HTTP/1.1\r\nHost: x\r\n\r\nGET /x HTTP/1.1\r\nHost: x\r\n\r\n");
    const hs_response_t *r = hs_take_response(h, m, 1);
    assert_non_null(r);
    assert_int_equal(r->status, 200);
    assert_true(hs_has_header(r, "Content-Length: 5"));
    size_t len;
    const uint8_t *out = ws_memio_output(m, &len);
    assert_true(len >= 9);
    assert_memory_equal(out, "HTTP/1.1 ", 9);
    r = hs_take_response(h, m, 0);
    assert_non_null(r);
    assert_string_equal((const char *)r->body.data, "hello");
    assert_int_equal(hs_pending_output(m), 0);
}

static void test_conn_http_status_out_of_range_answers_500(void **state)
{
    harness_t *h = *state;
    h->host.http_status = 42;
    hs_start(h);
    ws_memio_t *m;
    hs_conn(h, &m);
    hs_feed_str(h, m, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    const hs_response_t *r = hs_take_response(h, m, 0);
    assert_non_null(r);
    assert_int_equal(r->status, 500);
}

/* --- deadlines of the HTTP phase --- */

static void test_conn_handshake_timeout_answers_408_to_partial_request(void **state)
{
    harness_t *h = *state;
    hs_start(h);
    ws_memio_t *m;
    hs_conn(h, &m);
    hs_advance(h, 1000);
    /* The deadline runs from the request's first byte. */
    hs_feed_str(h, m, "GET / HTTP/1.1\r\nHo");
    uint64_t timeout = (uint64_t)(h->cfg.handshake_timeout * 1000);
    hs_advance(h, timeout - 1);
    hs_tick(h);
    assert_int_equal(hs_pending_output(m), 0);
    hs_advance(h, 1);
    hs_tick(h);
    const hs_response_t *r = hs_take_response(h, m, 0);
    assert_non_null(r);
    assert_int_equal(r->status, 408);
    assert_true(hs_has_header(r, "Connection: close"));
    assert_true(ws_memio_shut(m));
    assert_string_equal(hs_log(h), "");
}

static void test_conn_silent_connection_ends_quietly_at_handshake_timeout(void **state)
{
    harness_t *h = *state;
    hs_start(h);
    ws_memio_t *m;
    hs_conn(h, &m);
    hs_advance(h, (uint64_t)(h->cfg.handshake_timeout * 1000));
    hs_tick(h);
    assert_true(ws_memio_closed(m));
    assert_int_equal(hs_pending_output(m), 0);
    assert_int_equal(h->hub.nconns, 0);
}

/* The start of the next request may come in the same read as the one being
 * answered. Its handshake deadline runs from then: at handshake_timeout it
 * gets a 408, not a silent close at keepalive_timeout. */
static void test_conn_partial_request_after_pipelined_one_gets_408_in_time(void **state)
{
    harness_t *h = *state;
    hs_start(h);
    ws_memio_t *m;
    hs_conn(h, &m);
    hs_feed_str(h, m, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HT");
    const hs_response_t *r = hs_take_response(h, m, 0);
    assert_non_null(r);
    assert_int_equal(r->status, 200);
    hs_advance(h, (uint64_t)(h->cfg.handshake_timeout * 1000));
    hs_tick(h);
    r = hs_take_response(h, m, 0);
    assert_non_null(r);
    assert_int_equal(r->status, 408);
}

#define T(f) cmocka_unit_test_setup_teardown(f, hs_setup, hs_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_conn_upgrade_accepted_sends_101_and_opens),
        T(test_conn_upgrade_refused_by_host_answers_its_status_then_ends),
        T(test_conn_upgrade_without_key_is_400_and_never_reaches_host),
        T(test_conn_upgrade_version_12_is_426_naming_13_and_never_reaches_host),
        T(test_conn_refused_upgrade_with_long_headers_is_sent_whole),
        T(test_conn_abort_inside_open_reports_closed_without_cancel),
        T(test_conn_pending_upgrade_holds_following_frames_until_done),
        T(test_conn_pending_http_answers_pipelined_request_only_after_done),
        T(test_conn_pending_upgrade_cancelled_when_connection_goes_away),
        T(test_conn_pending_http_cancelled_when_aborted),
        T(test_conn_http_response_framed_with_length_and_connection_close),
        T(test_conn_http_keep_alive_response_stays_open_for_the_next),
        T(test_conn_http_head_gets_headers_without_body),
        T(test_conn_http_status_out_of_range_answers_500),
        T(test_conn_handshake_timeout_answers_408_to_partial_request),
        T(test_conn_silent_connection_ends_quietly_at_handshake_timeout),
        T(test_conn_partial_request_after_pipelined_one_gets_408_in_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
