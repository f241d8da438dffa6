/* The log's bounded queue: records whole or not at all, written in pieces,
 * drops counted per episode. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "logq.h"

/* Take what the queue shows, at most max bytes at a time, into out. */
static size_t drain(ws_logq_t *q, char *outb, size_t max)
{
    size_t o = 0;
    const uint8_t *p;
    size_t n;
    while ((n = ws_logq_peek(q, &p)) > 0) {
        size_t k = n < max ? n : max;
        memcpy(outb + o, p, k);
        o += k;
        ws_logq_advance(q, k);
    }
    return o;
}

static void test_logq_keeps_records_in_order(void **state)
{
    (void)state;
    ws_logq_t q;
    ws_logq_init(&q, 1024);
    assert_true(ws_logq_empty(&q));
    assert_int_equal(ws_logq_push(&q, "one\n", 4), 0);
    assert_int_equal(ws_logq_push(&q, "two\n", 4), 0);
    char outb[64];
    size_t n = drain(&q, outb, 64);
    assert_int_equal(n, 8);
    assert_memory_equal(outb, "one\ntwo\n", 8);
    assert_true(ws_logq_empty(&q));
    assert_null(q.data); /* drained: its memory is given back */
    ws_logq_free(&q);
}

static void test_logq_head_record_written_in_pieces(void **state)
{
    (void)state;
    ws_logq_t q;
    ws_logq_init(&q, 1024);
    ws_logq_push(&q, "abcdef\n", 7);
    ws_logq_push(&q, "xyz\n", 4);
    const uint8_t *p;
    assert_int_equal(ws_logq_peek(&q, &p), 7);
    ws_logq_advance(&q, 2);
    /* the rest of the head record comes first, never the next one */
    assert_int_equal(ws_logq_peek(&q, &p), 5);
    assert_memory_equal(p, "cdef\n", 5);
    char outb[64];
    assert_int_equal(drain(&q, outb, 3), 9);
    assert_memory_equal(outb, "cdef\nxyz\n", 9);
    ws_logq_free(&q);
}

static void test_logq_full_drops_whole_records_and_counts_them(void **state)
{
    (void)state;
    ws_logq_t q;
    /* room for two records of 10 bytes with their 4-byte lengths */
    ws_logq_init(&q, 28);
    assert_int_equal(ws_logq_push(&q, "0123456789", 10), 0);
    assert_int_equal(ws_logq_push(&q, "abcdefghij", 10), 0);
    assert_int_equal(ws_logq_push(&q, "ABCDEFGHIJ", 10), -1);
    assert_int_equal(ws_logq_push(&q, "K", 1), -1);
    assert_int_equal(q.dropped, 2);
    char outb[64];
    assert_int_equal(drain(&q, outb, 64), 20);
    assert_memory_equal(outb, "0123456789abcdefghij", 20);
    assert_int_equal(ws_logq_take_dropped(&q), 2);
    assert_int_equal(ws_logq_take_dropped(&q), 0); /* the episode's count was taken */
    assert_int_equal(q.dropped_total, 2);
    /* a record larger than the queue never fits */
    char big[64] = {0};
    assert_int_equal(ws_logq_push(&q, big, sizeof big), -1);
    assert_int_equal(q.dropped_total, 3);
    ws_logq_free(&q);
}

static void test_logq_reuses_room_freed_at_the_front(void **state)
{
    (void)state;
    ws_logq_t q;
    ws_logq_init(&q, 28);
    ws_logq_push(&q, "0123456789", 10);
    ws_logq_push(&q, "abcdefghij", 10);
    const uint8_t *p;
    ws_logq_advance(&q, ws_logq_peek(&q, &p)); /* the first is out */
    /* room at the front only: the queue moves what is left to make it */
    assert_int_equal(ws_logq_push(&q, "ABCDEFGHIJ", 10), 0);
    char outb[64];
    assert_int_equal(drain(&q, outb, 4), 20);
    assert_memory_equal(outb, "abcdefghijABCDEFGHIJ", 20);
    assert_int_equal(q.dropped_total, 0);
    ws_logq_free(&q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_logq_keeps_records_in_order),
        cmocka_unit_test(test_logq_head_record_written_in_pieces),
        cmocka_unit_test(test_logq_full_drops_whole_records_and_counts_them),
        cmocka_unit_test(test_logq_reuses_room_freed_at_the_front),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
