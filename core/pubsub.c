#include "pubsub.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "conn.h"
#include "deflate.h"
#include "frame.h"

struct ws_topic_s {
    ws_topic_t *next; /* hash chain */
    uint64_t hash;
    ws_sub_t **subs;
    size_t nsubs, cap;
    size_t len;
    char name[];
};

static uint64_t hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 1099511628211ULL;
    return h;
}

void ws_pubsub_init(ws_pubsub_t *ps)
{
    ps->nbuckets = 64;
    ps->buckets = ws_calloc(ps->nbuckets, sizeof *ps->buckets);
    ps->ntopics = 0;
}

void ws_pubsub_free(ws_pubsub_t *ps)
{
    for (size_t i = 0; i < ps->nbuckets; i++) {
        ws_topic_t *t = ps->buckets[i];
        while (t) {
            ws_topic_t *n = t->next;
            free(t->subs);
            free(t);
            t = n;
        }
    }
    free(ps->buckets);
    ps->buckets = NULL;
}

static ws_topic_t **slot(ws_pubsub_t *ps, const char *name, size_t len, uint64_t h)
{
    ws_topic_t **p = &ps->buckets[h & (ps->nbuckets - 1)];
    while (*p && !((*p)->hash == h && (*p)->len == len && memcmp((*p)->name, name, len) == 0))
        p = &(*p)->next;
    return p;
}

static void grow(ws_pubsub_t *ps)
{
    size_t nb = ps->nbuckets * 2;
    ws_topic_t **b = ws_calloc(nb, sizeof *b);
    for (size_t i = 0; i < ps->nbuckets; i++) {
        ws_topic_t *t = ps->buckets[i];
        while (t) {
            ws_topic_t *n = t->next;
            t->next = b[t->hash & (nb - 1)];
            b[t->hash & (nb - 1)] = t;
            t = n;
        }
    }
    free(ps->buckets);
    ps->buckets = b;
    ps->nbuckets = nb;
}

int ws_pubsub_subscribe(ws_pubsub_t *ps, ws_conn_t *c, const char *name, size_t len)
{
    for (size_t i = 0; i < c->nsubs; i++)
        if (c->subs[i]->topic->len == len && memcmp(c->subs[i]->topic->name, name, len) == 0)
            return 0;
    uint64_t h = hash(name, len);
    ws_topic_t **p = slot(ps, name, len, h);
    ws_topic_t *t = *p;
    if (!t) {
        t = ws_calloc(1, sizeof *t + len + 1);
        memcpy(t->name, name, len);
        t->len = len;
        t->hash = h;
        *p = t;
        if (++ps->ntopics > ps->nbuckets)
            grow(ps);
    }
    ws_sub_t *sub = ws_malloc(sizeof *sub);
    sub->topic = t;
    sub->conn = c;
    if (t->nsubs == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 8;
        t->subs = ws_realloc(t->subs, t->cap * sizeof *t->subs);
    }
    sub->idx = t->nsubs;
    t->subs[t->nsubs++] = sub;
    if (c->nsubs == c->subcap) {
        c->subcap = c->subcap ? c->subcap * 2 : 4;
        c->subs = ws_realloc(c->subs, c->subcap * sizeof *c->subs);
    }
    c->subs[c->nsubs++] = sub;
    return 1;
}

/* Remove membership i of c: swap-remove on both sides, drop an empty topic. */
static void leave(ws_pubsub_t *ps, ws_conn_t *c, size_t i)
{
    ws_sub_t *sub = c->subs[i];
    ws_topic_t *t = sub->topic;
    ws_sub_t *last = t->subs[--t->nsubs];
    t->subs[sub->idx] = last;
    last->idx = sub->idx;
    c->subs[i] = c->subs[--c->nsubs];
    free(sub);
    if (t->nsubs == 0) {
        ws_topic_t **p = slot(ps, t->name, t->len, t->hash);
        *p = t->next;
        free(t->subs);
        free(t);
        ps->ntopics--;
    }
}

int ws_pubsub_unsubscribe(ws_pubsub_t *ps, ws_conn_t *c, const char *name, size_t len)
{
    for (size_t i = 0; i < c->nsubs; i++) {
        ws_topic_t *t = c->subs[i]->topic;
        if (t->len == len && memcmp(t->name, name, len) == 0) {
            leave(ps, c, i);
            return 1;
        }
    }
    return 0;
}

void ws_pubsub_unsubscribe_all(ws_pubsub_t *ps, ws_conn_t *c)
{
    while (c->nsubs > 0)
        leave(ps, c, c->nsubs - 1);
    free(c->subs);
    c->subs = NULL;
    c->subcap = 0;
}

const char *ws_pubsub_topic_name(const ws_sub_t *sub, size_t *len)
{
    *len = sub->topic->len;
    return sub->topic->name;
}

static ws_chunk_t *make_frame(unsigned first, const void *data, size_t dlen)
{
    uint8_t hdr[WS_FRAME_HDR_MAX];
    size_t hl = ws_frame_write_header(hdr, WS_FRAME_FIN | first, dlen, NULL);
    ws_chunk_t *frame = ws_chunk_new_exact(hl + dlen);
    memcpy(frame->data, hdr, hl);
    memcpy(frame->data + hl, data, dlen);
    frame->len = hl + dlen;
    return frame;
}

/* One compressed frame per distinct setting among the subscribers (window,
 * level, memLevel: routes may set their own), made on first use: one
 * compression per setting in use, not one per subscriber. */
#define ZFRAMES 8
typedef struct {
    int wb, level, mem_level;
    ws_chunk_t *frame; /* NULL when the zlib memory cap refused */
} zframe_t;

/* The frame for d's setting at window wb; NULL means the plain frame (the cap
 * refused, or more distinct settings than ZFRAMES, which is no error: an
 * uncompressed message is always allowed). */
static ws_chunk_t *compressed(zframe_t *zf, size_t *nzf, int wb, const ws_deflate_t *d,
                              unsigned op, const void *data, size_t dlen)
{
    for (size_t i = 0; i < *nzf; i++)
        if (zf[i].wb == wb && zf[i].level == d->level && zf[i].mem_level == d->mem_level)
            return zf[i].frame;
    if (*nzf == ZFRAMES)
        return NULL;
    zframe_t *z = &zf[(*nzf)++];
    z->wb = wb;
    z->level = d->level;
    z->mem_level = d->mem_level;
    z->frame = NULL;
    ws_buf_t out;
    ws_buf_init(&out);
    if (ws_deflate_compress_once(wb, d->level, d->mem_level, data, dlen, &out) == 0)
        z->frame = make_frame(op | WS_FRAME_RSV1, out.data, out.len);
    ws_buf_free(&out);
    return z->frame;
}

size_t ws_pubsub_publish(ws_pubsub_t *ps, const char *name, size_t len, unsigned op,
                         const void *data, size_t dlen)
{
    ws_topic_t *t = *slot(ps, name, len, hash(name, len));
    if (!t || t->nsubs == 0)
        return 0;
    ws_chunk_t *plain = make_frame(op, data, dlen);
    zframe_t zf[ZFRAMES];
    size_t nzf = 0, n = 0;
    for (size_t i = 0; i < t->nsubs; i++) {
        ws_conn_t *c = t->subs[i]->conn;
        ws_chunk_t *f = plain;
        ws_deflate_t *d = c->deflate;
        if (d && ws_deflate_should_compress(d, dlen)) {
            int wb = d->params.server_max_window_bits;
            ws_chunk_t *z = compressed(zf, &nzf, wb, d, op, data, dlen);
            if (z && ws_deflate_use_shared(d, wb))
                f = z;
        }
        if (ws_conn_send_chunk(c, f) == 0)
            n++;
    }
    ws_chunk_unref(plain);
    for (size_t i = 0; i < nzf; i++)
        if (zf[i].frame)
            ws_chunk_unref(zf[i].frame);
    return n;
}
