/*
 * hub.h: what the connections of one loop share, and the work done over all
 * of them: the settings, the host, the clock, the connection lists and
 * counters, the list of connections with output to flush, the topic
 * registry, timers, scratch buffers. The hub links without Lua; its driver (the
 * server, or a test) calls ws_hub_flush when a loop turn's work is done and
 * ws_hub_tick periodically.
 *
 * The connection files (conn.c, conn_recv.c) keep the lists and counters;
 * everyone else reads them. Loop thread only.
 */
#ifndef WS_HUB_H
#define WS_HUB_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "cli.h"
#include "deflate.h"
#include "host.h"
#include "iptab.h"
#include "proxy.h"
#include "pubsub.h"
#include "refusals.h"
#include "tally.h"
#include "timer.h"
#include "transport.h"

typedef struct ws_hub_s {
    ws_io_t *io;
    uv_loop_t *loop;    /* io->loop, one load closer: the clock reads it per message */
    ws_config_t cfg;
    ws_deflate_config_t deflate_cfg; /* permessage-deflate, from the command line */
    const ws_host_ops_t *host;
    void *host_ud;
    /* The clock, in milliseconds: the loop's time unless a test sets its own. */
    uint64_t (*clock)(void *ud);
    void *clock_ud;
    /* Called after a connection is freed (the server ends a shutdown with it). */
    void (*gone)(void *ud);
    void *gone_ud;

    ws_pubsub_t pubsub;
    ws_timers_t timers; /* on the hub's clock; the driver runs them (ws_hub_run_timers) */
    ws_iptab_t ips;     /* WebSocket connections per client address */
    ws_iptab_t tcp_ips; /* TCP connections per client address (--max-tcp-per-ip) */
    ws_iptab_t accepts; /* connections accepted per address in this second (--accept-rate) */
    uint64_t accepts_since; /* clock time the accepts window began */
    ws_buf_t zin, zout; /* scratch for one inflated / compressed message at a time */
    ws_chunk_t *ping;   /* our ping frame, shared by every queue it is in: the
                           sweep pings every idle connection at once */

    ws_conn_t *conns;   /* live connections not OPEN: HTTP, closing (intrusive list) */
    ws_conn_t *open;    /* open WebSocket connections (intrusive list) */
    ws_conn_t *dirty;   /* connections with queued output to flush (intrusive list) */
    size_t nconns;      /* entries in conns and open */
    size_t nopen;       /* WebSocket connections in state OPEN */
    uint64_t next_id;
    /* Connections, requests and messages handed to the host: while it does
     * not move the server is quiet (pings and pongs alone do not count: a
     * server of idle connections that pings them is quiet). */
    uint64_t work;
    uint64_t pings;     /* sent by the sweeps (a quiet server trims after a round) */
    /* With workers: the counts the server's workers share (ids, open
     * connections, memory, addresses), so limits hold for the whole server.
     * NULL in a lone process. */
    ws_tally_t *tally;
    /* Where a publish goes besides this hub (the other workers, the other
     * nodes), or NULL. Returns 0, or -1 when it could not go everywhere
     * (the broker is down). */
    int (*relay)(void *ud, const char *topic, size_t tlen, unsigned op, const void *data,
                 size_t dlen);
    void *relay_ud;
    int relay_failed;   /* the latest ws_publish's relay returned -1 */
    struct ws_broker_s *broker; /* --broker's client (for its figures), or NULL */
    int stopping;       /* no new upgrades (graceful shutdown) */
    uint64_t slow_ms;   /* period of the heartbeat sweep over open connections */
    uint64_t next_slow; /* clock time of the next one */
    /* The memory budget (cfg.max_memory): an episode over it is logged once. */
    int over_budget;    /* shedding since the total went over the budget */
    int refusing;       /* upgrades refused since the total neared the budget */
    size_t shed, shed_bytes; /* connections shed in this episode, and what they held */
    ws_refusals_t refusals; /* refusals (403, 413, 429, 503...): logged once per episode */
    /* --trusted-proxy: peers whose X-Forwarded-For names the client, or NULL
     * (set by the driver; X-Forwarded-For is then never read). */
    const ws_proxy_t *proxies;
} ws_hub_t;

/* Set up a hub over io with the server's settings cfg (copied). The host is
 * given later, before the first connection (ws_hub_set_host). */
void ws_hub_init(ws_hub_t *h, ws_io_t *io, const ws_config_t *cfg);
void ws_hub_set_host(ws_hub_t *h, const ws_host_ops_t *ops, void *ud);
/* Release what the hub holds (after every connection is freed). */
void ws_hub_free(ws_hub_t *h);

/* The loop's cached time is read from the loop itself: it is what uv_now
 * returns, without a call into libuv through the PLT on every message. */
static inline uint64_t ws_hub_now(const ws_hub_t *h)
{
    return h->clock ? h->clock(h->clock_ud) : h->loop->time;
}

/* Write what the connections queued and run the transports' completions, a
 * few rounds (completions may queue more). Returns 1 when work is still
 * pending (the driver must not block: call again soon), else 0. */
int ws_hub_flush(ws_hub_t *h);

/* Fire the timers due by now. */
static inline size_t ws_hub_run_timers(ws_hub_t *h) { return ws_timers_run(&h->timers, ws_hub_now(h)); }

/* Deadlines of HTTP and closing connections; every slow_ms also the
 * heartbeat of open ones (pings, idle timeouts, releasing idle buffers).
 * Returns 1 when the slow sweep ran. */
int ws_hub_tick(ws_hub_t *h);

/* Apply the memory budget: if the counted memory (mem.h) is over
 * cfg.max_memory, shed open connections (ws_conn_shed) until it is back
 * under 90 % of it: first those whose peers do not read what they are sent,
 * then the largest. A connection that reads is never shed before one that
 * does not. ws_hub_tick calls it; returns how many were shed. */
size_t ws_hub_enforce_budget(ws_hub_t *h);
/* 1 when new upgrades should be refused (503): the memory counted is at 90 %
 * of the budget or more. */
int ws_hub_memory_tight(ws_hub_t *h);

/* The counts that the limits read: this hub's, or with workers the whole
 * server's (the tally). Inline: the connection calls them, and the hub
 * calls the connection. */

/* A new connection id: unique in the server (across workers). */
static inline uint64_t ws_hub_new_id(ws_hub_t *h)
{
    return h->tally ? ws_tally_next_id(h->tally) : ++h->next_id;
}

/* Open WebSocket connections in the whole server (every worker). */
static inline size_t ws_hub_open_total(const ws_hub_t *h)
{
    return h->tally ? (size_t)ws_tally_open(h->tally) : h->nopen;
}

/* Hold a place under --max-connections for an upgrade about to open (1),
 * or 0 when the server is full. Then either ws_hub_count_open(h, 1) once it
 * is open, or ws_hub_release_open if it does not open after all. */
static inline int ws_hub_hold_open(ws_hub_t *h)
{
    if (h->tally)
        return ws_tally_open_hold(h->tally, (uint64_t)h->cfg.max_connections);
    return h->nopen < (size_t)h->cfg.max_connections;
}

static inline void ws_hub_release_open(ws_hub_t *h)
{
    if (h->tally)
        ws_tally_open_release(h->tally);
}

/* A connection became open (+1, its place held) or left the open state (-1). */
static inline void ws_hub_count_open(ws_hub_t *h, int delta)
{
    h->nopen += (size_t)(ptrdiff_t)delta;
    ws_stats->v[WS_STAT_OPEN] += (uint64_t)(int64_t)delta;
    if (delta < 0)
        ws_hub_release_open(h);
}

/* Connections per client address in the whole server: kind is
 * WS_TALLY_IP_WS (--max-per-ip) or WS_TALLY_IP_TCP (--max-tcp-per-ip).
 * ws_hub_ip_inc returns the count after it, UINT32_MAX when the shared
 * table is full (nothing counted: refuse). */
static inline ws_iptab_t *ws__hub_iptab(ws_hub_t *h, ws_tally_ip_kind_t kind)
{
    return kind == WS_TALLY_IP_WS ? &h->ips : &h->tcp_ips;
}

static inline uint32_t ws_hub_ip_count(ws_hub_t *h, ws_tally_ip_kind_t kind, const char *ip)
{
    return h->tally ? ws_tally_ip_count(h->tally, kind, ip)
                    : ws_iptab_count(ws__hub_iptab(h, kind), ip);
}

static inline uint32_t ws_hub_ip_inc(ws_hub_t *h, ws_tally_ip_kind_t kind, const char *ip)
{
    return h->tally ? ws_tally_ip_inc(h->tally, kind, ip)
                    : ws_iptab_inc(ws__hub_iptab(h, kind), ip);
}

static inline void ws_hub_ip_dec(ws_hub_t *h, ws_tally_ip_kind_t kind, const char *ip)
{
    if (h->tally)
        ws_tally_ip_dec(h->tally, kind, ip);
    else
        ws_iptab_dec(ws__hub_iptab(h, kind), ip);
}

/* Close every connection: open ones with 1001 and reason, HTTP ones once
 * their answer is written. New upgrades get 503 from now on. */
void ws_hub_shutdown(ws_hub_t *h, const char *reason);
/* Close every connection now, without a close handshake. */
void ws_hub_abort_all(ws_hub_t *h);

#endif
