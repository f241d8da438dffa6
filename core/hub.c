/* The work done over all connections of a hub: flushing, sweeping, closing. */
#include "hub.h"

#include <string.h>

#include "conn.h"
#include "error.h"

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
    ws_buf_free(&h->zin);
    ws_buf_free(&h->zout);
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

int ws_hub_tick(ws_hub_t *h)
{
    uint64_t now = ws_hub_now(h);
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
