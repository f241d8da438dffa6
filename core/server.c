#include "server.h"

#include <stdio.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "conn.h"
#include "error.h"
#include "lhost.h"
#include "log.h"
#include "outq.h"
#include "ring.h"

/* The sweep enforces close deadlines; its period bounds how late one can be. */
#define SWEEP_MS 100

void ws_server_mark_dirty(ws_server_t *s, ws_conn_t *c)
{
    if (c->in_dirty)
        return;
    c->in_dirty = 1;
    c->dirty_next = s->dirty;
    s->dirty = c;
}

/* Writes queued during one loop iteration leave in one syscall per
 * connection, or with the ring in one for all of them. Runs before the loop
 * blocks (prepare) and after I/O (check). Completions can queue more (the
 * rest of a queue, or what an on_drain or on_close handler sends): a few
 * rounds per turn, then the ring's poll wakes the loop for the rest. Each
 * round ends with nothing dirty and nothing prepared but unsubmitted, so the
 * loop never blocks on output of ours. */
#define FLUSH_ROUNDS 4

static void flush_all(ws_server_t *s)
{
    for (int round = 0;; round++) {
        while (s->dirty) {
            ws_conn_t *c = s->dirty;
            s->dirty = c->dirty_next;
            c->in_dirty = 0;
            ws_conn_flush(c);
        }
        if (!s->ring)
            return;
        ws_ring_submit(s->ring);
        if (round == FLUSH_ROUNDS - 1 || ws_ring_reap(s->ring) == 0)
            return;
    }
}

static void on_prepare(uv_prepare_t *h) { flush_all(h->data); }
static void on_check(uv_check_t *h) { flush_all(h->data); }

static void sweep_list(ws_conn_t *c, uint64_t now)
{
    for (ws_conn_t *next; c; c = next) {
        next = c->next;
        ws_conn_sweep(c, now);
    }
}

/* Memory after a burst: once the server was quiet for a whole slow period,
 * finish the Lua collector's cycle a bounded step per period (no long pause
 * with many connections) and then hand free heap pages back, so that RSS
 * follows the live connections down instead of staying at the burst's peak. */
static void give_back_memory(ws_server_t *s)
{
    if (s->reads != s->reads_seen) {
        s->reads_seen = s->reads;
        s->mem_dirty = 1;
        return;
    }
    if (s->mem_dirty && ws_lhost_collect_step(s->lh)) {
        ws__outq_release_pool();
#ifdef __GLIBC__
        malloc_trim(0);
#endif
        s->mem_dirty = 0;
    }
}

/* Deadlines of HTTP and closing connections every tick; the heartbeat of
 * open ones (pings, idle) only as often as its settings need, so a server
 * holding many idle connections does not walk all of them ten times a second. */
static void on_sweep(uv_timer_t *t)
{
    ws_server_t *s = t->data;
    uint64_t now = uv_now(s->loop);
    sweep_list(s->conns, now);
    if (now >= s->next_slow) {
        s->next_slow = now + s->slow_ms;
        sweep_list(s->open, now);
        give_back_memory(s);
    }
}

/* A quarter of the shortest heartbeat setting, between one tick and a second. */
static uint64_t slow_period(const ws_config_t *cfg)
{
    double p = 1.0;
    if (cfg->ping_interval > 0) {
        p = cfg->ping_interval / 4 < p ? cfg->ping_interval / 4 : p;
        p = cfg->ping_timeout / 4 < p ? cfg->ping_timeout / 4 : p;
    }
    if (cfg->idle_timeout > 0 && cfg->idle_timeout / 4 < p)
        p = cfg->idle_timeout / 4;
    uint64_t ms = (uint64_t)(p * 1000);
    return ms < SWEEP_MS ? SWEEP_MS : ms;
}

static void on_connection(uv_stream_t *l, int status)
{
    ws_server_t *s = l->data;
    if (status < 0) {
        /* Out of descriptors: libuv has already accepted and dropped the
         * pending connections (its EMFILE trick), so this does not spin.
         * Say so at most once a second. */
        uint64_t now = uv_now(s->loop);
        if (now - s->t_accept_warn >= 1000) {
            s->t_accept_warn = now;
            ws_log_warn("accept: %s (%zu connections open)", uv_strerror(status), s->nconns);
        }
        return;
    }
    ws_conn_accept(s);
}

static void stop_handles(ws_server_t *s)
{
    uv_close((uv_handle_t *)&s->sweep, NULL);
    uv_close((uv_handle_t *)&s->prepare, NULL);
    uv_close((uv_handle_t *)&s->check, NULL);
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
    uv_close((uv_handle_t *)&s->shutdown_timer, NULL);
}

static void abort_all(ws_server_t *s)
{
    /* Aborting moves an open connection onto conns (where it stays, CLOSED,
     * until its handle is closed): empty open first, then walk conns. */
    while (s->open)
        ws_conn_abort(s->open, WS_CLOSE_GOING_AWAY);
    for (ws_conn_t *c = s->conns, *next; c; c = next) {
        next = c->next;
        ws_conn_abort(c, WS_CLOSE_GOING_AWAY);
    }
}

void ws__server_conn_gone(ws_server_t *s)
{
    /* The last connection of a graceful shutdown is gone: let the loop end. */
    if (s->stopping == 1 && s->nconns == 0) {
        s->stopping = 2;
        stop_handles(s);
    }
}

static void on_shutdown_timeout(uv_timer_t *t)
{
    ws_server_t *s = t->data;
    ws_log_warn("shutdown: %zu connections still open after %.1f s, closing them", s->nconns,
                s->cfg.shutdown_timeout);
    abort_all(s);
}

/* First signal: stop accepting, let the script know, close every connection
 * with 1001 and wait (bounded) for the close handshakes. Second: stop now. */
static void on_signal(uv_signal_t *h, int signum)
{
    ws_server_t *s = h->data;
    const char *name = signum == SIGINT ? "SIGINT" : "SIGTERM";
    if (s->stopping) {
        ws_log_warn("%s again: closing %zu connections now", name, s->nconns);
        abort_all(s);
        return;
    }
    ws_log_info("%s: shutting down, closing %zu WebSocket connections", name, s->nopen);
    s->stopping = 1;
    uv_close((uv_handle_t *)&s->listener, NULL);
    ws_reload_close(&s->reload);
    ws_lhost_shutdown(s->lh);
    ws_lhost_stop(s->lh);
    /* Closing moves open connections onto conns: walk open until it is empty. */
    while (s->open)
        ws_conn_shutdown(s->open, "server shutting down");
    for (ws_conn_t *c = s->conns, *next; c; c = next) {
        next = c->next;
        ws_conn_shutdown(c, "server shutting down");
    }
    uv_timer_start(&s->shutdown_timer, on_shutdown_timeout,
                   (uint64_t)(s->cfg.shutdown_timeout * 1000), 0);
    ws__server_conn_gone(s);
}

int ws_server_init(ws_server_t *s, uv_loop_t *loop, const ws_config_t *cfg, char *err,
                   size_t errlen)
{
    memset(s, 0, sizeof *s);
    s->loop = loop;
    s->cfg = *cfg;
    ws_pubsub_init(&s->pubsub);
    ws_iptab_init(&s->ips);
    /* Without context takeover a compressor is reset after every message and
     * its zlib memory released: idle connections hold none, and a published
     * message compressed once serves every subscriber. */
    ws_deflate_config_default(&s->deflate_cfg);
    s->deflate_cfg.enabled = cfg->compression;
    s->deflate_cfg.level = cfg->compression_level;
    s->deflate_cfg.threshold = cfg->compression_threshold;
    s->deflate_cfg.server_max_window_bits = cfg->compression_window;
    s->deflate_cfg.mem_level = cfg->compression_memlevel;
    s->deflate_cfg.server_no_context_takeover = !cfg->compression_context;
    s->deflate_cfg.client_no_context_takeover = !cfg->compression_context;
    s->deflate_cfg.release_idle = !cfg->compression_context;
    ws_deflate_set_mem_limit(cfg->compression_max_memory);
    s->lh = ws_lhost_new(s, cfg->script, err, errlen);
    if (!s->lh) {
        ws_pubsub_free(&s->pubsub);
        return WS_EINVAL;
    }

    struct sockaddr_storage addr;
    int r = uv_ip4_addr(cfg->host, cfg->port, (struct sockaddr_in *)&addr);
    if (r != 0)
        r = uv_ip6_addr(cfg->host, cfg->port, (struct sockaddr_in6 *)&addr);
    if (r != 0) {
        snprintf(err, errlen, "invalid --host address '%s'", cfg->host);
        goto fail;
    }
    uv_tcp_init(loop, &s->listener);
    s->listener.data = s;
    r = uv_tcp_bind(&s->listener, (struct sockaddr *)&addr, 0);
    if (r == 0)
        r = uv_listen((uv_stream_t *)&s->listener, 1024, on_connection);
    if (r != 0) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", cfg->host, cfg->port, uv_strerror(r));
        uv_close((uv_handle_t *)&s->listener, NULL);
        uv_run(loop, UV_RUN_NOWAIT);
        goto fail;
    }

    s->slow_ms = slow_period(cfg);
    uv_timer_init(loop, &s->sweep);
    s->sweep.data = s;
    uv_timer_start(&s->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
    uv_prepare_init(loop, &s->prepare);
    s->prepare.data = s;
    uv_prepare_start(&s->prepare, on_prepare);
    uv_check_init(loop, &s->check);
    s->check.data = s;
    uv_check_start(&s->check, on_check);
    uv_signal_init(loop, &s->sigint);
    s->sigint.data = s;
    uv_signal_start(&s->sigint, on_signal, SIGINT);
    uv_signal_init(loop, &s->sigterm);
    s->sigterm.data = s;
    uv_signal_start(&s->sigterm, on_signal, SIGTERM);
    uv_timer_init(loop, &s->shutdown_timer);
    s->shutdown_timer.data = s;
    ws_reload_init(&s->reload, s, !cfg->no_watch);
    if (cfg->io_uring) {
        char why[128];
        s->ring = ws_ring_new(loop, ws__outq_sent, why, sizeof why);
        if (!s->ring)
            ws_log_info("%s: sending with writev", why);
    }
    return 0;

fail:
    ws_lhost_free(s->lh);
    s->lh = NULL;
    ws_pubsub_free(&s->pubsub);
    ws_iptab_free(&s->ips);
    return r ? r : WS_EINVAL;
}

int ws_server_port(ws_server_t *s)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

int ws_server_run(ws_server_t *s)
{
    uv_run(s->loop, UV_RUN_DEFAULT);
    return 0;
}

void ws_server_free(ws_server_t *s)
{
    ws_ring_free(s->ring);
    s->ring = NULL;
    ws__outq_release_pool();
    ws_lhost_free(s->lh);
    s->lh = NULL;
    ws_pubsub_free(&s->pubsub);
    ws_iptab_free(&s->ips);
    ws_buf_free(&s->zin);
    ws_buf_free(&s->zout);
}
