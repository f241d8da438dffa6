/*
 * tally.h: what the workers of one server count together, in a shared
 * memory file the supervisor makes and every worker maps: connection ids,
 * open WebSocket connections and counted memory per worker (summed for the
 * server-wide limits), connections per client address, the cross-worker
 * publish counters, each worker's built-in figures (stats.h) and the
 * script's metrics (series.h). Each worker writes only its own slot; the address table
 * is shared under a process-shared robust mutex, its entries keyed by
 * (address, worker) so that the supervisor can forget a dead worker's.
 *
 * Open connections are held with one atomic counter (exact); memory is a
 * sum of slots that other workers change meanwhile (a moment behind); an
 * address's count is exact (under the lock).
 */
#ifndef WS_TALLY_H
#define WS_TALLY_H

#include <stddef.h>
#include <stdint.h>

#include "series.h"
#include "stats.h"

#define WS_TALLY_MAX_WORKERS 128

typedef struct ws_tally_s ws_tally_t;

/* Per-address counts kept for a limit. */
typedef enum { WS_TALLY_IP_WS = 0, WS_TALLY_IP_TCP = 1 } ws_tally_ip_kind_t;

/* One worker's published figures. */
typedef struct {
    uint64_t open;        /* WebSocket connections open */
    uint64_t mem;         /* bytes counted by mem.h */
    uint64_t relayed;     /* messages sent to other workers */
    uint64_t received;    /* messages received from other workers */
    uint64_t dropped;     /* messages to other workers dropped: their channel was full */
} ws_tally_figures_t;

/* Make a tally for nworkers (1..WS_TALLY_MAX_WORKERS) with room for ipcap
 * (address, worker) entries (0: no address table). Returns it with the
 * descriptor to pass to the workers in *fd, or NULL with errno set. */
ws_tally_t *ws_tally_create(unsigned nworkers, size_t ipcap, int *fd);
/* Map the tally behind fd as worker (1..nworkers). NULL with errno set. */
ws_tally_t *ws_tally_attach(int fd, unsigned worker);
void ws_tally_unmap(ws_tally_t *t);

unsigned ws_tally_workers(const ws_tally_t *t);
unsigned ws_tally_worker(const ws_tally_t *t);

/* A connection id unique in the server for the supervisor's lifetime. */
uint64_t ws_tally_next_id(ws_tally_t *t);

/* Take a place for one more open connection if the server holds fewer
 * than max (1), else 0; one compare-and-swap, so that workers upgrading at
 * once cannot pass max together. ws_tally_open_release gives it back. */
int ws_tally_open_hold(ws_tally_t *t, uint64_t max);
void ws_tally_open_release(ws_tally_t *t);
/* This worker's counted memory. */
void ws_tally_set_mem(ws_tally_t *t, uint64_t bytes);
/* Sums over every worker. */
uint64_t ws_tally_open(const ws_tally_t *t);
uint64_t ws_tally_mem(const ws_tally_t *t);

/* Cross-worker publish counters of this worker. */
void ws_tally_relay(ws_tally_t *t, uint64_t relayed, uint64_t received, uint64_t dropped);
/* Worker w's figures (w 1..nworkers). */
void ws_tally_figures(const ws_tally_t *t, unsigned w, ws_tally_figures_t *out);

/* This worker's block of built-in figures (ws_stats_bind it). */
ws_stats_t *ws_tally_stats(ws_tally_t *t);
/* Every worker's figures summed, with the counters of those that died. */
void ws_tally_stats_sum(const ws_tally_t *t, ws_stats_t *out);
/* The script's metrics table (series.h), as this worker (0: the supervisor). */
ws_series_t *ws_tally_series(ws_tally_t *t);

/* Connections of kind from ip in the whole server. */
uint32_t ws_tally_ip_count(ws_tally_t *t, ws_tally_ip_kind_t kind, const char *ip);
/* Count one more for this worker; returns the server-wide count after it,
 * or UINT32_MAX when the table is full (the caller refuses: nothing was
 * counted). */
uint32_t ws_tally_ip_inc(ws_tally_t *t, ws_tally_ip_kind_t kind, const char *ip);
void ws_tally_ip_dec(ws_tally_t *t, ws_tally_ip_kind_t kind, const char *ip);

/* Worker w is gone (the supervisor, before starting its successor): zero
 * its slot (its counters kept among the retired) and drop its address
 * entries. */
void ws_tally_forget(ws_tally_t *t, unsigned w);

#endif
