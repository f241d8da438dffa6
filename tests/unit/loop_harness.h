/*
 * loop_harness.h: the loop a unit test runs its clients and scripted
 * servers on (test_fetch, test_redis): a libuv loop with our transports'
 * io, driven every turn as server.c drives it, and waits bounded by a
 * deadline.
 */
#ifndef WS_LOOP_HARNESS_H
#define WS_LOOP_HARNESS_H

#include <stdint.h>
#include <uv.h>

#include "transport.h"

typedef struct {
    uv_loop_t loop;
    ws_io_t io;
    uv_prepare_t prep;
    uv_check_t check;
    uv_timer_t deadline;
    int expired;
    uint64_t turns;    /* loop iterations (prepare runs) */
} lh_t;

/* Set up l (it must not move afterwards). 0, or a libuv error. */
int lh_init(lh_t *l);
/* Run until done(ud) or ms pass; returns done(ud). */
int lh_run_until(lh_t *l, int (*done)(void *ud), void *ud, uint64_t ms);
/* Run for ms. */
void lh_wait(lh_t *l, uint64_t ms);
/* Write a copy of data[0..len) on st (a scripted server's answer); the copy
 * is freed when the write ends, or at once when it cannot start. */
void lh_write_copy(uv_stream_t *st, const void *data, size_t len);

/* Close the loop once every handle of the test is closed (at most 10 s).
 * 0, or -1 when handles were left open. */
int lh_close(lh_t *l);

#endif
