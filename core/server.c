/* A hub on a libuv loop: accept, flush every turn, run timers, sweep, stop. */
#include "server.h"

#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "conn.h"
#include "gauges.h"
#include "log.h"
#include "outq.h"

/* The fast sweep enforces close deadlines; its period bounds how late one can be. */
#define SWEEP_MS 100

static void on_accept(void *ud, ws_transport_t *t)
{
    ws_server_t *s = ud;
    ws_conn_new(s->hub, s->tls ? ws_tls_server(s->tls, t) : t);
}

void ws_server_set_tls(ws_server_t *s, ws_tls_ctx_t *ctx)
{
    ws_tls_ctx_free(s->tls);
    s->tls = ctx;
}

/* Output queued during the turn leaves before the loop blocks (prepare) and
 * after I/O (check); the hub's timers are armed for their next due time. */
static void on_tick(uv_timer_t *h)
{
    ws_server_t *s = h->data;
    s->tick_due = UINT64_MAX;
    ws_hub_run_timers(s->hub);
}

static void on_idle(uv_idle_t *h) { (void)h; }

/* Work still pending after a few rounds (completions that queued more) must
 * not wait for the next event: an active idle handle keeps the loop from
 * blocking. */
static void flush(ws_server_t *s)
{
    if (s->stopping == 2)
        return;
    if (ws_hub_flush(s->hub))
        uv_idle_start(&s->idle, on_idle);
    else
        uv_idle_stop(&s->idle);
}

static void on_check(uv_check_t *h) { flush(h->data); }

static void on_prepare(uv_prepare_t *h)
{
    ws_server_t *s = h->data;
    flush(s);
    if (s->stopping == 2)
        return;
    uint64_t next = ws_timers_next(&s->hub->timers);
    if (next == s->tick_due)
        return;
    if (next == UINT64_MAX) {
        uv_timer_stop(&s->tick);
    } else {
        uint64_t now = uv_now(s->hub->io->loop);
        uv_timer_start(&s->tick, on_tick, next > now ? next - now : 0, 0);
    }
    s->tick_due = next;
}

/* Memory after a burst: once the server was quiet for a whole slow period,
 * let the application give back what it holds a bounded step per period (no
 * long pause with many connections), then hand free heap pages back, so
 * that RSS follows the live connections down instead of staying at the
 * burst's peak. */
static void trim_heap(void)
{
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}

static void give_back_memory(ws_server_t *s)
{
    ws_outq_trim_pool();
    uint64_t work = s->hub->work, pings = s->hub->pings;
    s->pinged = work == s->work_seen && pings != s->pings_seen;
    s->pings_seen = pings;
    if (work != s->work_seen) {
        s->work_seen = work;
        s->mem_dirty = 1;
        return;
    }
    /* Quiet, but pings still go out: the requests they pooled go back too. */
    size_t released = ws_outq_release_pool();
    if (s->mem_dirty && s->quiet && !s->quiet(s->quiet_ud))
        return;
    if (s->mem_dirty || released) {
        trim_heap();
        s->mem_dirty = 0;
    }
}

/* A quiet server's round of pings took a write request per connection at
 * once: a tick later most have completed, and they go back then rather than
 * a whole slow period later. */
static void give_back_after_pings(ws_server_t *s)
{
    s->pinged = 0;
    if (s->hub->work == s->work_seen && ws_outq_release_pool())
        trim_heap();
}

static void on_gone(void *ud);

static void on_sweep(uv_timer_t *t)
{
    ws_server_t *s = t->data;
    if (ws_hub_tick(s->hub))
        give_back_memory(s);
    else if (s->pinged)
        give_back_after_pings(s);
    /* For the other workers' scrapes (stats.h): a second behind at most. */
    if (++s->sweeps % (1000 / SWEEP_MS) == 0)
        ws_gauges_sample(s->hub);
    /* A stop that waits for the application's work looks again. */
    if (s->stopping == 1)
        on_gone(s);
}

static void hook_loop(ws_server_t *s)
{
    uv_loop_t *loop = s->hub->io->loop;
    ws_gauges_init(loop);
    uv_timer_init(loop, &s->sweep);
    s->sweep.data = s;
    uv_timer_start(&s->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
    uv_timer_init(loop, &s->tick);
    s->tick.data = s;
    uv_prepare_init(loop, &s->prepare);
    s->prepare.data = s;
    uv_prepare_start(&s->prepare, on_prepare);
    uv_check_init(loop, &s->check);
    s->check.data = s;
    uv_check_start(&s->check, on_check);
    uv_idle_init(loop, &s->idle);
    uv_timer_init(loop, &s->stop_timer);
    s->stop_timer.data = s;
}

static void reset(ws_server_t *s, ws_hub_t *hub)
{
    memset(s, 0, sizeof *s);
    s->hub = hub;
    s->tick_due = UINT64_MAX;
}

int ws_server_init(ws_server_t *s, ws_hub_t *hub, const char *host, int port, char *err,
                   size_t errlen)
{
    reset(s, hub);
    int r = ws_tcp_listen(&s->listener, hub->io, host, port, on_accept, s, err, errlen);
    if (r == 0)
        hook_loop(s);
    return r;
}

int ws_server_init_fd(ws_server_t *s, ws_hub_t *hub, int fd, char *err, size_t errlen)
{
    reset(s, hub);
    int r = ws_tcp_listen_fd(&s->listener, hub->io, fd, on_accept, s, err, errlen);
    if (r == 0)
        hook_loop(s);
    return r;
}

int ws_server_port(ws_server_t *s) { return ws_tcp_listener_port(&s->listener); }

static void close_handles(ws_server_t *s)
{
    uv_close((uv_handle_t *)&s->sweep, NULL);
    uv_close((uv_handle_t *)&s->tick, NULL);
    uv_close((uv_handle_t *)&s->prepare, NULL);
    uv_close((uv_handle_t *)&s->check, NULL);
    uv_close((uv_handle_t *)&s->idle, NULL);
    uv_close((uv_handle_t *)&s->stop_timer, NULL);
}

/* A connection was freed: the last one of a stop ends it. */
static void on_gone(void *ud)
{
    ws_server_t *s = ud;
    if (s->stopping == 1 && s->hub->nconns == 0 &&
        (s->forced || !s->busy || s->busy(s->busy_ud) == 0)) {
        s->stopping = 2;
        /* What the last connections queued is flushed: nothing is left to send. */
        close_handles(s);
        if (s->stopped)
            s->stopped(s->stopped_ud);
    }
}

static void on_stop_timeout(uv_timer_t *t)
{
    ws_server_t *s = t->data;
    size_t busy = s->busy ? s->busy(s->busy_ud) : 0;
    if (s->hub->nconns)
        ws_log_warn("shutdown: %zu connections still open after the timeout, closing them",
                    s->hub->nconns);
    if (busy)
        ws_log_warn("shutdown: %zu handlers still waiting after the timeout, dropping them", busy);
    s->forced = 1;
    ws_hub_abort_all(s->hub);
    on_gone(s);
}

void ws_server_stop(ws_server_t *s, double timeout)
{
    if (s->stopping)
        return;
    s->stopping = 1;
    ws_tcp_listener_close(&s->listener);
    s->hub->gone = on_gone;
    s->hub->gone_ud = s;
    ws_hub_shutdown(s->hub, "server shutting down");
    uv_timer_start(&s->stop_timer, on_stop_timeout, (uint64_t)(timeout * 1000), 0);
    on_gone(s);
}

void ws_server_abort(ws_server_t *s) { ws_hub_abort_all(s->hub); }

void ws_server_free(ws_server_t *s)
{
    ws_server_set_tls(s, NULL);
    ws_outq_release_pool();
}
