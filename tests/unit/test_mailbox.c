/* Publishes between workers: whole, once, in order, fragmented when large,
 * bounded and counted when the reader falls behind. Three mailboxes on one
 * loop stand for three workers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "mailbox.h"
#include "mem.h"

#define N 3

typedef struct {
    char topic[64];
    unsigned op;
    size_t len;
    unsigned char *data;
} got_t;

typedef struct {
    got_t got[4096];
    size_t n;
} inbox_t;

static uv_loop_t loop;
static int rx[N], tx[N];
static ws_mailbox_t *mb[N];
static inbox_t in[N];

static void deliver(void *ud, const char *topic, size_t tlen, unsigned op, const void *data,
                    size_t dlen)
{
    inbox_t *b = ud;
    assert_true(b->n < 4096);
    got_t *g = &b->got[b->n++];
    snprintf(g->topic, sizeof g->topic, "%.*s", (int)tlen, topic);
    g->op = op;
    g->len = dlen;
    g->data = malloc(dlen ? dlen : 1);
    memcpy(g->data, data, dlen);
}

static void open_boxes(size_t pending)
{
    uv_loop_init(&loop);
    for (int i = 0; i < N; i++) {
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv), 0);
        rx[i] = sv[0];
        tx[i] = sv[1];
    }
    for (int i = 0; i < N; i++) {
        /* Each worker gets its own copies of the descriptors, as after exec. */
        int txi[N];
        for (int j = 0; j < N; j++)
            txi[j] = dup(tx[j]);
        memset(&in[i], 0, sizeof in[i]);
        mb[i] = ws_mailbox_new(&loop, (unsigned)i + 1, N, dup(rx[i]), txi, pending, deliver, &in[i]);
    }
}

static void close_boxes(void)
{
    for (int i = 0; i < N; i++) {
        ws_mailbox_close(mb[i]);
        close(rx[i]);
        close(tx[i]);
        for (size_t k = 0; k < in[i].n; k++)
            free(in[i].got[k].data);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* Run the loop until every inbox but the sender's holds want messages (or give up). */
static void pump(int sender, size_t want)
{
    for (int spin = 0; spin < 100000; spin++) {
        int done = 1;
        for (int i = 0; i < N; i++)
            if (i != sender && in[i].n < want)
                done = 0;
        if (done)
            return;
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    fail_msg("the messages did not arrive");
}

static void test_mailbox_a_publish_reaches_every_other_worker_once(void **state)
{
    (void)state;
    open_boxes(1 << 20);
    ws_mailbox_send(mb[1], "news", 4, 1, "hello", 5);
    pump(1, 1);
    uv_run(&loop, UV_RUN_NOWAIT);
    for (int i = 0; i < N; i++) {
        assert_int_equal(in[i].n, i == 1 ? 0 : 1);
        if (i != 1) {
            assert_string_equal(in[i].got[0].topic, "news");
            assert_int_equal(in[i].got[0].op, 1);
            assert_memory_equal(in[i].got[0].data, "hello", 5);
        }
    }
    uint64_t s, r, d;
    ws_mailbox_counts(mb[1], &s, &r, &d);
    assert_int_equal(s, 2);
    assert_int_equal(d, 0);
    ws_mailbox_counts(mb[0], &s, &r, &d);
    assert_int_equal(r, 1);
    close_boxes();
}

static void test_mailbox_keeps_each_publishers_order_and_binary(void **state)
{
    (void)state;
    open_boxes(8 << 20);
    char msg[32];
    for (int i = 0; i < 1000; i++) {
        int n = snprintf(msg, sizeof msg, "%d", i);
        ws_mailbox_send(mb[0], "t", 1, 1, msg, (size_t)n);
        ws_mailbox_send(mb[2], "u", 1, 2, msg, (size_t)n);
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    pump(-1, 1000);
    /* Worker 2 heard both; in each publisher's order. */
    int next_t = 0, next_u = 0;
    for (size_t k = 0; k < in[1].n; k++) {
        got_t *g = &in[1].got[k];
        char want[32];
        int *next = strcmp(g->topic, "t") == 0 ? &next_t : &next_u;
        snprintf(want, sizeof want, "%d", (*next)++);
        assert_int_equal(g->len, strlen(want));
        assert_memory_equal(g->data, want, g->len);
        assert_int_equal(g->op, strcmp(g->topic, "t") == 0 ? 1 : 2);
    }
    assert_int_equal(next_t, 1000);
    assert_int_equal(next_u, 1000);
    close_boxes();
}

static void test_mailbox_a_large_message_goes_in_fragments_and_arrives_whole(void **state)
{
    (void)state;
    open_boxes(16 << 20);
    size_t len = (3 << 20) + 12345;
    unsigned char *big = malloc(len);
    for (size_t i = 0; i < len; i++)
        big[i] = (unsigned char)(i * 7 + 3);
    char topic[300];
    memset(topic, 'k', sizeof topic - 1);
    topic[sizeof topic - 1] = '\0';
    ws_mailbox_send(mb[0], topic, strlen(topic), 2, big, len);
    ws_mailbox_send(mb[0], "after", 5, 1, "x", 1);
    pump(0, 2);
    for (int i = 1; i < N; i++) {
        assert_int_equal(in[i].got[0].len, len);
        assert_memory_equal(in[i].got[0].data, big, len);
        assert_int_equal(strlen(in[i].got[0].topic), 63); /* the test's copy is short */
        assert_string_equal(in[i].got[1].topic, "after");
    }
    free(big);
    close_boxes();
}

static void test_mailbox_drops_whole_messages_for_a_worker_that_falls_behind(void **state)
{
    (void)state;
    /* 256 KiB of queue: a reader that does not read fills the socket, then
     * the queue, then the rest is dropped and counted. */
    open_boxes(256 << 10);
    static char payload[60000];
    memset(payload, 'p', sizeof payload);
    size_t sent = 2000;
    for (size_t i = 0; i < sent; i++)
        ws_mailbox_send(mb[0], "t", 1, 1, payload, sizeof payload); /* no loop run: nobody reads */
    uint64_t s, r, d;
    ws_mailbox_counts(mb[0], &s, &r, &d);
    assert_true(d > 0);
    assert_int_equal(s + d, 2 * sent);
    /* What was queued is bounded by the queue plus the socket buffers. */
    assert_true(ws_mem_used(WS_MEM_QUEUE) <= 2 * (256 << 10));
    /* Everything not dropped arrives, whole. */
    for (int spin = 0; spin < 200000 && in[1].n + in[2].n < s; spin++)
        uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(in[1].n + in[2].n, s);
    for (size_t k = 0; k < in[1].n; k++)
        assert_int_equal(in[1].got[k].len, sizeof payload);
    assert_int_equal(ws_mem_used(WS_MEM_QUEUE), 0);
    close_boxes();
}

static void test_mailbox_ignores_garbage_and_a_message_begun_by_a_predecessor(void **state)
{
    (void)state;
    open_boxes(1 << 20);
    /* Not ours at all; then the tail of a fragmented message whose start
     * a previous worker 2 read (no FIRST flag), then a good one. */
    assert_true(send(tx[1], "xx", 2, 0) == 2);
    unsigned char tail[12 + 3] = {1, 2 /* LAST */, 1, 0, 1, 0, 1, 0, 9, 0, 0, 0, 'a', 'b', 'c'};
    assert_true(send(tx[1], tail, sizeof tail, 0) == (ssize_t)sizeof tail);
    unsigned char self[12 + 2] = {1, 3, 1, 0, 2, 0, 1, 0, 2, 0, 0, 0, 't', 'z'}; /* from itself */
    assert_true(send(tx[1], self, sizeof self, 0) == (ssize_t)sizeof self);
    ws_mailbox_send(mb[0], "t", 1, 1, "ok", 2);
    pump(0, 1);
    assert_int_equal(in[1].n, 1);
    assert_memory_equal(in[1].got[0].data, "ok", 2);
    close_boxes();
}

int main(void)
{
    ws_log_set_level(WS_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mailbox_a_publish_reaches_every_other_worker_once),
        cmocka_unit_test(test_mailbox_keeps_each_publishers_order_and_binary),
        cmocka_unit_test(test_mailbox_a_large_message_goes_in_fragments_and_arrives_whole),
        cmocka_unit_test(test_mailbox_drops_whole_messages_for_a_worker_that_falls_behind),
        cmocka_unit_test(test_mailbox_ignores_garbage_and_a_message_begun_by_a_predecessor),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
