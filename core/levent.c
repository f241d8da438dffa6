/* WebSocket events of the script's connections: open, on_message, on_ping,
 * on_pong, on_drain, on_close, each run in a task (ltask.c).
 *
 * One connection's events are handled one at a time, in order. While one of
 * its handlers waits, the connection's host data is a busy record: what
 * arrives meanwhile is queued there (copied), and once route->max_pending
 * events are queued the connection stops being read (ws_conn_hold), so
 * nothing is dropped and memory stays bounded. When the connection closes
 * under a waiting handler, the waiting call returns nil, "closed"; the
 * events queued before the close are still handled, on_close last.
 *
 * The messages of one read of a connection are held back and handed to its
 * handler together, in one task (hold, flush, batch_k): one task start, one
 * handler lookup through the C API and one connection push per read instead
 * of per message. The protocol lets go of them (ws_host_ops_t.flush) at the
 * end of the read and before anything else happens to the connection (a
 * control frame, a close, a protocol error), so handlers see the messages,
 * in order, where they saw them one by one. */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "frame.h"
#include "lbind.h"
#include "log.h"
#include "mem.h"


/* An event that waits for the handler before it. */
typedef struct ev_s {
    struct ev_s *next;
    uint8_t ev;         /* WS_EV_* */
    uint8_t binary;
    uint16_t code;      /* on_close */
    size_t len;
    char data[];        /* the payload, or the close reason (NUL-terminated) */
} ev_t;

/* A connection while one of its handlers runs a task that has waited. */
typedef struct {
    uint8_t kind;       /* WS_HD_BUSY */
    uint8_t ev;         /* the event its task runs */
    unsigned held : 1;  /* reading stopped: the queue is full */
    unsigned draining : 1; /* next_events is handling the queue */
    struct ws_route_s *route;
    ws_conn_t *c;       /* NULL once closed */
    uint64_t id;
    ws_ltask_t *task;   /* the handler running or waiting, or NULL */
    int box_ref;        /* the connection object once c has closed, for the handlers to come */
    ev_t *head, *tail;
    unsigned n;         /* events queued */
    size_t bytes;       /* what they hold, in the memory budget */
} busy_t;

static struct ws_route_s *route_of(void *hd)
{
    return *(uint8_t *)hd == WS_HD_BUSY ? ((busy_t *)hd)->route : hd;
}

/* After a reload, find the handler of route r in the new routes by its key
 * (or, for a catch-all connection's own route, by the path of its object at
 * index conn): once per route, not once per connection. */
static void rebind(ws_lhost_t *lh, struct ws_route_s *r, int conn)
{
    lua_State *L = lh->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, lh->server_ref);
    lua_getfield(L, -1, "resolve");
    lua_remove(L, -2);
    lua_rawgeti(L, LUA_REGISTRYINDEX, lh->app_ref);
    if (r->shared) {
        lua_pushlstring(L, r->key, r->len);
        lua_pushnil(L);
    } else {
        lua_pushnil(L);
        lua_getfield(L, conn, "path"); /* conn.path, through __index */
    }
    if (ws__lcall_log(lh, 3, 1, "rebinding a connection after reload") != 0)
        lua_pushnil(L);
    ws__lconn_set_handler(L, &r->handler_ref);
    r->gen = lh->gen;
}

/* Log a failed event handler (or the lookup of one), naming the event, the
 * route and the connection; the error message is popped. */
static void log_event_error(ws_lhost_t *lh, struct ws_route_s *r, uint64_t id, int ev)
{
    char buf[8192];
    ws_log_error("%s (%s, conn %llu): %s", ws__lev_label[ev], r->shared ? r->key : "*",
                 (unsigned long long)id, ws__lcall_where(lh, lua_tostring(lh->L, -1), buf, sizeof buf));
    lua_pop(lh->L, 1);
}

static void fail_event(ws_conn_t *c, int ev)
{
    static const char msg[] = "internal server error";
    if (c && ev != WS_EV_CLOSE)
        ws_conn_close(c, WS_CLOSE_INTERNAL, msg, sizeof msg - 1);
}

/* handler[name] through its metatable: run protected, as user code. */
static int lookup(lua_State *L)
{
    lua_gettable(L, 1);
    return 1;
}

/* Push the connection object on S: c's, or (once c has closed) the one b kept. */
static void push_conn(ws_lhost_t *lh, lua_State *S, ws_conn_t *c, busy_t *b)
{
    if (b && b->box_ref != LUA_NOREF)
        lua_rawgeti(S, LUA_REGISTRYINDEX, b->box_ref);
    else
        ws__lconn_push(lh, S, c);
}

/* Push handler[name] and the connection object on S (the coroutine of the
 * task that will run it); 0 (nothing pushed) when the
 * handler has no such function. A plain handler table is read raw; one with
 * a metatable (inheritance, or a strict mode whose __index raises or loops)
 * is read inside a protected call under the time budget, and a failure
 * there counts as the handler's (logged, 1011). A connection whose route a
 * reload removed is closed with 1001. c is NULL once closed (then b holds
 * the object). */
static int push_event(ws_lhost_t *lh, lua_State *S, struct ws_route_s *r, ws_conn_t *c,
                      busy_t *b, int ev)
{
    lua_State *L = lh->L;
    if (r->gen != lh->gen) {
        push_conn(lh, L, c, b);
        rebind(lh, r, lua_gettop(L));
        lua_pop(L, 1);
    }
    if (r->handler_ref == LUA_NOREF) {
        static const char msg[] = "endpoint removed by a reload";
        if (c)
            ws_conn_close(c, WS_CLOSE_GOING_AWAY, msg, sizeof msg - 1);
        return 0;
    }
    if (lua_rawgeti(S, LUA_REGISTRYINDEX, r->handler_ref) != LUA_TTABLE) {
        lua_pop(S, 1);
        return 0;
    }
    lua_pushvalue(S, WS_LTASK_EV_IDX(ev));
    int t = lua_rawget(S, -2); /* handler, f */
    if (t == LUA_TNIL && lua_getmetatable(S, -2)) {
        lua_pop(S, 2);
        lua_rawgeti(S, LUA_REGISTRYINDEX, lh->ev_ref[ev]);
        lua_xmove(S, L, 2);
        lua_pushcfunction(L, lookup);
        lua_insert(L, -3);
        if (ws__lcall(lh, 2, 1) != LUA_OK) {
            log_event_error(lh, r, c ? ws_conn_id(c) : b->id, ev);
            fail_event(c, ev);
            return 0;
        }
        t = lua_type(L, -1);
        lua_xmove(L, S, 1);
    } else {
        lua_replace(S, -2);
    }
    if (t != LUA_TFUNCTION) {
        lua_pop(S, 1);
        return 0;
    }
    if (b && b->box_ref != LUA_NOREF)
        lua_rawgeti(S, LUA_REGISTRYINDEX, b->box_ref);
    else
        ws__lconn_push_in_task(S, c);
    ws__lconn_note(lh, S, -1);
    return 1;
}

static void event_done(ws_lhost_t *lh, ws_ltask_t *t, int status, int nres);

/* A new busy record for c, whose handler for ev waits in t. */
static busy_t *busy_new(ws_lhost_t *lh, ws_conn_t *c, struct ws_route_s *r)
{
    (void)lh;
    busy_t *b = ws_calloc(1, sizeof *b);
    b->kind = WS_HD_BUSY;
    b->route = r;
    b->c = c;
    b->id = ws_conn_id(c);
    b->box_ref = LUA_NOREF;
    ws_conn_set_host_data(c, b);
    return b;
}

/* Task t runs the handler push_event pushed on its coroutine, with nargs
 * arguments above it. An error is logged and, but for on_close, closes the
 * connection 1011. If it waits, b (made now if need be) records it. Returns
 * 1 when it waits. */
static int event_outcome(ws_lhost_t *lh, ws_ltask_t *t, struct ws_route_s *r, ws_conn_t *c,
                         busy_t *b, int ev, int st)
{
    if (st != WS_LTASK_WAITING) {
        log_event_error(lh, r, c ? ws_conn_id(c) : b->id, ev);
        fail_event(c, ev);
        return 0;
    }
    if (!b)
        b = busy_new(lh, c, r);
    b->task = t;
    b->ev = (uint8_t)ev;
    t->done = event_done;
    t->ud = b;
    return 1;
}

static inline int run_event(ws_lhost_t *lh, ws_ltask_t *t, struct ws_route_s *r, ws_conn_t *c,
                            busy_t *b, int ev, int nargs)
{
    int st = ws__ltask_start(lh, t, nargs + 1, 0);
    return st == LUA_OK ? 0 : event_outcome(lh, t, r, c, b, ev, st);
}

/* Run event e of b's connection (c, or NULL once closed). Returns 1 when
 * its handler waits. */
static int dispatch(ws_lhost_t *lh, busy_t *b, const ev_t *e)
{
    int ev = e->ev;
    ws_ltask_t *t = ws__ltask_take(lh);
    lua_State *L = t->co;
    if (!push_event(lh, L, b->route, b->c, b, ev)) {
        ws__ltask_put(lh, t);
        return 0;
    }
    int nargs = 0;
    if (ev == WS_EV_MESSAGE || ev == WS_EV_PING || ev == WS_EV_PONG) {
        lua_pushlstring(L, e->data, e->len);
        nargs = 1;
        if (ev == WS_EV_MESSAGE) {
            lua_pushboolean(L, e->binary);
            nargs = 2;
        }
    } else if (ev == WS_EV_CLOSE) {
        lua_pushinteger(L, e->code);
        lua_pushstring(L, e->data);
        nargs = 2;
    }
    return run_event(lh, t, b->route, b->c, b, ev, nargs);
}

/* b is done: the connection's events run directly again, or (closed) what
 * b kept is released. */
static void busy_free(ws_lhost_t *lh, busy_t *b)
{
    while (b->head) {
        ev_t *e = b->head;
        b->head = e->next;
        free(e);
    }
    ws_mem_sub(WS_MEM_BUFFERS, b->bytes);
    if (b->c) {
        ws_conn_set_host_data(b->c, b->route);
        if (b->held)
            ws_conn_hold(b->c, 0);
    } else {
        luaL_unref(lh->L, LUA_REGISTRYINDEX, b->box_ref);
        if (!b->route->shared) { /* a catch-all connection's own */
            luaL_unref(lh->L, LUA_REGISTRYINDEX, b->route->handler_ref);
            free(b->route);
        }
    }
    free(b);
}

/* Handle b's queue in order until a handler waits or the queue is empty
 * (then b goes). */
static void next_events(ws_lhost_t *lh, busy_t *b)
{
    b->draining = 1;
    while (b->head) {
        ev_t *e = b->head;
        b->head = e->next;
        if (!b->head)
            b->tail = NULL;
        b->n--;
        b->bytes -= e->len;
        ws_mem_sub(WS_MEM_BUFFERS, e->len);
        if (b->held && b->c && b->n < b->route->max_pending) {
            b->held = 0;
            ws_conn_hold(b->c, 0);
        }
        int waits = dispatch(lh, b, e);
        free(e);
        if (waits) {
            b->draining = 0;
            return;
        }
    }
    b->draining = 0;
    busy_free(lh, b);
}

static void event_done(ws_lhost_t *lh, ws_ltask_t *t, int status, int nres)
{
    (void)nres;
    busy_t *b = t->ud;
    b->task = NULL;
    if (status == WS_LTASK_ABANDONED) {
        busy_free(lh, b);
        return;
    }
    if (status != LUA_OK) {
        log_event_error(lh, b->route, b->id, b->ev);
        fail_event(b->c, b->ev);
    }
    next_events(lh, b);
}

/* Queue an event for b's connection, whose handler runs or waits. */
static void enqueue(busy_t *b, int ev, const void *data, size_t len, int binary, unsigned code)
{
    size_t extra = ev == WS_EV_CLOSE ? 1 : 0;
    ev_t *e = ws_malloc(sizeof *e + len + extra);
    e->next = NULL;
    e->ev = (uint8_t)ev;
    e->binary = (uint8_t)binary;
    e->code = (uint16_t)code;
    e->len = len;
    if (len)
        memcpy(e->data, data, len);
    if (extra)
        e->data[len] = '\0';
    if (b->tail)
        b->tail->next = e;
    else
        b->head = e;
    b->tail = e;
    b->n++;
    b->bytes += len;
    ws_mem_add(WS_MEM_BUFFERS, len);
    if (b->c && !b->held && b->n >= b->route->max_pending) {
        b->held = 1;
        ws_conn_hold(b->c, 1);
    }
}

/* Does the handler of r have a function for ev? Read raw: a handler table
 * with a metatable may inherit it, so that one answers yes. */
static int may_handle(ws_lhost_t *lh, struct ws_route_s *r, int ev)
{
    lua_State *L = lh->L;
    if (r->handler_ref == LUA_NOREF || r->gen != lh->gen)
        return 1;
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->handler_ref);
    int yes = 1;
    if (lua_type(L, -1) == LUA_TTABLE && !lua_getmetatable(L, -1)) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, lh->ev_ref[ev]);
        yes = lua_rawget(L, -2) == LUA_TFUNCTION;
        lua_pop(L, 1);
    } else if (lua_type(L, -1) == LUA_TTABLE) {
        lua_pop(L, 1); /* the metatable */
    }
    lua_pop(L, 1);
    return yes;
}

/* Messages held back per read, at most: HOLD_MAX of them or HOLD_BYTES
 * (then they go and holding starts again), so the strings a batch pins stay
 * bounded even with compression. */
#define HOLD_MAX 32
#define HOLD_BYTES (64 * 1024)

/* A batch's task: the arguments are (lh, f, handler table, event name,
 * connection) and a message and its flag per message; f is the first
 * message's handler, looked up when it arrived. From the second message on,
 * the handler is looked up again each time (the script may change it), in
 * the task: a handler table's metamethods run under the budget, and what
 * they raise is the handler's error. Each message's handler gets a budget of
 * its own. An earlier handler that closed the connection drops the messages
 * after it, as the protocol drops what comes after our close frame; but once
 * a handler has waited, the rest are handled whatever happens, as events
 * queued behind a waiting handler are (busy_t). ctx: the next message's
 * index times two, plus 1 once a handler has waited. */
static int batch_k(lua_State *L, int status, lua_KContext ctx)
{
    ws_lhost_t *lh = lua_touserdata(L, 1);
    if (status == LUA_YIELD)
        ctx |= 1;
    int n = (lua_gettop(L) - 5) / 2;
    for (int i = (int)(ctx >> 1); i < n; i++) {
        /* On this stack (see push_event); a task run inside the handler
         * before this message forgot it. */
        if (!lh->box_seen)
            ws__lconn_note(lh, L, 5);
        if (i == 0) {
            lua_pushvalue(L, 2);
        } else {
            if (!(ctx & 1) && !ws__lconn_is_open(L, 5))
                break;
            ws__lbudget_task_next(lh, lh->running);
            lua_pushvalue(L, 4);
            if (lua_gettable(L, 3) != LUA_TFUNCTION) {
                lua_pop(L, 1);
                continue;
            }
        }
        lua_pushvalue(L, 5);
        lua_pushvalue(L, 6 + 2 * i);
        lua_pushvalue(L, 7 + 2 * i);
        lua_callk(L, 3, 0, (ctx & 1) | ((lua_KContext)(i + 1) << 1), batch_k);
    }
    return 0;
}

static int batch_run(lua_State *L) { return batch_k(L, LUA_OK, 0); }

/* Run what is held: the first message as run_now would, or the batch. */
static void flush(ws_lhost_t *lh)
{
    ws_ltask_t *t = lh->held.t;
    ws_conn_t *c = lh->held.c;
    struct ws_route_s *r = lh->held.r;
    unsigned n = lh->held.n;
    lh->held.c = NULL;
    lh->held.t = NULL;
    run_event(lh, t, r, c, NULL, WS_EV_MESSAGE, n == 1 ? 2 : 4 + 2 * (int)n);
}

void ws__levent_release(ws_lhost_t *lh)
{
    if (!lh->held.t)
        return;
    lua_settop(lh->held.t->co, WS_LTASK_BASE);
    lh->box_seen = NULL;
    ws__ltask_put(lh, lh->held.t);
    lh->held.c = NULL;
    lh->held.t = NULL;
}

static void on_flush(void *ud, ws_conn_t *c)
{
    ws_lhost_t *lh = ud;
    (void)c;
    if (lh->held.c)
        flush(lh);
}

/* Hold a message of c (whose handler is not running), for flush. */
static void hold(ws_lhost_t *lh, struct ws_route_s *r, ws_conn_t *c, const uint8_t *data,
                 size_t len, int binary)
{
    /* A second message needs the room of a whole batch on the coroutine's
     * stack: without it (no memory), the first goes alone. */
    if (lh->held.c && (lh->held.c != c || lh->held.n >= HOLD_MAX || lh->held.bytes >= HOLD_BYTES ||
                       (lh->held.n == 1 && !lua_checkstack(lh->held.t->co, 2 * HOLD_MAX + 8)))) {
        flush(lh);
        /* Another connection's handlers may have closed this one. */
        if (ws_conn_state(c) != WS_CONN_OPEN || ws_conn_host_data(c) != r)
            return;
    }
    lua_State *co;
    if (!lh->held.c) {
        /* The first: f, the connection, the message, its flag. */
        ws_ltask_t *t = ws__ltask_take(lh);
        co = t->co;
        if (!push_event(lh, co, r, c, NULL, WS_EV_MESSAGE)) {
            ws__ltask_put(lh, t);
            return;
        }
        lh->held.c = c;
        lh->held.r = r;
        lh->held.t = t;
        lh->held.n = 0;
        lh->held.bytes = 0;
    } else {
        co = lh->held.t->co;
        if (lh->held.n == 1) {
            /* The second: the first becomes a batch (see batch_k). */
            int f = WS_LTASK_BASE + 1;
            lua_pushcfunction(co, batch_run);
            lua_insert(co, f);
            lua_pushlightuserdata(co, lh);
            lua_insert(co, f + 1);
            lua_rawgeti(co, LUA_REGISTRYINDEX, r->handler_ref);
            lua_insert(co, f + 3);
            lua_pushvalue(co, WS_LTASK_EV_IDX(WS_EV_MESSAGE));
            lua_insert(co, f + 4);
        }
    }
    lua_pushlstring(co, (const char *)data, len);
    lua_pushboolean(co, binary);
    lh->held.n++;
    lh->held.bytes += len;
}

/* Run event ev of c, which no handler of c is running, with nargs
 * arguments from args (a payload; for on_message then binary; for on_close
 * the code and reason). Returns 1 when its handler waits. The time budget
 * starts with the task: before it, only C and raw Lua reads run (a handler
 * table's metamethods run in a protected call of their own). */
static int run_now(ws_lhost_t *lh, struct ws_route_s *r, ws_conn_t *c, int ev, int nargs,
                   const void *data, size_t len, int flag, const char *reason)
{
    ws_ltask_t *t = ws__ltask_take(lh);
    lua_State *co = t->co;
    if (!push_event(lh, co, r, c, NULL, ev)) {
        ws__ltask_put(lh, t);
        return 0;
    }
    if (ev == WS_EV_CLOSE) {
        lua_pushinteger(co, flag);
        lua_pushstring(co, reason);
    } else if (nargs) {
        lua_pushlstring(co, data, len);
        if (nargs > 1)
            lua_pushboolean(co, flag);
    }
    return run_event(lh, t, r, c, NULL, ev, nargs);
}

static void on_open(void *ud, ws_conn_t *c)
{
    run_now(ud, ws_conn_host_data(c), c, WS_EV_OPEN, 0, NULL, 0, 0, NULL);
}

static void on_message(void *ud, ws_conn_t *c, const uint8_t *data, size_t len, int binary)
{
    void *hd = ws_conn_host_data(c);
    if (*(uint8_t *)hd == WS_HD_BUSY)
        enqueue(hd, WS_EV_MESSAGE, data, len, binary, 0);
    else
        hold(ud, hd, c, data, len, binary);
}

static void on_control(void *ud, ws_conn_t *c, unsigned op, const uint8_t *data, size_t len)
{
    ws_lhost_t *lh = ud;
    int ev = op == WS_OP_PING ? WS_EV_PING : WS_EV_PONG;
    void *hd = ws_conn_host_data(c);
    if (*(uint8_t *)hd != WS_HD_BUSY)
        run_now(lh, hd, c, ev, 1, data, len, 0, NULL);
    else if (may_handle(lh, route_of(hd), ev))
        enqueue(hd, ev, data, len, 0, 0);
}

static void on_drain(void *ud, ws_conn_t *c)
{
    void *hd = ws_conn_host_data(c);
    if (*(uint8_t *)hd != WS_HD_BUSY) {
        run_now(ud, hd, c, WS_EV_DRAIN, 0, NULL, 0, 0, NULL);
        return;
    }
    busy_t *b = hd;
    if (!b->tail || b->tail->ev != WS_EV_DRAIN)
        enqueue(b, WS_EV_DRAIN, NULL, 0, 0, 0);
}

/* Keep c's object for the handlers still to run after c is gone. */
static void keep_box(ws_lhost_t *lh, busy_t *b, ws_conn_t *c)
{
    ws__lconn_push(lh, lh->L, c);
    b->box_ref = luaL_ref(lh->L, LUA_REGISTRYINDEX);
}

static void on_closed(void *ud, ws_conn_t *c, unsigned code, const char *reason)
{
    ws_lhost_t *lh = ud;
    lua_State *L = lh->L;
    void *hd = ws_conn_host_data(c);
    if (*(uint8_t *)hd == WS_HD_BUSY) {
        /* A handler of c runs or waits: on_close comes after it (and after
         * what is queued), on the object kept for them. */
        busy_t *b = hd;
        keep_box(lh, b, c);
        ws__lconn_detach(lh, c);
        ws_conn_set_host_data(c, NULL);
        b->c = NULL;
        b->held = 0;
        enqueue(b, WS_EV_CLOSE, reason, strlen(reason), 0, code);
        if (b->task && !b->draining)
            ws__ltask_interrupt(lh, b->task, "closed");
        return;
    }
    struct ws_route_s *r = hd;
    int waits = run_now(lh, r, c, WS_EV_CLOSE, 2, NULL, 0, (int)code, reason);
    if (waits) {
        busy_t *b = ws_conn_host_data(c);
        keep_box(lh, b, c);
        b->c = NULL;
    }
    ws__lconn_detach(lh, c);
    ws_conn_set_host_data(c, NULL);
    if (!waits && !r->shared) { /* a catch-all connection's own */
        luaL_unref(L, LUA_REGISTRYINDEX, r->handler_ref);
        free(r);
    }
}

const ws_host_ops_t ws_lhost_ops = {
    .http = ws__lhost_http,
    .upgrade = ws__lhost_upgrade,
    .cancel = ws__lhost_cancel,
    .open = on_open,
    .message = on_message,
    .flush = on_flush,
    .control = on_control,
    .drain = on_drain,
    .closed = on_closed,
    .published = ws__lcore_published,
    .broker = ws__lcore_broker,
};
