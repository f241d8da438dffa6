/*
 * ws_publish over many memio subscribers with a fake host: one shared frame
 * reaches every subscriber once, a stuck one is dealt with by its own
 * backpressure policy without holding the others back, and membership
 * follows subscribe, unsubscribe and the connection's end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "error.h"
#include "proto_harness.h"
#include "publish.h"
#include "pubsub.h"

#define NSUBS 50
#define STUCK 7

static void open_subscribers(harness_t *h, ws_conn_t **c, ws_memio_t **m, size_t n,
                             const char *topic)
{
    for (size_t i = 0; i < n; i++) {
        c[i] = hs_open(h, &m[i]);
        assert_non_null(c[i]);
        assert_int_equal(ws_pubsub_subscribe(&h->hub.pubsub, ws_conn_topics(c[i]), c[i], topic,
                                             strlen(topic)),
                         1);
    }
}

static size_t subscribers(harness_t *h, const char *topic)
{
    ws_topic_t *t = ws_pubsub_find(&h->hub.pubsub, topic, strlen(topic));
    size_t n = 0;
    if (t)
        ws_pubsub_subscribers(t, &n);
    return n;
}

static size_t publish(harness_t *h, const char *topic, const void *data, size_t len)
{
    size_t n = ws_publish(&h->hub, topic, strlen(topic), WS_OP_TEXT, data, len);
    hs_pump(h);
    return n;
}

/* What a subscriber must read for one published text message. */
static void append_frame(ws_buf_t *want, const void *data, size_t len)
{
    uint8_t hdr[WS_FRAME_HDR_MAX];
    size_t hl = ws_frame_write_header(hdr, WS_FRAME_FIN | WS_OP_TEXT, len, NULL);
    ws_buf_append(want, hdr, hl);
    ws_buf_append(want, data, len);
}

static void expect_output(const ws_memio_t *m, const ws_buf_t *want)
{
    size_t len;
    const uint8_t *out = ws_memio_output(m, &len);
    assert_int_equal(len, want->len);
    if (len)
        assert_memory_equal(out, want->data, len);
}

static void expect_text(harness_t *h, ws_memio_t *m, size_t len, char ch)
{
    const hs_frame_t *f = hs_next_frame(h, m);
    assert_non_null(f);
    assert_int_equal(f->opcode, WS_OP_TEXT);
    assert_int_equal(f->payload.len, len);
    assert_int_equal(f->payload.data[0], (uint8_t)ch);
    assert_int_equal(f->payload.data[len - 1], (uint8_t)ch);
}

static void test_publish_reaches_every_subscriber_once_and_closes_the_stuck_one(void **state)
{
    harness_t *h = *state;
    h->cfg.max_buffered = 4096;
    h->cfg.backpressure = WS_BP_CLOSE;
    hs_start(h);
    ws_conn_t *c[NSUBS];
    ws_memio_t *m[NSUBS];
    open_subscribers(h, c, m, NSUBS, "room");
    assert_int_equal(ws_pubsub_subscribe(&h->hub.pubsub, ws_conn_topics(c[0]), c[0], "room", 4), 0);
    assert_int_equal(subscribers(h, "room"), NSUBS);
    ws_memio_hold(m[STUCK], 1);

    /* 1004 bytes a frame against 4096: the stuck peer takes the first into a
     * write that never ends, queues three more, and the fifth is too many. */
    static const size_t want_counts[] = {NSUBS, NSUBS, NSUBS, NSUBS, NSUBS - 1, NSUBS - 1};
    ws_buf_t want;
    ws_buf_init(&want);
    char buf[1000];
    for (size_t p = 0; p < sizeof want_counts / sizeof want_counts[0]; p++) {
        memset(buf, '1' + (int)p, sizeof buf);
        append_frame(&want, buf, sizeof buf);
        size_t n = publish(h, "room", buf, sizeof buf);
        if (n != want_counts[p]) {
            ws_buf_free(&want);
            fail_msg("publish %zu reached %zu subscribers, want %zu", p + 1, n, want_counts[p]);
        }
    }
    assert_int_equal(ws_conn_state(c[STUCK]), WS_CONN_CLOSING);
    for (size_t i = 0; i < NSUBS; i++) {
        if (i == STUCK)
            continue;
        assert_int_equal(ws_conn_state(c[i]), WS_CONN_OPEN);
        expect_output(m[i], &want);
    }
    ws_buf_free(&want);

    /* The stuck peer reads at last: the first message, then the 1008 (the
     * three queued behind it were dropped with the policy). */
    ws_memio_hold(m[STUCK], 0);
    hs_pump(h);
    expect_text(h, m[STUCK], 1000, '1');
    const hs_frame_t *f = hs_next_frame(h, m[STUCK]);
    assert_non_null(f);
    assert_int_equal(f->opcode, WS_OP_CLOSE);
    assert_int_equal(hs_close_code(f), WS_CLOSE_POLICY);
    assert_null(hs_next_frame(h, m[STUCK]));

    /* Its end takes it out of the topic. */
    assert_int_equal(subscribers(h, "room"), NSUBS);
    hs_send_close(h, m[STUCK], WS_CLOSE_POLICY, NULL);
    assert_int_equal(h->host.n_closed, 1);
    assert_ptr_equal(h->host.closed_conn, c[STUCK]);
    assert_int_equal(h->host.closed_code, WS_CLOSE_POLICY);
    assert_int_equal(subscribers(h, "room"), NSUBS - 1);
    assert_int_equal(publish(h, "room", "x", 1), NSUBS - 1);
}

static void test_publish_subscriber_that_closes_leaves_its_topics(void **state)
{
    harness_t *h = *state;
    hs_start(h);
    ws_conn_t *c[3];
    ws_memio_t *m[3];
    open_subscribers(h, c, m, 3, "a");
    assert_int_equal(ws_pubsub_subscribe(&h->hub.pubsub, ws_conn_topics(c[0]), c[0], "solo", 4), 1);
    assert_int_equal(h->hub.pubsub.ntopics, 2);
    assert_int_equal(publish(h, "a", "x", 1), 3);
    assert_int_equal(publish(h, "solo", "x", 1), 1);

    /* A completed close handshake. */
    hs_send_close(h, m[0], 1000, NULL);
    assert_true(ws_memio_closed(m[0]));
    assert_int_equal(subscribers(h, "a"), 2);
    assert_null(ws_pubsub_find(&h->hub.pubsub, "solo", 4));
    assert_int_equal(h->hub.pubsub.ntopics, 1);
    assert_int_equal(publish(h, "a", "y", 1), 2);
    assert_int_equal(publish(h, "solo", "y", 1), 0);

    /* An abort leaves at once, before its transport has finished closing. */
    ws_conn_abort(c[1], WS_CLOSE_GOING_AWAY);
    assert_int_equal(subscribers(h, "a"), 1);
    assert_int_equal(ws_publish(&h->hub, "a", 1, WS_OP_TEXT, "z", 1), 1);
    hs_pump(h);

    /* Closing but not closed: still a member, but nothing is queued on it. */
    assert_int_equal(ws_conn_close(c[2], 1000, "", 0), 0);
    assert_int_equal(subscribers(h, "a"), 1);
    assert_int_equal(publish(h, "a", "w", 1), 0);
}

static void test_publish_unsubscribe_stops_delivery(void **state)
{
    harness_t *h = *state;
    hs_start(h);
    ws_conn_t *c[2];
    ws_memio_t *m[2];
    open_subscribers(h, c, m, 2, "t");
    assert_int_equal(ws_pubsub_unsubscribe(&h->hub.pubsub, ws_conn_topics(c[0]), "t", 1), 1);
    assert_int_equal(ws_pubsub_unsubscribe(&h->hub.pubsub, ws_conn_topics(c[0]), "t", 1), 0);
    assert_int_equal(ws_pubsub_unsubscribe(&h->hub.pubsub, ws_conn_topics(c[0]), "other", 5), 0);
    assert_int_equal(subscribers(h, "t"), 1);
    assert_int_equal(publish(h, "t", "one", 3), 1);
    assert_int_equal(hs_pending_output(m[0]), 0);
    const hs_frame_t *f = hs_next_frame(h, m[1]);
    assert_non_null(f);
    assert_string_equal((const char *)f->payload.data, "one");

    /* The last one out removes the topic. */
    assert_int_equal(ws_pubsub_unsubscribe(&h->hub.pubsub, ws_conn_topics(c[1]), "t", 1), 1);
    assert_null(ws_pubsub_find(&h->hub.pubsub, "t", 1));
    assert_int_equal(publish(h, "t", "two", 3), 0);
    assert_int_equal(hs_pending_output(m[1]), 0);

    /* And coming back works. */
    assert_int_equal(ws_pubsub_subscribe(&h->hub.pubsub, ws_conn_topics(c[0]), c[0], "t", 1), 1);
    assert_int_equal(publish(h, "t", "three", 5), 1);
    f = hs_next_frame(h, m[0]);
    assert_non_null(f);
    assert_string_equal((const char *)f->payload.data, "three");
}

static void test_publish_to_topic_without_subscribers_reaches_nobody(void **state)
{
    harness_t *h = *state;
    hs_start(h);
    ws_memio_t *m;
    assert_non_null(hs_open(h, &m));
    assert_int_equal(publish(h, "nobody", "x", 1), 0);
    assert_int_equal(hs_pending_output(m), 0);
}

static void test_publish_drop_oldest_subscriber_keeps_newest_messages(void **state)
{
    harness_t *h = *state;
    h->cfg.max_buffered = 4096;
    h->cfg.backpressure = WS_BP_DROP_OLDEST;
    hs_start(h);
    ws_conn_t *c[2];
    ws_memio_t *m[2];
    open_subscribers(h, c, m, 2, "t");
    ws_memio_hold(m[1], 1);
    char buf[1000];
    for (char ch = '1'; ch <= '5'; ch++) {
        memset(buf, ch, sizeof buf);
        /* Dropping older messages makes room: the new one is queued and counted. */
        assert_int_equal(publish(h, "t", buf, sizeof buf), 2);
    }
    assert_int_equal(ws_conn_state(c[1]), WS_CONN_OPEN);
    ws_memio_hold(m[1], 0);
    hs_pump(h);
    for (char ch = '1'; ch <= '5'; ch++)
        expect_text(h, m[0], sizeof buf, ch);
    /* A published frame is a chunk of its own: only the oldest queued went. */
    expect_text(h, m[1], sizeof buf, '1');
    expect_text(h, m[1], sizeof buf, '3');
    expect_text(h, m[1], sizeof buf, '4');
    expect_text(h, m[1], sizeof buf, '5');
    assert_null(hs_next_frame(h, m[1]));
}

#define T(f) cmocka_unit_test_setup_teardown(f, hs_setup, hs_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_publish_reaches_every_subscriber_once_and_closes_the_stuck_one),
        T(test_publish_subscriber_that_closes_leaves_its_topics),
        T(test_publish_unsubscribe_stops_delivery),
        T(test_publish_to_topic_without_subscribers_reaches_nobody),
        T(test_publish_drop_oldest_subscriber_keeps_newest_messages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
