/*
 * transport.c's shared part over memio, with a test owner instead of a
 * connection: pausing for a set of reasons, the stash of bytes given back
 * (ws_transport_unread) and its place before newer bytes, the end and the
 * close around it, and a write that has to wait for the peer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "proto_harness.h"

/* The owner logs each delivery as "bytes|", and the end and close as "<end>"
 * and "<close>", so one string shows both the bytes and the call boundaries. */
typedef struct {
    ws_transport_t *t;
    char log[256];
    size_t take;       /* bytes it takes from one read; the rest is given back */
    int pause_on_rest; /* pause (WS_PAUSE_BACKPRESSURE) when it gives bytes back */
    int reads, ends, end_err, closes;
} owner_t;

static void owner_log(owner_t *o, const char *s, size_t n)
{
    size_t have = strlen(o->log);
    if (have + n + 1 > sizeof o->log)
        n = sizeof o->log - have - 1;
    memcpy(o->log + have, s, n);
    o->log[have + n] = '\0';
}

static void on_read(void *ud, uint8_t *data, size_t len)
{
    owner_t *o = ud;
    o->reads++;
    size_t n = len < o->take ? len : o->take;
    owner_log(o, (const char *)data, n);
    owner_log(o, "|", 1);
    if (n < len) {
        if (o->pause_on_rest)
            ws_transport_pause(o->t, WS_PAUSE_BACKPRESSURE);
        ws_transport_unread(o->t, data + n, len - n);
    }
}

static void on_end(void *ud, int err)
{
    owner_t *o = ud;
    o->ends++;
    o->end_err = err;
    owner_log(o, "<end>", 5);
    /* As a connection does: the stream is over. */
    ws_transport_close(o->t);
}

static void on_shutdown(void *ud, int status)
{
    (void)ud;
    (void)status;
}

static void on_close(void *ud)
{
    owner_t *o = ud;
    o->closes++;
    owner_log(o, "<close>", 7);
}

static const ws_transport_cb_t owner_cb = {
    .on_read = on_read,
    .on_end = on_end,
    .on_shutdown = on_shutdown,
    .on_close = on_close,
};

/* Owners outlive their memio: the teardown's close calls on_close on them. */
static owner_t owner, owner2;

static void start(owner_t *o, ws_memio_t *m)
{
    memset(o, 0, sizeof *o);
    o->take = SIZE_MAX;
    o->t = ws_memio_transport(m);
    ws_transport_start(o->t, &owner_cb, o);
}

static ws_memio_t *start_owner(harness_t *h)
{
    hs_start(h);
    ws_memio_t *m = hs_memio(h);
    start(&owner, m);
    return m;
}

/* The owner closes what it still has, as a connection would before going:
 * freeing a memio its owner keeps open leaves it to that owner's close. */
static int tr_setup(void **state)
{
    memset(&owner, 0, sizeof owner);
    memset(&owner2, 0, sizeof owner2);
    return hs_setup(state);
}

static int tr_teardown(void **state)
{
    if (owner.t)
        ws_transport_close(owner.t);
    if (owner2.t)
        ws_transport_close(owner2.t);
    return hs_teardown(state);
}

static void feed(ws_memio_t *m, const char *s) { ws_memio_feed(m, s, strlen(s)); }

static void run_io(harness_t *h)
{
    for (int i = 0; i < 10 && ws_io_run(&h->io); i++)
        ;
}

static void test_transport_reads_while_not_paused(void **state)
{
    harness_t *h = *state;
    ws_memio_t *m = start_owner(h);
    assert_true(ws_memio_reading(m));
    feed(m, "abc");
    feed(m, "de");
    assert_string_equal(owner.log, "abc|de|");
}

/* Bytes that arrive while paused go to the stash (ws_transport_deliver gives
 * them back with ws_transport_unread), the first of them into an empty one:
 * the owner sees none of them until it resumes. */
static void test_transport_feeding_while_paused_delivers_nothing(void **state)
{
    harness_t *h = *state;
    ws_memio_t *m = start_owner(h);
    ws_transport_pause(owner.t, WS_PAUSE_BACKPRESSURE);
    assert_false(ws_memio_reading(m));
    feed(m, "abc");
    run_io(h);
    feed(m, "def");
    run_io(h);
    assert_string_equal(owner.log, "");
    assert_int_equal(owner.reads, 0);
}

static void test_transport_resuming_one_of_two_reasons_delivers_nothing(void **state)
{
    harness_t *h = *state;
    ws_memio_t *m = start_owner(h);
    ws_transport_pause(owner.t, WS_PAUSE_BACKPRESSURE);
    ws_transport_pause(owner.t, WS_PAUSE_HANDLER);
    feed(m, "abc");
    ws_transport_resume(owner.t, WS_PAUSE_BACKPRESSURE);
    /* A reason that was never given changes nothing either. */
    ws_transport_resume(owner.t, WS_PAUSE_HOST);
    run_io(h);
    assert_string_equal(owner.log, "");
    assert_true(ws_transport_paused(owner.t));
    assert_false(ws_memio_reading(m));

    ws_transport_resume(owner.t, WS_PAUSE_HANDLER);
    assert_true(ws_memio_reading(m));
    /* Not from inside resume: the owner may be in the middle of its own work. */
    assert_string_equal(owner.log, "");
    run_io(h);
    assert_string_equal(owner.log, "abc|");
}

static void test_transport_stash_goes_before_newer_bytes(void **state)
{
    harness_t *h = *state;
    ws_memio_t *m = start_owner(h);
    ws_transport_pause(owner.t, WS_PAUSE_HANDLER);
    feed(m, "ab");
    feed(m, "c");
    ws_transport_resume(owner.t, WS_PAUSE_HANDLER);
    /* New bytes before the loop came round: the stash still goes first. */
    feed(m, "def");
    assert_string_equal(owner.log, "abc|def|");
    run_io(h);
    assert_string_equal(owner.log, "abc|def|");
}

static void test_transport_stash_delivered_from_io_run_after_resume(void **state)
{
    harness_t *h = *state;
    ws_memio_t *m = start_owner(h);
    ws_transport_pause(owner.t, WS_PAUSE_BACKPRESSURE);
    feed(m, "abc");
    ws_transport_resume(owner.t, WS_PAUSE_BACKPRESSURE);
    run_io(h);
    assert_string_equal(owner.log, "abc|");
    feed(m, "def");
    assert_string_equal(owner.log, "abc|def|");
    assert_int_equal(owner.reads, 2);
}

static void test_transport_unread_keeps_bytes_for_the_next_delivery(void **state)
{
    harness_t *h = *state;
    ws_memio_t *m = start_owner(h);
    owner.take = 2;
    feed(m, "hello");
    assert_string_equal(owner.log, "he|");
    owner.take = SIZE_MAX;
    feed(m, "XY");
    assert_string_equal(owner.log, "he|llo|XY|");
}

static void test_transport_bytes_given_back_from_the_stash_stay_before_newer_ones(void **state)
{
    harness_t *h = *state;
    ws_memio_t *m = start_owner(h);
    /* One byte per delivery, the rest given back without pausing: each new
     * read must first hand over what is left of the old ones. */
    owner.take = 1;
    feed(m, "abc");
    feed(m, "d");
    feed(m, "e");
    assert_string_equal(owner.log, "a|b|c|");
    owner.take = SIZE_MAX;
    feed(m, "f");
    assert_string_equal(owner.log, "a|b|c|de|f|");
}

static void test_transport_unread_with_pause_keeps_order_across_resume(void **state)
{
    harness_t *h = *state;
    ws_memio_t *m = start_owner(h);
    owner.take = 1;
    owner.pause_on_rest = 1;
    feed(m, "abc");
    assert_string_equal(owner.log, "a|");
    assert_false(ws_memio_reading(m));
    feed(m, "de");
    run_io(h);
    assert_string_equal(owner.log, "a|");

    /* Taking one byte a time and pausing again each time, it still gets them
     * all, in order, one loop turn each. */
    for (int i = 0; i < 4; i++) {
        ws_transport_resume(owner.t, WS_PAUSE_BACKPRESSURE);
        run_io(h);
    }
    assert_string_equal(owner.log, "a|b|c|d|e|");
    owner.take = SIZE_MAX;
    ws_transport_resume(owner.t, WS_PAUSE_BACKPRESSURE);
    run_io(h);
    feed(m, "f");
    assert_string_equal(owner.log, "a|b|c|d|e|f|");
}

static void test_transport_end_comes_after_the_stash_once_resumed(void **state)
{
    harness_t *h = *state;
    ws_memio_t *m = start_owner(h);
    ws_transport_pause(owner.t, WS_PAUSE_BACKPRESSURE);
    feed(m, "abc");
    ws_memio_end(m);
    run_io(h);
    assert_string_equal(owner.log, "");
    ws_transport_resume(owner.t, WS_PAUSE_BACKPRESSURE);
    run_io(h);
    assert_string_equal(owner.log, "abc|<end><close>");
    assert_int_equal(owner.end_err, UV_EOF);
    assert_true(ws_memio_closed(m));
}

/* Paused while the host answers a request (or decides an upgrade), the
 * transport does not read but watches: a peer that leaves is told at once,
 * so a handler waiting for it can be cancelled. */
static void test_transport_watched_peer_that_leaves_is_told_at_once(void **state)
{
    harness_t *h = *state;
    ws_memio_t *m = start_owner(h);
    ws_transport_pause(owner.t, WS_PAUSE_HOST);
    assert_true(ws_memio_watching(m));
    assert_false(ws_memio_reading(m));
    feed(m, "GET /next");
    run_io(h);
    assert_string_equal(owner.log, "");
    ws_memio_end(m);
    run_io(h);
    assert_string_equal(owner.log, "<end><close>");
    assert_int_equal(owner.end_err, UV_EOF);
}

/* Any other reason of pause (backpressure) ends the watch until it is gone;
 * once the host is done, reading resumes. */
static void test_transport_a_hard_pause_ends_the_watch(void **state)
{
    harness_t *h = *state;
    ws_memio_t *m = start_owner(h);
    ws_transport_pause(owner.t, WS_PAUSE_UPGRADE);
    assert_true(ws_memio_watching(m));
    ws_transport_pause(owner.t, WS_PAUSE_BACKPRESSURE);
    assert_false(ws_memio_watching(m));
    assert_false(ws_memio_reading(m));
    ws_memio_end(m);
    run_io(h);
    assert_int_equal(owner.ends, 0);
    ws_transport_resume(owner.t, WS_PAUSE_BACKPRESSURE);
    assert_true(ws_memio_watching(m));
    run_io(h);
    assert_string_equal(owner.log, "<end><close>");
}

static void test_transport_close_drops_the_stash_and_reports_close_once(void **state)
{
    harness_t *h = *state;
    ws_memio_t *m = start_owner(h);
    ws_transport_pause(owner.t, WS_PAUSE_BACKPRESSURE);
    feed(m, "abc");
    ws_transport_close(owner.t);
    ws_transport_close(owner.t); /* idempotent */
    ws_transport_resume(owner.t, WS_PAUSE_BACKPRESSURE);
    feed(m, "def");
    assert_int_equal(owner.closes, 0); /* on a later loop turn */
    run_io(h);
    assert_string_equal(owner.log, "<close>");
    assert_true(ws_memio_closed(m));
}

typedef struct {
    ws_write_t w;
    uv_buf_t iov[2];
    int done, status, waited;
} test_write_t;

static void write_done(ws_write_t *w, int status, int waited)
{
    test_write_t *tw = (test_write_t *)w;
    tw->done++;
    tw->status = status;
    tw->waited = waited;
}

static void test_transport_write_to_a_peer_that_holds_waits_then_completes(void **state)
{
    harness_t *h = *state;
    ws_memio_t *m = start_owner(h);
    test_write_t tw;
    memset(&tw, 0, sizeof tw);
    tw.iov[0] = uv_buf_init((char *)"hello ", 6);
    tw.iov[1] = uv_buf_init((char *)"world", 5);
    tw.w.iov = tw.iov;
    tw.w.n = 2;
    tw.w.unsent = 11;
    tw.w.cb = write_done;
    ws_memio_hold(m, 1);
    assert_int_equal(ws_transport_write(owner.t, &tw.w), 0);
    assert_int_equal(tw.done, 0); /* never inside the write call */
    run_io(h);
    assert_int_equal(tw.done, 0);
    assert_int_equal(hs_pending_output(m), 0);

    ws_memio_hold(m, 0);
    run_io(h);
    assert_int_equal(tw.done, 1);
    assert_int_equal(tw.status, 0);
    assert_int_equal(tw.waited, 1);
    size_t len;
    const uint8_t *out = ws_memio_output(m, &len);
    assert_int_equal(len, 11);
    assert_memory_equal(out, "hello world", 11);
    ws_write_release(&tw.w);
}

static void test_transport_peer_address_is_formatted_per_family(void **state)
{
    harness_t *h = *state;
    hs_start(h);
    char buf[WS_REMOTE_MAX];
    ws_memio_t *v4 = hs_memio(h);
    start(&owner, v4);
    ws_transport_ip(owner.t, buf, sizeof buf);
    assert_string_equal(buf, "127.0.0.1");
    ws_transport_peer(owner.t, buf, sizeof buf);
    assert_string_equal(buf, "127.0.0.1:40000");

    ws_memio_t *v6 = ws_memio_new(&h->io, "::1", 443);
    h->memio[h->nmemio++] = v6;
    start(&owner2, v6);
    ws_transport_ip(owner2.t, buf, sizeof buf);
    assert_string_equal(buf, "::1");
    ws_transport_peer(owner2.t, buf, sizeof buf);
    assert_string_equal(buf, "[::1]:443");
}

/* A memio freed before any owner started it has nobody to tell of its
 * close, and its memory goes at once: the io must be left with no work for
 * it, or the next ws_io_run would run a freed transport. */
static void test_transport_memio_freed_before_any_owner_leaves_no_work_behind(void **state)
{
    harness_t *h = *state;
    hs_start(h);
    ws_memio_t *m = ws_memio_new(&h->io, "10.1.2.3", 5555);
    ws_memio_free(m);
    assert_int_equal(ws_io_run(&h->io), 0);
}

#define T(f) cmocka_unit_test_setup_teardown(f, tr_setup, tr_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_transport_reads_while_not_paused),
        T(test_transport_feeding_while_paused_delivers_nothing),
        T(test_transport_resuming_one_of_two_reasons_delivers_nothing),
        T(test_transport_stash_goes_before_newer_bytes),
        T(test_transport_stash_delivered_from_io_run_after_resume),
        T(test_transport_unread_keeps_bytes_for_the_next_delivery),
        T(test_transport_bytes_given_back_from_the_stash_stay_before_newer_ones),
        T(test_transport_unread_with_pause_keeps_order_across_resume),
        T(test_transport_end_comes_after_the_stash_once_resumed),
        T(test_transport_watched_peer_that_leaves_is_told_at_once),
        T(test_transport_a_hard_pause_ends_the_watch),
        T(test_transport_close_drops_the_stash_and_reports_close_once),
        T(test_transport_write_to_a_peer_that_holds_waits_then_completes),
        T(test_transport_peer_address_is_formatted_per_family),
        T(test_transport_memio_freed_before_any_owner_leaves_no_work_behind),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
