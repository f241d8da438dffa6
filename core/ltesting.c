/* The native side of wspush.testing: the server's real hub and Lua host,
 * in the test's own Lua state, over in-memory transports and a virtual
 * clock. lua/wspush/testing.lua plays the clients on top of it.
 *
 * Built only into the Lua C module build/lua/wspush/native.so, whose
 * luaopen_wspush_native adds a "testing" table to the wspush.native codecs.
 * Loop thread only (the test's thread); nothing here runs a libuv loop. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "error.h"
#include "lbind.h"
#include "log.h"
#include "memio.h"

#define APP_MT "wspush.testing.app"
#define PEER_MT "wspush.testing.peer"

/* The server's sweep period (server.c): deadlines and heartbeats are
 * checked this often on the virtual clock too. */
#define TICK_MS 100

typedef struct {
    int level;
    char *msg;
} record_t;

typedef struct {
    uv_loop_t loop;          /* never run: the hub only reads it */
    ws_io_t io;
    ws_hub_t hub;
    ws_lhost_t *lh;
    lua_State *main;         /* the state's main thread: lh->L between calls */
    uint64_t now;            /* the virtual clock, ms */
    uint64_t next_tick;
    char **argv;             /* the settings' strings point into it */
    int argc;
    ws_memio_t **peers;      /* every peer's transport, freed with the app */
    size_t npeers;
    record_t *logs;
    size_t nlogs, logcap;
    int closed;
    ws_log_sink_t saved_sink;
    void *saved_sink_ud;
} app_t;

typedef struct {
    app_t *app;
    size_t idx;              /* in app->peers */
    lua_Integer conn_id;
} peer_t;

static uint64_t virtual_now(void *ud) { return ((app_t *)ud)->now; }

static void capture(void *ud, ws_log_level_t level, const char *msg)
{
    app_t *a = ud;
    if (a->nlogs == a->logcap) {
        a->logcap = a->logcap ? a->logcap * 2 : 16;
        a->logs = ws_realloc(a->logs, a->logcap * sizeof *a->logs);
    }
    a->logs[a->nlogs].level = level;
    a->logs[a->nlogs].msg = ws_strndup(msg, strlen(msg));
    a->nlogs++;
}

/* Around every call that may reach the host: it runs on the calling thread,
 * and its log goes to the app. Argument checks (which may raise) come first. */
static void enter(app_t *a, lua_State *L)
{
    if (a->lh)
        a->lh->L = L;
    a->saved_sink = ws_log_set_sink(capture, a, &a->saved_sink_ud);
}

static void leave(app_t *a)
{
    if (a->lh)
        a->lh->L = a->main;
    ws_log_set_sink(a->saved_sink, a->saved_sink_ud, NULL);
}

/* Run the work a loop turn would: writes, completions, closes. */
static void pump(app_t *a)
{
    for (int i = 0; i < 64 && ws_hub_flush(&a->hub); i++)
        ;
}

static app_t *check_app(lua_State *L, int i)
{
    app_t *a = luaL_checkudata(L, i, APP_MT);
    if (a->closed)
        luaL_error(L, "the app is closed");
    return a;
}

static peer_t *check_peer(lua_State *L, int i)
{
    peer_t *p = luaL_checkudata(L, i, PEER_MT);
    if (p->app->closed)
        luaL_error(L, "the app is closed");
    if (!p->app->peers[p->idx])
        luaL_error(L, "the peer was released");
    return p;
}

static ws_memio_t *memio_of(peer_t *p) { return p->app->peers[p->idx]; }

/* --- the app --- */

static void app_free(app_t *a)
{
    if (a->closed)
        return;
    a->closed = 1;
    ws_hub_abort_all(&a->hub);
    pump(a);
    for (size_t i = 0; i < a->npeers; i++)
        if (a->peers[i])
            ws_memio_free(a->peers[i]);
    pump(a);
    ws_lhost_free(a->lh);
    a->lh = NULL;
    ws_hub_free(&a->hub);
    ws_io_free(&a->io);
    uv_run(&a->loop, UV_RUN_NOWAIT);
    uv_loop_close(&a->loop);
    free(a->peers);
    for (size_t i = 0; i < a->nlogs; i++)
        free(a->logs[i].msg);
    free(a->logs);
    for (int i = 0; i < a->argc; i++)
        free(a->argv[i]);
    free(a->argv);
}

/* testing.app(script, args, prepare) -> app | nil, err. args: command-line
 * options as strings; prepare(core) runs before the script. */
static int t_app(lua_State *L)
{
    const char *script = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    int prepare = lua_isnoneornil(L, 3) ? 0 : 3;
    if (prepare)
        luaL_checktype(L, 3, LUA_TFUNCTION);
    int nargs = (int)lua_rawlen(L, 2);
    for (int i = 1; i <= nargs; i++) {
        if (lua_rawgeti(L, 2, i) != LUA_TSTRING)
            return luaL_error(L, "testing.app: option %d is not a string", i);
        lua_pop(L, 1);
    }
    app_t *a = lua_newuserdatauv(L, sizeof *a, 0);
    memset(a, 0, sizeof *a);
    a->closed = 1; /* until it is whole: a __gc meanwhile frees nothing */
    luaL_setmetatable(L, APP_MT);
    a->argc = nargs + 2;
    a->argv = ws_calloc((size_t)a->argc, sizeof *a->argv);
    a->argv[0] = ws_strndup("wspush", 6);
    for (int i = 1; i <= nargs; i++) {
        lua_rawgeti(L, 2, i);
        a->argv[i] = ws_strndup(lua_tostring(L, -1), lua_rawlen(L, -1));
        lua_pop(L, 1);
    }
    a->argv[a->argc - 1] = ws_strndup(script, strlen(script));
    ws_config_t cfg;
    char err[2048];
    if (ws_cli_parse(a->argc, a->argv, &cfg, err, sizeof err) != WS_CLI_RUN) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    uv_loop_init(&a->loop);
    ws_io_init(&a->io, &a->loop);
    ws_hub_init(&a->hub, &a->io, &cfg);
    a->hub.clock = virtual_now;
    a->hub.clock_ud = a;
    ws_deflate_set_mem_limit(cfg.compression_max_memory);
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    a->main = lua_tothread(L, -1);
    lua_pop(L, 1);
    a->closed = 0;
    enter(a, L);
    a->lh = ws__lhost_new_in(L, &a->hub, script, cfg.lua_timeout, prepare, err, sizeof err);
    leave(a);
    if (!a->lh) {
        app_free(a);
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    a->lh->L = a->main;
    ws_hub_set_host(&a->hub, &ws_lhost_ops, a->lh);
    return 1;
}

static int a_core(lua_State *L)
{
    app_t *a = check_app(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, a->lh->core_ref);
    return 1;
}

/* app:connect(ip, port) -> peer: a new connection whose peer the test plays. */
static int a_connect(lua_State *L)
{
    app_t *a = check_app(L, 1);
    const char *ip = luaL_optstring(L, 2, "127.0.0.1");
    lua_Integer port = luaL_optinteger(L, 3, 50000);
    luaL_argcheck(L, port >= 0 && port <= 65535, 3, "port out of range");
    peer_t *p = lua_newuserdatauv(L, sizeof *p, 1);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1); /* the app lives as long as its peers */
    luaL_setmetatable(L, PEER_MT);
    a->peers = ws_realloc(a->peers, (a->npeers + 1) * sizeof *a->peers);
    ws_memio_t *m = ws_memio_new(&a->io, ip, (int)port);
    a->peers[a->npeers] = m;
    p->app = a;
    p->idx = a->npeers++;
    enter(a, L);
    p->conn_id = (lua_Integer)ws_conn_id(ws_conn_new(&a->hub, ws_memio_transport(m)));
    pump(a);
    leave(a);
    return 1;
}

static int a_flush(lua_State *L)
{
    app_t *a = check_app(L, 1);
    enter(a, L);
    pump(a);
    leave(a);
    return 0;
}

static int a_now(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)check_app(L, 1)->now);
    return 1;
}

/* app:step(target) -> now: move the clock to the next thing due (a timer,
 * a sweep) or to target, whichever is first, and do it. */
static int a_step(lua_State *L)
{
    app_t *a = check_app(L, 1);
    lua_Integer target = luaL_checkinteger(L, 2);
    luaL_argcheck(L, target >= 0, 2, "time must not be negative");
    uint64_t t = (uint64_t)target, next = ws_timers_next(&a->hub.timers);
    if (a->next_tick < next)
        next = a->next_tick;
    if (t < next)
        next = t;
    if (next > a->now)
        a->now = next;
    enter(a, L);
    ws_hub_run_timers(&a->hub);
    if (a->now >= a->next_tick) {
        ws_hub_tick(&a->hub);
        a->next_tick = a->now + TICK_MS;
    }
    pump(a);
    leave(a);
    lua_pushinteger(L, (lua_Integer)a->now);
    return 1;
}

static int a_reload(lua_State *L)
{
    app_t *a = check_app(L, 1);
    const char *changed = luaL_optstring(L, 2, "testing");
    char err[2048];
    enter(a, L);
    int r = ws_lhost_reload(a->lh, changed, err, sizeof err);
    pump(a);
    leave(a);
    if (r != 0) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* app:stop(): what SIGTERM does: on_shutdown, timers stop, every
 * connection is closed with 1001; the peers answer the close. */
static int a_stop(lua_State *L)
{
    app_t *a = check_app(L, 1);
    enter(a, L);
    ws_lhost_shutdown(a->lh);
    ws_lhost_stop(a->lh);
    ws_hub_shutdown(&a->hub, "server shutting down");
    pump(a);
    leave(a);
    return 0;
}

static int a_close(lua_State *L)
{
    app_t *a = luaL_checkudata(L, 1, APP_MT);
    enter(a, L);
    app_free(a);
    ws_log_set_sink(a->saved_sink, a->saved_sink_ud, NULL);
    return 0;
}

/* app:logs() -> { {level =, message =}, ... } recorded since the last call. */
static int a_logs(lua_State *L)
{
    app_t *a = luaL_checkudata(L, 1, APP_MT);
    static const char *const names[] = {"error", "warn", "info", "debug"};
    lua_createtable(L, (int)a->nlogs, 0);
    for (size_t i = 0; i < a->nlogs; i++) {
        lua_createtable(L, 0, 2);
        lua_pushstring(L, names[a->logs[i].level]);
        lua_setfield(L, -2, "level");
        lua_pushstring(L, a->logs[i].msg);
        lua_setfield(L, -2, "message");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
        free(a->logs[i].msg);
    }
    a->nlogs = 0;
    return 1;
}

/* app:count() -> connections of any kind still alive (HTTP ones included). */
static int a_count(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)check_app(L, 1)->hub.nconns);
    return 1;
}

/* --- peers --- */

static int p_feed(lua_State *L)
{
    peer_t *p = check_peer(L, 1);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    enter(p->app, L);
    ws_memio_feed(memio_of(p), data, len);
    pump(p->app);
    leave(p->app);
    return 0;
}

/* peer:take() -> everything the server wrote since the last take. */
static int p_take(lua_State *L)
{
    peer_t *p = check_peer(L, 1);
    size_t len;
    const uint8_t *out = ws_memio_output(memio_of(p), &len);
    lua_pushlstring(L, (const char *)out, len);
    ws_memio_consume(memio_of(p), len);
    return 1;
}

/* peer:finish(): the peer ends the stream (TCP FIN or a dropped connection). */
static int p_finish(lua_State *L)
{
    peer_t *p = check_peer(L, 1);
    enter(p->app, L);
    ws_memio_end(memio_of(p));
    pump(p->app);
    leave(p->app);
    return 0;
}

/* peer:hold(on): while on, the peer reads nothing (writes stay in flight). */
static int p_hold(lua_State *L)
{
    peer_t *p = check_peer(L, 1);
    int on = lua_toboolean(L, 2);
    enter(p->app, L);
    ws_memio_hold(memio_of(p), on);
    pump(p->app);
    leave(p->app);
    return 0;
}

/* peer:state() -> closed (the server closed the connection), shut (it
 * ended its side after its last write). */
static int p_state(lua_State *L)
{
    peer_t *p = check_peer(L, 1);
    lua_pushboolean(L, ws_memio_closed(memio_of(p)));
    lua_pushboolean(L, ws_memio_shut(memio_of(p)));
    return 2;
}

static int p_id(lua_State *L)
{
    lua_pushinteger(L, check_peer(L, 1)->conn_id);
    return 1;
}

/* peer:release(): the peer goes away; its memory goes once the server let go. */
static int p_release(lua_State *L)
{
    peer_t *p = luaL_checkudata(L, 1, PEER_MT);
    app_t *a = p->app;
    if (a->closed || !a->peers[p->idx])
        return 0;
    enter(a, L);
    ws_memio_free(a->peers[p->idx]);
    a->peers[p->idx] = NULL;
    pump(a);
    leave(a);
    return 0;
}

static int a_gc(lua_State *L)
{
    app_t *a = luaL_checkudata(L, 1, APP_MT);
    if (!a->closed) {
        enter(a, L);
        app_free(a);
        ws_log_set_sink(a->saved_sink, a->saved_sink_ud, NULL);
    }
    return 0;
}

int luaopen_wspush_native(lua_State *L);

int luaopen_wspush_native(lua_State *L)
{
    static const luaL_Reg app_methods[] = {
        {"core", a_core},   {"connect", a_connect}, {"flush", a_flush}, {"now", a_now},
        {"step", a_step},   {"reload", a_reload},   {"stop", a_stop},   {"close", a_close},
        {"logs", a_logs},   {"count", a_count},     {NULL, NULL}};
    static const luaL_Reg peer_methods[] = {
        {"feed", p_feed},   {"take", p_take}, {"finish", p_finish}, {"hold", p_hold},
        {"state", p_state}, {"id", p_id},     {"release", p_release}, {NULL, NULL}};
    if (luaL_newmetatable(L, APP_MT)) {
        luaL_newlib(L, app_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, a_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, PEER_MT)) {
        luaL_newlib(L, peer_methods);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    ws__luaopen_native(L);
    lua_newtable(L);
    lua_pushcfunction(L, t_app);
    lua_setfield(L, -2, "app");
    lua_setfield(L, -2, "testing");
    return 1;
}
