/*
 * server.h: the event loop and the listener: accept, the periodic sweep
 * (close deadlines), the end-of-iteration write flush, signals.
 */
#ifndef WS_SERVER_H
#define WS_SERVER_H

#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "cli.h"
#include "deflate.h"
#include "iptab.h"
#include "pubsub.h"
#include "reload.h"

typedef struct ws_conn_s ws_conn_t;
typedef struct ws_lhost_s ws_lhost_t;
typedef struct ws_ring_s ws_ring_t;

#define WS_READ_BUF 65536

typedef struct ws_server_s {
    uv_loop_t *loop;
    ws_config_t cfg;
    ws_lhost_t *lh;
    ws_pubsub_t pubsub;
    ws_reload_t reload;
    ws_iptab_t ips;     /* WebSocket connections per client address */
    ws_deflate_config_t deflate_cfg; /* permessage-deflate, from the command line */
    ws_buf_t zin, zout; /* scratch for one inflated / compressed message at a time */

    ws_conn_t *conns;   /* live connections not OPEN: HTTP, closing (intrusive list) */
    ws_conn_t *open;    /* open WebSocket connections (intrusive list) */
    ws_conn_t *dirty;   /* connections with queued output to flush (intrusive list) */
    size_t nconns;      /* entries in conns and open */
    uint64_t slow_ms;   /* period of the heartbeat sweep over open connections */
    uint64_t next_slow; /* loop time of the next one */
    size_t nopen;       /* WebSocket connections in state OPEN */
    uint64_t next_id;
    int stopping;       /* 1 during a graceful shutdown, 2 once the loop may end */
    uint64_t t_accept_warn;

    uv_tcp_t listener;
    uv_timer_t sweep;
    uv_prepare_t prepare;
    uv_check_t check;
    ws_ring_t *ring;    /* sends through io_uring, or NULL: writev */
    uv_signal_t sigint, sigterm;
    uv_timer_t shutdown_timer;
    int read_busy;      /* the shared read buffer is lent to a read callback */
    uint64_t reads, reads_seen; /* socket reads, and their count at the last slow sweep */
    int mem_dirty;      /* there was traffic since memory was last given back */
    uint8_t rbuf[WS_READ_BUF];
} ws_server_t;

/* Load the script and bind the listener. On failure returns a negative error
 * and writes a one-line message into err; nothing is left running. */
int ws_server_init(ws_server_t *s, uv_loop_t *loop, const ws_config_t *cfg, char *err,
                   size_t errlen);

/* The bound port (useful with --port 0). */
int ws_server_port(ws_server_t *s);

/* Run until stopped by SIGINT/SIGTERM. Returns 0. */
int ws_server_run(ws_server_t *s);

/* Release everything (after run returned). */
void ws_server_free(ws_server_t *s);

/* A connection was freed (conn.c): ends a graceful shutdown after the last one. */
void ws__server_conn_gone(ws_server_t *s);

/* Ask for output of c to be flushed at the end of this loop iteration. */
void ws_server_mark_dirty(ws_server_t *s, ws_conn_t *c);

#endif
