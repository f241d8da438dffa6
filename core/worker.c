#include "worker.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "publish.h"
#include "stats.h"

/* Queued for one slow worker before its publishes are dropped. */
#define MAILBOX_PENDING (16u << 20)

int ws_worker_from_env(ws_worker_t *w, char *err, size_t errlen)
{
    memset(w, 0, sizeof *w);
    const char *role = getenv("WSPUSH_ROLE");
    if (!role || strcmp(role, "worker") != 0)
        return 0;
    const char *spec = getenv("WSPUSH_WORKER");
    unsigned id, count;
    if (!spec || sscanf(spec, "%u/%u", &id, &count) != 2 || id < 1 || id > count ||
        count > WS_TALLY_MAX_WORKERS) {
        snprintf(err, errlen, "WSPUSH_WORKER is '%s', not ID/COUNT", spec ? spec : "");
        return -1;
    }
    w->id = id;
    w->count = count;
    return 1;
}

int ws_worker_attach(ws_worker_t *w, ws_hub_t *hub, char *err, size_t errlen)
{
    w->tally = ws_tally_attach(WS_WORKER_FD_TALLY, w->id);
    if (!w->tally) {
        snprintf(err, errlen, "worker %u: cannot map the tally: %s", w->id, strerror(errno));
        return -1;
    }
    w->hub = hub;
    hub->tally = w->tally;
    /* The built-in figures go to this worker's slot, where every worker's
     * scrape sums them. */
    ws_stats_bind(ws_tally_stats(w->tally));
    return 0;
}

static void deliver(void *ud, const char *topic, size_t tlen, unsigned op, const void *data,
                    size_t dlen)
{
    ws_publish_remote(ud, topic, tlen, op, data, dlen);
}

void ws_worker_send(ws_worker_t *w, const char *topic, size_t tlen, unsigned op,
                    const void *data, size_t dlen)
{
    /* What others published first goes first here too (causal order). */
    ws_mailbox_receive(w->mailbox);
    ws_mailbox_send(w->mailbox, topic, tlen, op, data, dlen);
}

int ws_worker_vsend(int fd, const char *fmt, va_list ap)
{
    char msg[1024];
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    if (n <= 0)
        return 0;
    /* One message per datagram, cut to the buffer (the peer reads 1023). */
    size_t len = (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1;
    return send(fd, msg, len, MSG_NOSIGNAL) < 0 ? -1 : 0;
}

static void say(ws_worker_t *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(ws_worker_t *w, const char *fmt, ...)
{
    (void)w;
    va_list ap;
    va_start(ap, fmt);
    if (ws_worker_vsend(WS_WORKER_FD_CONTROL, fmt, ap) != 0)
        ws_log_debug("control socket: %s", strerror(errno));
    va_end(ap);
}

static void on_control(uv_poll_t *h, int status, int events)
{
    ws_worker_t *w = h->data;
    (void)events;
    char msg[1024];
    ssize_t n = status < 0 ? 0 : recv(WS_WORKER_FD_CONTROL, msg, sizeof msg - 1, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        /* The supervisor died or closed us: nothing would restart or stop
         * this worker any more. Leave as on SIGTERM. */
        ws_log_warn("the supervisor is gone: shutting down");
        uv_poll_stop(h);
        w->ops->stop(w->ud);
        return;
    }
    msg[n] = '\0';
    uint64_t digest;
    int off = 0;
    if (sscanf(msg, "reload %" SCNx64 " %n", &digest, &off) == 1 && off > 0) {
        char err[2048];
        uint64_t t0 = uv_hrtime();
        if (w->ops->reload(w->ud, msg + off, digest, err, sizeof err) == 0)
            say(w, "reloaded %016" PRIx64 " %.2f", digest, (double)(uv_hrtime() - t0) / 1e6);
        else
            say(w, "refused %016" PRIx64 " %s", digest, err);
        return;
    }
    ws_log_warn("control socket: unknown message '%.40s'", msg);
}

/* The cross-worker counters, where the supervisor and the other workers
 * read them. */
static void on_figures(uv_timer_t *t)
{
    ws_worker_t *w = t->data;
    uint64_t sent, received, dropped;
    ws_mailbox_counts(w->mailbox, &sent, &received, &dropped);
    ws_tally_relay(w->tally, sent, received, dropped);
}

void ws_worker_start(ws_worker_t *w, uv_loop_t *loop, const ws_worker_ops_t *ops, void *ud)
{
    w->ops = ops;
    w->ud = ud;
    int tx[WS_TALLY_MAX_WORKERS];
    for (unsigned i = 0; i < w->count; i++)
        tx[i] = WS_WORKER_FD_PEERS + (int)i;
    w->mailbox = ws_mailbox_new(loop, w->id, w->count, WS_WORKER_FD_MAILBOX, tx, MAILBOX_PENDING,
                                deliver, w->hub);
    uv_poll_init(loop, &w->ctl, WS_WORKER_FD_CONTROL);
    w->ctl.data = w;
    uv_poll_start(&w->ctl, UV_READABLE, on_control);
    uv_timer_init(loop, &w->figures);
    w->figures.data = w;
    uv_timer_start(&w->figures, on_figures, 1000, 1000);
    w->started = 1;
}

void ws_worker_ready(ws_worker_t *w, uint64_t digest)
{
    /* Counted from the moment it serves, not from its first sampling a
     * second later: a scrape then sees every worker that serves. */
    ws_stats->v[WS_STAT_WORKERS] = 1;
    say(w, "ready %016" PRIx64, digest);
}

void ws_worker_close(ws_worker_t *w)
{
    if (!w->started)
        return;
    w->started = 0;
    ws_mailbox_close(w->mailbox);
    w->mailbox = NULL;
    uv_close((uv_handle_t *)&w->ctl, NULL);
    uv_close((uv_handle_t *)&w->figures, NULL);
}

void ws_worker_free(ws_worker_t *w)
{
    if (w->hub)
        w->hub->tally = NULL;
    ws_stats_bind(NULL);
    ws_tally_unmap(w->tally);
    w->tally = NULL;
}
