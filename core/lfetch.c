/* wspush.fetch's native half: core.fetch(url, method, headers, body,
 * timeout, max_body, follow, verify) starts a request on the host's fetcher
 * (fetch.h) and waits; the task is resumed with status, headers (a flat
 * array: name, value, name, value...), body, final URL, or with nil, err.
 * lua/wspush/init.lua checks the options and shapes the result (JSON
 * bodies, case-insensitive headers). */
#include <stdlib.h>

#include "fetch.h"
#include "http.h"
#include "lbind.h"

/* Defaults of the Lua API (the C module's own are for other callers). */
#define FETCH_TIMEOUT_S 10.0
#define FETCH_MAX_BODY (4u << 20)

typedef struct {
    ws_lwait_t w;
    ws_lhost_t *lh;
    ws_fetch_t *x;
} fetch_wait_t;

static void fetch_cancel(ws_lwait_t *w)
{
    fetch_wait_t *fw = (fetch_wait_t *)w;
    ws_fetch_cancel(fw->x);
    free(fw);
}

static void fetch_done(void *ud, const ws_fetch_res_t *res)
{
    fetch_wait_t *fw = ud;
    ws_lhost_t *lh = fw->lh;
    ws_ltask_t *t = fw->w.task;
    lua_State *L = lh->L;
    free(fw);
    if (res->error) {
        lua_pushnil(L);
        lua_pushstring(L, res->error);
        ws__ltask_resume(lh, t, 2);
        return;
    }
    lua_pushinteger(L, res->status);
    lua_createtable(L, (int)(2 * res->nheaders), 0);
    for (size_t i = 0; i < res->nheaders; i++) {
        lua_pushlstring(L, res->headers[i].name, res->headers[i].name_len);
        lua_rawseti(L, -2, (lua_Integer)(2 * i + 1));
        lua_pushlstring(L, res->headers[i].value, res->headers[i].value_len);
        lua_rawseti(L, -2, (lua_Integer)(2 * i + 2));
    }
    lua_pushlstring(L, (const char *)res->body, res->body_len);
    lua_pushstring(L, res->url);
    ws__ltask_resume(lh, t, 4);
}

/* The headers table at index i as "Name: value\r\n" lines; 0, or -1 with
 * the offending name pushed. */
static int header_lines(lua_State *L, int i, ws_buf_t *out)
{
    if (lua_isnoneornil(L, i))
        return 0;
    luaL_checktype(L, i, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, i)) {
        if (lua_type(L, -2) != LUA_TSTRING ||
            (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)) {
            lua_pop(L, 2);
            lua_pushliteral(L, "(a key or value that is not a string)");
            return -1;
        }
        size_t kl, vl;
        const char *k = lua_tolstring(L, -2, &kl);
        lua_pushvalue(L, -1); /* tolstring on a copy: a number key stays a number for next */
        const char *v = lua_tolstring(L, -1, &vl);
        int r = ws_http_header_add(out, k, kl, v, vl);
        lua_pop(L, 2);
        if (r < 0) {
            lua_pop(L, 1);
            lua_pushlstring(L, k, kl);
            return -1;
        }
    }
    return 0;
}

static int l_fetch(lua_State *L)
{
    ws_lhost_t *lh = ws__lhost_up(L);
    size_t ulen, blen = 0;
    const char *url = luaL_checklstring(L, 1, &ulen);
    const char *method = luaL_optstring(L, 2, "GET");
    const char *body = luaL_optlstring(L, 4, NULL, &blen);
    lua_Number timeout = luaL_optnumber(L, 5, FETCH_TIMEOUT_S);
    lua_Number max_body = luaL_optnumber(L, 6, FETCH_MAX_BODY);
    int follow = lua_toboolean(L, 7);
    /* verify: nil or true checks an https server's certificate; only false does not */
    int no_verify = lua_type(L, 8) == LUA_TBOOLEAN && !lua_toboolean(L, 8);
    luaL_argcheck(L, timeout > 0 && timeout <= 86400, 5, "timeout must be > 0 and at most 86400 s");
    luaL_argcheck(L, max_body >= 0 && max_body <= 1e12, 6, "max_body must be 0 to 1e12 bytes");
    if (!lua_isnoneornil(L, 3))
        luaL_checktype(L, 3, LUA_TTABLE);
    ws_ltask_t *t = ws__ltask_waitable(lh, L, "wspush.fetch");
    if (!lh->fetcher)
        return luaL_error(L, lh->own_state ? "wspush.fetch: the server is stopping"
                                           : "wspush.fetch under wspush.testing makes no network "
                                             "calls: answer them with app:fake_fetch(fn)");
    ws_buf_t hdrs;
    ws_buf_init(&hdrs);
    if (header_lines(L, 3, &hdrs) != 0) {
        ws_buf_free(&hdrs);
        lua_pushnil(L);
        lua_pushfstring(L, "invalid header: %s", lua_tostring(L, -2));
        return 2;
    }
    ws_fetch_req_t req = {
        .method = method,
        .url = url,
        .url_len = ulen,
        .headers = (const char *)hdrs.data,
        .headers_len = hdrs.len,
        .body = body,
        .body_len = blen,
        .timeout_ms = (uint32_t)(timeout * 1000 + 0.5) ? (uint32_t)(timeout * 1000 + 0.5) : 1,
        /* 0 asks the module for its default: the smallest real limit is 1. */
        .max_body = max_body >= 1 ? (size_t)max_body : 1,
        .follow = follow,
        .no_verify = no_verify,
    };
    fetch_wait_t *fw = ws_calloc(1, sizeof *fw);
    fw->lh = lh;
    fw->w.cancel = fetch_cancel;
    fw->x = ws_fetch_start(lh->fetcher, &req, fetch_done, fw);
    ws_buf_free(&hdrs);
    return ws__ltask_wait(L, t, &fw->w);
}

/* core.can_wait(name): raise unless a waiting function may wait here (the
 * fake fetch of wspush.testing checks this like the real one). */
static int l_can_wait(lua_State *L)
{
    ws__ltask_waitable(ws__lhost_up(L), L, luaL_checkstring(L, 1));
    return 0;
}

void ws__lfetch_register(ws_lhost_t *lh, int core)
{
    lua_State *L = lh->L;
    lua_pushlightuserdata(L, lh);
    lua_pushcclosure(L, l_fetch, 1);
    lua_setfield(L, core, "fetch");
    lua_pushlightuserdata(L, lh);
    lua_pushcclosure(L, l_can_wait, 1);
    lua_setfield(L, core, "can_wait");
}
