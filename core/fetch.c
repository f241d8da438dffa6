/* The HTTP/1.1 client: requests, the connection pool, the address policy.
 *
 * Deadlines: one uv_timer per fetcher over a heap of timers (timer.h), not
 * a uv_timer per request. A uv handle can be freed only after its close
 * callback, so a request holding one could not be freed inside
 * ws_fetch_cancel; with the heap, cancel frees at once, a queued request
 * costs a heap slot instead of a handle, and ws_fetcher_free has one timer
 * to close. Idle pooled connections expire on the same heap.
 *
 * Every user callback runs from one uv_idle handle, over the requests
 * finished before that turn: nothing else here calls user code, so no step
 * of the state machine is interrupted by a callback that starts, cancels or
 * frees, and callbacks that keep starting requests that fail at once cannot
 * keep the loop from polling. */
#include "fetch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "httpc.h"
#include "log.h"
#include "mem.h"
#include "resolver.h"
#include "tcp.h"
#include "timer.h"
#include "tls.h"
#include "url.h"

typedef struct link_s {
    struct link_s *prev, *next;
} link_t;

#define OF(p, type, member) ((type *)(void *)((char *)(p) - offsetof(type, member)))

static void list_init(link_t *l) { l->prev = l->next = l; }
static int list_empty(const link_t *l) { return l->next == l; }
static void list_push(link_t *head, link_t *n)
{
    n->prev = head->prev;
    n->next = head;
    head->prev->next = n;
    head->prev = n;
}
static void list_del(link_t *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    list_init(n);
}

/* A request body, shared by the request (for redirects and retries) and
 * the write in flight, which may outlive the request. */
typedef struct {
    uint32_t refs;
    size_t len;
    uint8_t data[];
} blob_t;

static blob_t *blob_new(const void *p, size_t n)
{
    blob_t *b = ws_malloc(sizeof *b + n);
    b->refs = 1;
    b->len = n;
    memcpy(b->data, p, n);
    ws_mem_add(WS_MEM_BUFFERS, n);
    return b;
}

static void blob_unref(blob_t *b)
{
    if (b && --b->refs == 0) {
        ws_mem_sub(WS_MEM_BUFFERS, b->len);
        free(b);
    }
}

typedef struct conn_s conn_t;

/* One request's bytes on the wire. The transport may report its completion
 * after the connection is gone (transport.h), so the write owns them. */
typedef struct {
    ws_write_t w;
    uv_buf_t iov[2];
    ws_buf_t head;
    blob_t *body;
    conn_t *c; /* NULL once the connection is freed */
} wr_t;

enum { C_CONNECTING, C_BUSY, C_IDLE, C_CLOSED };

struct conn_s {
    ws_fetcher_t *f;    /* NULL once the fetcher is freed */
    ws_transport_t *t;  /* NULL while connecting */
    ws_tcp_connect_t *connecting; /* the attempt, while connecting */
    ws_fetch_t *x;      /* the request on it, or NULL */
    link_t all, idle;
    ws_timer_t expiry;  /* while idle */
    char *key;          /* "host:port" */
    wr_t *w;            /* the write whose completion is not reported yet */
    unsigned uses;      /* responses completed on it */
    int state;
    int send_waiting;   /* x waits for w's completion (one write at a time) */
};

enum { X_START, X_RESOLVING, X_QUEUED, X_CONNECTING, X_ACTIVE, X_DONE, X_DELIVERING };

struct ws_fetch_s {
    ws_fetcher_t *f;
    ws_fetch_cb cb;
    void *ud;
    int state;
    link_t all;           /* the fetcher's requests */
    link_t q;             /* the queue (X_QUEUED) or the done list (X_DONE) */
    ws_timer_t deadline;
    char method[33];
    int idempotent, head, follow, redirects, retried, fresh, no_verify;
    ws_buf_t url;         /* the current URL, NUL-terminated */
    ws_url_t u;           /* parsed, or all zero */
    char key[WS_URL_HOST_MAX + 10]; /* "s:host:port" */
    ws_buf_t hdrs;        /* the caller's header lines */
    blob_t *body;
    size_t max_body;
    ws_lookup_t *lookup;
    struct sockaddr_storage *addrs;
    size_t naddrs, next;
    int last_err;
    conn_t *c;
    int reused;           /* c came from the pool */
    int got_bytes;        /* response bytes arrived on c */
    ws_httpc_res_t res;
    const char *error;
    char errbuf[160];
};

struct ws_fetcher_s {
    ws_io_t *io;
    ws_fetch_config_t cfg;
    ws_resolver_t resolver;
    ws_timers_t timers;
    uv_timer_t timer;
    uint64_t timer_due;
    uv_idle_t idle;
    ws_tls_ctx_t *tls;    /* for https://, made on first use */
    int handles;          /* still open after ws_fetcher_free; the last close frees */
    int freed;
    size_t nconns, nidle, ndone;
    link_t conns, idles, queue, done, reqs;
};

static void route(ws_fetch_t *x);
static void send_request(conn_t *c);
static void conn_failed(conn_t *c, int err);

/* --- timing --- */

static void settle(ws_fetcher_t *f);

static void on_timer(uv_timer_t *h)
{
    ws_fetcher_t *f = h->data;
    f->timer_due = UINT64_MAX;
    ws_timers_run(&f->timers, uv_now(f->io->loop));
    settle(f);
}

static void rearm(ws_fetcher_t *f)
{
    uint64_t due = ws_timers_next(&f->timers);
    if (f->freed || due == f->timer_due)
        return;
    f->timer_due = due;
    if (due == UINT64_MAX) {
        uv_timer_stop(&f->timer);
    } else {
        uint64_t now = uv_now(f->io->loop);
        uv_timer_start(&f->timer, on_timer, due > now ? due - now : 0, 0);
    }
}

/* --- connections --- */

static conn_t *conn_new(ws_fetcher_t *f, const char *key)
{
    conn_t *c = ws_calloc(1, sizeof *c);
    c->f = f;
    c->key = ws_strndup(key, strlen(key));
    c->state = C_CONNECTING;
    list_init(&c->idle);
    list_push(&f->conns, &c->all);
    f->nconns++;
    return c;
}

static void conn_free(conn_t *c)
{
    if (c->w)
        c->w->c = NULL;
    free(c->key);
    free(c);
}

/* A connect that failed: no transport was made. */
static void conn_drop(conn_t *c)
{
    if (c->f) {
        list_del(&c->all);
        c->f->nconns--;
    }
    conn_free(c);
}

/* Close c's transport (c is freed from on_close); the caller has taken any
 * request off it. A connecting one is given up at once: a SYN nobody
 * answers would hold its slot of max_outbound for minutes. */
static void close_conn(conn_t *c)
{
    ws_fetcher_t *f = c->f;
    if (c->state == C_CLOSED)
        return;
    if (c->state == C_CONNECTING) {
        ws_tcp_connect_cancel(c->connecting);
        conn_drop(c);
        return;
    }
    if (c->state == C_IDLE) {
        list_del(&c->idle);
        ws_timer_stop(&f->timers, &c->expiry);
        f->nidle--;
    }
    c->state = C_CLOSED;
    f->nconns--;
    ws_transport_close(c->t);
}

static void on_expiry(ws_timer_t *t) { close_conn(OF(t, conn_t, expiry)); }

/* The newest idle connection to key: the least likely to have been closed
 * by the server meanwhile. */
static conn_t *pooled(ws_fetcher_t *f, const char *key)
{
    for (link_t *l = f->idles.prev; l != &f->idles; l = l->prev)
        if (strcmp(OF(l, conn_t, idle)->key, key) == 0)
            return OF(l, conn_t, idle);
    return NULL;
}

/* The exchange on c is over: keep c for the next request, or close it. */
static void release_conn(conn_t *c, int keep)
{
    ws_fetcher_t *f = c->f;
    if (c->x) {
        c->x->c = NULL;
        c->x = NULL;
    }
    c->uses++;
    size_t same = 0;
    for (link_t *l = f->idles.next; l != &f->idles; l = l->next)
        same += strcmp(OF(l, conn_t, idle)->key, c->key) == 0;
    if (!keep || same >= f->cfg.pool_per_host) {
        close_conn(c);
        return;
    }
    c->state = C_IDLE;
    list_push(&f->idles, &c->idle);
    f->nidle++;
    ws_timer_start(&f->timers, &c->expiry, uv_now(f->io->loop), f->cfg.idle_ms, 0, on_expiry);
}

/* --- finishing requests --- */

/* Take x off whatever it waits on. A connection it was using mid-request
 * is closed: what is left of the exchange on it is unknown. */
static void detach(ws_fetch_t *x)
{
    ws_fetcher_t *f = x->f;
    ws_timer_stop(&f->timers, &x->deadline);
    if (x->q.next != &x->q) {
        if (x->state == X_DONE)
            f->ndone--;
        list_del(&x->q);
    }
    if (x->lookup) {
        ws_lookup_cancel(x->lookup);
        x->lookup = NULL;
    }
    if (x->c) {
        conn_t *c = x->c;
        x->c = NULL;
        c->x = NULL;
        close_conn(c);
    }
}

static void on_idle(uv_idle_t *h);

/* The result is ready: it is delivered on the idle handle's next turn. */
static void finish(ws_fetch_t *x, const char *error)
{
    ws_fetcher_t *f = x->f;
    detach(x);
    x->error = error;
    x->state = X_DONE;
    list_push(&f->done, &x->q);
    f->ndone++;
    if (!uv_is_active((uv_handle_t *)&f->idle))
        uv_idle_start(&f->idle, on_idle);
}

static void fail_fmt(ws_fetch_t *x, const char *prefix, const char *why)
{
    /* A long reason is cut: the message stays readable (the return value is
     * looked at so that -Wformat-truncation knows the cut is meant). */
    if (snprintf(x->errbuf, sizeof x->errbuf, "%s%s", prefix, why) >= (int)sizeof x->errbuf)
        x->errbuf[sizeof x->errbuf - 1] = 0;
    finish(x, x->errbuf);
}

static void on_deadline(ws_timer_t *t) { finish(OF(t, ws_fetch_t, deadline), "timeout"); }

static void req_free(ws_fetch_t *x)
{
    ws_url_free(&x->u);
    ws_buf_free(&x->url);
    ws_buf_free(&x->hdrs);
    ws_httpc_res_free(&x->res);
    blob_unref(x->body);
    free(x->addrs);
    free(x);
}

static void deliver(ws_fetch_t *x)
{
    ws_fetch_res_t res;
    memset(&res, 0, sizeof res);
    ws_header_t *hv = NULL;
    if (!x->error) {
        res.nheaders = ws_httpc_res_nheaders(&x->res);
        hv = ws_malloc((res.nheaders ? res.nheaders : 1) * sizeof *hv);
        ws_httpc_res_headers(&x->res, hv);
        res.headers = hv;
        res.status = x->res.status;
        res.body = ws_httpc_res_body(&x->res, &res.body_len);
    }
    res.error = x->error;
    res.url = (const char *)x->url.data;
    x->state = X_DELIVERING;
    x->cb(x->ud, &res);
    free(hv);
    req_free(x);
}

static void on_idle(uv_idle_t *h)
{
    ws_fetcher_t *f = h->data;
    /* Only what finished before this turn; what finishes inside a callback
     * waits for the next one. */
    for (size_t n = f->ndone; n > 0 && !list_empty(&f->done); n--) {
        ws_fetch_t *x = OF(f->done.next, ws_fetch_t, q);
        list_del(&x->q);
        f->ndone--;
        list_del(&x->all);
        deliver(x);
        if (f->freed)
            return;
    }
    if (list_empty(&f->done))
        uv_idle_stop(h);
}

/* --- the wire --- */

static void on_written(ws_write_t *ww, int status, int waited)
{
    (void)waited;
    wr_t *w = ww->data;
    conn_t *c = w->c;
    ws_write_release(&w->w);
    ws_buf_free(&w->head);
    blob_unref(w->body);
    free(w);
    if (!c)
        return;
    c->w = NULL;
    if (!c->f || c->state == C_CLOSED)
        return;
    ws_fetcher_t *f = c->f;
    if (status < 0) {
        if (c->state == C_BUSY && c->x)
            conn_failed(c, status);
        else
            close_conn(c);
    } else if (c->send_waiting) {
        c->send_waiting = 0;
        if (c->state == C_BUSY && c->x)
            send_request(c);
    }
    settle(f);
}

static void write_request(conn_t *c)
{
    ws_fetch_t *x = c->x;
    wr_t *w = ws_calloc(1, sizeof *w);
    size_t blen = x->body ? x->body->len : 0;
    ws_httpc_head(&w->head, x->method, &x->u, (const char *)x->hdrs.data, x->hdrs.len, blen);
    w->iov[0] = uv_buf_init((char *)w->head.data, (unsigned)w->head.len);
    w->w.n = 1;
    w->w.unsent = w->head.len;
    if (blen) {
        w->body = x->body;
        w->body->refs++;
        w->iov[1].base = (char *)w->body->data; /* not uv_buf_init: its length is an unsigned */
        w->iov[1].len = blen;
        w->w.n = 2;
        w->w.unsent += blen;
    }
    w->w.iov = w->iov;
    w->w.cb = on_written;
    w->w.data = w;
    w->c = c;
    c->w = w;
    int r = ws_transport_write(c->t, &w->w);
    if (r < 0) {
        c->w = NULL;
        ws_buf_free(&w->head);
        blob_unref(w->body);
        free(w);
        conn_failed(c, r);
    }
}

/* c is busy with c->x: send it. */
static void send_request(conn_t *c)
{
    ws_fetch_t *x = c->x;
    x->state = X_ACTIVE;
    x->got_bytes = 0;
    ws_httpc_res_init(&x->res, x->head, x->max_body, x->follow);
    if (c->w) {
        c->send_waiting = 1; /* the previous request's write reports first */
        return;
    }
    write_request(c);
}

static void use_conn(ws_fetch_t *x, conn_t *c)
{
    ws_fetcher_t *f = x->f;
    if (c->state == C_IDLE) {
        list_del(&c->idle);
        ws_timer_stop(&f->timers, &c->expiry);
        f->nidle--;
    }
    c->state = C_BUSY;
    c->x = x;
    x->c = c;
    x->reused = c->uses > 0;
    send_request(c);
}

/* --- connecting --- */

static void on_read(void *ud, uint8_t *data, size_t len);
static void on_end(void *ud, int err);
static void on_shutdown(void *ud, int status) { (void)ud, (void)status; }
static void on_close(void *ud)
{
    conn_t *c = ud;
    if (c->f)
        list_del(&c->all);
    conn_free(c);
}

static const ws_transport_cb_t conn_cb = {on_read, on_end, on_shutdown, on_close};

static void pump(ws_fetcher_t *f);
static void connect_next(ws_fetch_t *x);

/* After every event from outside: give freed slots to waiting requests,
 * re-arm the timer. */
static void settle(ws_fetcher_t *f)
{
    pump(f);
    rearm(f);
}

static void on_connect(void *ud, ws_transport_t *t, int status)
{
    conn_t *c = ud;
    ws_fetcher_t *f = c->f;
    c->connecting = NULL;
    if (!f) {
        if (t)
            ws_transport_close(t); /* never started: freed with its handle, no callback */
        conn_free(c);
        return;
    }
    ws_fetch_t *x = c->x;
    if (status < 0 || !t) {
        conn_drop(c);
        if (x) {
            x->c = NULL;
            x->last_err = status;
            connect_next(x); /* on the slot it had */
        }
        settle(f);
        return;
    }
    if (x && x->u.https)
        t = ws_tls_client(f->tls, t, x->u.host, !x->no_verify);
    c->t = t;
    c->state = C_BUSY;
    ws_transport_start(t, &conn_cb, c);
    if (!x) {
        close_conn(c); /* its request was cancelled or timed out meanwhile */
    } else {
        x->reused = 0;
        send_request(c);
    }
    settle(f);
}

/* Connect to x's next allowed address; when none is left, fail with the
 * last address's error. */
static void connect_next(ws_fetch_t *x)
{
    ws_fetcher_t *f = x->f;
    while (x->next < x->naddrs) {
        conn_t *c = conn_new(f, x->key);
        int r = ws_tcp_connect(f->io, (const struct sockaddr *)&x->addrs[x->next++], on_connect, c,
                               &c->connecting);
        if (r == 0) {
            c->x = x;
            x->c = c;
            x->state = X_CONNECTING;
            return;
        }
        conn_drop(c);
        x->last_err = r;
    }
    if (x->last_err == UV_ECONNREFUSED)
        finish(x, "connection refused");
    else
        fail_fmt(x, "connection failed: ", uv_strerror(x->last_err ? x->last_err : UV_EADDRNOTAVAIL));
}

/* Give waiting requests, oldest first, a pooled connection to their host
 * or a free slot, closing the oldest idle connection to make one. */
static void pump(ws_fetcher_t *f)
{
    while (!f->freed && !list_empty(&f->queue)) {
        ws_fetch_t *x = OF(f->queue.next, ws_fetch_t, q);
        conn_t *c = x->fresh ? NULL : pooled(f, x->key);
        if (!c && x->naddrs == 0) {
            list_del(&x->q);
            route(x); /* queued for a pooled connection that has gone since */
            continue;
        }
        if (!c && f->nconns >= f->cfg.max_outbound) {
            if (list_empty(&f->idles))
                return;
            close_conn(OF(f->idles.next, conn_t, idle));
        }
        list_del(&x->q);
        if (c)
            use_conn(x, c);
        else
            connect_next(x);
    }
}

static void enqueue(ws_fetch_t *x)
{
    x->state = X_QUEUED;
    list_push(&x->f->queue, &x->q);
}

/* --- routing --- */

static void on_lookup(void *ud, const struct sockaddr_storage *addrs, size_t n, const char *error)
{
    ws_fetch_t *x = ud;
    int later = x->lookup != NULL; /* else inside ws_lookup_start, whose caller settles */
    x->lookup = NULL;
    if (n == 0) {
        finish(x, error);
    } else {
        x->addrs = ws_malloc(n * sizeof *addrs);
        memcpy(x->addrs, addrs, n * sizeof *addrs);
        x->naddrs = n;
        enqueue(x);
    }
    if (later)
        settle(x->f);
}

/* x has a parsed URL: find it a connection, pooled or to an address of its
 * host that the policy allows. */
static void route(ws_fetch_t *x)
{
    ws_fetcher_t *f = x->f;
    if (x->u.https && !f->tls) {
        char err[256];
        f->tls = ws_tls_client_ctx(err, sizeof err);
        if (!f->tls) {
            fail_fmt(x, "tls: ", err);
            return;
        }
    }
    /* Pooled connections are per scheme, and an unverified one never
     * serves a request that asks for verification. */
    snprintf(x->key, sizeof x->key, "%s%s:%u", !x->u.https ? "" : x->no_verify ? "s!" : "s:",
             x->u.host, (unsigned)x->u.port);
    free(x->addrs);
    x->addrs = NULL;
    x->naddrs = x->next = 0;
    x->last_err = 0;
    if (!x->fresh && pooled(f, x->key)) {
        enqueue(x);
        return;
    }
    x->state = X_RESOLVING;
    x->lookup = ws_lookup_start(&f->resolver, x->u.host, x->u.port, on_lookup, x);
}

/* --- responses --- */

static const char *const CROSS_ORIGIN[] = {"host", "authorization", "cookie", "proxy-authorization", NULL};
static const char *const BODY_HEADERS[] = {"content-type", "content-encoding", "content-language",
                                           "content-location", NULL};

/* x received a redirect to follow (its connection is released): go on to
 * the Location. */
static void follow(ws_fetch_t *x)
{
    char why[128];
    size_t ll;
    const char *loc = ws_httpc_res_header(&x->res, "location", &ll);
    if (++x->redirects > WS_FETCH_MAX_REDIRECTS) {
        finish(x, "too many redirects");
        return;
    }
    ws_buf_t next;
    ws_url_t nu;
    ws_buf_init(&next);
    if (ws_url_resolve((const char *)x->url.data, x->url.len, loc, ll, &next, why, sizeof why) != 0 ||
        ws_url_parse(&nu, (const char *)next.data, next.len, why, sizeof why) != 0) {
        ws_buf_free(&next);
        fail_fmt(x, "invalid url: ", why);
        return;
    }
    int st = x->res.status;
    if ((st == 303 && !x->head) || ((st == 301 || st == 302) && !strcmp(x->method, "POST"))) {
        strcpy(x->method, "GET");
        x->idempotent = 1;
        blob_unref(x->body);
        x->body = NULL;
        ws_httpc_drop_headers(&x->hdrs, BODY_HEADERS);
    }
    if (!ws_url_same_origin(&x->u, &nu))
        ws_httpc_drop_headers(&x->hdrs, CROSS_ORIGIN);
    ws_url_free(&x->u);
    x->u = nu;
    ws_buf_free(&x->url);
    x->url = next;
    x->fresh = x->retried = 0;
    ws_log_debug("fetch: %d redirect to %s:%u", st, x->u.host, (unsigned)x->u.port);
    route(x);
}

/* The response to c's request is complete; clean: nothing followed it. */
static void response_done(conn_t *c, int clean)
{
    ws_fetch_t *x = c->x;
    /* Pooled only when the whole request left (its completion may not be
     * reported yet) and the server sent nothing after the response. */
    int keep = clean && x->res.keep_alive && (!c->w || ws_transport_unsent(c->t) == 0);
    release_conn(c, keep);
    if (x->res.skipped)
        follow(x);
    else
        finish(x, NULL);
}

/* c failed while x was on it: err is a libuv error, UV_EOF when the server
 * closed. */
static void conn_failed(conn_t *c, int err)
{
    ws_fetch_t *x = c->x;
    if (!x) {
        close_conn(c);
        return;
    }
    if (err == UV_EOF && x->got_bytes && ws_httpc_res_eof(&x->res)) {
        response_done(c, 0); /* a body delimited by the close */
        return;
    }
    /* A pooled connection that the server closed while it sat idle: it
     * processed nothing, so a method that may be repeated is, once. */
    int stale = x->reused && !x->got_bytes && !x->retried && x->idempotent;
    const char *tls = ws_tls_error(c->t);
    if (tls)
        snprintf(x->errbuf, sizeof x->errbuf, "tls: %s", tls);
    c->x = NULL;
    x->c = NULL;
    close_conn(c);
    if (tls) {
        finish(x, x->errbuf);
    } else if (stale) {
        x->retried = x->fresh = 1;
        route(x);
    } else if (err == UV_EOF || err == UV_ECONNRESET || err == UV_EPIPE) {
        finish(x, "connection closed");
    } else {
        fail_fmt(x, "connection failed: ", uv_strerror(err));
    }
}

static void on_read(void *ud, uint8_t *data, size_t len)
{
    conn_t *c = ud;
    ws_fetcher_t *f = c->f;
    if (!f || c->state == C_CLOSED)
        return;
    ws_fetch_t *x = c->x;
    if (!x) {
        close_conn(c); /* bytes on an idle connection: nothing to make of them */
    } else {
        x->got_bytes = 1;
        long used = ws_httpc_res_feed(&x->res, data, len);
        if (x->res.complete) {
            response_done(c, used == (long)len);
        } else if (used < 0) {
            c->x = NULL;
            x->c = NULL;
            close_conn(c);
            finish(x, x->res.error);
        }
    }
    settle(f);
}

static void on_end(void *ud, int err)
{
    conn_t *c = ud;
    ws_fetcher_t *f = c->f;
    if (!f || c->state == C_CLOSED)
        return;
    if (c->state == C_IDLE)
        close_conn(c); /* the server closed an idle connection */
    else
        conn_failed(c, err);
    settle(f);
}

/* --- the fetcher --- */

void ws_fetch_config_init(ws_fetch_config_t *cfg)
{
    cfg->max_outbound = WS_FETCH_MAX_OUTBOUND;
    cfg->pool_per_host = WS_FETCH_POOL_PER_HOST;
    cfg->idle_ms = WS_FETCH_IDLE_MS;
}

ws_fetcher_t *ws_fetcher_new(ws_io_t *io, const ws_fetch_config_t *cfg)
{
    ws_fetcher_t *f = ws_calloc(1, sizeof *f);
    f->io = io;
    if (cfg)
        f->cfg = *cfg;
    else
        ws_fetch_config_init(&f->cfg);
    if (f->cfg.max_outbound == 0)
        f->cfg.max_outbound = 1;
    list_init(&f->conns);
    list_init(&f->idles);
    list_init(&f->queue);
    list_init(&f->done);
    list_init(&f->reqs);
    ws_timers_init(&f->timers);
    ws_resolver_init(&f->resolver, io->loop);
    uv_timer_init(io->loop, &f->timer);
    f->timer.data = f;
    f->timer_due = UINT64_MAX;
    uv_idle_init(io->loop, &f->idle);
    f->idle.data = f;
    return f;
}

/* Idle connections were opened under the old policy. */
static int policy_changed(ws_fetcher_t *f, int r)
{
    while (r == 0 && !list_empty(&f->idles))
        close_conn(OF(f->idles.next, conn_t, idle));
    settle(f);
    return r;
}

int ws_fetcher_allow(ws_fetcher_t *f, const char *cidr, char *err, size_t errlen)
{
    return policy_changed(f, ws_resolver_allow(&f->resolver, cidr, err, errlen));
}

int ws_fetcher_deny(ws_fetcher_t *f, const char *cidr, char *err, size_t errlen)
{
    return policy_changed(f, ws_resolver_deny(&f->resolver, cidr, err, errlen));
}

int ws_fetcher_permits(const ws_fetcher_t *f, const struct sockaddr *sa)
{
    return ws_resolver_permits(&f->resolver, sa);
}

static void on_handle_closed(uv_handle_t *h)
{
    ws_fetcher_t *f = h->data;
    if (--f->handles == 0)
        free(f);
}

void ws_fetcher_free(ws_fetcher_t *f)
{
    if (!f || f->freed)
        return;
    while (!list_empty(&f->reqs)) {
        ws_fetch_t *x = OF(f->reqs.next, ws_fetch_t, all);
        list_del(&x->all);
        detach(x);
        req_free(x);
    }
    f->freed = 1;
    while (!list_empty(&f->conns)) {
        conn_t *c = OF(f->conns.next, conn_t, all);
        list_del(&c->all);
        if (c->state == C_CONNECTING) {
            ws_tcp_connect_cancel(c->connecting);
            conn_free(c);
            continue;
        }
        if (c->state == C_BUSY || c->state == C_IDLE)
            ws_transport_close(c->t);
        c->f = NULL;
    }
    ws_timers_free(&f->timers);
    ws_resolver_free(&f->resolver);
    ws_tls_ctx_free(f->tls);
    f->tls = NULL;
    f->handles = 2;
    uv_close((uv_handle_t *)&f->timer, on_handle_closed);
    uv_close((uv_handle_t *)&f->idle, on_handle_closed);
}

size_t ws_fetcher_connections(const ws_fetcher_t *f) { return f->nconns; }
size_t ws_fetcher_idle(const ws_fetcher_t *f) { return f->nidle; }

/* --- requests --- */

ws_fetch_t *ws_fetch_start(ws_fetcher_t *f, const ws_fetch_req_t *req, ws_fetch_cb cb, void *ud)
{
    ws_fetch_t *x = ws_calloc(1, sizeof *x);
    const char *m = req->method ? req->method : "GET";
    x->f = f;
    x->cb = cb;
    x->ud = ud;
    list_init(&x->q);
    list_push(&f->reqs, &x->all);
    ws_buf_append(&x->url, req->url, req->url_len);
    ws_buf_append(&x->url, "", 1);
    x->url.len--; /* NUL-terminated */
    x->max_body = req->max_body ? req->max_body : WS_FETCH_MAX_BODY;
    x->follow = req->follow != 0;
    x->no_verify = req->no_verify != 0;
    ws_timer_start(&f->timers, &x->deadline, uv_now(f->io->loop),
                   req->timeout_ms ? req->timeout_ms : WS_FETCH_TIMEOUT_MS, 0, on_deadline);
    strcpy(x->method, "GET");
    char why[128];
    if (!ws_httpc_method_valid(m)) {
        finish(x, "invalid method");
    } else if (!ws_httpc_headers_valid(req->headers, req->headers_len)) {
        finish(x, "invalid headers");
    } else if (ws_url_parse(&x->u, (const char *)x->url.data, x->url.len, why, sizeof why) != 0) {
        fail_fmt(x, "invalid url: ", why);
    } else {
        strcpy(x->method, m);
        x->head = !strcmp(m, "HEAD");
        x->idempotent = x->head || !strcmp(m, "GET") || !strcmp(m, "PUT") || !strcmp(m, "DELETE") ||
                        !strcmp(m, "OPTIONS");
        ws_buf_append(&x->hdrs, req->headers, req->headers_len);
        if (req->body_len)
            x->body = blob_new(req->body, req->body_len);
        route(x);
    }
    settle(f);
    return x;
}

void ws_fetch_cancel(ws_fetch_t *x)
{
    if (!x || x->state == X_DELIVERING)
        return;
    ws_fetcher_t *f = x->f;
    list_del(&x->all);
    detach(x);
    req_free(x);
    settle(f);
}
