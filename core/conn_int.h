/*
 * conn_int.h: the connection's struct and the functions its two files share:
 * conn.c (life, output, close, sweeps, access records) and conn_recv.c (what
 * arrives: HTTP, the upgrade, WebSocket frames). Include nowhere else.
 *
 * conn_recv.c calls into conn.c, never the reverse: conn.c reaches the
 * reading side only through the transport's callbacks.
 */
#ifndef WS_CONN_INT_H
#define WS_CONN_INT_H

#include "conn.h"
#include "http.h"
#include "hub.h"
#include "message.h"
#include "outq.h"
#include "proxy.h"

/* An HTTP request the host is answering, or an upgrade it is deciding: the
 * request (which the host may keep until it answers) and its answer. */
typedef struct {
    ws_request_t req;
    ws_hs_request_t hs;
    ws_hs_result_t check;   /* the upgrade's protocol checks (accept key, offers) */
    int upgrade;            /* 1: up is being decided; 0: res is being answered */
    int done;               /* the host answered (maybe from inside its call) */
    uint64_t t0;            /* when it arrived whole (ms), with --access-log */
    ws_response_t res;
    ws_upgrade_t up;
    ws_header_t hdrs[WS_HTTP_MAX_HEADERS];
} ws_pending_t;

/* What a WebSocket's access record tells at its close (--access-log only). */
typedef struct {
    uint64_t t0;        /* opened (ms) */
    uint64_t bytes_in;  /* read from the peer after the upgrade */
    int64_t bytes_out;  /* handed to the transport after the 101 (starts below 0 by
                           the HTTP bytes still queued at the upgrade) */
    uint64_t msgs_in, msgs_out;
    char path[];        /* the request's path, without its query */
} ws_conn_access_t;

/* What few connections need, made when first needed (ws__conn_rare): out of
 * ws_conn_t, an idle connection's block stays in a smaller malloc class
 * (296 bytes: a 304-byte chunk; the limits below inline made it 328, a 336-byte
 * chunk, and the first three fields 352 before that). */
typedef struct {
    char *close_reason;     /* the close's reason, once one is known */
    ws_conn_access_t *acc;  /* an open WebSocket's, with --access-log */
    ws_ipaddr_t client;     /* behind a trusted proxy (hub->proxies): the client the
                               latest request's X-Forwarded-For names, when has_client */
    unsigned has_client : 1;
    /* An open WebSocket's opt-in limits (--idle-timeout, --rate-limit or its route's);
     * made at the upgrade when one is on. */
    uint32_t idle_ms;       /* 0 = no idle timeout */
    float rate, burst, tokens; /* inbound messages/s token bucket; rate 0 = off */
    uint64_t t_tokens;
} ws_conn_rare_t;

/* Every connection has one, idle ones included: keep it small. */
struct ws_conn_s {
    ws_hub_t *hub;
    ws_transport_t *t;
    void *host_data;
    uint64_t id;
    unsigned state : 2;          /* ws_conn_state_t */
    unsigned close_sent : 1;     /* our close frame is queued */
    unsigned close_received : 1; /* the peer's close frame arrived */
    unsigned shutdown : 1;       /* our end of the stream was shut after the last write */
    unsigned end_after_write : 1;/* end once the queue drains (HTTP close, failed WS) */
    unsigned is_ws : 1;          /* upgraded (the host knows the connection) */
    unsigned in_dirty : 1;
    unsigned want_drain : 1;     /* tell the host (drain) when the queue empties: set when
                                    a write had to wait, or the host saw a backlog */
    unsigned http_partial : 1;   /* part of an HTTP request has arrived */
    unsigned ip_counted : 1;     /* counted in the hub's per-address table */
    unsigned tcp_counted : 1;    /* counted in hub->tcp_ips */
    unsigned on_open_list : 1;   /* next/prev link hub->open, not hub->conns */
    unsigned backpressure : 2;   /* ws_backpressure_t */
    uint16_t close_code;         /* what the host hears at the end */
    uint32_t t_drain;            /* low 32 bits of the clock when the write in flight began or
                                    last completed (differences are taken modulo 2^32) */

    ws_conn_t *next, *prev;      /* on hub->open (state OPEN) or hub->conns (the rest) */
    ws_conn_t *dirty_next;       /* hub->dirty */

    union {                      /* one per phase: is_ws says which */
        struct {
            ws_http_t *http;        /* the parser */
            ws_pending_t *pending;  /* while the host answers or decides */
            uint32_t requests;      /* answered on this connection (keep-alive) */
        };
        ws_msg_reader_t reader;  /* the WebSocket phase */
    };
    ws_deflate_t *deflate;       /* permessage-deflate, when negotiated */
    ws_outq_t out;

    /* Liveness, in clock milliseconds (ws_hub_now). */
    uint64_t t_rx;               /* last bytes received */
    uint64_t t_msg;              /* last data message either way (idle timeout) */
    union {                      /* one per phase: a connection is in one or the other */
        uint64_t t_http;         /* HTTP phase: close (408) when the request is not whole by then */
        uint64_t t_ping;         /* open: when our unanswered ping left; 0 = none */
    };

    /* From the command line or the route; the message size limit is the reader's, and the
     * opt-in limits (idle timeout, rate) are in rare. */
    size_t max_buffered;

    uint64_t deadline;           /* clock time (ms) by which the close must happen; 0 = none */

    ws_pubsub_member_t subs;     /* topic memberships */
    ws_conn_rare_t *rare;        /* NULL until one of its fields is needed */
};

/* c->rare, made (zeroed) if it was not yet. */
ws_conn_rare_t *ws__conn_rare(ws_conn_t *c);

/* The access record (--access-log), or NULL: the per-message counters ask. */
static inline ws_conn_access_t *ws__conn_acc(const ws_conn_t *c)
{
    return c->rare ? c->rare->acc : NULL;
}

/* The close's reason so far ("" when none). */
static inline const char *ws__conn_close_reason(const ws_conn_t *c)
{
    return c->rare && c->rare->close_reason ? c->rare->close_reason : "";
}

/* Set the close's reason (copied). */
void ws__conn_set_close_reason(ws_conn_t *c, const char *reason, size_t len);

/* Reading stops (WS_PAUSE_BACKPRESSURE) once the outbound queue reaches half
 * of max_buffered, and starts again under a quarter: a peer that does not
 * read its replies cannot make us queue more than that for them. */
static inline int ws__conn_over_high_water(const ws_conn_t *c)
{
    return ws_outq_buffered(&c->out) >= c->max_buffered / 2;
}

/* conn.c, for conn_recv.c */
ws_http_t *ws__conn_http_new(void);
void ws__conn_http_release(ws_http_t *h);
void ws__conn_link(ws_conn_t *c, ws_conn_t **list);
void ws__conn_unlink(ws_conn_t *c);
/* Have c's output written at the end of the loop turn (hub->dirty). Inline:
 * every queued frame calls it. */
static inline void ws__conn_mark_dirty(ws_conn_t *c)
{
    if (c->in_dirty)
        return;
    c->in_dirty = 1;
    c->dirty_next = c->hub->dirty;
    c->hub->dirty = c;
}
void ws__conn_set_deadline(ws_conn_t *c);
/* Have the host let go of the messages it holds back of c (host.h, flush):
 * at the end of a read, and before anything else happens to c. Whatever the
 * host runs may close c, so callers look at its state afterwards. */
static inline void ws__conn_settle(ws_conn_t *c)
{
    const ws_host_ops_t *h = c->hub->host;
    if (c->state == WS_CONN_OPEN && h->flush)
        h->flush(c->hub->host_ud, c);
}
/* Answer the HTTP request with status and a short text, then end. extra:
 * more header lines ("Name: value\r\n"), or NULL. */
void ws__conn_http_error(ws_conn_t *c, int status, const char *reason, const char *extra);
/* Fail the WebSocket connection (RFC 6455 7.1.7) for error err. */
void ws__conn_fail(ws_conn_t *c, int err);
/* Queue our close frame and enter CLOSING. */
void ws__conn_send_close_frame(ws_conn_t *c, unsigned code, const char *reason, size_t len);
/* Close the transport now; the host hears of an open connection's end here. */
void ws__conn_finish(ws_conn_t *c);
void ws__conn_pending_free(ws_pending_t *p);
/* The access records (conn.c), called only with --access-log. An
 * HTTP answer of status (reason: why it was refused, or NULL), for the
 * request c->pending while it is answered; a WebSocket's end; its record
 * started at the upgrade from the request p. */
void ws__conn_access_http(ws_conn_t *c, int status, const char *reason);
void ws__conn_access_close(ws_conn_t *c);
void ws__conn_access_open(ws_conn_t *c, const ws_pending_t *p);
/* Transport callbacks (conn_recv.c holds the table). */
void ws__conn_on_end(void *ud, int err);
void ws__conn_on_shutdown(void *ud, int status);
void ws__conn_on_close(void *ud);

#endif
