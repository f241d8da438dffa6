/*
 * fetch.h: an HTTP/1.1 client on the loop, for requests to other services
 * (wspush.fetch). No Lua: the binding calls this and resumes its coroutine
 * from the callback.
 *
 * A fetcher serves one loop: it owns the outbound connections (connecting,
 * busy, and idle keep-alive ones in a pool per host:port), the cap on how
 * many there are, and the address policy. A request (ws_fetch_t) goes
 * through: URL parse, name resolution (uv_getaddrinfo, off the loop thread;
 * IP literals without it), the address policy, a connection (pooled, or new
 * through ws_tcp_connect, or a wait in a FIFO queue while the cap is
 * reached), the request bytes, the response (llhttp), and redirects, all
 * under one deadline. Its callback runs exactly once with the result, unless
 * the request is cancelled or the fetcher freed first.
 *
 * Loop thread only. Writes complete (and, with io_uring, leave) in
 * ws_io_run, which the loop's driver runs every turn: server.c does it in
 * ws_hub_flush; a loop without a server must run it itself.
 *
 * Memory: the response being received (headers and body) and the request's
 * copies of its headers and body are counted as WS_MEM_BUFFERS (mem.h);
 * everything is released when the result has been delivered, the request
 * cancelled, or the fetcher freed. The body buffer grows as bytes arrive up
 * to max_body; a Content-Length over max_body fails before any body byte.
 */
#ifndef WS_FETCH_H
#define WS_FETCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "handshake.h" /* ws_header_t */
#include "transport.h"

typedef struct ws_fetcher_s ws_fetcher_t;
typedef struct ws_fetch_s ws_fetch_t;

typedef struct {
    unsigned max_outbound;  /* open outbound connections, idle pooled ones included (at least 1) */
    unsigned pool_per_host; /* idle keep-alive connections kept per host:port (0: none) */
    uint32_t idle_ms;       /* an idle pooled connection is closed after this */
} ws_fetch_config_t;

#define WS_FETCH_MAX_OUTBOUND 256
#define WS_FETCH_POOL_PER_HOST 8
#define WS_FETCH_IDLE_MS 30000
#define WS_FETCH_TIMEOUT_MS 30000          /* a request's timeout_ms of 0 */
#define WS_FETCH_MAX_BODY (1024 * 1024)    /* a request's max_body of 0 */
#define WS_FETCH_MAX_REDIRECTS 5

/* The defaults above. */
void ws_fetch_config_init(ws_fetch_config_t *cfg);

/* A fetcher on io's loop; cfg NULL: the defaults (cfg is copied). The
 * address policy starts as: refuse 169.254.0.0/16 and fe80::/10 (link-local,
 * where cloud metadata services answer), 64:ff9b::a9fe:0/112 (the first
 * through NAT64) and fd00:ec2::254 (AWS's IPv6 metadata address), allow
 * everything else. */
ws_fetcher_t *ws_fetcher_new(ws_io_t *io, const ws_fetch_config_t *cfg);

/* Add a range to the allow list (--fetch-allow) or the deny list
 * (--fetch-deny); cidr as ws_cidr_parse takes it ("10.0.0.0/8", "::1").
 * An address is refused when the built-in ranges or a deny range cover it,
 * unless an allow range covers it too. Returns 0, or -1 with the reason in
 * err (nothing added). Idle pooled connections are closed: they were opened
 * under the old policy. */
int ws_fetcher_allow(ws_fetcher_t *f, const char *cidr, char *err, size_t errlen);
int ws_fetcher_deny(ws_fetcher_t *f, const char *cidr, char *err, size_t errlen);

/* 1 when the policy lets a request connect to sa (the port is ignored). */
int ws_fetcher_permits(const ws_fetcher_t *f, const struct sockaddr *sa);

/* Cancel every request without calling its callback, close every
 * connection, and free the fetcher. NULL is a no-op. May be called from a
 * ws_fetch_cb. The loop must keep running until it has nothing left to do
 * (uv_run returns): handles close, and a name resolution or connect that was
 * in flight finishes, on later turns; their memory is freed then. */
void ws_fetcher_free(ws_fetcher_t *f);

/* Open outbound connections: connecting, busy and idle. A connect that was
 * abandoned (cancel, timeout) is given up at once and no longer counts. */
size_t ws_fetcher_connections(const ws_fetcher_t *f);
/* Of those, the idle ones in the pool. */
size_t ws_fetcher_idle(const ws_fetcher_t *f);

/* One request. Everything it points to is copied by ws_fetch_start: the
 * caller may free or reuse it once ws_fetch_start returns. */
typedef struct {
    const char *method;        /* NUL-terminated token ("GET", "POST"...); NULL: GET. Case matters */
    const char *url;           /* http:// or https://; url_len bytes */
    size_t url_len;
    /* "Name: value\r\n" lines, as ws_http_header_add builds them (so never
     * Content-Length, Transfer-Encoding or Connection: the body is framed
     * here). Host, User-Agent and Authorization given here replace the
     * ones this module would add. */
    const char *headers;
    size_t headers_len;
    const void *body;          /* body_len bytes, or NULL */
    size_t body_len;
    uint32_t timeout_ms;       /* the whole request, redirects included; 0: WS_FETCH_TIMEOUT_MS */
    size_t max_body;           /* larger response bodies fail; 0: WS_FETCH_MAX_BODY */
    int follow;                /* follow up to WS_FETCH_MAX_REDIRECTS redirects */
    int no_verify;             /* https: do not verify the server's certificate and name */
} ws_fetch_req_t;

/* The result, valid during the callback only (copy what you keep). */
typedef struct {
    int status;                  /* the final response's status; 0 when error is set */
    /* NULL on success, else one of these static strings, exactly:
     *   "timeout"                 the deadline passed (at any stage)
     *   "connection refused"      every allowed address refused the connect
     *   "cannot resolve host"     resolution failed, or the name is under .invalid (RFC 6761)
     *   "response too large"      the body would exceed max_body
     *   "address not allowed"     the policy refused every address of the host
     *   "connection closed"       the server closed before the response was complete
     *   "too many redirects"      more than WS_FETCH_MAX_REDIRECTS, with follow
     *   "invalid response"        not HTTP/1.x, or a head over 64 KiB (WS_HTTPC_MAX_HEAD)
     *   "invalid method"          method is not an HTTP token
     *   "invalid headers"         headers are not "Name: value\r\n" lines, or frame the body
     * or one of these, with a reason after the colon (never the URL's credentials):
     *   "invalid url: <why>"      (the request's URL or a redirect's Location)
     *   "connection failed: <libuv error text>"
     *   "tls: <why>"              the TLS handshake or a record failed, e.g. "tls:
     *                             certificate verify failed: self-signed certificate" */
    const char *error;
    const ws_header_t *headers;  /* as received: names as the server spelled them, in order
                                    (a chunked body's trailers after the head's) */
    size_t nheaders;
    const uint8_t *body;         /* body_len bytes (not NUL-terminated); empty for HEAD, 204,
                                    304; NULL when error is set */
    size_t body_len;
    const char *url;             /* the URL of the final response (after redirects), NUL-terminated */
} ws_fetch_res_t;

/* Called once per request with its result; res is valid during the call
 * only, and the ws_fetch_t is gone once the callback starts (do not cancel
 * it). Runs from the fetcher's own idle handle, never from inside a
 * ws_fetch_* or ws_fetcher_* call; it may start requests, cancel other
 * ones, and free the fetcher. */
typedef void (*ws_fetch_cb)(void *ud, const ws_fetch_res_t *res);

/* Start a request. Never NULL: failures, even immediate ones (a bad URL),
 * are delivered through cb on a later loop turn, never inside this call.
 *
 * The request: "METHOD target HTTP/1.1", Host (with the port when it is not
 * the default), User-Agent "wspush/<version>" and Basic Authorization from
 * the URL's userinfo, each unless the caller's headers have one; then the
 * caller's headers; then Content-Length when there is a body or the method
 * is POST, PUT or PATCH (the caller's headers may not frame the body: a
 * Content-Length or Transfer-Encoding there is "invalid headers").
 *
 * Redirects (301, 302, 303, 307, 308 with a Location, when follow is set):
 * 303 (but for HEAD), and 301/302 after a POST, continue as GET without
 * the body and without the caller's Content-Type, -Encoding, -Language and
 * -Location; to another origin (scheme, host, port), the caller's Host,
 * Authorization, Cookie and Proxy-Authorization headers are dropped (the
 * URL's own userinfo is the new URL's: a relative Location keeps it, an
 * absolute one has its own or none). Every hop's addresses pass the policy
 * again; a pooled connection to the new host:port is reused.
 *
 * A pooled connection that fails before any response byte (the server
 * closed it meanwhile) is retried once on a new connection for GET, HEAD,
 * PUT, DELETE and OPTIONS; never for POST or PATCH. */
ws_fetch_t *ws_fetch_start(ws_fetcher_t *f, const ws_fetch_req_t *req, ws_fetch_cb cb, void *ud);

/* Forget x: cb never runs; x is freed now (a write or name lookup in
 * flight lets go of its part when it reports); a connection it was using
 * mid-request is closed, not pooled; a connect in progress is closed when
 * it completes. No-op for NULL and from inside x's own callback. */
void ws_fetch_cancel(ws_fetch_t *x);

#endif
