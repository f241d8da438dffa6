/*
 * conn.h: one client connection, from the first HTTP byte to the TCP close:
 * HTTP requests, the upgrade, WebSocket messages in and out, the close
 * handshake and the write queue.
 *
 * Lifetime: a connection is never freed inside one of its own callbacks.
 * Closing marks it CLOSING (close handshake) and then CLOSED (uv_close called);
 * its memory is released in the uv_close callback on a later loop turn.
 */
#ifndef WS_CONN_H
#define WS_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "deflate.h"
#include "http.h"
#include "message.h"
#include "pubsub.h"
#include "server.h"

typedef enum {
    WS_CONN_HTTP,    /* reading HTTP requests; may upgrade */
    WS_CONN_OPEN,    /* WebSocket open */
    WS_CONN_CLOSING, /* close frame sent and/or received; finishing */
    WS_CONN_CLOSED   /* uv_close called; waiting for the close callback */
} ws_conn_state_t;

struct ws_conn_s {
    uv_tcp_t tcp;               /* first: the handle's address is the connection's */
    ws_server_t *srv;
    uint64_t id;
    ws_conn_state_t state;
    unsigned close_sent : 1;     /* our close frame is queued */
    unsigned close_received : 1; /* the peer's close frame arrived */
    unsigned shutdown : 1;       /* TCP FIN sent after the last write */
    unsigned end_after_write : 1;/* close TCP once the queue drains (HTTP close, failed WS) */
    unsigned is_ws : 1;          /* upgraded (Lua knows the connection) */
    unsigned in_dirty : 1;
    unsigned want_drain : 1;     /* tell Lua (on_drain) when the queue empties: set when a
                                    write had to wait, or Lua saw a backlog (buffered(), a
                                    refused send) */
    unsigned http_partial : 1;   /* part of an HTTP request has arrived */
    unsigned ip_counted : 1;     /* counted in the server's per-address table */
    unsigned on_open_list : 1;   /* next/prev link server->open, not server->conns */
    unsigned backpressure : 2;   /* ws_backpressure_t */
    uint8_t peer_family;         /* AF_INET, AF_INET6, or 0 when unknown */
    uint16_t peer_port;
    unsigned close_code;         /* what on_close reports */

    ws_conn_t *next, *prev;      /* on server->open (state OPEN) or server->conns (the rest) */
    ws_conn_t *dirty_next;       /* server->dirty */

    ws_http_t *http;             /* HTTP phase only */
    ws_msg_reader_t reader;      /* WebSocket phase */
    ws_deflate_t *deflate;       /* permessage-deflate, when negotiated */

    /* Output: chunks queued, then handed to one uv_write at a time. */
    ws_chunk_t **q;
    uint32_t qn, qcap;
    size_t qoff;                 /* bytes of q[0] already written by a partial try_write */
    size_t queued;               /* bytes in q not yet written */
    struct ws_wreq_s *w;         /* the write in flight, or NULL (see conn.c) */
    size_t inflight;             /* bytes of the write in flight */

    /* Lua side (opaque to the core) */
    int handler_ref;             /* registry ref of the handler table: route->handler_ref
                                    (not ours), or our own for a catch-all connection */
    uint32_t gen;                /* script generation handler_ref belongs to */
    struct ws_route_s *route;    /* the route, shared by its connections (its key and
                                    handler); NULL when routed by the catch-all */
    char *subprotocol;           /* during the upgrade only */

    /* Liveness, in loop milliseconds (uv_now). */
    uint64_t t_rx;               /* last bytes received */
    uint64_t t_msg;              /* last data message either way (idle timeout) */
    union {                      /* one per phase: a connection is in one or the other */
        uint64_t t_http;         /* HTTP phase: close (408) when the request is not whole by then */
        uint64_t t_ping;         /* open: when our unanswered ping left; 0 = none */
    };

    /* Limits, from the command line or the route's handler table. */
    size_t max_buffered;
    size_t max_message;
    uint32_t idle_ms;            /* 0 = no idle timeout */
    float rate, burst, tokens;   /* inbound messages/s token bucket; rate 0 = off */
    uint64_t t_tokens;

    char *close_reason;
    uint64_t deadline;           /* loop time (ms) by which the TCP close must happen; 0 = none */

    ws_sub_t **subs;             /* topic memberships */
    uint32_t nsubs, subcap;

    /* The peer's address in binary (16 bytes, not the 50 of its text):
     * ws_conn_remote and ws_conn_ip format it when asked. */
    uint8_t peer_addr[16];
};

/* Accept one pending connection on the server's listener. */
void ws_conn_accept(ws_server_t *s);

/* Queue one message or control frame. op is a ws_opcode_t. A data message
 * is compressed when permessage-deflate was negotiated, it is at least the
 * threshold long and flags lacks WS_SEND_PLAIN. Returns 0, or
 * WS_EINVAL when the connection is not open (closing or closed), or WS_EFULL
 * when a data message would take the queue over max_buffered (then the
 * backpressure policy has been applied: the message was dropped, or older
 * queued messages were, or the connection is closing with 1008). */
#define WS_SEND_PLAIN 0x1 /* never compress this message (e.g. already compressed data) */
int ws_conn_send(ws_conn_t *c, unsigned op, const void *data, size_t len, unsigned flags);

/* Queue a complete, shared frame (built once by pubsub). Takes a reference. */
int ws_conn_send_chunk(ws_conn_t *c, ws_chunk_t *frame);

/* Start the close handshake with code and reason (reason <= 123 bytes,
 * truncated otherwise). Returns 0, or WS_EINVAL when already closing. */
int ws_conn_close(ws_conn_t *c, unsigned code, const char *reason, size_t len);

/* Bytes queued and in flight. */
size_t ws_conn_buffered(const ws_conn_t *c);

/* Write what was queued during this loop iteration (called by the server). */
void ws_conn_flush(ws_conn_t *c);

/* Enforce close deadlines (called by the server's periodic sweep). */
void ws_conn_sweep(ws_conn_t *c, uint64_t now);

/* Close the TCP connection now; Lua hears of it (on_close) here, once.
 * Internal to conn.c and outq.c: others use ws_conn_abort or ws_conn_close. */
void ws__conn_finish(ws_conn_t *c);

/* Close the TCP connection now, without a close handshake. */
void ws_conn_abort(ws_conn_t *c, unsigned code);

/* Server shutdown: send close 1001 with reason to an open connection, end an
 * HTTP one once its response (if any) is written. */
void ws_conn_shutdown(ws_conn_t *c, const char *reason);

/* Client address without the port ("127.0.0.1", "::1"), into out. */
void ws_conn_ip(const ws_conn_t *c, char *out, size_t len);

/* Client address with the port ("127.0.0.1:50412", "[::1]:50412"), into out. */
#define WS_REMOTE_MAX 64
void ws_conn_remote(const ws_conn_t *c, char *out, size_t len);

#endif
