#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "error.h"
#include "lalloc.h"
#include "lbind.h"
#include "log.h"
#include "server.h"

#ifndef WSPUSH_LUA_DIR
#define WSPUSH_LUA_DIR "lua"
#endif

ws_lhost_t *ws__lhost_of(lua_State *L) { return *(ws_lhost_t **)lua_getextraspace(L); }

static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (!msg) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            return 1;
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

struct shortened {
    const char *tail;
    size_t len;
    char found[PATH_MAX];
};

static void match_tail(void *ud, const char *path)
{
    struct shortened *q = ud;
    size_t pl = strlen(path);
    if (!q->found[0] && pl >= q->len && memcmp(path + pl - q->len, q->tail, q->len) == 0)
        snprintf(q->found, sizeof q->found, "%s", path);
}

/* Lua shortens a long chunk name to "...tail" (LUA_IDSIZE) in messages. Put
 * back the full path of the script or project module each one names, so the
 * file:line of an error can be found. Returns msg itself or buf. */
static const char *unshorten(ws_lhost_t *lh, const char *msg, char *buf, size_t n)
{
    if (!msg || !strstr(msg, "..."))
        return msg;
    size_t o = 0;
    const char *p = msg;
    while (*p && o + 1 < n) {
        const char *dots = strstr(p, "...");
        const char *colon = dots ? strchr(dots + 3, ':') : NULL;
        struct shortened q = {dots ? dots + 3 : NULL, colon ? (size_t)(colon - dots - 3) : 0, ""};
        if (colon && q.len > 0 && !memchr(q.tail, '\n', q.len)) {
            match_tail(&q, lh->script);
            if (!q.found[0])
                ws_lhost_files(lh, match_tail, &q);
        }
        const char *upto = dots ? dots : p + strlen(p);
        o += (size_t)snprintf(buf + o, n - o, "%.*s", (int)(upto - p), p);
        if (!dots || o + 1 >= n)
            break;
        if (q.found[0]) {
            o += (size_t)snprintf(buf + o, n - o, "%s", q.found);
            p = colon;
        } else {
            o += (size_t)snprintf(buf + o, n - o, "...");
            p = dots + 3;
        }
    }
    return buf;
}

/* The traceback handler sits at the bottom of the stack for the life of the
 * state, so a call need not push it. */
#define TRACEBACK_IDX 1

/* lua_pcall with the traceback handler and the time budget. On error the
 * message (with its traceback) is left on the stack. */
static int pcall_tb(ws_lhost_t *lh, int nargs, int nres)
{
    ws__lbudget_start(lh);
    int r = lua_pcall(lh->L, nargs, nres, TRACEBACK_IDX);
    ws__lbudget_end(lh);
    return r;
}

int ws__lhost_pcall(ws_lhost_t *lh, int nargs, int nres, const char *what)
{
    int r = pcall_tb(lh, nargs, nres);
    if (r != LUA_OK) {
        char buf[8192];
        ws_log_error("%s: %s", what, unshorten(lh, lua_tostring(lh->L, -1), buf, sizeof buf));
        lua_pop(lh->L, 1);
    }
    return r;
}

/* Without a traceback: for load errors, where the message alone (file:line) is the answer. */
static int pcall_msg(lua_State *L, int nargs, int nres, char *err, size_t errlen)
{
    ws_lhost_t *lh = ws__lhost_of(L);
    ws__lbudget_start(lh);
    int r = lua_pcall(L, nargs, nres, 0);
    ws__lbudget_end(lh);
    if (r == LUA_OK)
        return 0;
    snprintf(err, errlen, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "(non-string error)");
    lua_pop(L, 1);
    return -1;
}

static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return ws_strndup(".", 1);
    if (slash == path)
        return ws_strndup("/", 1);
    return ws_strndup(path, (size_t)(slash - path));
}

static void set_path(lua_State *L, const char *script_dir)
{
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s/?.lua;%s/?/init.lua;%s", WSPUSH_LUA_DIR,
                    WSPUSH_LUA_DIR, script_dir, script_dir, lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 2);
}

static int require_ref(lua_State *L, const char *mod, const char *field, char *err, size_t errlen)
{
    lua_getglobal(L, "require");
    lua_pushstring(L, mod);
    if (pcall_msg(L, 1, 1, err, errlen) != 0)
        return LUA_NOREF;
    if (field) {
        lua_getfield(L, -1, field);
        lua_remove(L, -2);
    }
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

/* Run the script and compile what it returned. On success the compiled app
 * is left on the stack; on failure err holds the reason with file:line. */
static int run_script(ws_lhost_t *lh, char *err, size_t errlen)
{
    lua_State *L = lh->L;
    char buf[8192];
    if (luaL_loadfile(L, lh->script) != LUA_OK) {
        snprintf(err, errlen, "%s", unshorten(lh, lua_tostring(L, -1), buf, sizeof buf));
        lua_pop(L, 1);
        return -1;
    }
    if (pcall_msg(L, 0, 1, err, errlen) != 0) {
        snprintf(buf, sizeof buf, "%s", err);
        char full[8192];
        snprintf(err, errlen, "%s", unshorten(lh, buf, full, sizeof full));
        return -1;
    }
    /* S.compile(routes, script_dir) -> app | nil, err */
    lua_rawgeti(L, LUA_REGISTRYINDEX, lh->server_ref);
    lua_getfield(L, -1, "compile");
    lua_remove(L, -2);
    lua_insert(L, -2);
    lua_pushstring(L, lh->script_dir);
    if (pcall_msg(L, 2, 2, err, errlen) != 0)
        return -1;
    if (lua_isnil(L, -2)) {
        snprintf(err, errlen, "%s: %s", lh->script, lua_tostring(L, -1));
        lua_pop(L, 2);
        return -1;
    }
    lua_pop(L, 1);
    return 0;
}

static char *real_dir(const char *path)
{
    char buf[PATH_MAX];
    return realpath(path, buf) ? ws_strndup(buf, strlen(buf)) : NULL;
}

/* An error outside any protected call (a bug of ours): say what, then abort. */
static int panic(lua_State *L)
{
    const char *msg = lua_tostring(L, -1);
    ws_log_error("Lua panic: %s", msg ? msg : "(error object is not a string)");
    abort();
}

ws_lhost_t *ws_lhost_new(ws_server_t *srv, const char *script, char *err, size_t errlen)
{
    ws_lhost_t *lh = ws_calloc(1, sizeof *lh);
    lh->srv = srv;
    lh->script = ws_strndup(script, strlen(script));
    lh->script_dir = dir_of(script);
    lh->project_dirs[0] = real_dir(lh->script_dir);
    lh->project_dirs[1] = real_dir("lua");
    lh->app_ref = lh->server_ref = lh->json_ref = LUA_NOREF;
    lh->shutdown_ref = lh->pending_shutdown_ref = LUA_NOREF;
    lua_State *L = lh->L = lua_newstate(ws__lalloc, NULL);
    lua_atpanic(L, panic);
    *(ws_lhost_t **)lua_getextraspace(L) = lh;
    lua_pushcfunction(L, traceback); /* TRACEBACK_IDX */
    luaL_openlibs(L);
    ws__lbudget_init(lh);
    set_path(L, lh->script_dir);
    ws__lconn_register(L);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, ws__luaopen_core);
    lua_setfield(L, -2, "wspush.core");
    lua_pop(L, 1);
    lua_newtable(L);
    lh->conns_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_newtable(L);
    lh->shared_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_newtable(L);
    lh->hooks_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    static const char *const ev_names[WS_EV_COUNT] = {"open",    "on_message", "on_ping",
                                                      "on_pong", "on_drain",   "on_close"};
    for (int i = 0; i < WS_EV_COUNT; i++) {
        lua_pushstring(L, ev_names[i]);
        lh->ev_ref[i] = luaL_ref(L, LUA_REGISTRYINDEX);
    }

    if ((lh->server_ref = require_ref(L, "wspush.server", NULL, err, errlen)) == LUA_NOREF ||
        (lh->json_ref = require_ref(L, "cjson", "encode", err, errlen)) == LUA_NOREF)
        goto fail;
    lh->gen = lh->load_gen = 1;
    if (run_script(lh, err, errlen) != 0)
        goto fail;
    lh->app_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lh->shutdown_ref = lh->pending_shutdown_ref;
    lh->pending_shutdown_ref = LUA_NOREF;
    return lh;

fail:
    ws_lhost_free(lh);
    return NULL;
}

int ws_lhost_collect_step(ws_lhost_t *lh)
{
    /* As if 1 MiB had been allocated: a few ms of work at most. */
    if (!lua_gc(lh->L, LUA_GCSTEP, 1024))
        return 0;
    ws__lalloc_trim();
    return 1;
}

void ws_lhost_free(ws_lhost_t *lh)
{
    if (!lh)
        return;
    ws__ltimers_close_all(lh);
    ws__lbudget_free(lh);
    lua_close(lh->L);
    free(lh->script);
    free(lh->script_dir);
    free(lh->project_dirs[0]);
    free(lh->project_dirs[1]);
    ws__lhost_free_routes(lh);
    free(lh);
}

/* Push S.project_modules(dirs): { name = real path } of the project's modules. */
static void push_project_modules(ws_lhost_t *lh)
{
    lua_State *L = lh->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, lh->server_ref);
    lua_getfield(L, -1, "project_modules");
    lua_remove(L, -2);
    lua_newtable(L);
    int n = 0;
    for (int i = 0; i < 2; i++) {
        if (lh->project_dirs[i]) {
            lua_pushstring(L, lh->project_dirs[i]);
            lua_rawseti(L, -2, ++n);
        }
    }
    if (ws__lhost_pcall(lh, 1, 1, "listing the script's modules") != 0)
        lua_newtable(L);
}

void ws_lhost_files(ws_lhost_t *lh, void (*cb)(void *ud, const char *path), void *ud)
{
    lua_State *L = lh->L;
    /* From the directory, not the file: while an editor saves by renaming the
     * old file away, the script does not exist, and it must stay watched. */
    const char *base = strrchr(lh->script, '/');
    char buf[PATH_MAX];
    if (lh->project_dirs[0]) {
        snprintf(buf, sizeof buf, "%s/%s", lh->project_dirs[0], base ? base + 1 : lh->script);
        cb(ud, buf);
    }
    push_project_modules(lh);
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        cb(ud, lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* Set package.loaded[name] = saved[name] for every name in the table at index saved. */
static void restore_modules(lua_State *L, int saved)
{
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "loaded");
    lua_pushnil(L);
    while (lua_next(L, saved)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, -4);
    }
    lua_pop(L, 2);
}

/* Lua's messages for a module that fails to load span lines ("error loading
 * module ...:\n\t file:line: ..."); a log record reads better on one. */
static void one_line(char *s)
{
    char *o = s;
    for (char *p = s; *p; p++) {
        if (*p == '\n' || *p == '\t') {
            if (o > s && o[-1] != ' ')
                *o++ = ' ';
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
}

int ws_lhost_reload(ws_lhost_t *lh, const char *changed, char *err, size_t errlen)
{
    lua_State *L = lh->L;
    int top = lua_gettop(L);

    /* Forget the project's modules so the script's require loads their new
     * versions; keep the old ones to put back if the new script fails. */
    push_project_modules(lh);
    int mods = lua_gettop(L);
    lua_newtable(L);
    int saved = lua_gettop(L);
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "loaded");
    lua_pushnil(L);
    while (lua_next(L, mods)) {
        lua_pop(L, 1);
        lua_pushvalue(L, -1);
        lua_rawget(L, -3);
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, saved);
        lua_pushvalue(L, -1);
        lua_pushnil(L);
        lua_rawset(L, -4);
    }
    lua_pop(L, 2);

    lua_newtable(L);
    lua_rawseti(L, LUA_REGISTRYINDEX, lh->hooks_ref);
    lh->load_gen = lh->gen + 1;
    if (run_script(lh, err, errlen) != 0) {
        one_line(err);
        restore_modules(L, saved);
        ws__ltimers_close_gen(lh, lh->load_gen, 0);
        luaL_unref(L, LUA_REGISTRYINDEX, lh->pending_shutdown_ref);
        lh->pending_shutdown_ref = LUA_NOREF;
        lh->load_gen = lh->gen;
        lua_settop(L, top);
        return -1;
    }
    luaL_unref(L, LUA_REGISTRYINDEX, lh->app_ref);
    lh->app_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lh->gen = lh->load_gen;
    ws__ltimers_close_gen(lh, lh->gen, 1);
    luaL_unref(L, LUA_REGISTRYINDEX, lh->shutdown_ref);
    lh->shutdown_ref = lh->pending_shutdown_ref;
    lh->pending_shutdown_ref = LUA_NOREF;
    lua_settop(L, top);

    /* on_reload(info) hooks of the new version, in registration order. */
    lua_rawgeti(L, LUA_REGISTRYINDEX, lh->hooks_ref);
    int hooks = lua_gettop(L);
    for (lua_Integer i = 1; lua_rawgeti(L, hooks, i) == LUA_TFUNCTION; i++) {
        lua_createtable(L, 0, 2);
        lua_pushinteger(L, lh->gen);
        lua_setfield(L, -2, "generation");
        lua_pushstring(L, changed ? changed : "");
        lua_setfield(L, -2, "changed");
        ws__lhost_pcall(lh, 1, 0, "on_reload");
    }
    lua_settop(L, top);
    return 0;
}

void ws_lhost_shutdown(ws_lhost_t *lh)
{
    lua_State *L = lh->L;
    if (lua_rawgeti(L, LUA_REGISTRYINDEX, lh->shutdown_ref) == LUA_TFUNCTION)
        ws__lhost_pcall(lh, 0, 0, "on_shutdown");
    else
        lua_pop(L, 1);
}

void ws_lhost_stop(ws_lhost_t *lh) { ws__ltimers_close_all(lh); }

/* --- WebSocket events --- */

/* After a reload, find the connection's handler in the new routes by its
 * route key (or its path, for the catch-all). Returns 0 when the new script
 * no longer serves the route: the connection is then closed with 1001. */
static int rebind(ws_lhost_t *lh, ws_conn_t *c)
{
    lua_State *L = lh->L;
    struct ws_route_s *r = c->route;
    if (!r || r->gen != lh->gen) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, lh->server_ref);
        lua_getfield(L, -1, "resolve");
        lua_remove(L, -2);
        lua_rawgeti(L, LUA_REGISTRYINDEX, lh->app_ref);
        if (r) {
            lua_pushlstring(L, r->key, r->len);
            lua_pushnil(L);
        } else {
            lua_pushnil(L);
            ws__lconn_push(lh, c);
            lua_getfield(L, -1, "path"); /* conn.path, through __index */
            lua_replace(L, -2);
        }
        if (ws__lhost_pcall(lh, 3, 1, "rebinding a connection after reload") != 0)
            lua_pushnil(L);
        /* A route's handler is found once for all its connections. */
        ws__lhost_set_handler(L, r ? &r->handler_ref : &c->handler_ref);
        if (r)
            r->gen = lh->gen;
    }
    if (r)
        c->handler_ref = r->handler_ref;
    c->gen = lh->gen;
    if (c->handler_ref == LUA_NOREF) {
        static const char msg[] = "endpoint removed by a reload";
        ws_conn_close(c, WS_CLOSE_GOING_AWAY, msg, sizeof msg - 1);
        return 0;
    }
    return 1;
}

/* Push handler[name] and the connection object; 0 (nothing pushed) when the
 * handler has no such function. */
static int push_event(ws_lhost_t *lh, ws_conn_t *c, int ev)
{
    lua_State *L = lh->L;
    if (c->gen != lh->gen && !rebind(lh, c))
        return 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->handler_ref);
    if (lua_type(L, -1) != LUA_TTABLE) {
        lua_pop(L, 1);
        return 0;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, lh->ev_ref[ev]);
    if (lua_gettable(L, -2) != LUA_TFUNCTION) {
        lua_pop(L, 2);
        return 0;
    }
    lua_remove(L, -2);
    ws__lconn_push(lh, c);
    return 1;
}

/* Run an event handler; an error is logged (naming the event, route and
 * connection) and closes the connection with 1011. Returns 0 on success. */
static int event_call(ws_lhost_t *lh, ws_conn_t *c, const char *name, int nargs)
{
    if (pcall_tb(lh, nargs + 1, 0) == LUA_OK)
        return 0;
    char buf[8192];
    ws_log_error("%s (%s, conn %llu): %s", name, c->route ? c->route->key : "*",
                 (unsigned long long)c->id, unshorten(lh, lua_tostring(lh->L, -1), buf, sizeof buf));
    lua_pop(lh->L, 1);
    return -1;
}

static void call_event(ws_lhost_t *lh, ws_conn_t *c, const char *name, int nargs)
{
    if (event_call(lh, c, name, nargs) != 0) {
        static const char msg[] = "internal server error";
        ws_conn_close(c, WS_CLOSE_INTERNAL, msg, sizeof msg - 1);
    }
}

void ws_lhost_open(ws_lhost_t *lh, ws_conn_t *c)
{
    if (push_event(lh, c, WS_EV_OPEN))
        call_event(lh, c, "open", 0);
}

void ws_lhost_message(ws_lhost_t *lh, ws_conn_t *c, const uint8_t *data, size_t len, int binary)
{
    if (!push_event(lh, c, WS_EV_MESSAGE))
        return;
    lua_pushlstring(lh->L, (const char *)data, len);
    lua_pushboolean(lh->L, binary);
    call_event(lh, c, "on_message", 2);
}

void ws_lhost_control(ws_lhost_t *lh, ws_conn_t *c, unsigned op, const uint8_t *data, size_t len)
{
    const char *name = op == 0x9 ? "on_ping" : "on_pong";
    if (!push_event(lh, c, op == 0x9 ? WS_EV_PING : WS_EV_PONG))
        return;
    lua_pushlstring(lh->L, (const char *)data, len);
    call_event(lh, c, name, 1);
}

void ws_lhost_drain(ws_lhost_t *lh, ws_conn_t *c)
{
    if (push_event(lh, c, WS_EV_DRAIN))
        call_event(lh, c, "on_drain", 0);
}

void ws_lhost_closed(ws_lhost_t *lh, ws_conn_t *c)
{
    lua_State *L = lh->L;
    if (push_event(lh, c, WS_EV_CLOSE)) {
        lua_pushinteger(L, c->close_code);
        lua_pushstring(L, c->close_reason ? c->close_reason : "");
        event_call(lh, c, "on_close", 2);
    }
    ws__lconn_detach(lh, c);
    if (!c->route) /* a route's ref is the route's */
        luaL_unref(L, LUA_REGISTRYINDEX, c->handler_ref);
    c->handler_ref = LUA_NOREF;
}
