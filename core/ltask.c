/* Tasks: every callback of the script runs in a coroutine of its own, taken
 * from a pool, so that it can wait (wspush.sleep, wspush.fetch) and the loop
 * goes on meanwhile. A callback that does not wait costs one lua_resume
 * instead of one lua_pcall.
 *
 * A waiting function checks that it may wait (ws__ltask_waitable), records
 * what it waits for (a ws_lwait_t) and yields. Whoever completes the wait
 * resumes the task with the function's results; when the task ends, its
 * owner (an event of a connection, an HTTP request, a timer) hears it
 * through t->done. The time budget counts running time only: the deadline of
 * each run takes off what the task ran before it waited. */
#include <stdlib.h>

#include "buf.h"
#include "lalloc.h"
#include "lbind.h"
#include "log.h"

/* Idle coroutines kept for the next callbacks; more are freed once a burst
 * of waiting handlers has ended (each holds ~1 KB). */
#define POOL_MAX 64

/* Defined here, under levent.c, since every task's stack holds them. */
const char *const ws__lev_label[WS_EV_COUNT] = {"open",    "on_message", "on_ping",
                                                "on_pong", "on_drain",   "on_close"};

/* A new coroutine for t, with the connections table and the event names at
 * the bottom of its stack (WS_LTASK_CONNS_IDX, WS_LTASK_EV_IDX). */
static void new_co(ws_lhost_t *lh, ws_ltask_t *t)
{
    t->co = lua_newthread(lh->L);
    t->ref = luaL_ref(lh->L, LUA_REGISTRYINDEX);
    lua_rawgeti(t->co, LUA_REGISTRYINDEX, lh->conns_ref);
    for (int ev = 0; ev < WS_EV_COUNT; ev++)
        lua_pushstring(t->co, ws__lev_label[ev]);
}

ws_ltask_t *ws__ltask_take(ws_lhost_t *lh)
{
    ws_ltask_t *t = lh->pool;
    if (t) {
        lh->pool = t->next;
        lh->npool--;
        return t;
    }
    t = ws_calloc(1, sizeof *t);
    new_co(lh, t);
    return t;
}

static void drop(ws_lhost_t *lh, ws_ltask_t *t)
{
    luaL_unref(lh->L, LUA_REGISTRYINDEX, t->ref);
    free(t);
}

void ws__ltask_put(ws_lhost_t *lh, ws_ltask_t *t)
{
    /* Its stack is empty: step moved the results out, failed reset it, and
     * an unused task never got more than push_event popped again. */
    t->wait = NULL;
    t->done = NULL;
    t->ud = NULL;
    t->used_ns = 0;
    if (lh->npool >= POOL_MAX || lh->freeing) {
        drop(lh, t);
        return;
    }
    t->next = lh->pool;
    lh->pool = t;
    lh->npool++;
}

static void link_waiting(ws_lhost_t *lh, ws_ltask_t *t)
{
    t->prev = NULL;
    t->next = lh->waiting;
    if (lh->waiting)
        lh->waiting->prev = t;
    lh->waiting = t;
    lh->nwaiting++;
}

static void unlink_waiting(ws_lhost_t *lh, ws_ltask_t *t)
{
    if (t->prev)
        t->prev->next = t->next;
    else
        lh->waiting = t->next;
    if (t->next)
        t->next->prev = t->prev;
    t->next = t->prev = NULL;
    lh->nwaiting--;
}

/* The message of a failed task with the traceback of its coroutine (arg 2),
 * as ws__lcall_traceback makes it for a protected call: run protected, since
 * an error object's __tostring is the script's code. */
static int traceback_of(lua_State *L)
{
    lua_State *co = lua_tothread(L, 2);
    const char *msg = lua_tostring(L, 1);
    if (!msg) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            msg = lua_tostring(L, -1);
        else
            msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, co, msg, 0);
    return 1;
}

/* Leave on lh->L the message of t's failure (the error object on t->co's
 * top, or why, when t yielded by itself), then close its pending
 * to-be-closed variables and give t a new coroutine: an error raised by the
 * budget's hook where it could not yield leaves hooks off in the old one. */
static void failed(ws_lhost_t *lh, ws_ltask_t *t, int status, const char *why)
{
    lua_State *L = lh->L;
    const char *budget = ws__lbudget_stopped(t->co);
    if (budget)
        why = budget;
    if (status == LUA_ERRMEM && lh->own_state) {
        lua_pushfstring(L, "not enough memory: the Lua heap is at its cap (--lua-max-memory, %d MiB)",
                        (int)(lh->lua_max_memory >> 20));
    } else {
        lua_pushcfunction(L, traceback_of);
        if (why)
            lua_pushstring(L, why);
        else
            lua_xmove(t->co, L, 1);
        lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref);
        if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
            lua_pop(L, 1);
            lua_pushliteral(L, "(error object cannot be shown)");
        }
    }
    /* Lua 5.4.4 answers with the status the coroutine died of, and leaves
     * an error object; an error of a __close there is lost with it. */
    lua_resetthread(t->co);
    luaL_unref(L, LUA_REGISTRYINDEX, t->ref);
    new_co(lh, t);
}

/* One run of t with nargs values on its coroutine. Returns as ws__ltask_run;
 * the results (or the message) are moved to lh->L, nres of them. Inlined:
 * every callback runs it, and a call layer is a visible share of an echo. */
static inline __attribute__((always_inline)) int step(ws_lhost_t *lh, ws_ltask_t *t, int nargs, int nres)
{
    lua_State *L = lh->L, *co = t->co;
    ws_ltask_t *outer = lh->running;
    lua_State *saved;
    lh->running = t;
    ws__lbudget_task_start(lh, t, outer == NULL, &saved);
    if (lh->own_state)
        ws__lalloc_enforce(1);
    int n = 0;
    int st = lua_resume(co, outer ? outer->co : L, nargs, &n);
    lh->box_seen = NULL; /* only while the stack that holds it runs */
    if (lh->own_state)
        ws__lalloc_enforce(0);
    if (st == LUA_YIELD && !t->wait) {
        /* The budget's hook stopped it (failed tells), or coroutine.yield in
         * the handler itself: nothing would resume it. */
        lua_pop(co, n);
        failed(lh, t, LUA_ERRRUN,
               "coroutine.yield in a handler: a handler waits only in wspush's waiting functions "
               "(wspush.sleep, wspush.fetch); yield inside a coroutine of your own");
        st = LUA_ERRRUN;
    } else if (st == LUA_OK) {
        n -= WS_LTASK_BASE; /* lua_resume counts what is under the function */
        if (n || nres > 0) {
            int base = lua_gettop(L);
            lua_xmove(co, L, n);
            if (nres >= 0)
                lua_settop(L, base + nres);
        }
    } else if (st != LUA_YIELD) {
        failed(lh, t, st, NULL);
    }
    ws__lbudget_task_end(lh, t, saved, st == LUA_YIELD);
    lh->running = outer;
    if (st == LUA_YIELD) {
        link_waiting(lh, t);
        return WS_LTASK_WAITING;
    }
    return st;
}

int ws__ltask_start(ws_lhost_t *lh, ws_ltask_t *t, int nargs, int nres)
{
    t->nres = nres;
    int st = step(lh, t, nargs, nres);
    if (st != WS_LTASK_WAITING)
        ws__ltask_put(lh, t);
    return st;
}

int ws__ltask_run(ws_lhost_t *lh, int nargs, int nres, ws_ltask_t **out)
{
    ws_ltask_t *t = ws__ltask_take(lh);
    lua_xmove(lh->L, t->co, nargs + 1);
    *out = t;
    return ws__ltask_start(lh, t, nargs, nres);
}

void ws__ltask_resume(ws_lhost_t *lh, ws_ltask_t *t, int nvals)
{
    unlink_waiting(lh, t);
    t->wait = NULL;
    lua_xmove(lh->L, t->co, nvals);
    int st = step(lh, t, nvals, t->nres);
    if (st == WS_LTASK_WAITING)
        return;
    t->done(lh, t, st, t->nres);
    ws__ltask_put(lh, t);
}

void ws__ltask_interrupt(ws_lhost_t *lh, ws_ltask_t *t, const char *why)
{
    ws_lwait_t *w = t->wait;
    if (!w)
        return; /* running: it finds out by itself */
    t->wait = NULL;
    w->cancel(w);
    lua_pushnil(lh->L);
    lua_pushstring(lh->L, why);
    ws__ltask_resume(lh, t, 2);
}

size_t ws__ltask_waiting(const ws_lhost_t *lh) { return lh->nwaiting; }

void ws__ltask_abandon_all(ws_lhost_t *lh)
{
    while (lh->waiting) {
        ws_ltask_t *t = lh->waiting;
        ws_lwait_t *w = t->wait;
        unlink_waiting(lh, t);
        t->wait = NULL;
        if (w)
            w->cancel(w);
        t->done(lh, t, WS_LTASK_ABANDONED, 0);
        drop(lh, t);
    }
}

void ws__ltask_free(ws_lhost_t *lh)
{
    while (lh->pool) {
        ws_ltask_t *t = lh->pool;
        lh->pool = t->next;
        drop(lh, t);
    }
    lh->npool = 0;
}

ws_ltask_t *ws__ltask_waitable(ws_lhost_t *lh, lua_State *L, const char *fname)
{
    ws_ltask_t *t = lh->running;
    if (t && t->co == L) {
        if (lua_isyieldable(L))
            return t;
        luaL_error(L,
                   "%s cannot wait here: a C function is between the handler and this call "
                   "(a table.sort comparator, a string.gsub callback, a metamethod called by C)",
                   fname);
    }
    if (lua_pushthread(L))
        luaL_error(L, "%s can only wait in a handler, a timer or a hook (not while the script "
                      "loads, nor in a route table's metamethods)", fname);
    luaL_error(L, "%s cannot wait inside a coroutine of your own (its resume would receive the "
                  "wait): call it from the handler itself", fname);
    return NULL;
}

int ws__ltask_wait(lua_State *L, ws_ltask_t *t, ws_lwait_t *w)
{
    w->task = t;
    t->wait = w;
    return lua_yield(L, 0);
}

/* A hook that may wait: it runs on by itself, and only its error is news. */
static void hook_done(ws_lhost_t *lh, ws_ltask_t *t, int status, int nres)
{
    (void)nres;
    if (status != LUA_OK && status != WS_LTASK_ABANDONED)
        ws__lcall_log_error(lh, t->ud);
}

void ws__ltask_hook(ws_lhost_t *lh, int nargs, const char *what)
{
    ws_ltask_t *t;
    int st = ws__ltask_run(lh, nargs, 0, &t);
    if (st == WS_LTASK_WAITING) {
        t->done = hook_done;
        t->ud = (void *)what;
    } else if (st != LUA_OK) {
        ws__lcall_log_error(lh, what);
    }
}
