#include "iptab.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "fnv.h"

static uint64_t hash(const char *ip) { return ws_fnv(ip, strlen(ip)); }

void ws_iptab_init(ws_iptab_t *t)
{
    t->cap = 64;
    t->used = 0;
    t->slots = ws_calloc(t->cap, sizeof *t->slots);
}

void ws_iptab_free(ws_iptab_t *t)
{
    free(t->slots);
    t->slots = NULL;
}

/* The slot holding ip, or NULL. */
static ws_ipent_t *find(const ws_iptab_t *t, const char *ip)
{
    size_t mask = t->cap - 1;
    for (size_t i = hash(ip) & mask;; i = (i + 1) & mask) {
        ws_ipent_t *e = &t->slots[i];
        if (e->count == 0 && !e->tomb)
            return NULL;
        if (e->count > 0 && strcmp(e->ip, ip) == 0)
            return e;
    }
}

uint32_t ws_iptab_count(const ws_iptab_t *t, const char *ip)
{
    ws_ipent_t *e = find(t, ip);
    return e ? e->count : 0;
}

static void rehash(ws_iptab_t *t, size_t cap)
{
    ws_ipent_t *old = t->slots;
    size_t ocap = t->cap;
    t->slots = ws_calloc(cap, sizeof *t->slots);
    t->cap = cap;
    t->used = 0;
    for (size_t i = 0; i < ocap; i++) {
        if (old[i].count == 0)
            continue;
        for (size_t j = hash(old[i].ip) & (cap - 1);; j = (j + 1) & (cap - 1)) {
            if (t->slots[j].count == 0) {
                t->slots[j] = old[i];
                t->slots[j].tomb = 0;
                t->used++;
                break;
            }
        }
    }
    free(old);
}

uint32_t ws_iptab_inc(ws_iptab_t *t, const char *ip)
{
    ws_ipent_t *e = find(t, ip);
    if (e)
        return ++e->count;
    /* Keep the table at most half full, tombstones included, so probes stay short. */
    if ((t->used + 1) * 2 > t->cap)
        rehash(t, t->cap * 2);
    size_t mask = t->cap - 1;
    for (size_t i = hash(ip) & mask;; i = (i + 1) & mask) {
        e = &t->slots[i];
        if (e->count == 0) {
            if (!e->tomb)
                t->used++;
            snprintf(e->ip, sizeof e->ip, "%s", ip);
            e->tomb = 0;
            e->count = 1;
            return 1;
        }
    }
}

void ws_iptab_dec(ws_iptab_t *t, const char *ip)
{
    ws_ipent_t *e = find(t, ip);
    if (e && --e->count == 0)
        e->tomb = 1;
}
