/*
 * lbind.h: what the Lua binding files (lhost.c, lconn.c, lws.c) share. Only
 * these files include lua.h.
 */
#ifndef WS_LBIND_H
#define WS_LBIND_H

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <uv.h>

#include "lhost.h"

typedef struct ws_ltimer_s ws_ltimer_t;

/* WebSocket events, in the order of ws__event_names. */
enum { WS_EV_OPEN, WS_EV_MESSAGE, WS_EV_PING, WS_EV_PONG, WS_EV_DRAIN, WS_EV_CLOSE, WS_EV_COUNT };

struct ws_lhost_s {
    lua_State *L;
    ws_server_t *srv;
    int server_ref;   /* the wspush.server module (routing glue) */
    int app_ref;      /* the compiled routes of the current script */
    int conns_ref;    /* table: id -> connection object (the connection table) */
    int json_ref;     /* cjson.encode */
    int ev_ref[WS_EV_COUNT]; /* the event names as Lua strings: looked up without hashing */
    uint32_t gen;     /* generation of the script serving now */
    uint32_t load_gen;/* generation of the script being loaded (gen, or gen + 1 during a reload) */
    int hooks_ref;    /* on_reload functions registered by the script being loaded */
    int shutdown_ref; /* the on_shutdown function of the script serving now */
    int pending_shutdown_ref; /* the one registered by the script being loaded */
    int shared_ref;   /* wspush.shared: survives reloads */
    int depth;        /* nesting of ws__lhost_pcall */
    char *project_dirs[2]; /* real paths whose modules reload with the script */
    char *script;
    char *script_dir;
    ws_ltimer_t *timers; /* live timers (intrusive list) */
    struct ws_route_s *routes; /* routes with connections, each shared by its connections */
    unsigned upgrades;  /* WebSocket upgrades accepted, for the collector's pace (lreq.c) */
};

/* A route as its connections share it (routes are few and connections many):
 * its key, and one registry ref of its handler table for script generation
 * gen, found again once per route after a reload instead of once per
 * connection. Kept until ws__lhost_free_routes. */
struct ws_route_s {
    struct ws_route_s *next;
    int handler_ref;  /* LUA_NOREF when the script of generation gen lacks the route */
    uint32_t gen;
    size_t len;
    char key[];
};
struct ws_route_s *ws__lhost_route(ws_lhost_t *lh, const char *key, size_t len);
void ws__lhost_free_routes(ws_lhost_t *lh);
/* Replace *ref by a registry ref of the handler table on top of the stack
 * (popped), or by LUA_NOREF when it is not a table; the old ref is released. */
void ws__lhost_set_handler(lua_State *L, int *ref);

/* The host owning L. */
ws_lhost_t *ws__lhost_of(lua_State *L);

/* The time budget of callbacks (lbudget.c): init after the standard
 * libraries are open, start/end around every call from C, free before
 * lua_close. */
void ws__lbudget_init(ws_lhost_t *lh);
void ws__lbudget_free(ws_lhost_t *lh);
void ws__lbudget_start(ws_lhost_t *lh);
void ws__lbudget_end(ws_lhost_t *lh);

/* Call the function below nargs arguments on the stack in protected mode with
 * a traceback. On error logs "what: message + traceback" and returns non-zero;
 * the stack then holds nothing of the call. */
int ws__lhost_pcall(ws_lhost_t *lh, int nargs, int nres, const char *what);

/* The message argument at index i of send/publish: a string, or a table sent
 * as JSON text; *op is WS_OP_BINARY when the argument after it is true (and
 * the data a string), else WS_OP_TEXT. Returns NULL when text is not valid
 * UTF-8. Raises for other types. */
const char *ws__lmessage(lua_State *L, int i, size_t *len, unsigned *op);
/* Push nil, "invalid UTF-8 (send it as binary)"; returns 2. */
int ws__lbad_utf8(lua_State *L);

/* "wspush.conn" userdata. */
void ws__lconn_register(lua_State *L);
/* Create the Lua object of c, its fields (path, query, params, headers,
 * remote, id, subprotocol, data) taken from the request table at index req,
 * and enter it in the connection table. */
void ws__lconn_new(ws_lhost_t *lh, ws_conn_t *c, int req);
/* Push the Lua object of c (must exist). */
void ws__lconn_push(ws_lhost_t *lh, ws_conn_t *c);
/* Make the object of c inert and remove it from the connection table. */
void ws__lconn_detach(ws_lhost_t *lh, ws_conn_t *c);

/* The "wspush.core" module. */
int ws__luaopen_core(lua_State *L);
/* Stop and release every timer (shutdown). */
void ws__ltimers_close_all(ws_lhost_t *lh);
/* Stop the timers made by generation gen (older != 0: by every generation before gen). */
void ws__ltimers_close_gen(ws_lhost_t *lh, uint32_t gen, int older);

#endif
