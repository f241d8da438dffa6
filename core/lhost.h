/*
 * lhost.h: the Lua host. Owns a lua_State, loads the script, and answers the
 * protocol's questions (host.h) by calling the script's handlers. Every call
 * into Lua runs under lua_pcall with a traceback handler and the time budget:
 * a Lua error is logged with file:line and never unwinds through libuv. This
 * header does not expose lua.h. Loop thread only.
 */
#ifndef WS_LHOST_H
#define WS_LHOST_H

#include <stddef.h>

#include "host.h"

typedef struct ws_hub_s ws_hub_t;
typedef struct ws_lhost_s ws_lhost_t;

/* The protocol's host operations; their void * is the ws_lhost_t. */
extern const ws_host_ops_t ws_lhost_ops;

/* Create a Lua state, load script and compile its routes, for hub's
 * connections. lua_timeout: the budget of one callback, in seconds;
 * lua_max_memory: the cap on the state's heap (0 = none). On failure
 * returns NULL and a one-line message in err (with file:line for Lua
 * errors). The caller then gives the host to the hub (ws_hub_set_host). */
ws_lhost_t *ws_lhost_new(ws_hub_t *hub, const char *script, double lua_timeout,
                         size_t lua_max_memory, char *err, size_t errlen);
void ws_lhost_free(ws_lhost_t *lh);
/* One bounded step of the Lua collector; 1 when it ended a cycle. */
int ws_lhost_collect_step(ws_lhost_t *lh);

/* Server shutdown: stop every timer of the script. */
void ws_lhost_stop(ws_lhost_t *lh);

/* Run the script's on_shutdown function, if it registered one. It may wait:
 * ws_lhost_busy says when it and every other waiting handler are done. */
void ws_lhost_shutdown(ws_lhost_t *lh);
/* Handlers waiting now (a wspush.sleep, a fetch, ...). */
size_t ws_lhost_busy(const ws_lhost_t *lh);

/* The client wspush.fetch uses (the application's; NULL: none). */
struct ws_fetcher_s;
void ws_lhost_set_fetcher(ws_lhost_t *lh, struct ws_fetcher_s *f);
/* The server has stopped: drop the handlers still waiting (their waits are
 * cancelled, nothing resumes them) and forget the fetcher, which the
 * application frees next. */
void ws_lhost_release(ws_lhost_t *lh);

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

/* A digest of the contents of those files, as they are on disk now (never
 * 0). Workers compare it with the version their supervisor validated. */
uint64_t ws_lhost_digest(ws_lhost_t *lh);
/* The next reload replaces the serving version only if, once loaded, the
 * files' digest is digest (it fails otherwise: they changed meanwhile). */
void ws_lhost_expect(ws_lhost_t *lh, uint64_t digest);

#endif
