/*
 * host.h: what the protocol asks of the layer above it, the host (the Lua
 * host, lhost.h, or a test's fake). The protocol calls these through one
 * ws_host_ops_t and a void *: it never names a host's functions.
 *
 * Every call runs on the loop thread, from inside the protocol's own work on
 * connection c; c stays valid during the call whatever the host does with it
 * (closing it included). The host keeps its own per-connection data behind
 * ws_conn_host_data.
 *
 * An HTTP answer and an upgrade decision may come later: the host returns
 * WS_HOST_PENDING, keeps the request's ws_response_t / ws_upgrade_t (the
 * connection's, valid until answered), and finishes with
 * ws_conn_http_done / ws_conn_upgrade_done. Meanwhile the connection reads
 * nothing more. If the connection goes away first, cancel runs instead and
 * the host must forget it.
 */
#ifndef WS_HOST_H
#define WS_HOST_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "deflate.h"
#include "handshake.h"

typedef struct ws_conn_s ws_conn_t;

/* The answer is not ready yet (see above). */
#define WS_HOST_PENDING (-1)

/* A request as the host sees it; pointers are valid until it is answered. */
typedef struct {
    const ws_hs_request_t *hs;  /* method, HTTP version, headers as received */
    const char *url;            /* the request target, not NUL-terminated */
    size_t url_len;
    const char *body;
    size_t body_len;
    int keep_alive;             /* the connection stays open after the answer */
} ws_request_t;

/* A plain HTTP answer. The protocol frames it: status line, Content-Length,
 * Connection; a HEAD gets the headers without the body. */
typedef struct {
    int status;                 /* 100..999; anything else answers 500 */
    ws_buf_t headers;           /* "Name: value\r\n" lines (ws_http_header_add) */
    ws_buf_t body;
} ws_response_t;



/* What a WebSocket route may change for its connections. */
typedef struct {
    size_t max_message;
    size_t max_buffered;
    uint32_t idle_ms;           /* 0 = no idle timeout */
    float rate, burst;          /* inbound messages/s token bucket; rate 0 = off */
    int backpressure;           /* ws_backpressure_t */
    ws_deflate_config_t deflate;
} ws_route_limits_t;

/* An upgrade decision. The protocol fills limits with the server's settings
 * before asking; the host changes what its route overrides. */
typedef struct {
    int status;                 /* 0 accept; else 400..599: refuse with it */
    ws_route_limits_t limits;
    char *subprotocol;          /* accepted: the chosen one (the host's malloc; the
                                   protocol frees it), or NULL */
    ws_buf_t headers;           /* refused: extra response headers ("Name: value\r\n") */
    ws_buf_t reason;            /* refused: a short text for the body */
} ws_upgrade_t;

typedef struct {
    /* A plain HTTP request: fill res, return 0 or WS_HOST_PENDING. */
    int (*http)(void *host, ws_conn_t *c, const ws_request_t *req, ws_response_t *res);
    /* A valid WebSocket upgrade (the protocol checks passed): fill up,
     * return 0 or WS_HOST_PENDING. protocols: the Sec-WebSocket-Protocol
     * offer, or NULL. */
    int (*upgrade)(void *host, ws_conn_t *c, const ws_request_t *req, const char *protocols,
                   size_t protocols_len, ws_upgrade_t *up);
    /* A pending http or upgrade will not be answered: c is going away. */
    void (*cancel)(void *host, ws_conn_t *c);
    /* The WebSocket connection is open (the 101 is queued). */
    void (*open)(void *host, ws_conn_t *c);
    void (*message)(void *host, ws_conn_t *c, const uint8_t *data, size_t len, int binary);
    /* Optional: a host may hold back the messages of one read of c and hand
     * them to its application together; let go of them now. Called at the
     * end of each read and before anything else happens to c (a control
     * frame, a close frame, c leaving the open state), so the application
     * sees them in order, where it would have one by one. */
    void (*flush)(void *host, ws_conn_t *c);
    /* A ping or pong arrived (op WS_OP_PING / WS_OP_PONG); a ping is answered already. */
    void (*control)(void *host, ws_conn_t *c, unsigned op, const uint8_t *data, size_t len);
    /* The outbound queue emptied after the host was told it was backed up. */
    void (*drain)(void *host, ws_conn_t *c);
    /* An open connection is gone: code and reason as on_close reports them.
     * Called once; c is freed on a later loop turn and must not be used after. */
    void (*closed)(void *host, ws_conn_t *c, unsigned code, const char *reason);
    /* Optional: a message another worker published reached this one (after
     * its subscribers here were queued). */
    void (*published)(void *host, const char *topic, size_t tlen, const void *data, size_t dlen);
    /* Optional: news of the broker: what is "up", "down" (shard is the
     * Redis concerned) or "gap" (missed messages of topic were lost). */
    void (*broker)(void *host, const char *what, const char *shard, const char *topic,
                   size_t tlen, uint64_t missed);
} ws_host_ops_t;

#endif
