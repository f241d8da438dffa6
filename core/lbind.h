/*
 * lbind.h: what the Lua binding files share. They are the only files that
 * include lua.h: lhost.c (the state, loading, reloading, events), lreq.c
 * (HTTP requests and upgrades), lconn.c ("wspush.conn"), lcore.c (the
 * "wspush.core" module and timers), lbudget.c (the time budget), lalloc.c
 * (the allocator), ltask.c (tasks that wait), levent.c (WebSocket events),
 * lfetch.c (wspush.fetch), lredis.c (wspush.redis), lmetrics.c
 * (wspush.metrics), lnative.c (the codecs
 * shared with Lua) and ltesting.c (wspush.testing's native side).
 */
#ifndef WS_LBIND_H
#define WS_LBIND_H

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "conn.h"
#include "hub.h"
#include "lalloc.h"
#include "lhost.h"

typedef struct ws_ltimer_s ws_ltimer_t;

/* WebSocket events, and their handlers' names (levent.c). */
enum { WS_EV_OPEN, WS_EV_MESSAGE, WS_EV_PING, WS_EV_PONG, WS_EV_DRAIN, WS_EV_CLOSE, WS_EV_COUNT };
extern const char *const ws__lev_label[WS_EV_COUNT];

struct ws_lhost_s {
    lua_State *L;     /* the state (the server's own), or the thread a test calls from */
    ws_hub_t *hub;
    double lua_timeout;
    uint64_t budget_ns; /* lua_timeout, as the time budget counts it */
    size_t lua_max_memory; /* the heap cap (own state only) */
    int own_state;    /* 1: L is ours (lua_close on free); 0: a test's (wspush.testing) */
    int freeing;      /* ws_lhost_free has begun: finalizers may still run, timers may not start */
    int server_ref;   /* the wspush.server module (routing glue) */
    int app_ref;      /* the compiled routes of the current script */
    int conns_ref;    /* table: id -> connection object (the connection table) */
    int core_ref;     /* this host's "wspush.core" module table */
    int ev_ref[WS_EV_COUNT]; /* the event names as Lua strings: looked up without hashing */
    uint32_t gen;     /* generation of the script serving now */
    uint32_t load_gen;/* generation of the script being loaded (gen, or gen + 1 during a reload) */
    int hooks_ref;    /* on_reload functions registered by the script being loaded */
    int shutdown_ref; /* the on_shutdown function of the script serving now */
    int pending_shutdown_ref; /* the one registered by the script being loaded */
    uint64_t expect;  /* the next reload commits only with this digest (0: any) */
    int listen_ref;   /* wspush.on_publish: topic -> function, of the version serving */
    int pending_listen_ref; /* the same, of the version being loaded */
    int broker_ref;   /* wspush.on_broker's function, of the version serving */
    int pending_broker_ref; /* the same, of the version being loaded */
    int shared_ref;   /* wspush.shared: survives reloads */
    int depth;        /* nesting of calls into Lua */
    lua_Hook saved_hook; /* a test's own hook, put back after each callback */
    int saved_mask, saved_count;
    char *project_dirs[2]; /* real paths whose modules reload with the script */
    char *script;
    char *script_dir;
    ws_ltimer_t *timers; /* live timers (intrusive list) */
    struct ws_route_s *routes; /* routes with connections, each shared by its connections */
    unsigned upgrades;  /* WebSocket upgrades accepted, for the collector's pace (lreq.c) */
    struct ws_ltask_s *running; /* the task running now (innermost), or NULL */
    struct ws_ltask_s *pool;    /* idle tasks */
    struct ws_ltask_s *waiting; /* tasks waiting (doubly linked) */
    unsigned npool;
    size_t nwaiting;
    struct ws_fetcher_s *fetcher; /* wspush.fetch's client (the application's), or NULL */
    struct ws_lredis_s *redis;    /* wspush.redis's clients (lredis.c) */
    int redis_ref;                /* table: URL string -> client (0: not made yet) */
    int redis_closed;             /* released: no more connections */
    struct ws_series_s *series;   /* the script's metrics without workers (lmetrics.c) */
    /* For the methods every message calls (lconn.c), compared by address
     * instead of read through Lua: the "wspush.conn" metatable and the
     * interned key "send". Set in the server's own state only. */
    const void *conn_mt;
    const void *send_key;
    /* The connection object of the event a task runs (or holds), which
     * that task's stack keeps alive, so no other object can have its
     * address: lconn.c's check_box knows it without a metatable read.
     * Set by levent.c for the event's connection, cleared when any task's
     * run ends (ltask.c) and when held messages are released. */
    const void *box_seen;
    /* The messages of one read of one connection, held back so that its
     * handler gets them in one task (levent.c): the protocol says when to
     * let go (ws_host_ops_t.flush). */
    struct {
        ws_conn_t *c;              /* NULL: nothing held */
        struct ws_route_s *r;
        struct ws_ltask_s *t;      /* they wait on its coroutine */
        unsigned n;
        size_t bytes;
    } held;
};

/* The host of the server's own state, found without a Lua call:
 * ws_lhost_new gives its state ws__lalloc with the host as the allocator's
 * data, so a state with another allocator (a test's, wspush.testing)
 * answers NULL, and its callers take the way through Lua. */
static inline ws_lhost_t *ws__lhost_own(lua_State *L)
{
    void *ud;
    return lua_getallocf(L, &ud) == ws__lalloc ? (ws_lhost_t *)ud : NULL;
}

/* What a connection's host data (ws_conn_host_data) points at, told apart by
 * its first byte: its route; while one of its handlers waits, a record of
 * that (levent.c), which points at the route; while its HTTP answer or its
 * upgrade decision waits, a record of that (lreq.c). */
enum { WS_HD_ROUTE, WS_HD_BUSY, WS_HD_PENDING };

/* A route as its connections share it (routes are few and connections many):
 * its key, and one registry ref of its handler table for script generation
 * gen, found again once per route after a reload instead of once per
 * connection. It is the host's data of each of its connections
 * (ws_conn_host_data). A connection routed by the catch-all has a route of
 * its own (not shared, no key), freed when it closes. Shared ones are kept
 * until ws__lhost_free_routes. */
struct ws_route_s {
    uint8_t kind;     /* WS_HD_ROUTE */
    unsigned shared : 1;
    struct ws_route_s *next;
    int handler_ref;  /* LUA_NOREF when the script of generation gen lacks the route */
    uint32_t gen;
    unsigned max_pending; /* messages queued while a handler waits (route option) */
    size_t len;
    char key[];
};
/* The shared route of key, made on first use. */
struct ws_route_s *ws__lhost_route(ws_lhost_t *lh, const char *key, size_t len);
/* A catch-all connection's own route, for the handler table at index handler. */
struct ws_route_s *ws__lhost_route_own(ws_lhost_t *lh, int handler);
void ws__lhost_free_routes(ws_lhost_t *lh);

/* The "wspush.conn" box: the userdata Lua holds. C clears c when the
 * connection closes, so a reference kept in Lua is inert and never touches
 * freed memory. Kept at 16 bytes: every idle connection has one. */
typedef struct {
    ws_conn_t *c;           /* NULL once closed */
    lua_Integer id;
} ws_lbox_t;

/* The host of a "wspush.core" function (its upvalue 1). */
#define ws__lhost_up(L) ((ws_lhost_t *)lua_touserdata((L), lua_upvalueindex(1)))

/* The time budget of callbacks (lbudget.c): init after the standard
 * libraries are open, start/end around every call from C, free before
 * lua_close. */
void ws__lbudget_init(ws_lhost_t *lh);
void ws__lbudget_free(ws_lhost_t *lh);
void ws__lbudget_start(ws_lhost_t *lh);
void ws__lbudget_end(ws_lhost_t *lh);
/* Stop the watchdog and run close(L) (lua_close) with its finalizers under
 * one time budget. */
void ws__lbudget_close(ws_lhost_t *lh, void (*close)(lua_State *L));

/* --- ltask.c: every callback runs in a task, which may wait --- */

typedef struct ws_ltask_s ws_ltask_t;
typedef struct ws_lwait_s ws_lwait_t;

/* A task that waited has ended: status LUA_OK with its nres results on top
 * of lh->L, or an error status with the message (and traceback) there. The
 * callee pops them. t is gone when this returns. */
typedef void (*ws_ltask_done_fn)(ws_lhost_t *lh, ws_ltask_t *t, int status, int nres);

/* A callback running in a coroutine of its own, taken from a pool: it can
 * wait (wspush.sleep, wspush.fetch) without blocking the loop. */
struct ws_ltask_s {
    lua_State *co;
    int ref;               /* registry ref of co */
    ws_ltask_t *next, *prev; /* the pool, or the host's waiting tasks */
    ws_lwait_t *wait;      /* what it waits for now, or NULL (running or pooled) */
    ws_ltask_done_fn done; /* set by the owner when the task waits */
    void *ud;              /* the owner's */
    int nres;              /* results its owner wants */
    uint64_t used_ns;      /* time run before its last wait: --lua-timeout counts running time only */
    uint64_t t_step;       /* uv_hrtime() when its current run began */
};

/* What a task waits for. The waiting function that made it resumes the
 * task when the thing happens (ws__ltask_resume); cancel stops it, frees it,
 * and must not resume anything. */
struct ws_lwait_s {
    ws_ltask_t *task;
    void (*cancel)(ws_lwait_t *w);
};

/* The host's connections table sits at the bottom of every task's stack,
 * under the functions it runs: an event pushes its connection object from
 * there (one table read instead of two and a move). Above it, the names of
 * the events (WS_EV_*): an event's handler is read with its name copied
 * from there instead of read from the registry. WS_LTASK_BASE values in all,
 * which lua_resume counts under a task's results. */
#define WS_LTASK_CONNS_IDX 1
#define WS_LTASK_EV_IDX(ev) (2 + (ev))
#define WS_LTASK_BASE (1 + WS_EV_COUNT)

/* ws__ltask_run's answer when the task waits. */
#define WS_LTASK_WAITING (-1)
/* The status done hears when the host goes away under a waiting task
 * (nothing on the stack; the owner frees what it holds and starts nothing). */
#define WS_LTASK_ABANDONED (-2)

/* A task to run: push the function and its arguments on t->co, then
 * ws__ltask_start it (or ws__ltask_put it back unused). */
ws_ltask_t *ws__ltask_take(ws_lhost_t *lh);
void ws__ltask_put(ws_lhost_t *lh, ws_ltask_t *t);
/* Run t's function, below nargs arguments on t->co; returns as ws__ltask_run. */
int ws__ltask_start(ws_lhost_t *lh, ws_ltask_t *t, int nargs, int nres);
/* Run the function below nargs arguments on lh->L in a task, under the time
 * budget. Returns what ws__lcall returns when it ends at once (results or the
 * message on lh->L), or WS_LTASK_WAITING: then *t is the task, which the
 * caller must give done and ud before returning to the loop, and lh->L holds
 * nothing of the call. */
int ws__ltask_run(ws_lhost_t *lh, int nargs, int nres, ws_ltask_t **t);
/* Run the function below nargs arguments on lh->L as a task whose results
 * nobody wants (a hook, a timer): what fails is logged as what (a static
 * string), now or when it ends. */
void ws__ltask_hook(ws_lhost_t *lh, int nargs, const char *what);
/* Resume t, which waited, with the nvals values on top of lh->L as the
 * results of its waiting function. t->wait must be finished (freed by its
 * maker). When t ends, t->done runs. */
void ws__ltask_resume(ws_lhost_t *lh, ws_ltask_t *t, int nvals);
/* Stop what t waits for and resume it at once with nil, why (a connection
 * closed under its handler, an upgrade decision that timed out). */
void ws__ltask_interrupt(ws_lhost_t *lh, ws_ltask_t *t, const char *why);
/* Tasks waiting now. */
size_t ws__ltask_waiting(const ws_lhost_t *lh);
/* Shutdown: stop every wait and drop its task without resuming it (its
 * done hears WS_LTASK_ABANDONED). */
void ws__ltask_abandon_all(ws_lhost_t *lh);
/* Free the pool. */
void ws__ltask_free(ws_lhost_t *lh);

/* For a waiting function named fname called on L: the task that may wait
 * there, or a raised error saying why not (the script is loading, a C call
 * such as table.sort's comparator is in between, or L is a coroutine of the
 * script's own, whose resume would take the wait). */
ws_ltask_t *ws__ltask_waitable(ws_lhost_t *lh, lua_State *L, const char *fname);
/* Wait for w (w->task is t, w->cancel set): returns what a C function
 * returns to yield; the values the task is resumed with are its results. */
int ws__ltask_wait(lua_State *L, ws_ltask_t *t, ws_lwait_t *w);

/* The time budget around one run of a task (lbudget.c): the deadline counts
 * what t ran before, and the watchdog's hook goes to t's coroutine. */
void ws__lbudget_task_start(ws_lhost_t *lh, ws_ltask_t *t, int outermost, lua_State **saved);
void ws__lbudget_task_end(ws_lhost_t *lh, ws_ltask_t *t, lua_State *saved, int waits);
/* The next handler that t runs in the same run (a batch of messages): a
 * budget of its own, as if it were a task of its own. */
void ws__lbudget_task_next(ws_lhost_t *lh, ws_ltask_t *t);
/* A run of co has failed: its variables are closed next, with the budget's
 * hook raising errors again. Returns the message if the budget stopped it
 * (it yielded), else NULL. */
const char *ws__lbudget_stopped(lua_State *co);

/* --- lcall.c: calls into Lua --- */

/* In a state of its own the traceback handler sits at this stack index for
 * the life of the state. */
#define WS_LCALL_TRACEBACK_IDX 1
/* The traceback message handler. */
int ws__lcall_traceback(lua_State *L);
/* Call the function below nargs arguments in protected mode, with the
 * traceback handler and the time budget. On error returns non-zero and
 * leaves the message (with its traceback) on the stack. */
int ws__lcall(ws_lhost_t *lh, int nargs, int nres);
/* The same, but an error is logged as "what: message + traceback" and
 * popped: the stack then holds nothing of the call. */
int ws__lcall_log(ws_lhost_t *lh, int nargs, int nres, const char *what);
/* Log the error message on top of lh->L as "what: message" and pop it. */
void ws__lcall_log_error(ws_lhost_t *lh, const char *what);
/* The same without a traceback, for load errors, where the message alone
 * (file:line) is the answer: into err, and popped. Returns 0 or -1. */
int ws__lcall_msg(ws_lhost_t *lh, int nargs, int nres, char *err, size_t errlen);
/* One step of the collector (as if kb KiB had been allocated), protected
 * and under the time budget: finalizers (__gc) are user code. Returns 1 when
 * the step ended a cycle. */
int ws__lcall_gc_step(ws_lhost_t *lh, int kb);
/* msg with every file Lua shortened to ".../tail" given its full path when
 * it is the script or a project module: msg itself or buf. */
const char *ws__lcall_where(ws_lhost_t *lh, const char *msg, char *buf, size_t n);
/* Push { module name = real path } of the project's modules. */
void ws__lcall_push_modules(ws_lhost_t *lh);
/* Call cb with the real path of the script and of every project module. */
void ws__lcall_files(ws_lhost_t *lh, void (*cb)(void *ud, const char *path), void *ud);

/* The message argument at index i of send/publish: a string, or a table sent
 * as JSON text; *op is WS_OP_BINARY when the argument after it is true (and
 * the data a string), else WS_OP_TEXT. Returns NULL when text is not valid
 * UTF-8. Raises for other types. */
const char *ws__lmessage(lua_State *L, int i, size_t *len, unsigned *op);
/* Push nil, "invalid UTF-8 (send it as binary)"; returns 2. */
int ws__lbad_utf8(lua_State *L);

/* --- lconn.c: "wspush.conn" --- */

/* Register the metatable (once per state). */
void ws__lconn_register(lua_State *L);
/* Note the addresses the methods compare with (lh->conn_mt, lh->send_key). */
void ws__lconn_fast(ws_lhost_t *lh);
/* Push the state's JSON encoder (returns its type), or pop one to set it. */
int ws__lconn_push_json(lua_State *L);
void ws__lconn_set_json(lua_State *L);
/* Replace *ref by a registry ref of the handler table on top of the stack
 * (popped), or by LUA_NOREF when it is not a table; the old ref is released. */
void ws__lconn_set_handler(lua_State *L, int *ref);
/* Create the Lua object of c, its fields (path, query, params, headers,
 * remote, id, subprotocol, data) taken from the request table at index req,
 * and enter it in the connection table. */
void ws__lconn_new(ws_lhost_t *lh, ws_conn_t *c, int req, const char *subprotocol);
/* Push the Lua object of c (must exist) on L (a thread of lh's state). */
void ws__lconn_push(ws_lhost_t *lh, lua_State *L, ws_conn_t *c);
/* The same on a task's coroutine co (see WS_LTASK_CONNS_IDX). */
void ws__lconn_push_in_task(lua_State *co, ws_conn_t *c);
/* Give back what levent holds (the host goes away). */
void ws__levent_release(ws_lhost_t *lh);
/* Note the connection object at index i of L (kept alive by that stack
 * while its task runs or is held) as lh->box_seen, if it is one. */
void ws__lconn_note(ws_lhost_t *lh, lua_State *L, int i);
/* Is the connection object at index i (one of ours) open? */
int ws__lconn_is_open(lua_State *L, int i);
/* Make the object of c inert and remove it from the connection table. */
void ws__lconn_detach(ws_lhost_t *lh, ws_conn_t *c);
/* conn.data of c's object = the value at index i (an upgrade's table). */
void ws__lconn_set_data(ws_lhost_t *lh, ws_conn_t *c, int i);

/* Put wspush.fetch's native half (core.fetch, core.can_wait) in the core
 * table at index core (lfetch.c). */
void ws__lfetch_register(ws_lhost_t *lh, int core);
/* Put wspush.redis's native half (core.redis_open, core.redis_call) in the
 * core table at index core (lredis.c). */
void ws__lredis_register(ws_lhost_t *lh, int core);
/* Close every client's connection (the server stops); calls fail from now. */
void ws__lredis_release(ws_lhost_t *lh);
/* Put wspush.metrics's native half (core.metrics_*) in the core table at
 * index core (lmetrics.c). */
void ws__lmetrics_register(ws_lhost_t *lh, int core);
/* The "wspush.core" module of lh: pushes a new table. */
void ws__lcore_push(ws_lhost_t *lh);
/* ws_host_ops_t.published: a message from another worker, for on_publish. */
void ws__lcore_published(void *host, const char *topic, size_t tlen, const void *data, size_t dlen);
/* ws_host_ops_t.broker: for on_broker. */
void ws__lcore_broker(void *host, const char *what, const char *shard, const char *topic,
                      size_t tlen, uint64_t missed);
/* Stop and release every timer (shutdown). */
void ws__ltimers_close_all(ws_lhost_t *lh);
/* Stop the timers made by generation gen (older != 0: by every generation before gen). */
void ws__ltimers_close_gen(ws_lhost_t *lh, uint32_t gen, int older);

/* The host operations of lreq.c: plain HTTP requests and upgrades. */
int ws__lhost_http(void *ud, ws_conn_t *c, const ws_request_t *req, ws_response_t *res);
int ws__lhost_upgrade(void *ud, ws_conn_t *c, const ws_request_t *req, const char *protocols,
                      size_t protocols_len, ws_upgrade_t *up);
/* A pending HTTP answer or upgrade decision will not be given: c is going away. */
void ws__lhost_cancel(void *ud, ws_conn_t *c);

/* A host in a test's state L (wspush.testing): as ws_lhost_new otherwise,
 * and prepare (a stack index of a function, or 0) is called with the host's
 * "wspush.core" table before the script runs. lh->L must be set to the
 * calling thread at every entry from the test, and back to L's main thread
 * after. */
ws_lhost_t *ws__lhost_new_in(lua_State *L, ws_hub_t *hub, const char *script, double lua_timeout,
                             int prepare, char *err, size_t errlen);

/* The "wspush.native" module: the C codecs Lua code shares with the core
 * (same-origin check, reason phrases, URL decoding, UTF-8 check). */
int ws__luaopen_native(lua_State *L);

#endif
