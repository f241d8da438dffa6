#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "fnv.h"
#include "frame.h"
#include "lalloc.h"
#include "lbind.h"
#include "log.h"

#ifndef WSPUSH_LUA_DIR
#define WSPUSH_LUA_DIR "lua"
#endif

static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return ws_strndup(".", 1);
    if (slash == path)
        return ws_strndup("/", 1);
    return ws_strndup(path, (size_t)(slash - path));
}

/* Where the wspush.* modules are: installed next to the binary
 * (PREFIX/bin/wspush and PREFIX/share/lua/5.4/wspush/), so that an
 * installed server needs no source tree; else the source tree's lua/, for a
 * binary run from its build directory. */
static const char *lua_dir(void)
{
    static char dir[PATH_MAX];
    if (dir[0])
        return dir;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            char probe[PATH_MAX + 64];
            snprintf(probe, sizeof probe, "%s/../share/lua/5.4/wspush/init.lua", exe);
            if (access(probe, R_OK) == 0 &&
                (size_t)snprintf(dir, sizeof dir, "%s/../share/lua/5.4", exe) < sizeof dir)
                return dir;
        }
    }
    snprintf(dir, sizeof dir, "%s", WSPUSH_LUA_DIR);
    return dir;
}

/* Put the server's modules and the script's directory first on package.path
 * (once: a test's state may load many scripts). */
static void set_path(lua_State *L, const char *script_dir)
{
    const char *ld = lua_dir();
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    const char *old = lua_tostring(L, -1);
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s/?.lua;%s/?/init.lua;", ld, ld, script_dir,
                    script_dir);
    const char *ours = lua_tostring(L, -1);
    if (old && strncmp(old, ours, strlen(ours)) != 0) {
        lua_pushvalue(L, -2);
        lua_concat(L, 2);
        lua_setfield(L, -3, "path");
    } else {
        lua_pop(L, 1);
    }
    lua_pop(L, 2);
}

static int require_ref(ws_lhost_t *lh, const char *mod, const char *field, char *err,
                       size_t errlen)
{
    lua_State *L = lh->L;
    lua_getglobal(L, "require");
    lua_pushstring(L, mod);
    if (ws__lcall_msg(lh, 1, 1, err, errlen) != 0)
        return LUA_NOREF;
    if (field) {
        lua_getfield(L, -1, field);
        lua_remove(L, -2);
    }
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

/* What a version registers as it loads (on_shutdown, on_publish) serves
 * once the version does. */
static void commit_load(ws_lhost_t *lh)
{
    lua_State *L = lh->L;
    luaL_unref(L, LUA_REGISTRYINDEX, lh->shutdown_ref);
    lh->shutdown_ref = lh->pending_shutdown_ref;
    lh->pending_shutdown_ref = LUA_NOREF;
    luaL_unref(L, LUA_REGISTRYINDEX, lh->broker_ref);
    lh->broker_ref = lh->pending_broker_ref;
    lh->pending_broker_ref = LUA_NOREF;
    luaL_unref(L, LUA_REGISTRYINDEX, lh->listen_ref);
    lh->listen_ref = lh->pending_listen_ref;
    lh->pending_listen_ref = LUA_NOREF;
    /* None registered: a publish then looks for nothing. */
    lua_rawgeti(L, LUA_REGISTRYINDEX, lh->listen_ref);
    lua_pushnil(L);
    if (!lua_next(L, -2)) {
        luaL_unref(L, LUA_REGISTRYINDEX, lh->listen_ref);
        lh->listen_ref = LUA_NOREF;
        lua_pop(L, 1);
    } else {
        lua_pop(L, 3);
    }
}

static void abandon_load(ws_lhost_t *lh)
{
    lua_State *L = lh->L;
    luaL_unref(L, LUA_REGISTRYINDEX, lh->pending_shutdown_ref);
    lh->pending_shutdown_ref = LUA_NOREF;
    luaL_unref(L, LUA_REGISTRYINDEX, lh->pending_broker_ref);
    lh->pending_broker_ref = LUA_NOREF;
    luaL_unref(L, LUA_REGISTRYINDEX, lh->pending_listen_ref);
    lh->pending_listen_ref = LUA_NOREF;
}

/* Run the script and compile what it returned. On success the compiled app
 * is left on the stack; on failure err holds the reason with file:line. */
static int load_script(ws_lhost_t *lh, char *err, size_t errlen)
{
    lua_State *L = lh->L;
    char buf[8192];
    /* require "wspush" finds this host's core; in a test's state, where each
     * app has its own, the wspush module is made again from it. */
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "loaded");
    lua_rawgeti(L, LUA_REGISTRYINDEX, lh->core_ref);
    lua_setfield(L, -2, "wspush.core");
    if (!lh->own_state) {
        lua_pushnil(L);
        lua_setfield(L, -2, "wspush");
        lua_pushnil(L);
        lua_setfield(L, -2, "wspush.metrics"); /* it holds its core's functions */
    }
    lua_pop(L, 2);
    lua_newtable(L);
    luaL_unref(L, LUA_REGISTRYINDEX, lh->pending_listen_ref);
    lh->pending_listen_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (luaL_loadfile(L, lh->script) != LUA_OK) {
        snprintf(err, errlen, "%s", ws__lcall_where(lh, lua_tostring(L, -1), buf, sizeof buf));
        lua_pop(L, 1);
        return -1;
    }
    if (ws__lcall_msg(lh, 0, 1, err, errlen) != 0) {
        snprintf(buf, sizeof buf, "%s", err);
        char full[8192];
        snprintf(err, errlen, "%s", ws__lcall_where(lh, buf, full, sizeof full));
        return -1;
    }
    /* S.compile(routes, script_dir) -> app | nil, err */
    lua_rawgeti(L, LUA_REGISTRYINDEX, lh->server_ref);
    lua_getfield(L, -1, "compile");
    lua_remove(L, -2);
    lua_insert(L, -2);
    lua_pushstring(L, lh->script_dir);
    if (ws__lcall_msg(lh, 2, 2, err, errlen) != 0)
        return -1;
    if (lua_isnil(L, -2)) {
        snprintf(err, errlen, "%s: %s", lh->script, lua_tostring(L, -1));
        lua_pop(L, 2);
        return -1;
    }
    lua_pop(L, 1);
    return 0;
}

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

/* A start or reload error is one line: Lua's "module 'x' not found:"
 * lists every place it looked, one per line; name the module and say
 * where to put it instead. */
static int run_script(ws_lhost_t *lh, char *err, size_t errlen)
{
    if (load_script(lh, err, errlen) == 0)
        return 0;
    char *nf = strstr(err, " not found:\n");
    if (nf) {
        size_t at = (size_t)(nf - err) + 10;
        snprintf(err + at, errlen - at, " (not next to the script, in ./lua, nor on Lua's "
                                        "package.path or package.cpath)");
    }
    one_line(err);
    return -1;
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

/* What a state needs once, whatever hosts it holds. */
static int prepare_state(ws_lhost_t *lh, char *err, size_t errlen)
{
    lua_State *L = lh->L;
    ws__lconn_register(L);
    /* A test's state loads the module from build/lua (with its testing
     * part): a preload would shadow it. */
    if (lh->own_state) {
        ws__lconn_fast(lh);
        luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
        lua_pushcfunction(L, ws__luaopen_native);
        lua_setfield(L, -2, "wspush.native");
        lua_pop(L, 1);
    }
    if (ws__lconn_push_json(L) == LUA_TFUNCTION) {
        lua_pop(L, 1);
        return 0;
    }
    lua_pop(L, 1);
    int ref = require_ref(lh, "wspush.json", "encode", err, errlen);
    if (ref == LUA_NOREF)
        return -1;
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    ws__lconn_set_json(L);
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    return 0;
}

/* Make lh's Lua side in lh->L and load its script. */
static int open_host(ws_lhost_t *lh, int prepare, char *err, size_t errlen)
{
    lua_State *L = lh->L;
    set_path(L, lh->script_dir);
    if (prepare_state(lh, err, errlen) != 0)
        return -1;
    lua_newtable(L);
    lh->shared_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_newtable(L);
    lh->hooks_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    for (int i = 0; i < WS_EV_COUNT; i++) {
        lua_pushstring(L, ws__lev_label[i]);
        lh->ev_ref[i] = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    ws__lcore_push(lh);
    lh->core_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if ((lh->server_ref = require_ref(lh, "wspush.server", NULL, err, errlen)) == LUA_NOREF)
        return -1;
    if (prepare) {
        lua_pushvalue(L, prepare);
        lua_rawgeti(L, LUA_REGISTRYINDEX, lh->core_ref);
        if (ws__lcall_msg(lh, 1, 0, err, errlen) != 0)
            return -1;
    }
    lh->gen = lh->load_gen = 1;
    if (run_script(lh, err, errlen) != 0)
        return -1;
    lh->app_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    commit_load(lh);
    return 0;
}

static ws_lhost_t *host_new(lua_State *L, ws_hub_t *hub, const char *script, double lua_timeout)
{
    ws_lhost_t *lh = ws_calloc(1, sizeof *lh);
    lh->hub = hub;
    lh->lua_timeout = lua_timeout;
    lh->script = ws_strndup(script, strlen(script));
    lh->script_dir = dir_of(script);
    lh->project_dirs[0] = real_dir(lh->script_dir);
    lh->project_dirs[1] = real_dir("lua");
    lh->app_ref = lh->server_ref = lh->core_ref = LUA_NOREF;
    lh->shared_ref = lh->hooks_ref = LUA_NOREF;
    /* Made first: every task's coroutine holds it (WS_LTASK_CONNS_IDX). */
    lua_newtable(L);
    lh->conns_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lh->shutdown_ref = lh->pending_shutdown_ref = LUA_NOREF;
    lh->listen_ref = lh->pending_listen_ref = LUA_NOREF;
    lh->broker_ref = lh->pending_broker_ref = LUA_NOREF;
    for (int i = 0; i < WS_EV_COUNT; i++)
        lh->ev_ref[i] = LUA_NOREF;
    lh->L = L;
    return lh;
}

ws_lhost_t *ws_lhost_new(ws_hub_t *hub, const char *script, double lua_timeout,
                         size_t lua_max_memory, char *err, size_t errlen)
{
    lua_State *L = lua_newstate(ws__lalloc, NULL);
    ws_lhost_t *lh = host_new(L, hub, script, lua_timeout);
    lua_setallocf(L, ws__lalloc, lh); /* ws__lhost_own */
    lh->own_state = 1;
    lh->lua_max_memory = lua_max_memory;
    ws__lalloc_set_cap(lua_max_memory);
    lua_atpanic(L, panic);
    lua_pushcfunction(L, ws__lcall_traceback); /* WS_LCALL_TRACEBACK_IDX */
    luaL_openlibs(L);
    ws__lbudget_init(lh);
    if (open_host(lh, 0, err, errlen) != 0) {
        ws_lhost_free(lh);
        return NULL;
    }
    return lh;
}

ws_lhost_t *ws__lhost_new_in(lua_State *L, ws_hub_t *hub, const char *script, double lua_timeout,
                             int prepare, char *err, size_t errlen)
{
    ws_lhost_t *lh = host_new(L, hub, script, lua_timeout);
    ws__lbudget_init(lh);
    if (open_host(lh, prepare ? lua_absindex(L, prepare) : 0, err, errlen) != 0) {
        ws_lhost_free(lh);
        return NULL;
    }
    return lh;
}

int ws_lhost_collect_step(ws_lhost_t *lh)
{
    /* As if 1 MiB had been allocated: a few ms of work at most. */
    if (!ws__lcall_gc_step(lh, 1024))
        return 0;
    ws__lalloc_trim();
    return 1;
}

void ws_lhost_free(ws_lhost_t *lh)
{
    if (!lh)
        return;
    lua_State *L = lh->L;
    lh->freeing = 1;
    ws__ltimers_close_all(lh);
    ws__levent_release(lh);
    ws__ltask_abandon_all(lh);
    ws__ltask_free(lh);
    ws__lredis_release(lh);
    if (lh->own_state) {
        ws__lbudget_close(lh, lua_close);
    } else {
        /* A test's state lives on: give back what this host took of it. */
        int refs[] = {lh->server_ref, lh->app_ref,    lh->conns_ref,   lh->core_ref,
                      lh->hooks_ref,  lh->shutdown_ref, lh->pending_shutdown_ref,
                      lh->shared_ref, lh->redis_ref,  lh->listen_ref,  lh->pending_listen_ref,
                      lh->broker_ref, lh->pending_broker_ref};
        for (size_t i = 0; i < sizeof refs / sizeof *refs; i++)
            luaL_unref(L, LUA_REGISTRYINDEX, refs[i]);
        for (int i = 0; i < WS_EV_COUNT; i++)
            luaL_unref(L, LUA_REGISTRYINDEX, lh->ev_ref[i]);
        for (struct ws_route_s *r = lh->routes; r; r = r->next)
            luaL_unref(L, LUA_REGISTRYINDEX, r->handler_ref);
    }
    ws_series_free(lh->series);
    free(lh->script);
    free(lh->script_dir);
    free(lh->project_dirs[0]);
    free(lh->project_dirs[1]);
    ws__lhost_free_routes(lh);
    free(lh);
}

void ws_lhost_files(ws_lhost_t *lh, void (*cb)(void *ud, const char *path), void *ud)
{
    ws__lbudget_start(lh);
    ws__lcall_files(lh, cb, ud);
    ws__lbudget_end(lh);
}

/* Each file's hash is added, not chained: the module list comes from a
 * Lua table, whose order differs between processes. */
static void digest_file(void *ud, const char *path)
{
    uint64_t h = ws_fnv(path, strlen(path));
    FILE *f = fopen(path, "rb");
    if (f) {
        unsigned char buf[8192];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, f)) > 0)
            h = ws_fnv_add(h, buf, n);
        fclose(f);
    } else {
        h ^= 0xdeadULL; /* missing differs from empty */
    }
    *(uint64_t *)ud += h;
}

static uint64_t digest(ws_lhost_t *lh)
{
    uint64_t sum = 0;
    ws__lcall_files(lh, digest_file, &sum);
    return sum ? sum : 1;
}

uint64_t ws_lhost_digest(ws_lhost_t *lh)
{
    ws__lbudget_start(lh);
    uint64_t d = digest(lh);
    ws__lbudget_end(lh);
    return d;
}

void ws_lhost_expect(ws_lhost_t *lh, uint64_t d) { lh->expect = d; }

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
static int reload(ws_lhost_t *lh, const char *changed, char *err, size_t errlen);

int ws_lhost_reload(ws_lhost_t *lh, const char *changed, char *err, size_t errlen)
{
    ws__lbudget_start(lh);
    int r = reload(lh, changed, err, errlen);
    ws__lbudget_end(lh);
    return r;
}

static int reload(ws_lhost_t *lh, const char *changed, char *err, size_t errlen)
{
    lua_State *L = lh->L;
    int top = lua_gettop(L);

    /* Forget the project's modules so the script's require loads their new
     * versions; keep the old ones to put back if the new script fails. */
    ws__lcall_push_modules(lh);
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
    uint64_t expect = lh->expect;
    lh->expect = 0;
    int r = run_script(lh, err, errlen);
    if (r == 0 && expect && digest(lh) != expect) {
        lua_pop(L, 1);
        snprintf(err, errlen, "the files changed while they were loading (this version differs "
                              "from the one checked)");
        r = -1;
    }
    if (r != 0) {
        restore_modules(L, saved);
        ws__ltimers_close_gen(lh, lh->load_gen, 0);
        abandon_load(lh);
        lh->load_gen = lh->gen;
        lua_settop(L, top);
        return -1;
    }
    luaL_unref(L, LUA_REGISTRYINDEX, lh->app_ref);
    lh->app_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lh->gen = lh->load_gen;
    ws__ltimers_close_gen(lh, lh->gen, 1);
    commit_load(lh);
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
        ws__ltask_hook(lh, 1, "on_reload");
    }
    lua_settop(L, top);
    return 0;
}

void ws_lhost_shutdown(ws_lhost_t *lh)
{
    lua_State *L = lh->L;
    ws__lbudget_start(lh);
    if (lua_rawgeti(L, LUA_REGISTRYINDEX, lh->shutdown_ref) == LUA_TFUNCTION)
        ws__ltask_hook(lh, 0, "on_shutdown");
    else
        lua_pop(L, 1);
    ws__lbudget_end(lh);
}

size_t ws_lhost_busy(const ws_lhost_t *lh) { return ws__ltask_waiting(lh); }

void ws_lhost_set_fetcher(ws_lhost_t *lh, struct ws_fetcher_s *f) { lh->fetcher = f; }

void ws_lhost_release(ws_lhost_t *lh)
{
    ws__ltask_abandon_all(lh);
    ws__lredis_release(lh);
    lh->fetcher = NULL;
}

void ws_lhost_stop(ws_lhost_t *lh) { ws__ltimers_close_all(lh); }
