/*
 * stats.h: the server's built-in figures (what wspush.metrics.render shows),
 * counted where they happen by a plain increment of a per-process integer:
 * no atomics, no lock, no allocation, so that the per-message path pays a
 * few adds. One loop per process, so one block per process: a worker binds
 * it to its own slot of the tally (ws_stats_bind), where any worker can sum
 * every worker's block for a scrape.
 *
 * Counters come first in the enum, then gauges (each worker's share; they
 * sum to the server's). A counter only grows; when a worker dies, the
 * supervisor adds its counters to a retired block (tally.c) so that the
 * server's sums never go back.
 */
#ifndef WS_STATS_H
#define WS_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

typedef enum {
    WS_STAT_ACCEPTED,        /* TCP (or TLS) connections accepted */
    WS_STAT_HTTP_REQUESTS,   /* HTTP requests read, upgrades included */
    WS_STAT_OPENED,          /* WebSocket connections opened */
    /* Upgrades refused, by reason. */
    WS_STAT_REFUSED_HANDSHAKE, /* not a valid WebSocket handshake (400, 426) */
    WS_STAT_REFUSED_LIMIT,     /* a limit: connections, per address, memory, shutdown (503) */
    WS_STAT_REFUSED_ORIGIN,    /* the origin check (403) */
    WS_STAT_REFUSED_ROUTE,     /* no WebSocket route for the path (404, 405) */
    WS_STAT_REFUSED_HOOK,      /* the handler's upgrade function said no */
    WS_STAT_REFUSED_ERROR,     /* the script failed deciding (500) */
    WS_STAT_REFUSED_TIMEOUT,   /* no decision within --upgrade-timeout (503) */
    /* Connections refused before any request: --max-tcp-per-ip, --accept-rate. */
    WS_STAT_CONN_REFUSED,
    /* WebSocket connections closed, by close code: 1000..1015, then other. */
    WS_STAT_CLOSE_FIRST,
    WS_STAT_CLOSE_OTHER = WS_STAT_CLOSE_FIRST + 16,
    WS_STAT_MSGS_IN,         /* data messages received */
    WS_STAT_BYTES_IN,        /* their payload bytes (inflated) */
    WS_STAT_MSGS_OUT,        /* data messages queued to a connection (sends and deliveries) */
    WS_STAT_BYTES_OUT,       /* their payload bytes (before compression) */
    WS_STAT_PUBLISHES,       /* publishes made here (wspush.publish) */
    WS_STAT_DELIVERIES,      /* messages queued to a subscriber by any publish */
    WS_STAT_BP_DROPS,        /* sends dropped by a full queue (drop, drop_oldest) */
    WS_STAT_SLOW_CLOSES,     /* connections closed 1008 by a full queue (close) */
    WS_STAT_LUA_ERRORS,      /* handler errors logged */
    WS_STAT_LUA_TIMEOUTS,    /* callbacks stopped by --lua-timeout */
    WS_STAT_TLS_DONE,        /* TLS handshakes completed */
    WS_STAT_TLS_FAILED,      /* TLS handshakes failed */
    WS_STAT_SERIES_REFUSED,  /* script series refused: the series table was full */
    /* Sampled (ws_gauges_sample): set, not added, but counters all the same. */
    WS_STAT_IDLE_NS,         /* time the event loop waited for events */
    WS_STAT_BROKER_PUBLISHED,
    WS_STAT_BROKER_PUBLISH_FAILED,
    WS_STAT_BROKER_RECEIVED,
    WS_STAT_BROKER_GAPS,
    WS_STAT_BROKER_RECONNECTS,
    WS_STAT_LOG_DROPPED,     /* log records dropped: the log could not keep up */
    WS_STAT_RELAYED,         /* publishes sent to the other workers */
    WS_STAT_RELAY_DROPPED,   /* of those, dropped: that worker fell behind */
    WS_STAT_COUNTERS,        /* the gauges follow */
    WS_STAT_OPEN = WS_STAT_COUNTERS, /* WebSocket connections open */
    WS_STAT_CONNS,           /* connections: HTTP, WebSocket, closing */
    WS_STAT_LUA_BYTES,       /* the Lua heap */
    WS_STAT_MEM_BYTES,       /* what --max-memory counts */
    WS_STAT_RSS_BYTES,       /* resident memory of the process */
    WS_STAT_BROKER_SHARDS,   /* broker shards configured */
    WS_STAT_BROKER_UP,       /* those connected */
    WS_STAT_WORKERS,         /* 1 per serving process: their sum is the workers serving */
    WS_STAT_COUNT
} ws_stat_t;

typedef struct {
    uint64_t v[WS_STAT_COUNT];
} ws_stats_t;

/* This process's block: its own, or its worker slot in the tally. */
extern ws_stats_t *ws_stats;

static inline void ws_stats_inc(ws_stat_t i) { ws_stats->v[i]++; }
static inline void ws_stats_add(ws_stat_t i, uint64_t n) { ws_stats->v[i] += n; }

/* A closed connection's code. */
static inline void ws_stats_close(unsigned code)
{
    ws_stats->v[code >= 1000 && code <= 1015 ? WS_STAT_CLOSE_FIRST + code - 1000
                                             : WS_STAT_CLOSE_OTHER]++;
}

/* Count into b from now on (NULL: the process's own block again). What was
 * counted before is not carried over. */
void ws_stats_bind(ws_stats_t *b);

/* Append the Prometheus text format (0.0.4) of the figures v to out. */
void ws_stats_render(const ws_stats_t *v, ws_buf_t *out);

/* Append v as Prometheus writes a float: integers without a fraction,
 * +Inf, -Inf, NaN. */
void ws_stats_value(ws_buf_t *out, double v);

#endif
