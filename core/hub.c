/* The work done over all connections of a hub: flushing, sweeping, closing. */
#include "hub.h"

#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "error.h"
#include "frame.h"
#include "log.h"
#include "mem.h"

/* The fast sweep enforces close deadlines; its period bounds how late one can be. */
#define SWEEP_MS 100

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
    if (cfg->send_timeout > 0 && cfg->send_timeout / 4 < p)
        p = cfg->send_timeout / 4;
    uint64_t ms = (uint64_t)(p * 1000);
    return ms < SWEEP_MS ? SWEEP_MS : ms;
}

void ws_hub_init(ws_hub_t *h, ws_io_t *io, const ws_config_t *cfg)
{
    memset(h, 0, sizeof *h);
    h->io = io;
    h->loop = io->loop;
    h->cfg = *cfg;
    ws_pubsub_init(&h->pubsub);
    ws_timers_init(&h->timers);
    ws_iptab_init(&h->ips);
    ws_iptab_init(&h->tcp_ips);
    ws_iptab_init(&h->accepts);
    /* Without context takeover a compressor is reset after every message and
     * its zlib memory released: idle connections hold none, and a published
     * message compressed once serves every subscriber. */
    ws_deflate_config_default(&h->deflate_cfg);
    h->deflate_cfg.enabled = cfg->compression;
    h->deflate_cfg.level = cfg->compression_level;
    h->deflate_cfg.threshold = cfg->compression_threshold;
    h->deflate_cfg.server_max_window_bits = cfg->compression_window;
    h->deflate_cfg.mem_level = cfg->compression_memlevel;
    h->deflate_cfg.server_no_context_takeover = !cfg->compression_context;
    h->deflate_cfg.client_no_context_takeover = !cfg->compression_context;
    h->deflate_cfg.release_idle = !cfg->compression_context;
    h->slow_ms = slow_period(cfg);
    h->ping = ws_chunk_new_exact(2);
    h->ping->len = ws_frame_write_header(h->ping->data, WS_FRAME_FIN | WS_OP_PING, 0, NULL);
}

void ws_hub_set_host(ws_hub_t *h, const ws_host_ops_t *ops, void *ud)
{
    h->host = ops;
    h->host_ud = ud;
}

void ws_hub_free(ws_hub_t *h)
{
    ws_pubsub_free(&h->pubsub);
    ws_timers_free(&h->timers);
    ws_iptab_free(&h->ips);
    ws_iptab_free(&h->tcp_ips);
    ws_iptab_free(&h->accepts);
    ws_buf_free(&h->zin);
    ws_buf_free(&h->zout);
    ws_chunk_unref(h->ping);
}

/* Writes queued during one loop iteration leave in one system call per
 * connection, or with the ring in one for all of them. Completions can queue
 * more (the rest of a queue, or what a drain or close handler sends): a few
 * rounds, then the driver comes back on its next turn. */
#define FLUSH_ROUNDS 4

int ws_hub_flush(ws_hub_t *h)
{
    for (int round = 0; round < FLUSH_ROUNDS; round++) {
        for (ws_conn_t *c; (c = ws_conn_dirty_pop(h));)
            ws_conn_flush(c);
        if (ws_io_run(h->io) == 0)
            return 0;
    }
    return h->dirty != NULL || h->io->nready != 0;
}

static void sweep_list(ws_conn_t *c, uint64_t now)
{
    for (ws_conn_t *next; c; c = next) {
        next = ws_conn_next(c);
        ws_conn_sweep(c, now);
    }
}

/* --- the memory budget --- */

/* A write waiting this long without completing: the peer is not reading. */
#define STALL_MS 1000

typedef struct {
    ws_conn_t *c;
    size_t mem;
    int stuck;
} candidate_t;

/* Those that do not read first, then the largest. */
static int worse_first(const void *a, const void *b)
{
    const candidate_t *x = a, *y = b;
    if (x->stuck != y->stuck)
        return y->stuck - x->stuck;
    return x->mem < y->mem ? 1 : x->mem > y->mem ? -1 : 0;
}

/* The budget applies to the whole server: with workers, each publishes
 * what it counts and reads the sum. A worker over its even share sheds down
 * to it, so that workers over the budget together shed what they hold
 * beyond it and a worker under its share keeps its connections. */
static size_t server_total(ws_hub_t *h)
{
    size_t mine = ws_mem_total();
    if (!h->tally)
        return mine;
    ws_tally_set_mem(h->tally, mine);
    return (size_t)ws_tally_mem(h->tally);
}

static size_t budget(const ws_hub_t *h)
{
    return h->tally ? h->cfg.max_memory / ws_tally_workers(h->tally) : h->cfg.max_memory;
}

int ws_hub_memory_tight(ws_hub_t *h)
{
    if (!h->cfg.max_memory)
        return 0;
    size_t total = server_total(h);
    if (total < h->cfg.max_memory / 10 * 9) {
        h->refusing = 0;
        return 0;
    }
    if (!h->refusing) {
        h->refusing = 1;
        ws_log_warn("memory budget: %zu of %zu MiB in use; new upgrades get 503", total >> 20,
                    h->cfg.max_memory >> 20);
    }
    return 1;
}

size_t ws_hub_enforce_budget(ws_hub_t *h)
{
    if (!h->cfg.max_memory)
        return 0;
    size_t total = server_total(h), limit = h->cfg.max_memory;
    if (h->tally && total > limit) {
        /* Over: this worker sheds what it holds beyond its share. */
        total = ws_mem_total();
        limit = budget(h);
    }
    size_t low = limit / 10 * 9;
    if (total <= limit) {
        if (h->over_budget && total < low) {
            ws_log_warn("memory budget: back to %zu MiB; %zu connections were shed, holding %zu MiB",
                        total >> 20, h->shed, h->shed_bytes >> 20);
            h->over_budget = 0;
            h->shed = h->shed_bytes = 0;
        }
        return 0;
    }
    if (!h->over_budget) {
        h->over_budget = 1;
        ws_log_warn("memory budget exceeded: %zu of %zu MiB (queues %zu, buffers %zu, "
                    "compression %zu, Lua %zu MiB); shedding connections with 1013",
                    total >> 20, h->cfg.max_memory >> 20, ws_mem_used(WS_MEM_QUEUE) >> 20,
                    ws_mem_used(WS_MEM_BUFFERS) >> 20, ws_mem_used(WS_MEM_DEFLATE) >> 20,
                    ws_mem_used(WS_MEM_LUA) >> 20);
    }
    uint64_t now = ws_hub_now(h);
    size_t n = 0, cap = h->nopen;
    candidate_t *v = ws_malloc((cap ? cap : 1) * sizeof *v);
    for (ws_conn_t *c = h->open; c && n < cap; c = ws_conn_next(c)) {
        size_t mem = ws_conn_memory(c);
        if (mem)
            v[n++] = (candidate_t){c, mem, !ws_conn_draining(c, now, STALL_MS)};
    }
    qsort(v, n, sizeof *v, worse_first);
    size_t shed = 0, projected = total;
    /* Shedding frees a queue at once, but a write in flight only once its
     * connection has closed (a loop turn later): count what each will free. */
    for (size_t i = 0; i < n && projected > low; i++) {
        ws_conn_shed(v[i].c, now);
        h->shed_bytes += v[i].mem;
        projected -= v[i].mem < projected ? v[i].mem : projected;
        shed++;
    }
    h->shed += shed;
    free(v);
    return shed;
}

int ws_hub_tick(ws_hub_t *h)
{
    uint64_t now = ws_hub_now(h);
    ws_hub_enforce_budget(h);
    ws_refusals_tick(&h->refusals, now);
    sweep_list(h->conns, now);
    if (now < h->next_slow)
        return 0;
    h->next_slow = now + h->slow_ms;
    sweep_list(h->open, now);
    return 1;
}

void ws_hub_shutdown(ws_hub_t *h, const char *reason)
{
    h->stopping = 1;
    /* Closing moves open connections onto conns: walk open until it is empty. */
    while (h->open)
        ws_conn_shutdown(h->open, reason);
    for (ws_conn_t *c = h->conns, *next; c; c = next) {
        next = ws_conn_next(c);
        ws_conn_shutdown(c, reason);
    }
}

void ws_hub_abort_all(ws_hub_t *h)
{
    /* Aborting moves an open connection onto conns (where it stays, CLOSED,
     * until its transport has closed): empty open first, then walk conns. */
    while (h->open)
        ws_conn_abort(h->open, WS_CLOSE_GOING_AWAY);
    for (ws_conn_t *c = h->conns, *next; c; c = next) {
        next = ws_conn_next(c);
        ws_conn_abort(c, WS_CLOSE_GOING_AWAY);
    }
}
