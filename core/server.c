#include "server.h"

#include <stdio.h>
#include <string.h>

#include "conn.h"
#include "error.h"
#include "lhost.h"
#include "log.h"

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
 * connection. Runs before the loop blocks (prepare) and after I/O (check). */
static void flush_all(ws_server_t *s)
{
    while (s->dirty) {
        ws_conn_t *c = s->dirty;
        s->dirty = c->dirty_next;
        c->in_dirty = 0;
        ws_conn_flush(c);
    }
}

static void on_prepare(uv_prepare_t *h) { flush_all(h->data); }
static void on_check(uv_check_t *h) { flush_all(h->data); }

static void on_sweep(uv_timer_t *t)
{
    ws_server_t *s = t->data;
    uint64_t now = uv_now(s->loop);
    for (ws_conn_t *c = s->conns, *next; c; c = next) {
        next = c->next;
        ws_conn_sweep(c, now);
    }
}

static void on_connection(uv_stream_t *l, int status)
{
    ws_server_t *s = l->data;
    if (status < 0) {
        ws_log_warn("accept: %s", uv_strerror(status));
        return;
    }
    ws_conn_accept(s);
}

static void stop_handles(ws_server_t *s)
{
    uv_close((uv_handle_t *)&s->listener, NULL);
    uv_close((uv_handle_t *)&s->sweep, NULL);
    uv_close((uv_handle_t *)&s->prepare, NULL);
    uv_close((uv_handle_t *)&s->check, NULL);
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
}

static void on_signal(uv_signal_t *h, int signum)
{
    ws_server_t *s = h->data;
    ws_log_info("%s: stopping", signum == SIGINT ? "SIGINT" : "SIGTERM");
    s->stopping = 1;
    for (ws_conn_t *c = s->conns, *next; c; c = next) {
        next = c->next;
        ws_conn_abort(c, WS_CLOSE_GOING_AWAY);
    }
    ws_lhost_stop(s->lh);
    stop_handles(s);
}

int ws_server_init(ws_server_t *s, uv_loop_t *loop, const ws_config_t *cfg, char *err,
                   size_t errlen)
{
    memset(s, 0, sizeof *s);
    s->loop = loop;
    s->cfg = *cfg;
    ws_pubsub_init(&s->pubsub);
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
    uv_signal_start_oneshot(&s->sigint, on_signal, SIGINT);
    uv_signal_init(loop, &s->sigterm);
    s->sigterm.data = s;
    uv_signal_start_oneshot(&s->sigterm, on_signal, SIGTERM);
    return 0;

fail:
    ws_lhost_free(s->lh);
    s->lh = NULL;
    ws_pubsub_free(&s->pubsub);
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
    ws_lhost_free(s->lh);
    s->lh = NULL;
    ws_pubsub_free(&s->pubsub);
}
