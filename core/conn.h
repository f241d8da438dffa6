/*
 * conn.h: one client connection, from the first HTTP byte to the close:
 * HTTP requests, the upgrade, WebSocket messages in and out, the close
 * handshake, limits, and its outbound queue. It reads and writes through a
 * transport (transport.h) and asks its host (host.h) what to do; it links
 * without Lua.
 *
 * The struct is opaque: the connection files own it. Everything runs on the
 * loop thread.
 *
 * Lifetime: a connection is never freed inside one of its own callbacks.
 * Closing marks it CLOSING (close handshake) and then CLOSED (transport
 * closing); its memory is released when the transport reports it closed, on a
 * later loop turn. The host hears of an open connection's end exactly once
 * (ops->closed), in the call that made it CLOSED; after that call the host
 * must not use c.
 */
#ifndef WS_CONN_H
#define WS_CONN_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "deflate.h"
#include "host.h"
#include "pubsub.h"
#include "transport.h"

typedef struct ws_hub_s ws_hub_t;

typedef enum {
    WS_CONN_HTTP,    /* reading HTTP requests; may upgrade */
    WS_CONN_OPEN,    /* WebSocket open */
    WS_CONN_CLOSING, /* close frame sent and/or received; finishing */
    WS_CONN_CLOSED   /* transport closing; freed when it has closed */
} ws_conn_state_t;

/* A new connection of hub over t (which it now owns), reading HTTP. */
ws_conn_t *ws_conn_new(ws_hub_t *hub, ws_transport_t *t);

uint64_t ws_conn_id(const ws_conn_t *c);
ws_conn_state_t ws_conn_state(const ws_conn_t *c);
ws_hub_t *ws_conn_hub(const ws_conn_t *c);
ws_transport_t *ws_conn_transport(const ws_conn_t *c);
/* The host's own data for c (NULL until set). */
void *ws_conn_host_data(const ws_conn_t *c);
void ws_conn_set_host_data(ws_conn_t *c, void *data);
/* permessage-deflate state, or NULL when it was not negotiated. */
ws_deflate_t *ws_conn_deflate(const ws_conn_t *c);
/* c's topic memberships (pubsub.h); c is the owner to subscribe them with. */
ws_pubsub_member_t *ws_conn_topics(ws_conn_t *c);

/* Queue one message or control frame. op is a ws_opcode_t. A data message
 * is compressed when permessage-deflate was negotiated, it is at least the
 * threshold long and flags lacks WS_SEND_PLAIN. Returns 0, or WS_EINVAL when
 * the connection is not open (closing or closed), or WS_EFULL when a data
 * message would take the queue over max_buffered (then the backpressure
 * policy has been applied: the message was dropped, or older queued messages
 * were, or the connection is closing with 1008). */
#define WS_SEND_PLAIN 0x1 /* never compress this message (e.g. already compressed data) */
int ws_conn_send(ws_conn_t *c, unsigned op, const void *data, size_t len, unsigned flags);

/* Queue a complete, shared frame (built once by publish). Takes a reference.
 * Returns as ws_conn_send. Never leaves a topic (publish relies on it). */
int ws_conn_send_chunk(ws_conn_t *c, ws_chunk_t *frame);

/* Start the close handshake with code and reason (reason <= 123 bytes,
 * truncated otherwise). Returns 0, or WS_EINVAL when not open. */
int ws_conn_close(ws_conn_t *c, unsigned code, const char *reason, size_t len);

/* Close now, without a close handshake; code is what the host hears unless
 * a close frame already went either way. */
void ws_conn_abort(ws_conn_t *c, unsigned code);

/* Bytes queued and in flight. */
size_t ws_conn_buffered(const ws_conn_t *c);

/* What c holds of the budgeted memory (mem.h): its queue, its inbound
 * message buffer, its compression state. */
size_t ws_conn_memory(const ws_conn_t *c);
/* 0 when a write of c has waited at least stall_ms (clock time now) without
 * completing: the peer is not taking what it is sent. */
int ws_conn_draining(ws_conn_t *c, uint64_t now, uint32_t stall_ms);
/* The memory budget is exceeded: drop c's queue and close it with 1013 (one
 * with a write in flight is cut at once: that write's memory is freed only
 * so; the host still hears 1013). */
void ws_conn_shed(ws_conn_t *c, uint64_t now);

/* Stop (on) or resume reading c's messages for its host: a handler of c
 * waits, and the messages it has not handled yet reached their bound. While
 * held, neither the heartbeat nor the idle timeout judges the peer, whose
 * pongs and messages wait unread. */
void ws_conn_hold(ws_conn_t *c, int on);

/* Ask for ops->drain once the outbound queue is empty. */
void ws_conn_want_drain(ws_conn_t *c);

/* Write what was queued (the hub calls it for its dirty connections). */
void ws_conn_flush(ws_conn_t *c);
/* For the hub's walks: take the first connection off hub->dirty (NULL when
 * none is left), and the next connection on the same list as c. */
ws_conn_t *ws_conn_dirty_pop(ws_hub_t *h);
ws_conn_t *ws_conn_next(const ws_conn_t *c);

/* Enforce deadlines, heartbeat and idle timeout at clock time now (the hub's
 * sweeps call it). */
void ws_conn_sweep(ws_conn_t *c, uint64_t now);

/* Server shutdown: close 1001 with reason for an open connection; an HTTP
 * one ends once its answer (if any) is written. */
void ws_conn_shutdown(ws_conn_t *c, const char *reason);

/* Finish a pending HTTP answer (the host returned WS_HOST_PENDING from
 * ops->http): res is the one the host was given, now filled. */
void ws_conn_http_done(ws_conn_t *c);
/* Finish a pending upgrade decision (ops->upgrade returned WS_HOST_PENDING):
 * the ws_upgrade_t the host was given is now filled. */
void ws_conn_upgrade_done(ws_conn_t *c);

/* Client address without the port ("127.0.0.1"), with it ("[::1]:50412"). */
void ws_conn_ip(const ws_conn_t *c, char *out, size_t len);
void ws_conn_remote(const ws_conn_t *c, char *out, size_t len);

#endif
