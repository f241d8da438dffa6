/* The Redis client: one pipelined connection, kept up, with AUTH and SELECT
 * replayed on each new one. */
#include "redis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

#include "buf.h"
#include "log.h"
#include "mem.h"
#include "resolver.h"
#include "tcp.h"
#include "url.h"

#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 2000

/* --- URLs --- */

static int fail(char *err, size_t errlen, const char *why)
{
    snprintf(err, errlen, "%s", why);
    return -1;
}

static int parse_db(const char *s, size_t n, long *db)
{
    long v = 0;
    if (n == 0 || n > 9)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *db = v;
    return 0;
}

/* unix:///path[?db=N][&user=U][&password=P] */
static int parse_unix(ws_redis_url_t *u, const char *s, size_t len, char *err, size_t errlen)
{
    const char *p = s + 7, *end = s + len;
    const char *q = memchr(p, '?', (size_t)(end - p));
    const char *pe = q ? q : end;
    if (pe == p || *p != '/')
        return fail(err, errlen, "a unix socket's path must be absolute (unix:///path)");
    if ((size_t)(pe - p) >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return fail(err, errlen, "unix socket path too long");
    if (memchr(p, '\0', (size_t)(pe - p)))
        return fail(err, errlen, "NUL in the unix socket path");
    u->path = ws_strndup(p, (size_t)(pe - p));
    int seen_db = 0;
    while (q && q < end) {
        const char *k = q + 1, *amp = memchr(k, '&', (size_t)(end - k));
        const char *ke = amp ? amp : end, *eq = memchr(k, '=', (size_t)(ke - k));
        if (!eq)
            return fail(err, errlen, "a query parameter without '=' (db, user or password)");
        size_t kl = (size_t)(eq - k), vl = (size_t)(ke - eq - 1);
        if ((kl == 2 && memcmp(k, "db", 2) == 0 && seen_db++) ||
            (kl == 4 && memcmp(k, "user", 4) == 0 && u->user) ||
            (kl == 8 && memcmp(k, "password", 8) == 0 && u->password))
            return fail(err, errlen, "a query parameter given twice");
        if (kl == 2 && memcmp(k, "db", 2) == 0) {
            if (parse_db(eq + 1, vl, &u->db) != 0)
                return fail(err, errlen, "bad db (a number, 0 or more)");
        } else if (kl == 4 && memcmp(k, "user", 4) == 0) {
            u->user = vl ? ws_strndup(eq + 1, vl) : NULL;
        } else if (kl == 8 && memcmp(k, "password", 8) == 0) {
            u->password = vl ? ws_strndup(eq + 1, vl) : NULL; /* empty: no AUTH, as redis:// */
        } else {
            return fail(err, errlen, "unknown query parameter (only db, user and password)");
        }
        q = amp;
    }
    return 0;
}

static int parse_tcp(ws_redis_url_t *u, const char *s, size_t len, char *err, size_t errlen)
{
    ws_url_t w;
    if (ws_url_parse_as(&w, s, len, WS_URL_REDIS, err, errlen) != 0)
        return -1;
    int r = 0;
    const char *t = w.target; /* "/", "/db" */
    if (strchr(t, '?'))
        r = fail(err, errlen, "query parameters are not supported in redis:// URLs");
    else if (t[1] && parse_db(t + 1, strlen(t + 1), &u->db) != 0)
        r = fail(err, errlen, "bad db (a number after the host: redis://host:port/db)");
    else if (w.user && *w.user && !*w.pass)
        r = fail(err, errlen, "a user needs a password (redis://user:password@host)");
    if (r == 0) {
        u->host = ws_strndup(w.host, strlen(w.host));
        u->port = w.port;
        if (w.user && *w.user)
            u->user = ws_strndup(w.user, strlen(w.user));
        if (w.pass && *w.pass)
            u->password = ws_strndup(w.pass, strlen(w.pass));
    }
    ws_url_free(&w);
    return r;
}

/* The URL as written, but for the password: "***". */
static void make_display(ws_redis_url_t *u, const char *s, size_t len)
{
    size_t ps = len, pe = len; /* the password's span */
    if (u->path) {
        const char *q = memchr(s, '?', len);
        for (const char *k = q; k && k < s + len;) {
            k++;
            const char *amp = memchr(k, '&', (size_t)(s + len - k));
            if ((size_t)(s + len - k) > 9 && memcmp(k, "password=", 9) == 0) {
                ps = (size_t)(k + 9 - s);
                pe = amp ? (size_t)(amp - s) : len;
            }
            k = amp;
        }
    } else {
        size_t a = 8, e = a, at = len; /* after "redis://" */
        while (e < len && s[e] != '/' && s[e] != '?' && s[e] != '#')
            e++;
        for (size_t i = a; i < e; i++)
            if (s[i] == '@')
                at = i;
        if (at < len) {
            const char *colon = memchr(s + a, ':', at - a);
            if (colon)
                ps = (size_t)(colon + 1 - s), pe = at;
        }
    }
    ws_buf_t b;
    ws_buf_init(&b);
    ws_buf_append(&b, s, ps);
    if (ps < len)
        ws_buf_append_str(&b, "***");
    ws_buf_append(&b, s + pe, len - pe);
    u->display = ws_strndup((const char *)b.data, b.len);
    ws_buf_free(&b);
}

int ws_redis_url_parse(ws_redis_url_t *u, const char *s, size_t len, char *err, size_t errlen)
{
    memset(u, 0, sizeof *u);
    int r = len >= 7 && strncasecmp(s, "unix://", 7) == 0 ? parse_unix(u, s, len, err, errlen)
                                                           : parse_tcp(u, s, len, err, errlen);
    if (r != 0) {
        ws_redis_url_free(u);
        return -1;
    }
    make_display(u, s, len);
    return 0;
}

static void url_copy(ws_redis_url_t *d, const ws_redis_url_t *s)
{
    *d = *s;
#define DUP(f) d->f = s->f ? ws_strndup(s->f, strlen(s->f)) : NULL
    DUP(host);
    DUP(path);
    DUP(user);
    DUP(password);
    DUP(display);
#undef DUP
}

void ws_redis_url_free(ws_redis_url_t *u)
{
    free(u->host);
    free(u->path);
    free(u->user);
    if (u->password)
        memset(u->password, 0, strlen(u->password));
    free(u->password);
    free(u->display);
    memset(u, 0, sizeof *u);
}

/* --- the client --- */

enum { S_IDLE, S_CONNECTING, S_HANDSHAKE, S_READY, S_RETRY };
/* What an internal call is (ws_redis_call_t.internal). */
enum { USER = 0, HS_AUTH, HS_SELECT, HS_PING };

struct ws_redis_call_s {
    ws_redis_call_t *next, *prev;
    ws_redis_t *r;
    char *cmd;            /* the formatted bytes until they are written */
    size_t len;
    uint64_t deadline;    /* loop time, ms */
    uint64_t sent_reads;  /* r->reads when it was written */
    unsigned replies;     /* replies still to read */
    uint8_t sent, internal;
    uint8_t batch;        /* batches (of failures) it is in: they free it */
    uint8_t unlinked;     /* out of the client's list, freed by its batch */
    ws_redis_cb cb;       /* NULL: cancelled or timed out (its reply is dropped) */
    void *ud;
};

typedef struct wr_s wr_t;

struct ws_redis_s {
    ws_io_t *io;
    ws_redis_url_t url;
    ws_redis_opts_t o;
    ws_resolver_t resolver;
    ws_lookup_t *lookup;
    ws_tcp_connect_t *connecting;
    struct sockaddr_storage *addrs; /* the lookup's answer, tried in order */
    size_t naddrs, next_addr;
    ws_transport_t *t;
    wr_t *w;              /* the write in flight */
    ws_buf_t out;         /* bytes for the next write */
    redisReader *rd;
    size_t counted;       /* reader bytes counted in WS_MEM_BUFFERS */
    int state;
    /* Calls in order: those written first (from head), then those waiting
     * for a connection (from unsent). */
    ws_redis_call_t *head, *tail, *unsent;
    size_t nsent, nunsent;
    uint64_t reads;
    uint64_t connects;
    uv_timer_t deadline_timer; /* the earliest deadline of a call */
    uv_timer_t retry_timer;    /* the next connect, or the connect's own deadline */
    unsigned backoff_ms;
    int handles;          /* open handles (timers, transports) */
    int freed;
    int warned;           /* an outage was logged: say when it ends */
    uint64_t rng;         /* for the jitter (per client: workers must not agree) */
    ws_redis_sub_t sub;   /* a subscriber's callbacks, or all NULL */
};

struct wr_s {
    ws_write_t w;
    uv_buf_t iov;
    ws_buf_t data;
    ws_redis_t *r;        /* NULL once the connection it was for is gone */
};

static void start_connect(ws_redis_t *r);
static void drop(ws_redis_t *r, const char *why);
static void flush(ws_redis_t *r);
static void on_deadline(uv_timer_t *h);
static void on_retry(uv_timer_t *h);

/* hiredis's formatter fails only for memory; ws_malloc's policy: die. */
static void out_of_memory(void)
{
    fputs("wspush: out of memory (formatting a Redis command)\n", stderr);
    abort();
}

static uint64_t now_ms(ws_redis_t *r) { return uv_now(r->io->loop); }

static void maybe_free(ws_redis_t *r)
{
    if (r->freed && r->handles == 0) {
        ws_buf_free(&r->out);
        free(r);
    }
}

static void on_handle_closed(uv_handle_t *h)
{
    ws_redis_t *r = h->data;
    r->handles--;
    maybe_free(r);
}

/* -- the call list -- */

static void list_add(ws_redis_t *r, ws_redis_call_t *c)
{
    c->prev = r->tail;
    c->next = NULL;
    if (r->tail)
        r->tail->next = c;
    else
        r->head = c;
    r->tail = c;
    if (!r->unsent)
        r->unsent = c;
    r->nunsent++;
}

static void list_del(ws_redis_t *r, ws_redis_call_t *c)
{
    if (r->unsent == c)
        r->unsent = c->next;
    if (c->prev)
        c->prev->next = c->next;
    else
        r->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        r->tail = c->prev;
    if (c->sent)
        r->nsent--;
    else
        r->nunsent--;
}

static void call_free(ws_redis_call_t *c)
{
    if (c->cmd) {
        ws_mem_sub(WS_MEM_BUFFERS, c->len);
        free(c->cmd);
    }
    free(c);
}

static ws_redis_call_t *call_new(ws_redis_t *r, char *cmd, size_t len, unsigned replies)
{
    ws_redis_call_t *c = ws_calloc(1, sizeof *c);
    c->cmd = cmd;
    c->len = len;
    ws_mem_add(WS_MEM_BUFFERS, len);
    c->replies = replies;
    c->deadline = now_ms(r) + r->o.timeout_ms;
    c->r = r;
    return c;
}

/* -- writing -- */

static void on_written(ws_write_t *ww, int status, int waited)
{
    (void)waited;
    wr_t *w = ww->data;
    ws_redis_t *r = w->r;
    ws_write_release(&w->w);
    ws_buf_free(&w->data);
    free(w);
    if (!r)
        return;
    r->w = NULL;
    if (status < 0) {
        drop(r, uv_strerror(status));
        return;
    }
    flush(r);
}

static void flush(ws_redis_t *r)
{
    if (r->w || !r->t || r->out.len == 0)
        return;
    wr_t *w = ws_calloc(1, sizeof *w);
    w->data = r->out; /* the buffer moves to the write */
    ws_buf_init(&r->out);
    w->iov.base = (char *)w->data.data;
    w->iov.len = w->data.len;
    w->w.iov = &w->iov;
    w->w.n = 1;
    w->w.unsent = w->data.len;
    w->w.cb = on_written;
    w->w.data = w;
    w->r = r;
    r->w = w;
    int rc = ws_transport_write(r->t, &w->w);
    if (rc < 0) {
        r->w = NULL;
        ws_buf_free(&w->data);
        free(w);
        drop(r, uv_strerror(rc));
    }
}

/* Move c from the unsent calls to the written ones (c is r->unsent). */
static void write_call(ws_redis_t *r, ws_redis_call_t *c)
{
    ws_buf_append(&r->out, c->cmd, c->len);
    ws_mem_sub(WS_MEM_BUFFERS, c->len);
    free(c->cmd);
    c->cmd = NULL;
    c->sent = 1;
    c->sent_reads = r->reads;
    r->unsent = c->next;
    r->nunsent--;
    r->nsent++;
}

static void write_unsent(ws_redis_t *r)
{
    while (r->unsent)
        write_call(r, r->unsent);
    flush(r);
}

/* -- deadlines -- */

/* c has a deadline: the timer fires by then. Every call has the same
 * timeout, so the timer rarely moves (only when the timeout was lowered). */
static void arm_deadline(ws_redis_t *r, const ws_redis_call_t *c)
{
    uint64_t now = now_ms(r), in = c->deadline > now ? c->deadline - now : 0;
    if (!uv_is_active((uv_handle_t *)&r->deadline_timer) ||
        uv_timer_get_due_in(&r->deadline_timer) > in)
        uv_timer_start(&r->deadline_timer, on_deadline, in, 0);
}

/* Calls that fail together. Their callbacks may cancel any call, start
 * new ones, or (through a write that fails) drop the connection: so a call
 * in a batch is only marked by the others (cancelled: no callback;
 * unlinked: out of the list), and the batch frees what is unlinked once
 * every callback has run. */
typedef struct {
    ws_redis_call_t **v;
    size_t n, cap;
} batch_t;

static void batch_add(batch_t *b, ws_redis_call_t *c)
{
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 16;
        b->v = ws_realloc(b->v, b->cap * sizeof *b->v);
    }
    c->batch++;
    b->v[b->n++] = c;
}

/* Take c out of the list into b (a call some batch holds already stays
 * that batch's, which frees it). */
static void batch_take(ws_redis_t *r, batch_t *b, ws_redis_call_t *c)
{
    list_del(r, c);
    c->unlinked = 1;
    c->next = c->prev = NULL;
    if (!c->batch)
        batch_add(b, c);
}

static void batch_fail(batch_t *b, const char *error)
{
    for (size_t i = 0; i < b->n; i++) {
        ws_redis_call_t *c = b->v[i];
        ws_redis_cb cb = c->cb;
        c->cb = NULL;
        if (cb && !c->internal)
            cb(c->ud, NULL, error);
    }
    for (size_t i = 0; i < b->n; i++) {
        ws_redis_call_t *c = b->v[i];
        if (--c->batch == 0 && c->unlinked)
            call_free(c);
    }
    free(b->v);
}

static void on_deadline(uv_timer_t *h)
{
    ws_redis_t *r = h->data;
    uint64_t now = now_ms(r), next = UINT64_MAX;
    batch_t expired = {0};
    int stuck = 0;
    for (ws_redis_call_t *c = r->head, *n; c; c = n) {
        n = c->next;
        if (c->deadline > now) {
            if ((c->cb || c->internal) && c->deadline < next)
                next = c->deadline;
            continue;
        }
        if (c->sent) {
            /* its reply, when it comes, is dropped in its place */
            if (c->sent_reads == r->reads)
                stuck = 1;
            c->deadline = UINT64_MAX;
            if (c->cb && !c->batch)
                batch_add(&expired, c); /* stays in the list */
        } else {
            batch_take(r, &expired, c);
        }
    }
    if (stuck && r->t)
        drop(r, "no answer within the timeout");
    if (next != UINT64_MAX)
        uv_timer_start(&r->deadline_timer, on_deadline, next - now, 0);
    batch_fail(&expired, "timeout");
}

/* -- reading -- */

static void count_reader(ws_redis_t *r)
{
    size_t n = r->rd ? r->rd->len : 0;
    if (n > r->counted)
        ws_mem_add(WS_MEM_BUFFERS, n - r->counted);
    else
        ws_mem_sub(WS_MEM_BUFFERS, r->counted - n);
    r->counted = n;
}

/* Logged in: send what waited, and say so if an outage was logged. */
static void ready(ws_redis_t *r)
{
    r->state = S_READY;
    r->backoff_ms = 0;
    if (r->warned)
        ws_log_info("redis %s: connected", r->url.display);
    else
        ws_log_debug("redis %s: connected", r->url.display);
    r->warned = 0;
    write_unsent(r);
    if (r->sub.state)
        r->sub.state(r->sub.ud, 1);
}

static void handshake_reply(ws_redis_t *r, ws_redis_call_t *c, const redisReply *rep)
{
    if (rep->type == REDIS_REPLY_ERROR) {
        char text[256];
        snprintf(text, sizeof text, "%.*s", (int)rep->len, rep->str);
        if (!r->warned)
            ws_log_warn("redis %s: %s refused: %s", r->url.display,
                        c->internal == HS_AUTH     ? "AUTH"
                        : c->internal == HS_SELECT ? "SELECT"
                                                   : "PING",
                        text);
        r->warned = 1;
        /* the calls waiting would otherwise wait for a login that keeps failing */
        batch_t refused = {0};
        for (ws_redis_call_t *u = r->unsent, *n; u; u = n) {
            n = u->next;
            if (!u->internal)
                batch_take(r, &refused, u);
        }
        drop(r, NULL);
        batch_fail(&refused, text);
        return;
    }
    /* the last handshake call answered: the connection is ready */
    for (ws_redis_call_t *o = r->head; o; o = o->next)
        if (o->internal)
            return;
    ready(r);
}

static int is_message(const redisReply *rep)
{
    return rep->type == REDIS_REPLY_ARRAY && rep->elements == 3 &&
           rep->element[0]->type == REDIS_REPLY_STRING && rep->element[0]->len == 7 &&
           memcmp(rep->element[0]->str, "message", 7) == 0;
}

static void on_read(void *ud, uint8_t *data, size_t len)
{
    ws_redis_t *r = ud;
    ws_transport_t *t = r->t;
    r->reads++;
    if (redisReaderFeed(r->rd, (const char *)data, len) != REDIS_OK) {
        drop(r, r->rd->errstr);
        return;
    }
    while (r->t == t) {
        void *reply = NULL;
        if (redisReaderGetReply(r->rd, &reply) != REDIS_OK) {
            char why[160];
            snprintf(why, sizeof why, "protocol error: %s", r->rd->errstr);
            drop(r, why);
            return;
        }
        if (!reply)
            break;
        if (r->sub.push && is_message(reply)) {
            r->sub.push(r->sub.ud, reply);
            freeReplyObject(reply);
            continue;
        }
        ws_redis_call_t *c = r->head;
        if (!c || !c->sent) {
            freeReplyObject(reply);
            drop(r, "a reply nobody asked for");
            return;
        }
        if (--c->replies > 0) { /* a unit's replies before its last */
            freeReplyObject(reply);
            continue;
        }
        list_del(r, c);
        if (c->internal)
            handshake_reply(r, c, reply);
        else if (c->cb)
            c->cb(c->ud, reply, NULL);
        freeReplyObject(reply);
        call_free(c);
    }
    if (r->t != t)
        return;
    count_reader(r);
    if (r->rd->len - r->rd->pos > WS_REDIS_MAX_REPLY) {
        ws_redis_call_t *c = r->head;
        if (c && c->cb && !c->internal) {
            ws_redis_cb cb = c->cb;
            c->cb = NULL;
            cb(c->ud, NULL, "reply too large");
        }
        drop(r, "a reply over 64 MiB");
    }
}

/* -- the connection -- */

static void on_end(void *ud, int err)
{
    ws_redis_t *r = ud;
    drop(r, err == UV_EOF ? "closed by Redis" : uv_strerror(err));
}

static void on_shutdown(void *ud, int status) { (void)ud, (void)status; }

static void on_close(void *ud)
{
    ws_redis_t *r = ud;
    r->handles--;
    maybe_free(r);
}

static const ws_transport_cb_t redis_cb = {on_read, on_end, on_shutdown, on_close};

static void schedule_retry(ws_redis_t *r)
{
    if (r->freed)
        return;
    r->backoff_ms = r->backoff_ms ? r->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (r->backoff_ms > BACKOFF_MAX_MS)
        r->backoff_ms = BACKOFF_MAX_MS;
    /* jitter: the upper half of the delay, so that clients that lost the
     * same Redis do not all come back at the same moment */
    r->rng ^= r->rng << 13, r->rng ^= r->rng >> 7, r->rng ^= r->rng << 17; /* xorshift64 */
    unsigned half = r->backoff_ms / 2;
    unsigned delay = half + (unsigned)(r->rng % (half + 1));
    r->state = S_RETRY;
    uv_timer_start(&r->retry_timer, on_retry, delay, 0);
}

/* Close the connection or stop the attempt. */
static void disconnect(ws_redis_t *r)
{
    if (r->connecting) {
        ws_tcp_connect_cancel(r->connecting);
        r->connecting = NULL;
    }
    if (r->lookup) {
        ws_lookup_cancel(r->lookup);
        r->lookup = NULL;
    }
    if (r->t) {
        ws_transport_close(r->t);
        r->t = NULL;
    }
    if (r->w) {
        r->w->r = NULL;
        r->w = NULL;
    }
    ws_buf_reset(&r->out, 0);
    redisReaderFree(r->rd);
    r->rd = NULL;
    count_reader(r);
}

/* The connection is gone (or never came): the calls written on it fail,
 * the others wait for the next one. why NULL: already logged. */
static void drop(ws_redis_t *r, const char *why)
{
    if (r->state != S_CONNECTING && !r->t)
        return;
    int was_ready = r->state == S_READY;
    if (why) {
        if (!r->warned)
            ws_log_warn("redis %s: %s %s; reconnecting", r->url.display,
                        r->t ? "connection lost:" : "cannot connect:", why);
        else
            ws_log_debug("redis %s: %s", r->url.display, why);
        r->warned = 1;
    }
    disconnect(r);
    /* What was written may have run: fail it, never send it again. The
     * handshake's own calls not yet written go too. */
    batch_t lost = {0};
    for (ws_redis_call_t *c = r->head, *n; c; c = n) {
        n = c->next;
        if (c->sent || c->internal)
            batch_take(r, &lost, c);
    }
    uv_timer_stop(&r->retry_timer);
    schedule_retry(r);
    batch_fail(&lost, "connection lost");
    if (was_ready && r->sub.state && !r->freed)
        r->sub.state(r->sub.ud, 0);
}

static void start_handshake(ws_redis_t *r)
{
    r->state = S_HANDSHAKE;
    r->rd = redisReaderCreate();
    r->connects++;
    ws_redis_call_t *first = r->unsent;
    const char *argv[3];
    size_t lens[3];
    int argc = 0;
    for (int step = HS_AUTH; step <= HS_PING; step++) {
        char dbs[24];
        if (step == HS_AUTH && r->url.password) {
            argv[argc] = "AUTH", lens[argc++] = 4;
            if (r->url.user)
                argv[argc] = r->url.user, lens[argc] = strlen(r->url.user), argc++;
            argv[argc] = r->url.password, lens[argc] = strlen(r->url.password), argc++;
        } else if (step == HS_SELECT && r->url.db) {
            int n = snprintf(dbs, sizeof dbs, "%ld", r->url.db);
            argv[0] = "SELECT", lens[0] = 6, argv[1] = dbs, lens[1] = (size_t)n, argc = 2;
        } else if (step == HS_PING && r->o.verify) {
            argv[0] = "PING", lens[0] = 4, argc = 1;
        } else {
            continue;
        }
        char *cmd;
        int n = redisFormatCommandArgv(&cmd, argc, argv, lens);
        if (n < 0)
            out_of_memory();
        ws_redis_call_t *c = call_new(r, cmd, (size_t)n, 1);
        c->internal = (uint8_t)step;
        arm_deadline(r, c);
        /* before the calls that waited for the connection */
        c->next = first;
        c->prev = first ? first->prev : r->tail;
        if (c->prev)
            c->prev->next = c;
        else
            r->head = c;
        if (first)
            first->prev = c;
        else
            r->tail = c;
        r->nunsent++;
        r->unsent = c;
        write_call(r, c);
        argc = 0;
    }
    if (r->nsent == 0) {
        ready(r);
    } else {
        flush(r);
    }
}

static void try_next_addr(ws_redis_t *r);

static void on_connect(void *ud, ws_transport_t *t, int status)
{
    ws_redis_t *r = ud;
    r->connecting = NULL;
    if (status < 0 || !t) {
        if (r->url.path || r->next_addr >= r->naddrs) {
            uv_timer_stop(&r->retry_timer);
            drop(r, uv_strerror(status));
        } else {
            try_next_addr(r);
        }
        return;
    }
    uv_timer_stop(&r->retry_timer);
    r->t = t;
    r->handles++;
    ws_transport_start(t, &redis_cb, r);
    start_handshake(r);
}

static void try_next_addr(ws_redis_t *r)
{
    while (r->next_addr < r->naddrs) {
        const struct sockaddr *sa = (const struct sockaddr *)&r->addrs[r->next_addr++];
        if (ws_tcp_connect(r->io, sa, on_connect, r, &r->connecting) == 0)
            return;
    }
    uv_timer_stop(&r->retry_timer);
    drop(r, "no address could be tried");
}

static void on_lookup(void *ud, const struct sockaddr_storage *addrs, size_t n, const char *error)
{
    ws_redis_t *r = ud;
    r->lookup = NULL;
    if (n == 0) {
        uv_timer_stop(&r->retry_timer);
        drop(r, error);
        return;
    }
    free(r->addrs);
    r->addrs = ws_malloc(n * sizeof *addrs);
    memcpy(r->addrs, addrs, n * sizeof *addrs);
    r->naddrs = n;
    r->next_addr = 0;
    try_next_addr(r);
}

static void on_retry(uv_timer_t *h)
{
    ws_redis_t *r = h->data;
    if (r->state == S_CONNECTING) {
        drop(r, "connect timed out");
        return;
    }
    start_connect(r);
}

static void start_connect(ws_redis_t *r)
{
    r->state = S_CONNECTING;
    /* the connect's own deadline: a SYN nobody answers */
    uv_timer_start(&r->retry_timer, on_retry, r->o.timeout_ms, 0);
    if (r->url.path) {
        ws_tcp_connect_unix(r->io, r->url.path, on_connect, r, &r->connecting);
        return;
    }
    /* a lookup answered at once (an IP literal) has run on_lookup and is NULL */
    ws_lookup_t *l = ws_lookup_start(&r->resolver, r->url.host, r->url.port, on_lookup, r);
    if (l)
        r->lookup = l;
}

/* -- the API -- */

static void set_opts(ws_redis_t *r, const ws_redis_opts_t *o)
{
    r->o.timeout_ms = o && o->timeout_ms ? o->timeout_ms : WS_REDIS_TIMEOUT_MS;
    r->o.max_queued = o && o->max_queued ? o->max_queued : WS_REDIS_MAX_QUEUED;
    r->o.verify = o && o->verify;
}

ws_redis_t *ws_redis_new(ws_io_t *io, const ws_redis_url_t *u, const ws_redis_opts_t *o)
{
    ws_redis_t *r = ws_calloc(1, sizeof *r);
    r->io = io;
    url_copy(&r->url, u);
    set_opts(r, o);
    ws_resolver_init(&r->resolver, io->loop);
    ws_buf_init(&r->out);
    uv_timer_init(io->loop, &r->deadline_timer);
    uv_timer_init(io->loop, &r->retry_timer);
    r->deadline_timer.data = r->retry_timer.data = r;
    r->handles = 2;
    r->rng = uv_hrtime() ^ (uint64_t)(uintptr_t)r;
    if (!r->rng)
        r->rng = 1;
    return r;
}

void ws_redis_set_opts(ws_redis_t *r, const ws_redis_opts_t *o) { set_opts(r, o); }

const char *ws_redis_display(const ws_redis_t *r) { return r->url.display; }

ws_redis_call_t *ws_redis_call(ws_redis_t *r, unsigned ncmds, const int *argc, const char **argv,
                               const size_t *lens, ws_redis_cb cb, void *ud, const char **error)
{
    if (r->state != S_READY && r->nunsent >= r->o.max_queued) {
        *error = "redis unavailable";
        return NULL;
    }
    ws_buf_t all;
    ws_buf_init(&all);
    char *cmd = NULL;
    size_t len = 0;
    for (unsigned i = 0, at = 0; i < ncmds; at += (unsigned)argc[i], i++) {
        char *one;
        int n = redisFormatCommandArgv(&one, argc[i], argv + at, lens + at);
        if (n < 0)
            out_of_memory();
        if (ncmds == 1) {
            cmd = one, len = (size_t)n;
        } else {
            ws_buf_append(&all, one, (size_t)n);
            redisFreeCommand(one);
        }
    }
    if (ncmds > 1) {
        cmd = ws_malloc(all.len);
        memcpy(cmd, all.data, all.len);
        len = all.len;
    }
    ws_buf_free(&all);
    ws_redis_call_t *c = call_new(r, cmd, len, ncmds);
    c->cb = cb;
    c->ud = ud;
    list_add(r, c);
    if (r->state == S_READY) {
        write_call(r, c);
        flush(r);
    } else if (r->state == S_IDLE) {
        start_connect(r);
    }
    arm_deadline(r, c);
    return c;
}

void ws_redis_cancel(ws_redis_call_t *c)
{
    if (!c)
        return;
    c->cb = NULL;
    c->ud = NULL;
    if (!c->sent && !c->batch) { /* nothing will answer it */
        list_del(c->r, c);
        call_free(c);
    }
}

void ws_redis_free(ws_redis_t *r)
{
    if (!r)
        return;
    r->freed = 1;
    disconnect(r);
    uv_timer_stop(&r->retry_timer);
    while (r->head) {
        ws_redis_call_t *c = r->head;
        list_del(r, c);
        call_free(c);
    }
    free(r->addrs);
    ws_resolver_free(&r->resolver);
    ws_redis_url_free(&r->url);
    uv_close((uv_handle_t *)&r->deadline_timer, on_handle_closed);
    uv_close((uv_handle_t *)&r->retry_timer, on_handle_closed);
}

void ws_redis_set_subscriber(ws_redis_t *r, const ws_redis_sub_t *s) { r->sub = *s; }

void ws_redis_connect(ws_redis_t *r)
{
    if (r->state == S_IDLE)
        start_connect(r);
}

int ws_redis_ready(const ws_redis_t *r) { return r->state == S_READY; }

void ws_redis_stats(const ws_redis_t *r, ws_redis_stats_t *s)
{
    s->connected = r->state == S_READY;
    s->connects = r->connects;
    s->in_flight = r->nsent;
    s->queued = r->nunsent;
}
