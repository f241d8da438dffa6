#include "pubsub.h"

#include <stdlib.h>
#include <string.h>

#include <assert.h>

#include "buf.h"
#include "fnv.h"

struct ws_topic_s {
    ws_topic_t *next; /* hash chain */
    uint64_t hash;
    ws_sub_t **subs;
    size_t nsubs, cap;
    size_t len;
    char name[];
};

void ws_pubsub_init(ws_pubsub_t *ps)
{
    ps->nbuckets = 64;
    ps->buckets = ws_calloc(ps->nbuckets, sizeof *ps->buckets);
    ps->ntopics = 0;
    ps->walking = 0;
    ps->watch = NULL;
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

int ws_pubsub_subscribe(ws_pubsub_t *ps, ws_pubsub_member_t *m, void *owner, const char *name,
                        size_t len)
{
    for (size_t i = 0; i < m->n; i++)
        if (m->subs[i]->topic->len == len && memcmp(m->subs[i]->topic->name, name, len) == 0)
            return 0;
    uint64_t h = ws_fnv(name, len);
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
        if (ps->watch)
            ps->watch(ps->watch_ud, name, len, 1);
    }
    ws_sub_t *sub = ws_malloc(sizeof *sub);
    sub->topic = t;
    sub->owner = owner;
    if (t->nsubs == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 8;
        t->subs = ws_realloc(t->subs, t->cap * sizeof *t->subs);
    }
    sub->idx = t->nsubs;
    t->subs[t->nsubs++] = sub;
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 4;
        m->subs = ws_realloc(m->subs, m->cap * sizeof *m->subs);
    }
    m->subs[m->n++] = sub;
    return 1;
}

/* Remove membership i of m: swap-remove on both sides, drop an empty topic. */
static void leave(ws_pubsub_t *ps, ws_pubsub_member_t *m, size_t i)
{
    /* A publish walks a topic's array by index: a leave during the walk
     * would move an unvisited subscriber behind the walker. */
    assert(ps->walking == 0);
    ws_sub_t *sub = m->subs[i];
    ws_topic_t *t = sub->topic;
    ws_sub_t *last = t->subs[--t->nsubs];
    t->subs[sub->idx] = last;
    last->idx = sub->idx;
    m->subs[i] = m->subs[--m->n];
    free(sub);
    if (t->nsubs == 0) {
        ws_topic_t **p = slot(ps, t->name, t->len, t->hash);
        *p = t->next;
        if (ps->watch)
            ps->watch(ps->watch_ud, t->name, t->len, 0);
        free(t->subs);
        free(t);
        ps->ntopics--;
    }
}

int ws_pubsub_unsubscribe(ws_pubsub_t *ps, ws_pubsub_member_t *m, const char *name, size_t len)
{
    for (size_t i = 0; i < m->n; i++) {
        ws_topic_t *t = m->subs[i]->topic;
        if (t->len == len && memcmp(t->name, name, len) == 0) {
            leave(ps, m, i);
            return 1;
        }
    }
    return 0;
}

void ws_pubsub_leave_all(ws_pubsub_t *ps, ws_pubsub_member_t *m)
{
    while (m->n > 0)
        leave(ps, m, m->n - 1);
    free(m->subs);
    m->subs = NULL;
    m->cap = 0;
}

const char *ws_pubsub_topic_name(const ws_sub_t *sub, size_t *len)
{
    *len = sub->topic->len;
    return sub->topic->name;
}

ws_topic_t *ws_pubsub_find(ws_pubsub_t *ps, const char *name, size_t len)
{
    ws_topic_t *t = *slot(ps, name, len, ws_fnv(name, len));
    return t && t->nsubs ? t : NULL;
}

ws_sub_t *const *ws_pubsub_subscribers(const ws_topic_t *t, size_t *n)
{
    *n = t->nsubs;
    return t->subs;
}
