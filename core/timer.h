/*
 * timer.h: timers on a clock that is passed in, so the same timers run on
 * the loop's time in the server and on a virtual clock in tests. A binary
 * heap ordered by due time, then by start order. The caller owns each
 * ws_timer_t and keeps it in place while it is active. Loop thread only.
 */
#ifndef WS_TIMER_H
#define WS_TIMER_H

#include <stddef.h>
#include <stdint.h>

typedef struct ws_timer_s ws_timer_t;
typedef void (*ws_timer_cb)(ws_timer_t *t);

struct ws_timer_s {
    uint64_t due;     /* clock time (ms) it fires at */
    uint64_t repeat;  /* 0: once */
    uint64_t seq;     /* start order, for ties */
    uint32_t idx;     /* 1 + its place in the heap; 0 = not active */
    ws_timer_cb cb;
};

typedef struct {
    ws_timer_t **heap;
    uint32_t n, cap;
    uint64_t seq;
} ws_timers_t;

void ws_timers_init(ws_timers_t *ts);
/* Release the heap; timers still in it become inactive. */
void ws_timers_free(ws_timers_t *ts);

/* Fire t after ms at clock time now, then every repeat ms (0: once).
 * Restarts t if it was active. */
void ws_timer_start(ws_timers_t *ts, ws_timer_t *t, uint64_t now, uint64_t ms, uint64_t repeat,
                    ws_timer_cb cb);
/* Stop t (nothing happens if it is not active). */
void ws_timer_stop(ws_timers_t *ts, ws_timer_t *t);
static inline int ws_timer_active(const ws_timer_t *t) { return t->idx != 0; }

/* The due time of the next timer, or UINT64_MAX when none is active. */
uint64_t ws_timers_next(const ws_timers_t *ts);

/* Fire, in order, every timer due at clock time now. A repeating timer is
 * started again at now + repeat before its callback runs (which may stop
 * it); a one-shot one is inactive when its callback runs. Callbacks may
 * start and stop timers. Returns how many fired. */
size_t ws_timers_run(ws_timers_t *ts, uint64_t now);

#endif
