#define _GNU_SOURCE /* memfd_create */
#include "tally.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fnv.h"
#include "series.h"
#include "shmutex.h"
#include "stats.h"

#define MAGIC 0x77737431u /* "wst1" */

typedef struct {
    _Atomic uint64_t open, mem, relayed, received, dropped;
    char pad[64 - 5 * sizeof(uint64_t) % 64]; /* one slot per cache line or two */
} slot_t;

typedef struct {
    char ip[48];
    uint16_t worker; /* 0 = free */
    uint8_t kind;
    uint8_t tomb;    /* deleted, keeps probe chains intact */
    uint32_t count;
} ent_t;

typedef struct {
    uint32_t magic, nworkers;
    uint64_t size;
    _Atomic uint64_t next_id;
    _Atomic uint64_t open;  /* every worker's open connections */
    pthread_mutex_t lock; /* the address table */
    uint64_t ipcap;       /* power of two, or 0 */
    uint64_t ipused;      /* live entries and tombstones */
    uint64_t iplive;      /* live entries */
    slot_t slots[WS_TALLY_MAX_WORKERS];
    uint64_t series_off;  /* where the script's metrics table begins (series.h) */
    /* Each worker's built-in figures (stats.h), written by it alone, and the
     * counters of workers that died. */
    ws_stats_t stats[WS_TALLY_MAX_WORKERS];
    ws_stats_t retired;
    ent_t ents[];
} shared_t;

struct ws_tally_s {
    shared_t *s;
    ws_series_t *series;
    size_t size;
    unsigned worker; /* 0 for the supervisor */
};

/* The address table, then the script's metrics table on a page of its own. */
static size_t series_off(size_t ipcap)
{
    return (sizeof(shared_t) + ipcap * sizeof(ent_t) + 4095) & ~(size_t)4095;
}

static size_t region_size(unsigned nworkers, size_t ipcap)
{
    return series_off(ipcap) + ws_series_size(nworkers);
}

ws_tally_t *ws_tally_create(unsigned nworkers, size_t ipcap, int *fd)
{
    if (nworkers < 1 || nworkers > WS_TALLY_MAX_WORKERS) {
        errno = EINVAL;
        return NULL;
    }
    if (ipcap) {
        size_t c = 64;
        while (c < ipcap)
            c <<= 1;
        ipcap = c;
    }
    size_t size = region_size(nworkers, ipcap);
    int f = memfd_create("wspush-tally", MFD_CLOEXEC);
    if (f < 0)
        return NULL;
    /* The file is sparse: the address table takes pages as it fills. */
    if (ftruncate(f, (off_t)size) != 0) {
        close(f);
        return NULL;
    }
    shared_t *s = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0);
    if (s == MAP_FAILED) {
        close(f);
        return NULL;
    }
    s->magic = MAGIC;
    s->nworkers = nworkers;
    s->size = size;
    s->ipcap = ipcap;
    s->series_off = series_off(ipcap);
    ws_series_format((char *)s + s->series_off, nworkers);
    atomic_init(&s->next_id, 1);
    ws_shmutex_init(&s->lock);
    ws_tally_t *t = calloc(1, sizeof *t);
    if (t)
        t->series = ws_series_attach((char *)s + s->series_off, 0);
    if (!t || !t->series) {
        free(t);
        munmap(s, size);
        close(f);
        errno = ENOMEM;
        return NULL;
    }
    t->s = s;
    t->size = size;
    *fd = f;
    return t;
}

ws_tally_t *ws_tally_attach(int fd, unsigned worker)
{
    shared_t probe;
    if (pread(fd, &probe, sizeof probe, 0) != (ssize_t)sizeof probe || probe.magic != MAGIC ||
        worker < 1 || worker > probe.nworkers) {
        errno = EINVAL;
        return NULL;
    }
    shared_t *s = mmap(NULL, probe.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (s == MAP_FAILED)
        return NULL;
    ws_tally_t *t = calloc(1, sizeof *t);
    if (t)
        t->series = ws_series_attach((char *)s + s->series_off, worker);
    if (!t || !t->series) {
        free(t);
        munmap(s, probe.size);
        errno = ENOMEM;
        return NULL;
    }
    t->s = s;
    t->size = probe.size;
    t->worker = worker;
    return t;
}

void ws_tally_unmap(ws_tally_t *t)
{
    if (!t)
        return;
    ws_series_free(t->series);
    munmap(t->s, t->size);
    free(t);
}

unsigned ws_tally_workers(const ws_tally_t *t) { return t->s->nworkers; }
unsigned ws_tally_worker(const ws_tally_t *t) { return t->worker; }

uint64_t ws_tally_next_id(ws_tally_t *t)
{
    return atomic_fetch_add_explicit(&t->s->next_id, 1, memory_order_relaxed);
}

static slot_t *mine(ws_tally_t *t) { return &t->s->slots[t->worker - 1]; }

int ws_tally_open_hold(ws_tally_t *t, uint64_t max)
{
    uint64_t n = atomic_load_explicit(&t->s->open, memory_order_relaxed);
    do {
        if (n >= max)
            return 0;
    } while (!atomic_compare_exchange_weak_explicit(&t->s->open, &n, n + 1, memory_order_relaxed,
                                                    memory_order_relaxed));
    atomic_fetch_add_explicit(&mine(t)->open, 1, memory_order_relaxed);
    return 1;
}

void ws_tally_open_release(ws_tally_t *t)
{
    atomic_fetch_sub_explicit(&t->s->open, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&mine(t)->open, 1, memory_order_relaxed);
}

void ws_tally_set_mem(ws_tally_t *t, uint64_t bytes)
{
    atomic_store_explicit(&mine(t)->mem, bytes, memory_order_relaxed);
}

uint64_t ws_tally_open(const ws_tally_t *t)
{
    return atomic_load_explicit(&t->s->open, memory_order_relaxed);
}

uint64_t ws_tally_mem(const ws_tally_t *t)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < t->s->nworkers; i++)
        n += atomic_load_explicit(&t->s->slots[i].mem, memory_order_relaxed);
    return n;
}

void ws_tally_relay(ws_tally_t *t, uint64_t relayed, uint64_t received, uint64_t dropped)
{
    slot_t *s = mine(t);
    atomic_store_explicit(&s->relayed, relayed, memory_order_relaxed);
    atomic_store_explicit(&s->received, received, memory_order_relaxed);
    atomic_store_explicit(&s->dropped, dropped, memory_order_relaxed);
}

void ws_tally_figures(const ws_tally_t *t, unsigned w, ws_tally_figures_t *out)
{
    memset(out, 0, sizeof *out);
    if (w < 1 || w > t->s->nworkers)
        return;
    slot_t *s = &t->s->slots[w - 1];
    out->open = atomic_load_explicit(&s->open, memory_order_relaxed);
    out->mem = atomic_load_explicit(&s->mem, memory_order_relaxed);
    out->relayed = atomic_load_explicit(&s->relayed, memory_order_relaxed);
    out->received = atomic_load_explicit(&s->received, memory_order_relaxed);
    out->dropped = atomic_load_explicit(&s->dropped, memory_order_relaxed);
}

ws_stats_t *ws_tally_stats(ws_tally_t *t) { return &t->s->stats[t->worker - 1]; }

ws_series_t *ws_tally_series(ws_tally_t *t) { return t->series; }

/* Other workers write their blocks meanwhile with plain stores: each value
 * read whole (relaxed), the sum a moment behind. */
static uint64_t peek(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }

void ws_tally_stats_sum(const ws_tally_t *t, ws_stats_t *out)
{
    const shared_t *s = t->s;
    for (int i = 0; i < WS_STAT_COUNT; i++) {
        uint64_t n = peek(&s->retired.v[i]);
        for (unsigned w = 0; w < s->nworkers; w++)
            n += peek(&s->stats[w].v[i]);
        out->v[i] = n;
    }
}

/* ---- the address table ---- */

static void lock(shared_t *s) { ws_shmutex_lock(&s->lock); }

static void unlock(shared_t *s) { pthread_mutex_unlock(&s->lock); }

static size_t home(const shared_t *s, unsigned kind, unsigned w, const char *ip)
{
    uint64_t h = ws_fnv(ip, strlen(ip)) ^ ((uint64_t)(w * 2 + kind) * 0x9e3779b97f4a7c15ULL);
    return (size_t)(h & (s->ipcap - 1));
}

static ent_t *find(shared_t *s, unsigned kind, unsigned w, const char *ip)
{
    size_t mask = s->ipcap - 1;
    for (size_t i = home(s, kind, w, ip), n = 0; n <= mask; i = (i + 1) & mask, n++) {
        ent_t *e = &s->ents[i];
        if (!e->worker && !e->tomb)
            return NULL;
        if (e->worker == w && e->kind == kind && strcmp(e->ip, ip) == 0)
            return e;
    }
    return NULL;
}

static void put(shared_t *s, const ent_t *src)
{
    size_t mask = s->ipcap - 1;
    for (size_t i = home(s, src->kind, src->worker, src->ip);; i = (i + 1) & mask) {
        if (!s->ents[i].worker) {
            s->ents[i] = *src;
            s->ents[i].tomb = 0;
            return;
        }
    }
}

/* Tombstones only go away by rebuilding: do it once the table is three
 * quarters full (at most half of it live), a quarter of its size of changes
 * after the last time. */
static int compact(shared_t *s)
{
    size_t live = 0;
    for (size_t i = 0; i < s->ipcap; i++)
        live += s->ents[i].worker != 0;
    ent_t *keep = malloc((live ? live : 1) * sizeof *keep);
    if (!keep)
        return -1;
    size_t n = 0;
    for (size_t i = 0; i < s->ipcap; i++)
        if (s->ents[i].worker)
            keep[n++] = s->ents[i];
    memset(s->ents, 0, s->ipcap * sizeof *s->ents);
    for (size_t i = 0; i < n; i++)
        put(s, &keep[i]);
    s->ipused = s->iplive = n;
    free(keep);
    return 0;
}

static uint32_t sum(shared_t *s, unsigned kind, const char *ip)
{
    uint32_t n = 0;
    for (unsigned w = 1; w <= s->nworkers; w++) {
        ent_t *e = find(s, kind, w, ip);
        n += e ? e->count : 0;
    }
    return n;
}

uint32_t ws_tally_ip_count(ws_tally_t *t, ws_tally_ip_kind_t kind, const char *ip)
{
    shared_t *s = t->s;
    if (!s->ipcap)
        return 0;
    lock(s);
    uint32_t n = sum(s, kind, ip);
    unlock(s);
    return n;
}

uint32_t ws_tally_ip_inc(ws_tally_t *t, ws_tally_ip_kind_t kind, const char *ip)
{
    shared_t *s = t->s;
    if (!s->ipcap)
        return UINT32_MAX;
    lock(s);
    ent_t *e = find(s, kind, t->worker, ip);
    if (e) {
        e->count++;
    } else {
        /* Half full of live entries is full; tombstones are swept only when
         * they are many, so that a full table does not cost a sweep per try. */
        if ((s->iplive + 1) * 2 > s->ipcap ||
            ((s->ipused + 1) * 4 > s->ipcap * 3 && compact(s) != 0)) {
            unlock(s);
            return UINT32_MAX;
        }
        ent_t n = {.worker = (uint16_t)t->worker, .kind = (uint8_t)kind, .count = 1};
        snprintf(n.ip, sizeof n.ip, "%s", ip);
        put(s, &n);
        s->ipused++;
        s->iplive++;
    }
    uint32_t total = sum(s, kind, ip);
    unlock(s);
    return total;
}

void ws_tally_ip_dec(ws_tally_t *t, ws_tally_ip_kind_t kind, const char *ip)
{
    shared_t *s = t->s;
    if (!s->ipcap)
        return;
    lock(s);
    ent_t *e = find(s, kind, t->worker, ip);
    if (e && e->count && --e->count == 0) {
        e->worker = 0;
        e->tomb = 1;
        s->iplive--;
    }
    unlock(s);
}

void ws_tally_forget(ws_tally_t *t, unsigned w)
{
    shared_t *s = t->s;
    if (w < 1 || w > s->nworkers)
        return;
    slot_t *sl = &s->slots[w - 1];
    atomic_fetch_sub(&s->open, atomic_exchange(&sl->open, 0));
    atomic_store(&sl->mem, 0);
    /* Its counters stay in the server's sums, its gauges go. */
    for (int i = 0; i < WS_STAT_COUNT; i++) {
        if (i < WS_STAT_COUNTERS)
            s->retired.v[i] += s->stats[w - 1].v[i];
        s->stats[w - 1].v[i] = 0;
    }
    ws_series_forget(t->series, w);
    if (!s->ipcap)
        return;
    lock(s);
    for (size_t i = 0; i < s->ipcap; i++) {
        if (s->ents[i].worker == w) {
            s->ents[i].worker = 0;
            s->ents[i].tomb = 1;
            s->iplive--;
        }
    }
    unlock(s);
}
