/* The "wspush.core" module of one host: publish, the connection table,
 * timers, lifecycle hooks, logging. Its functions find their host in
 * upvalue 1. lua/wspush/init.lua builds the user-facing "wspush" module on
 * top of it. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "lbind.h"
#include "log.h"
#include "broker.h"
#include "publish.h"

#define TIMER_MT "wspush.timer"

struct ws_ltimer_s {
    ws_timer_t t;          /* on the hub's timers */
    ws_lhost_t *lh;
    int fn_ref;
    int box_ref;           /* keeps the Lua handle alive while the timer runs */
    uint32_t gen;          /* the script generation that made it: a reload retires it */
    ws_ltask_t *task;      /* its callback, while that waits: a repeating timer skips its turns */
    ws_ltimer_t *next, *prev;
};

typedef struct {
    ws_ltimer_t *t;        /* NULL once stopped */
} tbox_t;

/* The script's on_publish function for the topic, if any: called with
 * (data, topic) under protection; an error is logged, nothing else. */
static void run_listener(ws_lhost_t *lh, const char *topic, size_t tl, const void *data, size_t dl)
{
    lua_State *L = lh->L;
    int top = lua_gettop(L);
    if (lua_rawgeti(L, LUA_REGISTRYINDEX, lh->listen_ref) == LUA_TTABLE) {
        lua_pushlstring(L, topic, tl);
        if (lua_rawget(L, -2) == LUA_TFUNCTION) {
            lua_pushlstring(L, data, dl);
            lua_pushlstring(L, topic, tl);
            ws__lcall_log(lh, 2, 0, "on_publish");
        }
    }
    lua_settop(L, top);
}

static int l_publish(lua_State *L)
{
    ws_lhost_t *lh = ws__lhost_up(L);
    size_t tl, dl;
    unsigned op;
    const char *topic = luaL_checklstring(L, 1, &tl);
    const char *data = ws__lmessage(L, 2, &dl, &op);
    if (!data)
        return ws__lbad_utf8(L);
    lua_Integer n = (lua_Integer)ws_publish(lh->hub, topic, tl, op, data, dl);
    int failed = lh->hub->relay_failed;
    if (lh->listen_ref != LUA_NOREF)
        run_listener(lh, topic, tl, data, dl);
    lua_pushinteger(L, n);
    if (!failed)
        return 1;
    /* This node's subscribers have it; the other nodes will not. */
    lua_pushliteral(L, "broker unavailable");
    return 2;
}

void ws__lcore_published(void *host, const char *topic, size_t tlen, const void *data, size_t dlen)
{
    ws_lhost_t *lh = host;
    if (lh->listen_ref == LUA_NOREF)
        return;
    ws__lbudget_start(lh);
    run_listener(lh, topic, tlen, data, dlen);
    ws__lbudget_end(lh);
}

void ws__lcore_broker(void *host, const char *what, const char *shard, const char *topic,
                      size_t tlen, uint64_t missed)
{
    ws_lhost_t *lh = host;
    lua_State *L = lh->L;
    if (lh->broker_ref == LUA_NOREF)
        return;
    ws__lbudget_start(lh);
    lua_rawgeti(L, LUA_REGISTRYINDEX, lh->broker_ref);
    lua_pushstring(L, what);
    lua_createtable(L, 0, 3);
    lua_pushstring(L, shard);
    lua_setfield(L, -2, "broker");
    if (topic) {
        lua_pushlstring(L, topic, tlen);
        lua_setfield(L, -2, "topic");
        lua_pushinteger(L, (lua_Integer)missed);
        lua_setfield(L, -2, "missed");
    }
    ws__ltask_hook(lh, 2, "on_broker");
    ws__lbudget_end(lh);
}

/* wspush.broker_status(): nil without --broker, else this worker's figures. */
static int l_broker_status(lua_State *L)
{
    struct ws_broker_s *b = ws__lhost_up(L)->hub->broker;
    if (!b)
        return 0;
    ws_broker_stats_t s;
    ws_broker_stats(b, &s);
    lua_createtable(L, 0, 10);
    lua_pushinteger(L, s.shards);
    lua_setfield(L, -2, "brokers");
    lua_pushinteger(L, s.up);
    lua_setfield(L, -2, "up");
    lua_pushboolean(L, s.up == s.shards);
    lua_setfield(L, -2, "connected");
    static const struct {
        const char *name;
        size_t off;
    } f[] = {{"reconnects", offsetof(ws_broker_stats_t, reconnects)},
             {"published", offsetof(ws_broker_stats_t, published)},
             {"publish_failed", offsetof(ws_broker_stats_t, publish_failed)},
             {"received", offsetof(ws_broker_stats_t, received)},
             {"gaps", offsetof(ws_broker_stats_t, gaps)},
             {"missed", offsetof(ws_broker_stats_t, missed)}};
    for (size_t i = 0; i < sizeof f / sizeof *f; i++) {
        lua_pushinteger(L, (lua_Integer) * (const uint64_t *)((const char *)&s + f[i].off));
        lua_setfield(L, -2, f[i].name);
    }
    lua_pushinteger(L, (lua_Integer)s.topics);
    lua_setfield(L, -2, "topics");
    return 1;
}

/* wspush.on_broker(fn): fn(event, info) hears "up", "down" and "gap". */
static int l_on_broker(lua_State *L)
{
    ws_lhost_t *lh = ws__lhost_up(L);
    if (!lua_isnil(L, 1))
        luaL_checktype(L, 1, LUA_TFUNCTION);
    /* During a load (its on_publish table exists), for the version loading. */
    int *ref = lh->pending_listen_ref != LUA_NOREF ? &lh->pending_broker_ref : &lh->broker_ref;
    luaL_unref(L, LUA_REGISTRYINDEX, *ref);
    lua_pushvalue(L, 1);
    *ref = lua_isnil(L, -1) ? (lua_pop(L, 1), LUA_NOREF) : luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

/* wspush.on_publish(topic, fn): fn(data, topic) runs in this worker for
 * every message published on topic, here or in another worker. One per
 * topic; a version's functions serve once it does. */
static int l_on_publish(lua_State *L)
{
    ws_lhost_t *lh = ws__lhost_up(L);
    luaL_checkstring(L, 1);
    if (!lua_isnoneornil(L, 2))
        luaL_checktype(L, 2, LUA_TFUNCTION);
    int *ref = lh->pending_listen_ref != LUA_NOREF ? &lh->pending_listen_ref : &lh->listen_ref;
    if (*ref == LUA_NOREF) {
        lua_newtable(L);
        *ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, *ref);
    lua_pushvalue(L, 1);
    lua_pushvalue(L, 2);
    lua_rawset(L, -3);
    return 0;
}

static int l_get(lua_State *L)
{
    ws_lhost_t *lh = ws__lhost_up(L);
    lua_Integer id = luaL_checkinteger(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, lh->conns_ref);
    lua_rawgeti(L, -1, id);
    return 1;
}

static int l_count(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)ws__lhost_up(L)->hub->nopen);
    return 1;
}

/* Open connections of the whole server: every worker's count, read from
 * the memory they share (no message between workers). */
static int l_count_all(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)ws_hub_open_total(ws__lhost_up(L)->hub));
    return 1;
}

static int conns_iter(lua_State *L)
{
    /* upvalue 1: the connection table; upvalue 2: the last key */
    lua_pushvalue(L, lua_upvalueindex(2));
    if (!lua_next(L, lua_upvalueindex(1)))
        return 0;
    lua_pushvalue(L, -2);
    lua_replace(L, lua_upvalueindex(2));
    return 1;
}

static int l_connections(lua_State *L)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, ws__lhost_up(L)->conns_ref);
    lua_pushnil(L);
    lua_pushcclosure(L, conns_iter, 2);
    return 1;
}

/* --- timers --- */

/* L: the calling thread (t_stop), or the host's during one of its calls. */
static void timer_release(ws_ltimer_t *t, lua_State *L)
{
    ws_timer_stop(&t->lh->hub->timers, &t->t);
    if (t->task)
        t->task->ud = NULL; /* it runs on, its timer gone */
    if (lua_rawgeti(L, LUA_REGISTRYINDEX, t->box_ref) == LUA_TUSERDATA)
        ((tbox_t *)lua_touserdata(L, -1))->t = NULL;
    lua_pop(L, 1);
    luaL_unref(L, LUA_REGISTRYINDEX, t->fn_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, t->box_ref);
    if (t->prev)
        t->prev->next = t->next;
    else
        t->lh->timers = t->next;
    if (t->next)
        t->next->prev = t->prev;
    free(t);
}

static void timer_done(ws_lhost_t *lh, ws_ltask_t *task, int status, int nres)
{
    (void)nres;
    ws_ltimer_t *t = task->ud;
    if (t)
        t->task = NULL;
    if (status != LUA_OK && status != WS_LTASK_ABANDONED)
        ws__lcall_log_error(lh, "timer");
}

static void timer_fire(ws_timer_t *h)
{
    ws_ltimer_t *t = (ws_ltimer_t *)h;
    ws_lhost_t *lh = t->lh;
    int repeat = t->t.repeat != 0;
    int fn_ref = t->fn_ref;
    /* The callback of an earlier turn still waits: one at a time, or a slow
     * backend would pile up callbacks. */
    if (t->task) {
        ws_log_debug("timer: the previous run still waits; this turn is skipped");
        return;
    }
    ws__lbudget_start(lh);
    /* A one-shot timer is released first, so the callback sees it as stopped. */
    if (!repeat) {
        t->fn_ref = LUA_NOREF;
        timer_release(t, lh->L);
    }
    lua_rawgeti(lh->L, LUA_REGISTRYINDEX, fn_ref);
    if (!repeat)
        luaL_unref(lh->L, LUA_REGISTRYINDEX, fn_ref);
    ws_ltask_t *task;
    int st = ws__ltask_run(lh, 0, 0, &task);
    if (st == WS_LTASK_WAITING) {
        task->done = timer_done;
        task->ud = repeat ? t : NULL;
        if (repeat)
            t->task = task;
    } else if (st != LUA_OK) {
        ws__lcall_log_error(lh, "timer");
    }
    ws__lbudget_end(lh);
}

static int new_timer(lua_State *L, int repeat)
{
    ws_lhost_t *lh = ws__lhost_up(L);
    lua_Number secs = luaL_checknumber(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    luaL_argcheck(L, secs >= 0 && secs <= 1e9, 1, "seconds must be between 0 and 1e9");
    uint64_t ms = (uint64_t)(secs * 1000.0 + 0.5);
    if (repeat && ms == 0)
        ms = 1;
    /* A finalizer run by lua_close would make a timer nothing frees. */
    if (lh->freeing)
        return luaL_error(L, "the server is shutting down: no new timers");
    ws_ltimer_t *t = calloc(1, sizeof *t);
    if (!t)
        return luaL_error(L, "out of memory");
    t->lh = lh;
    t->gen = lh->load_gen;
    lua_pushvalue(L, 2);
    t->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    tbox_t *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->t = t;
    luaL_setmetatable(L, TIMER_MT);
    lua_pushvalue(L, -1);
    t->box_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    t->next = lh->timers;
    if (lh->timers)
        lh->timers->prev = t;
    lh->timers = t;
    ws_hub_t *h = lh->hub;
    ws_timer_start(&h->timers, &t->t, ws_hub_now(h), ms, repeat ? ms : 0, timer_fire);
    return 1;
}

static int l_after(lua_State *L) { return new_timer(L, 0); }
static int l_every(lua_State *L) { return new_timer(L, 1); }

static int t_stop(lua_State *L)
{
    tbox_t *b = luaL_checkudata(L, 1, TIMER_MT);
    int was = b->t != NULL;
    if (b->t)
        timer_release(b->t, L);
    lua_pushboolean(L, was);
    return 1;
}

static int t_active(lua_State *L)
{
    tbox_t *b = luaL_checkudata(L, 1, TIMER_MT);
    lua_pushboolean(L, b->t != NULL);
    return 1;
}

void ws__ltimers_close_all(ws_lhost_t *lh)
{
    while (lh->timers)
        timer_release(lh->timers, lh->L);
}

void ws__ltimers_close_gen(ws_lhost_t *lh, uint32_t gen, int older)
{
    for (ws_ltimer_t *t = lh->timers, *next; t; t = next) {
        next = t->next;
        if (older ? t->gen < gen : t->gen == gen)
            timer_release(t, lh->L);
    }
}

/* --- waiting --- */

typedef struct {
    ws_lwait_t w;
    ws_timer_t timer;
    ws_lhost_t *lh;
} sleep_t;

static void sleep_fire(ws_timer_t *tm)
{
    sleep_t *s = (sleep_t *)((char *)tm - offsetof(sleep_t, timer));
    ws_lhost_t *lh = s->lh;
    ws_ltask_t *t = s->w.task;
    free(s);
    lua_pushboolean(lh->L, 1);
    ws__ltask_resume(lh, t, 1);
}

static void sleep_cancel(ws_lwait_t *w)
{
    sleep_t *s = (sleep_t *)w;
    ws_timer_stop(&s->lh->hub->timers, &s->timer);
    free(s);
}

/* wspush.sleep(seconds) -> true, or nil, "closed" when the connection of
 * the handler closes meanwhile. */
static int l_sleep(lua_State *L)
{
    ws_lhost_t *lh = ws__lhost_up(L);
    lua_Number secs = luaL_checknumber(L, 1);
    luaL_argcheck(L, secs >= 0 && secs <= 1e9, 1, "seconds must be between 0 and 1e9");
    ws_ltask_t *t = ws__ltask_waitable(lh, L, "wspush.sleep");
    sleep_t *s = ws_calloc(1, sizeof *s);
    s->lh = lh;
    s->w.cancel = sleep_cancel;
    ws_hub_t *h = lh->hub;
    ws_timer_start(&h->timers, &s->timer, ws_hub_now(h), (uint64_t)(secs * 1000.0 + 0.5), 0,
                   sleep_fire);
    return ws__ltask_wait(L, t, &s->w);
}

/* --- lifecycle hooks --- */

static int l_on_reload(lua_State *L)
{
    ws_lhost_t *lh = ws__lhost_up(L);
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_rawgeti(L, LUA_REGISTRYINDEX, lh->hooks_ref);
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    return 0;
}

static int l_on_shutdown(lua_State *L)
{
    ws_lhost_t *lh = ws__lhost_up(L);
    luaL_checktype(L, 1, LUA_TFUNCTION);
    luaL_unref(L, LUA_REGISTRYINDEX, lh->pending_shutdown_ref);
    lua_pushvalue(L, 1);
    lh->pending_shutdown_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

/* --- misc --- */

static int l_log(lua_State *L)
{
    const char *level = luaL_checkstring(L, 1);
    const char *msg = luaL_checkstring(L, 2);
    int lv = ws_log_level_parse(level);
    luaL_argcheck(L, lv >= 0, 1, "level must be error, warn, info or debug");
    lua_Debug ar;
    if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "Sl", &ar) && ar.currentline > 0)
        ws_log((ws_log_level_t)lv, "%s:%d: %s", ar.short_src, ar.currentline, msg);
    else
        ws_log((ws_log_level_t)lv, "%s", msg);
    return 0;
}

static int l_now(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)ws_hub_now(ws__lhost_up(L)->hub) / 1000.0);
    return 1;
}

void ws__lcore_push(ws_lhost_t *lh)
{
    lua_State *L = lh->L;
    static const luaL_Reg tmeth[] = {{"stop", t_stop}, {"active", t_active}, {NULL, NULL}};
    if (luaL_newmetatable(L, TIMER_MT)) {
        luaL_newlib(L, tmeth);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    static const luaL_Reg fns[] = {
        {"publish", l_publish},   {"get", l_get},         {"count", l_count},
        {"connections", l_connections}, {"after", l_after}, {"every", l_every},
        {"log", l_log},           {"now", l_now},         {"on_reload", l_on_reload},
        {"on_shutdown", l_on_shutdown}, {"sleep", l_sleep}, {"count_all", l_count_all},
        {"on_publish", l_on_publish}, {"on_broker", l_on_broker},
        {"broker_status", l_broker_status}, {NULL, NULL}};
    luaL_newlibtable(L, fns);
    lua_pushlightuserdata(L, lh);
    luaL_setfuncs(L, fns, 1);
    ws__lfetch_register(lh, lua_gettop(L));
    ws__lredis_register(lh, lua_gettop(L));
    ws__lmetrics_register(lh, lua_gettop(L));
    /* The codecs Lua shares with C, under the names scripts already use. */
    luaL_requiref(L, "wspush.native", ws__luaopen_native, 0);
    static const char *const shared[] = {"realpath", "same_origin"};
    for (size_t i = 0; i < sizeof shared / sizeof *shared; i++) {
        lua_getfield(L, -1, shared[i]);
        lua_setfield(L, -3, shared[i]);
    }
    lua_pop(L, 1);
    lua_pushstring(L, WSPUSH_VERSION);
    lua_setfield(L, -2, "version");
    lua_pushstring(L, lh->script_dir);
    lua_setfield(L, -2, "script_dir");
    lua_rawgeti(L, LUA_REGISTRYINDEX, lh->shared_ref);
    lua_setfield(L, -2, "shared");
    /* Which worker this is: a script runs a singleton (a timer that
     * publishes) on worker 1 only. */
    ws_tally_t *t = lh->hub->tally;
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, t ? ws_tally_worker(t) : 1);
    lua_setfield(L, -2, "id");
    lua_pushinteger(L, t ? ws_tally_workers(t) : 1);
    lua_setfield(L, -2, "count");
    lua_setfield(L, -2, "worker");
}
