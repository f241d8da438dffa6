/*
 * The connection (conn.c, conn_recv.c) once it is a WebSocket: messages and
 * fragments, ping and pong, the close handshake and its timeouts, the
 * backpressure policies, heartbeat and idle deadlines, and drain. A fake
 * host over the in-memory transport, on a fake clock: each test plays the
 * peer frame by frame and asserts what the host was told and what went back
 * on the wire.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "error.h"
#include "proto_harness.h"

/* --- helpers --- */

static ws_conn_t *open_conn(harness_t *h, ws_memio_t **m)
{
    ws_conn_t *c = hs_open(h, m);
    assert_non_null(c);
    return c;
}

static void expect_frame(harness_t *h, ws_memio_t *m, unsigned opcode, const void *payload,
                         size_t len)
{
    const hs_frame_t *f = hs_next_frame(h, m);
    assert_non_null(f);
    assert_int_equal(f->opcode, opcode);
    assert_int_equal(f->fin, 1);
    assert_int_equal(f->payload.len, len);
    if (len)
        assert_memory_equal(f->payload.data, payload, len);
}

static void expect_close_frame(harness_t *h, ws_memio_t *m, unsigned code, const char *reason)
{
    const hs_frame_t *f = hs_next_frame(h, m);
    assert_non_null(f);
    assert_int_equal(f->opcode, WS_OP_CLOSE);
    assert_int_equal(hs_close_code(f), code);
    assert_string_equal(hs_close_reason(f), reason);
}

static void send_text(harness_t *h, ws_memio_t *m, const char *s)
{
    hs_send_frame(h, m, WS_FRAME_FIN | WS_OP_TEXT, s, strlen(s));
}

/* A payload whose every byte is ch, so a frame read back says which message it was. */
static void fill(char *buf, size_t n, char ch) { memset(buf, ch, n); }

static void expect_filled_frame(harness_t *h, ws_memio_t *m, size_t n, char ch)
{
    const hs_frame_t *f = hs_next_frame(h, m);
    assert_non_null(f);
    assert_int_equal(f->opcode, WS_OP_TEXT);
    assert_int_equal(f->payload.len, n);
    for (size_t i = 0; i < n; i++)
        if (f->payload.data[i] != (uint8_t)ch)
            fail_msg("frame of '%c' expected, byte %zu is '%c'", ch, i, f->payload.data[i]);
}

/* --- WebSocket messages --- */

static void test_conn_fragmented_text_reaches_host_once_whole_however_split(void **state)
{
    harness_t *h = *state;
    hs_start(h);
    ws_memio_t *m;
    open_conn(h, &m);
    ws_buf_t b;
    ws_buf_init(&b);
    hs_client_frame(&b, WS_OP_TEXT, "Hel", 3);
    hs_client_frame(&b, WS_OP_CONT, "lo, ", 4);
    hs_client_frame(&b, WS_FRAME_FIN | WS_OP_CONT, "world", 5);
    static const size_t splits[] = {0 /* whole */, 7, 3, 1};
    for (size_t s = 0; s < sizeof splits / sizeof splits[0]; s++) {
        size_t step = splits[s] ? splits[s] : b.len;
        for (size_t at = 0; at < b.len; at += step) {
            size_t n = b.len - at < step ? b.len - at : step;
            ws_memio_feed(m, b.data + at, n);
            hs_pump(h);
            if (at + n < b.len)
                assert_int_equal(h->host.n_message, (int)s); /* nothing before the last byte */
        }
        assert_int_equal(h->host.n_message, (int)s + 1);
        assert_int_equal(h->host.msgs[s].len, 12);
        assert_string_equal((const char *)h->host.msgs[s].data, "Hello, world");
        assert_false(h->host.msgs[s].binary);
    }
    ws_buf_free(&b);
    assert_string_equal(hs_log(h), "upgrade:/ws;open;msg:Hello, world;msg:Hello, world;"
                                   "msg:Hello, world;msg:Hello, world;");
}

static void test_conn_ping_answered_with_pong_of_same_payload(void **state)
{
    harness_t *h = *state;
    hs_start(h);
    ws_memio_t *m;
    open_conn(h, &m);
    hs_send_frame(h, m, WS_FRAME_FIN | WS_OP_PING, "abc", 3);
    expect_frame(h, m, WS_OP_PONG, "abc", 3);
    assert_null(hs_next_frame(h, m));
    assert_int_equal(h->host.n_control, 1);
    assert_int_equal(h->host.control_op, WS_OP_PING);
    assert_int_equal(h->host.control_len, 3);
    assert_memory_equal(h->host.control_data, "abc", 3);

    /* Between the fragments of a message, as RFC 6455 5.4 allows. */
    ws_buf_t b;
    ws_buf_init(&b);
    hs_client_frame(&b, WS_OP_TEXT, "a", 1);
    hs_client_frame(&b, WS_FRAME_FIN | WS_OP_PING, "p", 1);
    hs_client_frame(&b, WS_FRAME_FIN | WS_OP_CONT, "b", 1);
    ws_memio_feed(m, b.data, b.len);
    ws_buf_free(&b);
    hs_pump(h);
    expect_frame(h, m, WS_OP_PONG, "p", 1);
    assert_string_equal(hs_log(h), "upgrade:/ws;open;ping:abc;ping:p;msg:ab;");
}

static void test_conn_binary_message_and_pong_reach_host(void **state)
{
    harness_t *h = *state;
    hs_start(h);
    ws_memio_t *m;
    open_conn(h, &m);
    static const uint8_t bin[] = {0, 1, 2, 0xff};
    hs_send_frame(h, m, WS_FRAME_FIN | WS_OP_BINARY, bin, sizeof bin);
    hs_send_frame(h, m, WS_FRAME_FIN | WS_OP_PONG, "z", 1);
    assert_int_equal(h->host.n_message, 1);
    assert_true(h->host.msgs[0].binary);
    assert_int_equal(h->host.msgs[0].len, sizeof bin);
    assert_memory_equal(h->host.msgs[0].data, bin, sizeof bin);
    assert_int_equal(h->host.control_op, WS_OP_PONG);
    /* A pong is not answered. */
    assert_int_equal(hs_pending_output(m), 0);
}

/* --- the close handshake --- */

static void test_conn_close_by_peer_echoes_code_reports_it_then_closes(void **state)
{
    harness_t *h = *state;
    hs_start(h);
    ws_memio_t *m;
    ws_conn_t *c = open_conn(h, &m);
    /* Held: the transport must stay up until our close frame has left. */
    ws_memio_hold(m, 1);
    hs_send_close(h, m, 1000, "done");
    assert_int_equal(ws_conn_state(c), WS_CONN_CLOSING);
    assert_int_equal(h->host.n_closed, 0);
    assert_false(ws_memio_closed(m));

    ws_memio_hold(m, 0);
    hs_pump(h);
    expect_close_frame(h, m, 1000, "");
    assert_null(hs_next_frame(h, m));
    assert_int_equal(h->host.n_closed, 1);
    assert_int_equal(h->host.closed_code, 1000);
    assert_string_equal(h->host.closed_reason, "done");
    assert_true(ws_memio_closed(m));
    assert_int_equal(h->hub.nconns, 0);
    assert_int_equal(h->hub.nopen, 0);
}

static void test_conn_close_by_peer_without_code_is_1005(void **state)
{
    harness_t *h = *state;
    hs_start(h);
    ws_memio_t *m;
    open_conn(h, &m);
    hs_send_frame(h, m, WS_FRAME_FIN | WS_OP_CLOSE, NULL, 0);
    /* 1005 is never sent: the echo is empty too. */
    expect_frame(h, m, WS_OP_CLOSE, NULL, 0);
    assert_int_equal(h->host.closed_code, WS_CLOSE_NO_STATUS);
    assert_true(ws_memio_closed(m));
}

static void test_conn_close_by_server_completes_on_peer_reply(void **state)
{
    harness_t *h = *state;
    hs_start(h);
    ws_memio_t *m;
    ws_conn_t *c = open_conn(h, &m);
    assert_int_equal(ws_conn_close(c, 4000, "bye", 3), 0);
    assert_int_equal(ws_conn_state(c), WS_CONN_CLOSING);
    hs_pump(h);
    expect_close_frame(h, m, 4000, "bye");
    assert_int_equal(ws_conn_send(c, WS_OP_TEXT, "late", 4, 0), WS_EINVAL);
    assert_int_equal(ws_conn_close(c, 1000, NULL, 0), WS_EINVAL);
    assert_int_equal(h->host.n_closed, 0);
    assert_false(ws_memio_closed(m));

    hs_send_close(h, m, 4000, "bye");
    assert_int_equal(h->host.n_closed, 1);
    assert_int_equal(h->host.closed_code, 4000);
    assert_string_equal(h->host.closed_reason, "bye");
    /* The handshake is whole: no second close frame, and the transport is gone. */
    assert_null(hs_next_frame(h, m));
    assert_true(ws_memio_closed(m));
    assert_int_equal(h->hub.nopen, 0);
}

/* ws_conn_close with reason NULL means no reason: the close frame carries
 * the two bytes of the code and nothing more. */
static void test_conn_close_with_null_reason_sends_the_code_alone(void **state)
{
    harness_t *h = *state;
    hs_start(h);
    ws_memio_t *m;
    ws_conn_t *c = open_conn(h, &m);
    assert_int_equal(ws_conn_close(c, 1000, NULL, 0), 0);
    hs_pump(h);
    const hs_frame_t *f = hs_next_frame(h, m);
    assert_non_null(f);
    assert_int_equal(f->opcode, WS_OP_CLOSE);
    assert_int_equal(f->payload.len, 2);
    assert_int_equal(hs_close_code(f), 1000);
}

static void test_conn_close_timeout_aborts_and_reports_the_code_sent(void **state)
{
    harness_t *h = *state;
    hs_start(h);
    ws_memio_t *m;
    ws_conn_t *c = open_conn(h, &m);
    assert_int_equal(ws_conn_close(c, 4000, "bye", 3), 0);
    hs_pump(h);
    expect_close_frame(h, m, 4000, "bye");

    uint64_t timeout = (uint64_t)(h->cfg.close_timeout * 1000);
    hs_advance(h, timeout - 1);
    hs_tick(h);
    assert_int_equal(ws_conn_state(c), WS_CONN_CLOSING);
    assert_int_equal(h->host.n_closed, 0);

    hs_advance(h, 1);
    hs_tick(h);
    /* conn.c's ws_conn_abort keeps the code of a close frame that went out:
     * the host hears 4000 "bye", not 1006. */
    assert_int_equal(h->host.n_closed, 1);
    assert_int_equal(h->host.closed_code, 4000);
    assert_string_equal(h->host.closed_reason, "bye");
    assert_true(ws_memio_closed(m));
    assert_false(ws_memio_shut(m)); /* aborted, no orderly end */
    assert_int_equal(h->hub.nconns, 0);
}

static void test_conn_close_timeout_after_peer_close_reports_the_peer_code(void **state)
{
    harness_t *h = *state;
    hs_start(h);
    ws_memio_t *m;
    ws_conn_t *c = open_conn(h, &m);
    /* The peer's close arrives but our echo never leaves: the close frame
     * that went the other way still decides the code. */
    ws_memio_hold(m, 1);
    hs_send_close(h, m, 4001, "later");
    assert_int_equal(ws_conn_state(c), WS_CONN_CLOSING);
    hs_advance(h, (uint64_t)(h->cfg.close_timeout * 1000));
    hs_tick(h);
    assert_int_equal(h->host.n_closed, 1);
    assert_int_equal(h->host.closed_code, 4001);
    assert_string_equal(h->host.closed_reason, "later");
    assert_true(ws_memio_closed(m));
}

/* --- a host that holds messages back (host.h, flush) --- */

/* An open connection whose host logs "flush;" when told to let go. */
static ws_memio_t *open_flushing(harness_t *h)
{
    hs_start(h);
    ws_hub_set_host(&h->hub, fake_host_ops_flush(), &h->host);
    ws_memio_t *m;
    open_conn(h, &m);
    hs_log_clear(h);
    return m;
}

/* It is told to let go at the end of every read and before a ping, a pong
 * or a close frame is handled, so what it holds never overtakes them. */
static void test_conn_flush_ends_each_read_and_comes_before_control_frames(void **state)
{
    harness_t *h = *state;
    ws_memio_t *m = open_flushing(h);
    send_text(h, m, "alone");
    assert_string_equal(hs_log(h), "msg:alone;flush;");
    hs_log_clear(h);
    ws_buf_t b;
    ws_buf_init(&b);
    hs_client_frame(&b, WS_FRAME_FIN | WS_OP_TEXT, "m1", 2);
    hs_client_frame(&b, WS_FRAME_FIN | WS_OP_TEXT, "m2", 2);
    hs_client_frame(&b, WS_FRAME_FIN | WS_OP_PING, "p", 1);
    hs_client_frame(&b, WS_FRAME_FIN | WS_OP_TEXT, "m3", 2);
    hs_client_frame(&b, WS_FRAME_FIN | WS_OP_PONG, "q", 1);
    hs_client_frame(&b, WS_FRAME_FIN | WS_OP_TEXT, "m4", 2);
    hs_client_close(&b, 1000, "bye");
    ws_memio_feed(m, b.data, b.len);
    ws_buf_free(&b);
    hs_pump(h);
    assert_string_equal(hs_log(h),
                        "msg:m1;msg:m2;flush;ping:p;msg:m3;flush;pong:q;msg:m4;flush;closed:1000;");
}

/* Before the connection fails on a bad frame, the messages before it are let go. */
static void test_conn_flush_comes_before_a_protocol_error_closes(void **state)
{
    harness_t *h = *state;
    ws_memio_t *m = open_flushing(h);
    ws_buf_t b;
    ws_buf_init(&b);
    hs_client_frame(&b, WS_FRAME_FIN | WS_OP_TEXT, "m1", 2);
    hs_client_frame(&b, WS_FRAME_FIN | 0x3, "x", 1); /* a reserved opcode */
    ws_memio_feed(m, b.data, b.len);
    ws_buf_free(&b);
    hs_pump(h);
    assert_string_equal(hs_log(h), "msg:m1;flush;");
    const hs_frame_t *f = hs_next_frame(h, m);
    assert_non_null(f);
    assert_int_equal(f->opcode, WS_OP_CLOSE);
    assert_int_equal(hs_close_code(f), WS_CLOSE_PROTOCOL);
}

static void test_conn_peer_end_without_close_is_1006(void **state)
{
    harness_t *h = *state;
    hs_start(h);
    ws_memio_t *m;
    open_conn(h, &m);
    ws_memio_end(m);
    hs_pump(h);
    assert_int_equal(h->host.n_closed, 1);
    assert_int_equal(h->host.closed_code, WS_CLOSE_ABNORMAL);
    assert_true(ws_memio_closed(m));
    assert_int_equal(hs_pending_output(m), 0);
}

/* --- backpressure --- */

static void test_conn_backpressure_close_queues_1008_and_drops_queued(void **state)
{
    harness_t *h = *state;
    h->cfg.max_buffered = 4096;
    h->cfg.backpressure = WS_BP_CLOSE;
    hs_start(h);
    ws_memio_t *m;
    ws_conn_t *c = open_conn(h, &m);
    ws_memio_hold(m, 1);
    char buf[2000];

    fill(buf, 2000, 'a');
    assert_int_equal(ws_conn_send(c, WS_OP_TEXT, buf, 2000, 0), 0);
    hs_pump(h); /* in flight, stuck */
    fill(buf, 1000, 'b');
    assert_int_equal(ws_conn_send(c, WS_OP_TEXT, buf, 1000, 0), 0); /* queued */
    assert_int_equal(ws_conn_buffered(c), 2004 + 1004);

    fill(buf, 2000, 'c');
    assert_int_equal(ws_conn_send(c, WS_OP_TEXT, buf, 2000, 0), WS_EFULL);
    assert_int_equal(ws_conn_state(c), WS_CONN_CLOSING);
    static const char why[] = "too slow: send buffer full";
    /* 'b' is gone; what is left is the stuck write and the close frame. */
    assert_int_equal(ws_conn_buffered(c), 2004 + 2 + 2 + sizeof why - 1);
    assert_int_equal(ws_conn_send(c, WS_OP_TEXT, "x", 1, 0), WS_EINVAL);

    ws_memio_hold(m, 0);
    hs_pump(h);
    expect_filled_frame(h, m, 2000, 'a');
    expect_close_frame(h, m, WS_CLOSE_POLICY, why);
    assert_null(hs_next_frame(h, m));
    assert_int_equal(h->host.n_drain, 0); /* closing: nobody to drain for */

    hs_send_close(h, m, WS_CLOSE_POLICY, NULL);
    assert_int_equal(h->host.n_closed, 1);
    assert_int_equal(h->host.closed_code, WS_CLOSE_POLICY);
    assert_true(ws_memio_closed(m));
}

/* open() sends more than the queue holds before the 101 has left: the policy
 * may drop frames, never the handshake's answer (the peer would read a close
 * frame where it waits for a status line). Found by fuzz_host. */
static void big_send_in_open(fake_host_t *fh, ws_conn_t *c)
{
    static char big[8000];
    (void)fh;
    memset(big, 'o', sizeof big);
    ws_conn_send(c, WS_OP_TEXT, "small", 5, 0);
    ws_conn_send(c, WS_OP_BINARY, big, sizeof big, 0);
    ws_conn_send(c, WS_OP_BINARY, big, sizeof big, 0);
}

static void test_conn_backpressure_never_drops_the_101(void **state)
{
    harness_t *h = *state;
    for (int policy = WS_BP_CLOSE; policy <= WS_BP_DROP_OLDEST; policy++) {
        h->cfg.max_buffered = 4096;
        h->cfg.backpressure = policy;
        if (h->started)
            hs_finish(h);
        hs_start(h);
        h->host.on_open = big_send_in_open;
        ws_memio_t *m;
        ws_conn_t *c = hs_conn(h, &m);
        ws_memio_hold(m, 1);
        ws_buf_t req;
        ws_buf_init(&req);
        hs_upgrade_request(&req, "/", NULL, NULL, NULL);
        hs_feed(h, m, req.data, req.len);
        ws_buf_free(&req);
        ws_memio_hold(m, 0);
        hs_pump(h);
        const hs_response_t *r = hs_take_response(h, m, 0);
        assert_non_null(r);
        assert_int_equal(r->status, 101);
        const hs_frame_t *f = hs_next_frame(h, m);
        if (!f)
            fail_msg("policy %d: no frame after the 101 (%zu bytes left)", policy,
                     hs_pending_output(m));
        if (policy == WS_BP_CLOSE) {
            /* The whole backlog went, and the close followed. */
            assert_int_equal(f->opcode, WS_OP_CLOSE);
            assert_int_equal(hs_close_code(f), WS_CLOSE_POLICY);
        } else {
            assert_int_equal(ws_conn_state(c), WS_CONN_OPEN);
        }
    }
}

static void test_conn_backpressure_drop_refuses_then_recovers_when_peer_reads(void **state)
{
    harness_t *h = *state;
    h->cfg.max_buffered = 4096;
    h->cfg.backpressure = WS_BP_DROP;
    hs_start(h);
    ws_memio_t *m;
    ws_conn_t *c = open_conn(h, &m);
    ws_memio_hold(m, 1);
    char buf[3000];

    fill(buf, 3000, 'a');
    assert_int_equal(ws_conn_send(c, WS_OP_TEXT, buf, 3000, 0), 0);
    hs_pump(h);
    fill(buf, 3000, 'b');
    assert_int_equal(ws_conn_send(c, WS_OP_TEXT, buf, 3000, 0), WS_EFULL);
    assert_int_equal(ws_conn_state(c), WS_CONN_OPEN);
    assert_int_equal(ws_conn_buffered(c), 3004);

    ws_memio_hold(m, 0);
    hs_pump(h);
    expect_filled_frame(h, m, 3000, 'a');
    assert_null(hs_next_frame(h, m));
    assert_int_equal(ws_conn_buffered(c), 0);

    fill(buf, 3000, 'c');
    assert_int_equal(ws_conn_send(c, WS_OP_TEXT, buf, 3000, 0), 0);
    hs_pump(h);
    expect_filled_frame(h, m, 3000, 'c');
    assert_int_equal(ws_conn_state(c), WS_CONN_OPEN);
    assert_int_equal(h->host.n_closed, 0);
}

/* Five 1000-byte messages against a 4096-byte limit while the peer is stuck
 * on the first: the fifth does not fit and older queued ones must go. */
static void send_five_against_stuck_peer(harness_t *h, ws_memio_t *m, ws_conn_t *c)
{
    char buf[1000];
    ws_memio_hold(m, 1);
    for (char ch = '1'; ch <= '5'; ch++) {
        fill(buf, sizeof buf, ch);
        assert_int_equal(ws_conn_send(c, WS_OP_TEXT, buf, sizeof buf, 0), 0);
        hs_pump(h);
    }
    assert_int_equal(ws_conn_state(c), WS_CONN_OPEN);
    assert_true(ws_conn_buffered(c) <= 4096);
    ws_memio_hold(m, 0);
    hs_pump(h);
}

static void test_conn_backpressure_drop_oldest_drops_oldest_keeps_newest(void **state)
{
    harness_t *h = *state;
    h->cfg.max_buffered = 4096;
    h->cfg.backpressure = WS_BP_DROP_OLDEST;
    hs_start(h);
    ws_memio_t *m;
    ws_conn_t *c = open_conn(h, &m);
    send_five_against_stuck_peer(h, m, c);
    /* The one in flight could not be taken back; the oldest queued ('2') went,
     * the newest ('5') came through, in order. */
    expect_filled_frame(h, m, 1000, '1');
    const hs_frame_t *f;
    char last = 0;
    while ((f = hs_next_frame(h, m)) != NULL) {
        assert_int_equal(f->payload.len, 1000);
        assert_true(f->payload.data[0] > (uint8_t)'2');
        assert_true(f->payload.data[0] > (uint8_t)last);
        last = (char)f->payload.data[0];
    }
    assert_int_equal(last, '5');
    assert_int_equal(ws_conn_state(c), WS_CONN_OPEN);
}

/* Small frames queued behind the write in flight share one outq chunk;
 * WS_BP_DROP_OLDEST must still make room message by message: dropping '2'
 * is enough for '5', so '3' and '4' arrive. */
static void test_conn_backpressure_drop_oldest_drops_only_what_it_must(void **state)
{
    harness_t *h = *state;
    h->cfg.max_buffered = 4096;
    h->cfg.backpressure = WS_BP_DROP_OLDEST;
    hs_start(h);
    ws_memio_t *m;
    ws_conn_t *c = open_conn(h, &m);
    send_five_against_stuck_peer(h, m, c);
    expect_filled_frame(h, m, 1000, '1');
    expect_filled_frame(h, m, 1000, '3');
    expect_filled_frame(h, m, 1000, '4');
    expect_filled_frame(h, m, 1000, '5');
    assert_null(hs_next_frame(h, m));
}

/* --- heartbeat and idle --- */

static ws_conn_t *open_and_ping(harness_t *h, ws_memio_t **m)
{
    ws_conn_t *c = open_conn(h, m);
    uint64_t interval = (uint64_t)(h->cfg.ping_interval * 1000);
    hs_tick(h); /* the first slow sweep, at open time */
    hs_advance(h, interval - 1000);
    hs_tick(h);
    assert_int_equal(hs_pending_output(*m), 0);
    hs_advance(h, 1000);
    hs_tick(h);
    expect_frame(h, *m, WS_OP_PING, NULL, 0);
    return c;
}

static void test_conn_heartbeat_pings_after_interval_without_traffic(void **state)
{
    harness_t *h = *state;
    hs_start(h);
    ws_memio_t *m;
    ws_conn_t *c = open_and_ping(h, &m);
    assert_int_equal(ws_conn_state(c), WS_CONN_OPEN);
    /* One ping per silence, not one per sweep. */
    hs_advance(h, 1000);
    hs_tick(h);
    assert_int_equal(hs_pending_output(m), 0);
}

static void test_conn_heartbeat_without_pong_aborts_1006(void **state)
{
    harness_t *h = *state;
    hs_start(h);
    ws_memio_t *m;
    ws_conn_t *c = open_and_ping(h, &m);
    uint64_t timeout = (uint64_t)(h->cfg.ping_timeout * 1000);
    hs_advance(h, timeout - 1000);
    hs_tick(h);
    assert_int_equal(ws_conn_state(c), WS_CONN_OPEN);
    hs_advance(h, 1000);
    hs_tick(h);
    assert_int_equal(h->host.n_closed, 1);
    assert_int_equal(h->host.closed_code, WS_CLOSE_ABNORMAL);
    assert_true(ws_memio_closed(m));
    assert_null(hs_next_frame(h, m)); /* aborted: no close frame */
}

static void test_conn_heartbeat_pong_in_time_keeps_it_open(void **state)
{
    harness_t *h = *state;
    hs_start(h);
    ws_memio_t *m;
    ws_conn_t *c = open_and_ping(h, &m);
    uint64_t interval = (uint64_t)(h->cfg.ping_interval * 1000);
    uint64_t timeout = (uint64_t)(h->cfg.ping_timeout * 1000);
    hs_advance(h, timeout / 2);
    hs_send_frame(h, m, WS_FRAME_FIN | WS_OP_PONG, NULL, 0);
    assert_int_equal(h->host.control_op, WS_OP_PONG);
    hs_advance(h, timeout / 2 + 1000);
    hs_tick(h);
    assert_int_equal(ws_conn_state(c), WS_CONN_OPEN);
    assert_int_equal(h->host.n_closed, 0);
    /* The next ping comes an interval after the pong. */
    hs_advance(h, interval - timeout / 2 - 2000);
    hs_tick(h);
    assert_int_equal(hs_pending_output(m), 0);
    hs_advance(h, 1000);
    hs_tick(h);
    expect_frame(h, m, WS_OP_PING, NULL, 0);
}

static void test_conn_idle_timeout_closes_1001(void **state)
{
    harness_t *h = *state;
    h->cfg.idle_timeout = 60;
    h->cfg.ping_interval = 0;
    hs_start(h);
    ws_memio_t *m;
    ws_conn_t *c = open_conn(h, &m);
    hs_tick(h);
    /* A message restarts the count. */
    hs_advance(h, 30000);
    send_text(h, m, "still here");
    hs_advance(h, 59000);
    hs_tick(h);
    assert_int_equal(ws_conn_state(c), WS_CONN_OPEN);
    assert_int_equal(hs_pending_output(m), 0);
    hs_advance(h, 1000);
    hs_tick(h);
    assert_int_equal(ws_conn_state(c), WS_CONN_CLOSING);
    expect_close_frame(h, m, WS_CLOSE_GOING_AWAY, "idle timeout");
    hs_send_close(h, m, WS_CLOSE_GOING_AWAY, "idle timeout");
    assert_int_equal(h->host.closed_code, WS_CLOSE_GOING_AWAY);
    assert_string_equal(h->host.closed_reason, "idle timeout");
}

/* --- drain --- */

static void test_conn_drain_after_a_write_that_waited_is_released(void **state)
{
    harness_t *h = *state;
    hs_start(h);
    ws_memio_t *m;
    ws_conn_t *c = open_conn(h, &m);
    ws_memio_hold(m, 1);
    assert_int_equal(ws_conn_send(c, WS_OP_TEXT, "x", 1, 0), 0);
    hs_pump(h);
    assert_int_equal(ws_conn_send(c, WS_OP_TEXT, "y", 1, 0), 0);
    hs_pump(h);
    assert_int_equal(h->host.n_drain, 0);

    ws_memio_hold(m, 0);
    hs_pump(h);
    expect_frame(h, m, WS_OP_TEXT, "x", 1);
    expect_frame(h, m, WS_OP_TEXT, "y", 1);
    /* Once, when everything is out, not per write. */
    assert_int_equal(h->host.n_drain, 1);
    assert_int_equal(ws_conn_buffered(c), 0);
    hs_pump(h);
    assert_int_equal(h->host.n_drain, 1);

    /* A write that did not wait asks for nothing. */
    assert_int_equal(ws_conn_send(c, WS_OP_TEXT, "z", 1, 0), 0);
    hs_pump(h);
    assert_int_equal(h->host.n_drain, 1);
}

static void test_conn_drain_after_want_drain_once_queue_empties(void **state)
{
    harness_t *h = *state;
    hs_start(h);
    ws_memio_t *m;
    ws_conn_t *c = open_conn(h, &m);
    assert_int_equal(ws_conn_send(c, WS_OP_TEXT, "x", 1, 0), 0);
    ws_conn_want_drain(c);
    assert_int_equal(h->host.n_drain, 0);
    hs_pump(h);
    assert_int_equal(h->host.n_drain, 1);
    expect_frame(h, m, WS_OP_TEXT, "x", 1);
    assert_string_equal(hs_log(h), "upgrade:/ws;open;drain;");
}

#define T(f) cmocka_unit_test_setup_teardown(f, hs_setup, hs_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_conn_fragmented_text_reaches_host_once_whole_however_split),
        T(test_conn_backpressure_never_drops_the_101),
        T(test_conn_ping_answered_with_pong_of_same_payload),
        T(test_conn_binary_message_and_pong_reach_host),
        T(test_conn_close_by_peer_echoes_code_reports_it_then_closes),
        T(test_conn_close_by_peer_without_code_is_1005),
        T(test_conn_close_by_server_completes_on_peer_reply),
        T(test_conn_close_with_null_reason_sends_the_code_alone),
        T(test_conn_close_timeout_aborts_and_reports_the_code_sent),
        T(test_conn_close_timeout_after_peer_close_reports_the_peer_code),
    T(test_conn_flush_ends_each_read_and_comes_before_control_frames),
    T(test_conn_flush_comes_before_a_protocol_error_closes),
    T(test_conn_peer_end_without_close_is_1006),
        T(test_conn_backpressure_close_queues_1008_and_drops_queued),
        T(test_conn_backpressure_drop_refuses_then_recovers_when_peer_reads),
        T(test_conn_backpressure_drop_oldest_drops_oldest_keeps_newest),
        T(test_conn_backpressure_drop_oldest_drops_only_what_it_must),
        T(test_conn_heartbeat_pings_after_interval_without_traffic),
        T(test_conn_heartbeat_without_pong_aborts_1006),
        T(test_conn_heartbeat_pong_in_time_keeps_it_open),
        T(test_conn_idle_timeout_closes_1001),
        T(test_conn_drain_after_a_write_that_waited_is_released),
        T(test_conn_drain_after_want_drain_once_queue_empties),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
