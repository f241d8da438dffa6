#include "loop_harness.h"

#include <stdlib.h>
#include <string.h>

/* What server.c's flush does every turn: deferred transport work. */
static void drive(lh_t *l)
{
    for (int i = 0; i < 16 && ws_io_run(&l->io); i++)
        ;
}

static void on_prep(uv_prepare_t *h)
{
    lh_t *l = h->data;
    l->turns++;
    drive(l);
}

static void on_check(uv_check_t *h) { drive(h->data); }

/* libuv 1.44's uv_run runs the timers that are due before it polls: a
 * deadline (or a client's own timer) met there would leave UV_RUN_ONCE
 * polling on, with no timeout when no other timer is left (a hang) or until
 * the next one. uv_stop makes it return at once, so that lh_run_until looks
 * at its condition again. */
static void on_deadline(uv_timer_t *h)
{
    lh_t *l = h->data;
    l->expired = 1;
    uv_stop(&l->loop);
}

int lh_init(lh_t *l)
{
    int r = uv_loop_init(&l->loop);
    if (r != 0)
        return r;
    ws_io_init(&l->io, &l->loop);
    uv_prepare_init(&l->loop, &l->prep);
    l->prep.data = l;
    uv_prepare_start(&l->prep, on_prep);
    uv_check_init(&l->loop, &l->check);
    l->check.data = l;
    uv_check_start(&l->check, on_check);
    uv_timer_init(&l->loop, &l->deadline);
    l->deadline.data = l;
    return 0;
}

int lh_run_until(lh_t *l, int (*done)(void *ud), void *ud, uint64_t ms)
{
    l->expired = 0;
    uv_timer_start(&l->deadline, on_deadline, ms, 0);
    while (!done(ud) && !l->expired)
        uv_run(&l->loop, UV_RUN_ONCE);
    uv_timer_stop(&l->deadline);
    return done(ud);
}

static int never(void *ud)
{
    (void)ud;
    return 0;
}

void lh_wait(lh_t *l, uint64_t ms) { lh_run_until(l, never, NULL, ms); }

typedef struct {
    uv_write_t req;
    char data[];
} wcopy_t;

static void on_written(uv_write_t *req, int status)
{
    (void)status;
    free(req);
}

void lh_write_copy(uv_stream_t *st, const void *data, size_t len)
{
    wcopy_t *w = malloc(sizeof *w + len);
    memcpy(w->data, data, len);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
    if (uv_write(&w->req, st, &b, 1, on_written) != 0)
        free(w);
}

int lh_close(lh_t *l)
{
    uv_close((uv_handle_t *)&l->prep, NULL);
    uv_close((uv_handle_t *)&l->check, NULL);
    /* The deadline must not keep the loop alive, only bound the wait. */
    l->expired = 0;
    uv_timer_start(&l->deadline, on_deadline, 10000, 0);
    uv_unref((uv_handle_t *)&l->deadline);
    while (uv_loop_alive(&l->loop) && !l->expired) {
        ws_io_run(&l->io);
        uv_run(&l->loop, UV_RUN_ONCE);
    }
    int quiet = !uv_loop_alive(&l->loop);
    uv_close((uv_handle_t *)&l->deadline, NULL);
    ws_io_free(&l->io);
    uv_run(&l->loop, UV_RUN_NOWAIT);
    return quiet && uv_loop_close(&l->loop) == 0 ? 0 : -1;
}
