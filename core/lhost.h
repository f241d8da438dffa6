/*
 * lhost.h: the Lua host. Owns the lua_State, loads the script, and is the
 * only way the core calls Lua. Every call runs under lua_pcall with a
 * traceback handler: a Lua error is logged with file:line and never unwinds
 * through libuv. This header does not expose lua.h.
 */
#ifndef WS_LHOST_H
#define WS_LHOST_H

#include <stddef.h>

#include "buf.h"
#include "deflate.h"
#include "handshake.h"
#include "http.h"

typedef struct ws_server_s ws_server_t;
typedef struct ws_conn_s ws_conn_t;
typedef struct ws_lhost_s ws_lhost_t;

/* Create a Lua state, load script and compile its routes. On failure returns
 * NULL and a one-line message in err (with file:line for Lua errors). */
ws_lhost_t *ws_lhost_new(ws_server_t *srv, const char *script, char *err, size_t errlen);
void ws_lhost_free(ws_lhost_t *lh);
/* One bounded step of the Lua collector; 1 when it ended a cycle. */
int ws_lhost_collect_step(ws_lhost_t *lh);

/* Server shutdown: stop every timer so the loop can end. */
void ws_lhost_stop(ws_lhost_t *lh);

/* Run the script's on_shutdown function, if it registered one. */
void ws_lhost_shutdown(ws_lhost_t *lh);

/* Load the script again in the same Lua state. The project's modules (those
 * under the script's directory or ./lua) are required afresh. Only when the
 * new version loads and its routes compile does it replace the old one:
 * timers of the old version stop, on_reload hooks of the new one run with
 * changed (a description of what changed), and live connections find their
 * handlers in the new routes at their next event. Returns 0, or -1 with the
 * reason (file:line) in err while the old version keeps serving. */
int ws_lhost_reload(ws_lhost_t *lh, const char *changed, char *err, size_t errlen);

/* Call cb with the real path of the script and of every project module it loaded. */
void ws_lhost_files(ws_lhost_t *lh, void (*cb)(void *ud, const char *path), void *ud);

/* Answer a plain HTTP request: appends a complete HTTP/1.1 response to resp.
 * keep_alive says whether to announce Connection: close. */
void ws_lhost_http(ws_lhost_t *lh, ws_conn_t *c, ws_http_t *h, const ws_hs_request_t *req,
                   int keep_alive, ws_buf_t *resp);

/* Route and authorise an upgrade whose protocol checks passed (hs). Returns 0
 * when accepted: the Lua connection object exists, c->handler_ref,
 * c->route and c->subprotocol are set, and the route's own settings are
 * applied to c's limits and to dcfg (compression). Otherwise returns the HTTP status
 * to answer and appends the extra response headers to extra_headers and a
 * short reason to reason. */
int ws_lhost_upgrade(ws_lhost_t *lh, ws_conn_t *c, ws_http_t *h, const ws_hs_request_t *req,
                     const ws_hs_result_t *hs, ws_deflate_config_t *dcfg,
                     ws_buf_t *extra_headers, ws_buf_t *reason);

/* WebSocket events for an accepted connection. */
void ws_lhost_open(ws_lhost_t *lh, ws_conn_t *c);
void ws_lhost_message(ws_lhost_t *lh, ws_conn_t *c, const uint8_t *data, size_t len, int binary);
void ws_lhost_control(ws_lhost_t *lh, ws_conn_t *c, unsigned op, const uint8_t *data, size_t len);

/* The write queue of c emptied after it had to wait for the socket: on_drain. */
void ws_lhost_drain(ws_lhost_t *lh, ws_conn_t *c);

/* The connection is gone: run on_close, make the Lua object inert, forget it. */
void ws_lhost_closed(ws_lhost_t *lh, ws_conn_t *c);

#endif
