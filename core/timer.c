/* Timers in a binary heap. */
#include "timer.h"

#include <stdlib.h>

#include "buf.h"

static int before(const ws_timer_t *a, const ws_timer_t *b)
{
    return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void place(ws_timers_t *ts, uint32_t i, ws_timer_t *t)
{
    ts->heap[i] = t;
    t->idx = i + 1;
}

static void up(ws_timers_t *ts, uint32_t i)
{
    ws_timer_t *t = ts->heap[i];
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (!before(t, ts->heap[parent]))
            break;
        place(ts, i, ts->heap[parent]);
        i = parent;
    }
    place(ts, i, t);
}

static void down(ws_timers_t *ts, uint32_t i)
{
    ws_timer_t *t = ts->heap[i];
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        const ws_timer_t *best = t;
        if (l < ts->n && before(ts->heap[l], best))
            m = l, best = ts->heap[l];
        if (r < ts->n && before(ts->heap[r], best))
            m = r;
        if (m == i)
            break;
        place(ts, i, ts->heap[m]);
        i = m;
    }
    place(ts, i, t);
}

void ws_timers_init(ws_timers_t *ts)
{
    ts->heap = NULL;
    ts->n = ts->cap = 0;
    ts->seq = 0;
}

void ws_timers_free(ws_timers_t *ts)
{
    for (uint32_t i = 0; i < ts->n; i++)
        ts->heap[i]->idx = 0;
    free(ts->heap);
    ws_timers_init(ts);
}

void ws_timer_stop(ws_timers_t *ts, ws_timer_t *t)
{
    if (!t->idx)
        return;
    uint32_t i = t->idx - 1;
    t->idx = 0;
    ws_timer_t *last = ts->heap[--ts->n];
    if (i == ts->n)
        return;
    place(ts, i, last);
    if (i > 0 && before(last, ts->heap[(i - 1) / 2]))
        up(ts, i);
    else
        down(ts, i);
}

void ws_timer_start(ws_timers_t *ts, ws_timer_t *t, uint64_t now, uint64_t ms, uint64_t repeat,
                    ws_timer_cb cb)
{
    ws_timer_stop(ts, t);
    t->due = now + ms;
    t->repeat = repeat;
    t->seq = ++ts->seq;
    t->cb = cb;
    if (ts->n == ts->cap) {
        ts->cap = ts->cap ? ts->cap * 2 : 16;
        ts->heap = ws_realloc(ts->heap, ts->cap * sizeof *ts->heap);
    }
    place(ts, ts->n++, t);
    up(ts, ts->n - 1);
}

uint64_t ws_timers_next(const ws_timers_t *ts) { return ts->n ? ts->heap[0]->due : UINT64_MAX; }

size_t ws_timers_run(ws_timers_t *ts, uint64_t now)
{
    size_t fired = 0;
    /* A timer started by a callback for "now" waits for the next run: a
     * repeating 0 ms timer must not spin here forever. */
    uint64_t last_seq = ts->seq;
    while (ts->n && ts->heap[0]->due <= now && ts->heap[0]->seq <= last_seq) {
        ws_timer_t *t = ts->heap[0];
        if (t->repeat)
            ws_timer_start(ts, t, now, t->repeat, t->repeat, t->cb);
        else
            ws_timer_stop(ts, t);
        t->cb(t);
        fired++;
    }
    return fired;
}
