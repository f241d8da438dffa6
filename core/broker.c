#include "broker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "buf.h"
#include "fnv.h"
#include "log.h"
#include "redis.h"

#define HDR 20
#define VERSION 1
/* Topics remembered only for their publish counter, beyond which those
 * counters start again from 1 (a receiver sees a restart, not a gap). */
#define SEQ_ONLY_MAX 65536

typedef struct origin_s {
    struct origin_s *next;
    uint64_t node;
    unsigned worker;
    uint64_t last;
} origin_t;

typedef struct topic_s {
    struct topic_s *next;
    uint64_t hash;
    size_t len;
    uint64_t seq;        /* this worker's publishes on it */
    origin_t *origins;   /* the publishers heard, while wanted */
    int want;
    char name[];
} topic_t;

typedef struct {
    ws_broker_t *b;
    ws_redis_url_t url;
    ws_redis_t *pub, *sub;
    int up;              /* the subscriber is logged in */
    int ever_up;
    uint64_t down_at;    /* loop time it was lost */
    uv_timer_t ping;
    ws_redis_call_t *pinging;
} shard_t;

struct ws_broker_s {
    ws_io_t *io;
    ws_broker_cb_t cb;
    char *prefix;
    size_t plen;
    uint64_t node;
    unsigned worker;
    uint32_t ping_ms;
    shard_t shards[WS_BROKER_MAX_SHARDS];
    unsigned nshards;
    topic_t **buckets;
    size_t nbuckets, ntopics, nseq_only;
    ws_buf_t scratch;
    ws_broker_stats_t st;
    int closing;         /* timers still to close before b is freed */
};

/* ---- topics ---- */

static topic_t **slot(ws_broker_t *b, const char *name, size_t len, uint64_t h)
{
    topic_t **p = &b->buckets[h & (b->nbuckets - 1)];
    while (*p && !((*p)->hash == h && (*p)->len == len && memcmp((*p)->name, name, len) == 0))
        p = &(*p)->next;
    return p;
}

static void grow(ws_broker_t *b)
{
    size_t nb = b->nbuckets * 2;
    topic_t **nbk = ws_calloc(nb, sizeof *nbk);
    for (size_t i = 0; i < b->nbuckets; i++) {
        for (topic_t *t = b->buckets[i], *n; t; t = n) {
            n = t->next;
            t->next = nbk[t->hash & (nb - 1)];
            nbk[t->hash & (nb - 1)] = t;
        }
    }
    free(b->buckets);
    b->buckets = nbk;
    b->nbuckets = nb;
}

static topic_t *topic_get(ws_broker_t *b, const char *name, size_t len, int create)
{
    uint64_t h = ws_fnv(name, len);
    topic_t **p = slot(b, name, len, h);
    if (*p || !create)
        return *p;
    topic_t *t = ws_calloc(1, sizeof *t + len + 1);
    memcpy(t->name, name, len);
    t->len = len;
    t->hash = h;
    *p = t;
    if (++b->ntopics > b->nbuckets)
        grow(b);
    return t;
}

static void forget_origins(topic_t *t)
{
    while (t->origins) {
        origin_t *o = t->origins;
        t->origins = o->next;
        free(o);
    }
}

static void topic_drop(ws_broker_t *b, topic_t *t)
{
    topic_t **p = slot(b, t->name, t->len, t->hash);
    *p = t->next;
    forget_origins(t);
    free(t);
    b->ntopics--;
}

/* Drop the topics kept only for their publish counter. */
static void forget_counters(ws_broker_t *b)
{
    for (size_t i = 0; i < b->nbuckets; i++) {
        for (topic_t *t = b->buckets[i], *n; t; t = n) {
            n = t->next;
            if (!t->want)
                topic_drop(b, t);
        }
    }
    b->nseq_only = 0;
}

static shard_t *shard_of(ws_broker_t *b, uint64_t hash) { return &b->shards[hash % b->nshards]; }

/* ---- subscribing ---- */

static void ignore_reply(void *ud, const redisReply *reply, const char *error)
{
    (void)ud, (void)reply, (void)error;
}

/* SUBSCRIBE or UNSUBSCRIBE prefix..topic on s's subscriber. */
static void subscription(shard_t *s, const char *cmd, const topic_t *t)
{
    ws_broker_t *b = s->b;
    ws_buf_reset(&b->scratch, 4096);
    ws_buf_append(&b->scratch, b->prefix, b->plen);
    ws_buf_append(&b->scratch, t->name, t->len);
    int argc = 2;
    const char *argv[2] = {cmd, (const char *)b->scratch.data};
    size_t lens[2] = {strlen(cmd), b->scratch.len};
    const char *err;
    ws_redis_call(s->sub, 1, &argc, argv, lens, ignore_reply, NULL, &err);
}

void ws_broker_want(ws_broker_t *b, const char *topic, size_t tlen, int want)
{
    topic_t *t = topic_get(b, topic, tlen, want);
    if (!t || t->want == want)
        return;
    t->want = want;
    shard_t *s = shard_of(b, t->hash);
    if (want) {
        b->st.topics++;
        if (t->seq)
            b->nseq_only--;
        /* Not connected: the login subscribes to every topic wanted. */
        if (s->up)
            subscription(s, "SUBSCRIBE", t);
        return;
    }
    b->st.topics--;
    if (s->up)
        subscription(s, "UNSUBSCRIBE", t);
    forget_origins(t);
    if (t->seq)
        b->nseq_only++;
    else
        topic_drop(b, t);
}

static void on_pong(void *ud, const redisReply *reply, const char *error)
{
    shard_t *s = ud;
    (void)reply, (void)error;
    s->pinging = NULL;
}

static void on_ping_timer(uv_timer_t *h)
{
    shard_t *s = h->data;
    if (!s->up || s->pinging)
        return;
    int argc = 1;
    const char *argv[1] = {"PING"};
    size_t lens[1] = {4};
    const char *err;
    s->pinging = ws_redis_call(s->sub, 1, &argc, argv, lens, on_pong, s, &err);
}

static void event(ws_broker_t *b, const char *what, shard_t *s, const topic_t *t, uint64_t missed)
{
    if (!b->cb.event)
        return;
    ws_broker_event_t e = {what, s ? s->url.display : "", t ? t->name : NULL, t ? t->len : 0,
                           missed};
    b->cb.event(b->cb.ud, &e);
}

static void on_state(void *ud, int up)
{
    shard_t *s = ud;
    ws_broker_t *b = s->b;
    uint64_t now = uv_now(b->io->loop);
    if (!up) {
        if (!s->up)
            return;
        s->up = 0;
        s->pinging = NULL; /* failed with the connection */
        s->down_at = now;
        b->st.up--;
        ws_log_warn("broker %s: lost; publishes still reach this node's subscribers, other "
                    "nodes' do not arrive until it is back",
                    s->url.display);
        event(b, "down", s, NULL, 0);
        return;
    }
    /* A new session: it holds no subscription. */
    size_t n = 0;
    for (size_t i = 0; i < b->nbuckets; i++) {
        for (topic_t *t = b->buckets[i]; t; t = t->next) {
            if (t->want && shard_of(b, t->hash) == s) {
                subscription(s, "SUBSCRIBE", t);
                n++;
            }
        }
    }
    s->up = 1;
    b->st.up++;
    if (s->ever_up) {
        b->st.reconnects++;
        ws_log_warn("broker %s: back after %.1f s, subscribed again to %zu topics; messages "
                    "other nodes published meanwhile did not reach this node",
                    s->url.display, (double)(now - s->down_at) / 1000, n);
    } else {
        ws_log_info("broker %s: connected, %zu topics", s->url.display, n);
    }
    s->ever_up = 1;
    event(b, "up", s, NULL, 0);
}

/* ---- receiving ---- */

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void on_message(void *ud, const redisReply *m)
{
    shard_t *s = ud;
    ws_broker_t *b = s->b;
    const redisReply *ch = m->element[1], *pl = m->element[2];
    if (ch->type != REDIS_REPLY_STRING || pl->type != REDIS_REPLY_STRING || ch->len < b->plen ||
        memcmp(ch->str, b->prefix, b->plen) != 0 || pl->len < HDR)
        return;
    const uint8_t *e = (const uint8_t *)pl->str;
    if (e[0] != VERSION)
        return; /* a newer wspush's envelope: not ours to guess */
    uint64_t node = get64(e + 2);
    unsigned worker = (unsigned)e[10] | (unsigned)e[11] << 8;
    uint64_t seq = get64(e + 12);
    if (node == b->node)
        return; /* this node's own: its workers' mailboxes delivered it */
    topic_t *t = topic_get(b, ch->str + b->plen, ch->len - b->plen, 0);
    if (!t || !t->want)
        return;
    b->st.received++;
    origin_t *o = t->origins;
    while (o && !(o->node == node && o->worker == worker))
        o = o->next;
    if (!o) {
        o = ws_calloc(1, sizeof *o);
        o->node = node;
        o->worker = worker;
        o->next = t->origins;
        t->origins = o;
    } else if (seq > o->last + 1) {
        uint64_t missed = seq - o->last - 1;
        b->st.gaps++;
        b->st.missed += missed;
        o->last = seq;
        event(b, "gap", s, t, missed);
        /* The handler may have unsubscribed its last client: t may be gone. */
        t = topic_get(b, ch->str + b->plen, ch->len - b->plen, 0);
        if (!t || !t->want)
            return;
    }
    /* seq <= last: the publisher started again (a restarted worker). */
    o->last = seq;
    b->cb.deliver(b->cb.ud, t->name, t->len, e[1], pl->str + HDR, pl->len - HDR);
}

/* ---- publishing ---- */

static void on_published(void *ud, const redisReply *reply, const char *error)
{
    ws_broker_t *b = ud;
    if (error || (reply && reply->type == REDIS_REPLY_ERROR))
        b->st.publish_failed++;
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

int ws_broker_publish(ws_broker_t *b, const char *topic, size_t tlen, unsigned op,
                      const void *data, size_t dlen)
{
    topic_t *t = topic_get(b, topic, tlen, 1);
    shard_t *s = shard_of(b, t->hash);
    if (!ws_redis_ready(s->pub)) {
        b->st.publish_failed++;
        if (!t->want && !t->seq)
            topic_drop(b, t);
        return -1;
    }
    if (!t->want && !t->seq && ++b->nseq_only > SEQ_ONLY_MAX) {
        forget_counters(b);
        t = topic_get(b, topic, tlen, 1);
        b->nseq_only = 1;
    }
    uint8_t hdr[HDR];
    hdr[0] = VERSION;
    hdr[1] = (uint8_t)op;
    put64(hdr + 2, b->node);
    hdr[10] = (uint8_t)b->worker;
    hdr[11] = (uint8_t)(b->worker >> 8);
    put64(hdr + 12, ++t->seq);
    ws_buf_reset(&b->scratch, 65536);
    ws_buf_append(&b->scratch, b->prefix, b->plen);
    ws_buf_append(&b->scratch, topic, tlen);
    size_t chlen = b->scratch.len;
    ws_buf_append(&b->scratch, hdr, HDR);
    ws_buf_append(&b->scratch, data, dlen);
    int argc = 3;
    const char *argv[3] = {"PUBLISH", (const char *)b->scratch.data,
                           (const char *)b->scratch.data + chlen};
    size_t lens[3] = {7, chlen, HDR + dlen};
    const char *err;
    if (!ws_redis_call(s->pub, 1, &argc, argv, lens, on_published, b, &err)) {
        b->st.publish_failed++;
        return -1;
    }
    b->st.published++;
    return 0;
}

/* ---- the client ---- */

ws_broker_t *ws_broker_new(ws_io_t *io, const ws_broker_config_t *c, const ws_broker_cb_t *cb,
                           char *err, size_t errlen)
{
    ws_broker_t *b = ws_calloc(1, sizeof *b);
    b->io = io;
    b->cb = *cb;
    b->prefix = ws_strndup(c->prefix ? c->prefix : "", c->prefix ? strlen(c->prefix) : 0);
    b->plen = strlen(b->prefix);
    b->node = c->node;
    b->worker = c->worker;
    b->ping_ms = c->ping_ms ? c->ping_ms : 5000;
    b->nbuckets = 64;
    b->buckets = ws_calloc(b->nbuckets, sizeof *b->buckets);
    ws_redis_opts_t o = {.timeout_ms = c->timeout_ms ? c->timeout_ms : 3000, .max_queued = 100000,
                         .verify = 1};
    for (const char *p = c->urls; *p;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (b->nshards == WS_BROKER_MAX_SHARDS) {
            snprintf(err, errlen, "--broker: at most %d Redis servers", WS_BROKER_MAX_SHARDS);
            ws_broker_free(b);
            return NULL;
        }
        shard_t *s = &b->shards[b->nshards];
        char why[256];
        if (ws_redis_url_parse(&s->url, p, n, why, sizeof why) != 0) {
            snprintf(err, errlen, "--broker: %s", why);
            ws_broker_free(b);
            return NULL;
        }
        s->b = b;
        s->pub = ws_redis_new(io, &s->url, &o);
        s->sub = ws_redis_new(io, &s->url, &o);
        ws_redis_sub_t sub = {on_message, on_state, s};
        ws_redis_set_subscriber(s->sub, &sub);
        uv_timer_init(io->loop, &s->ping);
        s->ping.data = s;
        b->nshards++;
        p += n + (comma ? 1 : 0);
    }
    if (!b->nshards) {
        snprintf(err, errlen, "--broker: no Redis URL");
        ws_broker_free(b);
        return NULL;
    }
    b->st.shards = b->nshards;
    return b;
}

void ws_broker_start(ws_broker_t *b)
{
    for (unsigned i = 0; i < b->nshards; i++) {
        shard_t *s = &b->shards[i];
        ws_redis_connect(s->pub);
        ws_redis_connect(s->sub);
        uv_timer_start(&s->ping, on_ping_timer, b->ping_ms, b->ping_ms);
    }
}

void ws_broker_stats(const ws_broker_t *b, ws_broker_stats_t *s) { *s = b->st; }

static void on_timer_closed(uv_handle_t *h)
{
    ws_broker_t *b = ((shard_t *)h->data)->b;
    if (--b->closing == 0)
        free(b);
}

void ws_broker_free(ws_broker_t *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->nbuckets; i++)
        while (b->buckets[i])
            topic_drop(b, b->buckets[i]);
    free(b->buckets);
    free(b->prefix);
    ws_buf_free(&b->scratch);
    for (unsigned i = 0; i < b->nshards; i++) {
        shard_t *s = &b->shards[i];
        ws_redis_free(s->pub);
        ws_redis_free(s->sub);
        ws_redis_url_free(&s->url);
        b->closing++;
        uv_close((uv_handle_t *)&s->ping, on_timer_closed);
    }
    if (!b->closing)
        free(b);
}
