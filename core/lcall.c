/* Calls from C into Lua: the traceback handler, protected calls under the
 * time budget, and error messages with the full path of the file they name.
 * Also the list of the project's files, which both the messages and the
 * reload watcher need. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lalloc.h"
#include "lbind.h"
#include "log.h"
#include "stats.h"

int ws__lcall_traceback(lua_State *L)
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
const char *ws__lcall_where(ws_lhost_t *lh, const char *msg, char *buf, size_t n)
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
                ws__lcall_files(lh, match_tail, &q);
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

/* In a state of our own the traceback handler sits at the bottom of the
 * stack for the life of the state, so a call need not push it; in a test's
 * state it is pushed under the function each time. */

/* lua_pcall with the traceback handler and the time budget. On error the
 * message (with its traceback) is left on the stack. */
int ws__lcall(ws_lhost_t *lh, int nargs, int nres)
{
    lua_State *L = lh->L;
    int msgh = WS_LCALL_TRACEBACK_IDX;
    if (!lh->own_state) {
        msgh = lua_gettop(L) - nargs;
        lua_pushcfunction(L, ws__lcall_traceback);
        lua_insert(L, msgh);
    }
    ws__lbudget_start(lh);
    if (lh->own_state)
        ws__lalloc_enforce(1);
    int r = lua_pcall(L, nargs, nres, msgh);
    if (lh->own_state)
        ws__lalloc_enforce(0);
    ws__lbudget_end(lh);
    if (!lh->own_state)
        lua_remove(L, msgh);
    if (r == LUA_ERRMEM && lh->own_state) {
        /* No traceback for memory errors: say at least which limit it was. */
        lua_pop(L, 1);
        lua_pushfstring(L, "not enough memory: the Lua heap is at its cap (--lua-max-memory, %d MiB)",
                        (int)(lh->lua_max_memory >> 20));
    }
    return r;
}

static int gc_step(lua_State *L)
{
    lua_pushboolean(L, lua_gc(L, LUA_GCSTEP, (int)lua_tointeger(L, 1)));
    return 1;
}

int ws__lcall_gc_step(ws_lhost_t *lh, int kb)
{
    lua_State *L = lh->L;
    lua_pushcfunction(L, gc_step);
    lua_pushinteger(L, kb);
    if (ws__lcall_log(lh, 1, 1, "collecting garbage (a __gc metamethod)") != LUA_OK)
        return 0;
    int done = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return done;
}

void ws__lcall_log_error(ws_lhost_t *lh, const char *what)
{
    ws_stats_inc(WS_STAT_LUA_ERRORS);
    char buf[8192];
    ws_log_error("%s: %s", what, ws__lcall_where(lh, lua_tostring(lh->L, -1), buf, sizeof buf));
    lua_pop(lh->L, 1);
}

int ws__lcall_log(ws_lhost_t *lh, int nargs, int nres, const char *what)
{
    int r = ws__lcall(lh, nargs, nres);
    if (r != LUA_OK)
        ws__lcall_log_error(lh, what);
    return r;
}

/* Without a traceback: for load errors, where the message alone (file:line) is the answer. */
int ws__lcall_msg(ws_lhost_t *lh, int nargs, int nres, char *err, size_t errlen)
{
    lua_State *L = lh->L;
    ws__lbudget_start(lh);
    int r = lua_pcall(L, nargs, nres, 0);
    ws__lbudget_end(lh);
    if (r == LUA_OK)
        return 0;
    snprintf(err, errlen, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "(non-string error)");
    lua_pop(L, 1);
    return -1;
}

/* Push S.project_modules(dirs): { name = real path } of the project's modules. */
void ws__lcall_push_modules(ws_lhost_t *lh)
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
    if (ws__lcall_log(lh, 1, 1, "listing the script's modules") != 0)
        lua_newtable(L);
}

void ws__lcall_files(ws_lhost_t *lh, void (*cb)(void *ud, const char *path), void *ud)
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
    ws__lcall_push_modules(lh);
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        cb(ud, lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

