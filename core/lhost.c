#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conn.h"
#include "error.h"
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

/* A callback that never returns must not hang the server: every so many VM
 * instructions, check the clock against the budget of the outermost call. */
#define HOOK_COUNT 100000

static void budget_hook(lua_State *L, lua_Debug *ar)
{
    ws_lhost_t *lh = ws__lhost_of(L);
    (void)ar;
    if (lh->depth > 0 && uv_hrtime() > lh->deadline)
        luaL_error(L, "callback exceeded its time budget (--lua-timeout %f s)",
                   lh->srv->cfg.lua_timeout);
}

/* The budget starts at the loop's cached time (no clock read per call); the
 * hook reads the clock, and only every HOOK_COUNT instructions. */
static void budget_start(ws_lhost_t *lh)
{
    if (lh->depth++ == 0)
        lh->deadline = uv_now(lh->srv->loop) * 1000000ULL +
                       (uint64_t)(lh->srv->cfg.lua_timeout * 1e9);
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
    budget_start(lh);
    int r = lua_pcall(lh->L, nargs, nres, TRACEBACK_IDX);
    lh->depth--;
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
    budget_start(lh);
    int r = lua_pcall(L, nargs, nres, 0);
    lh->depth--;
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
    lua_State *L = lh->L = luaL_newstate();
    *(ws_lhost_t **)lua_getextraspace(L) = lh;
    lua_pushcfunction(L, traceback); /* TRACEBACK_IDX */
    luaL_openlibs(L);
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, HOOK_COUNT);
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

void ws_lhost_free(ws_lhost_t *lh)
{
    if (!lh)
        return;
    ws__ltimers_close_all(lh);
    lua_close(lh->L);
    free(lh->script);
    free(lh->script_dir);
    free(lh->project_dirs[0]);
    free(lh->project_dirs[1]);
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

/* --- requests --- */

/* Push a table describing the request: method, path, rawquery, headers
 * (lower-case names, repeated ones joined with ", "), body, remote. */
static void push_request(lua_State *L, ws_conn_t *c, ws_http_t *h, const ws_hs_request_t *req)
{
    size_t ulen, blen;
    const char *url = ws_http_url(h, &ulen);
    const char *body = ws_http_body(h, &blen);
    lua_createtable(L, 0, 8);
    lua_pushlstring(L, req->method, req->method_len);
    lua_setfield(L, -2, "method");
    /* The fragment is not part of the request; an absolute-form target
     * (http://host/path, RFC 7230 5.3.2) is routed by its path. */
    const char *hash = memchr(url, '#', ulen);
    size_t end = hash ? (size_t)(hash - url) : ulen;
    size_t start = 0;
    if (end > 7 && (strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0)) {
        const char *auth = (const char *)memchr(url, '/', end) + 2;
        const char *slash = memchr(auth, '/', end - (size_t)(auth - url));
        const char *qm = memchr(auth, '?', end - (size_t)(auth - url));
        start = slash && (!qm || slash < qm) ? (size_t)(slash - url)
                : qm                        ? (size_t)(qm - url)
                                            : end;
    }
    const char *q = memchr(url + start, '?', end - start);
    size_t pend = q ? (size_t)(q - url) : end;
    if (pend > start)
        lua_pushlstring(L, url + start, pend - start);
    else
        lua_pushliteral(L, "/");
    lua_setfield(L, -2, "path");
    if (q) {
        lua_pushlstring(L, q + 1, end - (size_t)(q - url) - 1);
        lua_setfield(L, -2, "rawquery");
    }
    lua_createtable(L, 0, (int)req->nheaders);
    for (size_t i = 0; i < req->nheaders; i++) {
        char name[256];
        size_t n = req->headers[i].name_len < sizeof name ? req->headers[i].name_len : sizeof name;
        for (size_t k = 0; k < n; k++)
            name[k] = (char)tolower((unsigned char)req->headers[i].name[k]);
        lua_pushlstring(L, name, n);
        lua_pushvalue(L, -1);
        if (lua_rawget(L, -3) == LUA_TSTRING) {
            lua_pushliteral(L, ", ");
            lua_pushlstring(L, req->headers[i].value, req->headers[i].value_len);
            lua_concat(L, 3);
        } else {
            lua_pop(L, 1);
            lua_pushlstring(L, req->headers[i].value, req->headers[i].value_len);
        }
        lua_rawset(L, -3);
    }
    lua_setfield(L, -2, "headers");
    lua_pushlstring(L, body, blen);
    lua_setfield(L, -2, "body");
    lua_pushstring(L, c->remote);
    lua_setfield(L, -2, "remote");
}

static int header_safe(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0')
            return 0;
    return 1;
}

static void format_response(ws_buf_t *resp, int status, const char *body, size_t blen,
                            lua_State *L, int headers, int keep_alive, int head_only)
{
    char line[256];
    snprintf(line, sizeof line, "HTTP/1.1 %d %s\r\n", status, ws_http_status_text(status));
    ws_buf_append_str(resp, line);
    if (headers && lua_istable(L, headers)) {
        lua_pushnil(L);
        while (lua_next(L, headers)) {
            size_t kl, vl;
            if (lua_type(L, -2) == LUA_TSTRING && (lua_type(L, -1) == LUA_TSTRING ||
                                                   lua_type(L, -1) == LUA_TNUMBER)) {
                const char *k = lua_tolstring(L, -2, &kl);
                const char *v = lua_tolstring(L, -1, &vl);
                /* We frame the body ourselves; a handler's value would desync the stream. */
                if (strcasecmp(k, "content-length") != 0 && strcasecmp(k, "connection") != 0 &&
                    strcasecmp(k, "transfer-encoding") != 0 && header_safe(k, kl) &&
                    header_safe(v, vl)) {
                    ws_buf_append(resp, k, kl);
                    ws_buf_append(resp, ": ", 2);
                    ws_buf_append(resp, v, vl);
                    ws_buf_append(resp, "\r\n", 2);
                } else if (!header_safe(k, kl) || !header_safe(v, vl)) {
                    ws_log_warn("response header '%s' dropped: contains CR, LF or NUL", k);
                }
            }
            lua_pop(L, 1);
        }
    }
    snprintf(line, sizeof line, "Content-Length: %zu\r\n%s\r\n", blen,
             keep_alive ? "" : "Connection: close\r\n");
    ws_buf_append_str(resp, line);
    if (!head_only)
        ws_buf_append(resp, body, blen);
}

void ws_lhost_http(ws_lhost_t *lh, ws_conn_t *c, ws_http_t *h, const ws_hs_request_t *req,
                   int keep_alive, ws_buf_t *resp)
{
    lua_State *L = lh->L;
    int top = lua_gettop(L);
    int head = req->method_len == 4 && memcmp(req->method, "HEAD", 4) == 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, lh->server_ref);
    lua_getfield(L, -1, "http");
    lua_remove(L, -2);
    lua_rawgeti(L, LUA_REGISTRYINDEX, lh->app_ref);
    push_request(L, c, h, req);
    char what[300];
    size_t ulen;
    const char *url = ws_http_url(h, &ulen);
    snprintf(what, sizeof what, "HTTP handler %.*s %.*s", (int)req->method_len, req->method,
             (int)(ulen > 200 ? 200 : ulen), url);
    if (ws__lhost_pcall(lh, 2, 3, what) != 0) {
        const char *msg = "Internal Server Error\n";
        format_response(resp, 500, msg, strlen(msg), L, 0, keep_alive, head);
        lua_settop(L, top);
        return;
    }
    int status = (int)luaL_optinteger(L, top + 1, 200);
    if (status < 100 || status > 999)
        status = 500;
    size_t blen = 0;
    const char *body = lua_tolstring(L, top + 2, &blen);
    if (!body)
        body = "";
    format_response(resp, status, body, blen, L, top + 3, keep_alive, head);
    lua_settop(L, top);
}

/* A number field of the handler table, or def. */
static double opt_number(lua_State *L, int handler, const char *name, double def)
{
    double v = def;
    if (lua_getfield(L, handler, name) == LUA_TNUMBER)
        v = lua_tonumber(L, -1);
    else if (!lua_isnil(L, -1))
        ws_log_warn("route option %s must be a number; using %g", name, def);
    lua_pop(L, 1);
    return v;
}

/* Per-route limits: a WebSocket handler table may override the server's
 * max_message, max_buffered, backpressure, idle_timeout, rate_limit and
 * rate_burst for its connections. */
static void route_limits(lua_State *L, int handler, ws_conn_t *c)
{
    double v;
    if ((v = opt_number(L, handler, "max_message", (double)c->max_message)) >= 1)
        c->max_message = (size_t)v;
    if ((v = opt_number(L, handler, "max_buffered", (double)c->max_buffered)) >= 1)
        c->max_buffered = (size_t)v;
    if ((v = opt_number(L, handler, "idle_timeout", c->idle_ms / 1000.0)) >= 0)
        c->idle_ms = (uint32_t)(v * 1000);
    if ((v = opt_number(L, handler, "rate_limit", c->rate)) >= 0)
        c->rate = (float)v;
    if ((v = opt_number(L, handler, "rate_burst", c->burst)) >= 1)
        c->burst = c->tokens = (float)v;
    if (lua_getfield(L, handler, "backpressure") == LUA_TSTRING) {
        const char *p = lua_tostring(L, -1);
        if (strcmp(p, "close") == 0)
            c->backpressure = WS_BP_CLOSE;
        else if (strcmp(p, "drop") == 0)
            c->backpressure = WS_BP_DROP;
        else if (strcmp(p, "drop-oldest") == 0)
            c->backpressure = WS_BP_DROP_OLDEST;
        else
            ws_log_warn("route option backpressure must be close, drop or drop-oldest, not '%s'", p);
    }
    lua_pop(L, 1);
}

/* handler.compression: false turns permessage-deflate off for the route; a
 * table sets level, threshold, window_bits, mem_level, context_takeover. */
static void route_compression(lua_State *L, int handler, ws_deflate_config_t *d)
{
    int t = lua_getfield(L, handler, "compression");
    if (t == LUA_TBOOLEAN) {
        d->enabled = d->enabled && lua_toboolean(L, -1);
    } else if (t == LUA_TTABLE) {
        int tab = lua_gettop(L);
        double v;
        if ((v = opt_number(L, tab, "level", d->level)) >= 0 && v <= 9)
            d->level = (int)v;
        else
            ws_log_warn("route option compression.level must be 0-9; using %d", d->level);
        if ((v = opt_number(L, tab, "threshold", (double)d->threshold)) >= 0 && v < 1e15)
            d->threshold = (size_t)v;
        else
            ws_log_warn("route option compression.threshold must be >= 0; using %zu", d->threshold);
        if ((v = opt_number(L, tab, "window_bits", d->server_max_window_bits)) >= 9 && v <= 15)
            d->server_max_window_bits = (int)v;
        else
            ws_log_warn("route option compression.window_bits must be 9-15; using %d",
                        d->server_max_window_bits);
        if ((v = opt_number(L, tab, "mem_level", d->mem_level)) >= 1 && v <= 9)
            d->mem_level = (int)v;
        else
            ws_log_warn("route option compression.mem_level must be 1-9; using %d", d->mem_level);
        if (lua_getfield(L, tab, "context_takeover") == LUA_TBOOLEAN) {
            int keep = lua_toboolean(L, -1);
            d->server_no_context_takeover = d->client_no_context_takeover = !keep;
            d->release_idle = !keep;
        }
        lua_pop(L, 1);
    } else if (t != LUA_TNIL) {
        ws_log_warn("route option compression must be a boolean or a table");
    }
    lua_pop(L, 1);
}

int ws_lhost_upgrade(ws_lhost_t *lh, ws_conn_t *c, ws_http_t *h, const ws_hs_request_t *req,
                     const ws_hs_result_t *hs, ws_deflate_config_t *dcfg,
                     ws_buf_t *extra_headers, ws_buf_t *reason)
{
    lua_State *L = lh->L;
    int top = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, lh->server_ref);
    lua_getfield(L, -1, "upgrade");
    lua_remove(L, -2);
    lua_rawgeti(L, LUA_REGISTRYINDEX, lh->app_ref);
    push_request(L, c, h, req);
    int req_idx = lua_gettop(L);
    lua_newtable(L);
    size_t pos = 0, tl;
    const char *tok;
    int n = 0;
    while (hs->protocols && ws_token_next(hs->protocols, hs->protocols_len, &pos, &tok, &tl)) {
        lua_pushlstring(L, tok, tl);
        lua_rawseti(L, -2, ++n);
    }
    lua_pushvalue(L, req_idx); /* keep the request: it becomes the connection's fields */
    lua_insert(L, top + 1);
    if (ws__lhost_pcall(lh, 3, 4, "WebSocket upgrade") != 0) {
        ws_buf_append_str(reason, "internal error");
        lua_settop(L, top);
        return 500;
    }
    /* stack: req, r1, r2, r3, r4 */
    if (!lua_istable(L, top + 2)) {
        int status = (int)luaL_optinteger(L, top + 3, 404);
        const char *why = lua_tostring(L, top + 4);
        ws_buf_append_str(reason, why ? why : ws_http_status_text(status));
        if (lua_istable(L, top + 5)) {
            lua_pushnil(L);
            while (lua_next(L, top + 5)) {
                size_t kl, vl;
                const char *k = lua_tolstring(L, -2, &kl);
                const char *v = lua_tolstring(L, -1, &vl);
                if (k && v && header_safe(k, kl) && header_safe(v, vl)) {
                    ws_buf_append(extra_headers, k, kl);
                    ws_buf_append(extra_headers, ": ", 2);
                    ws_buf_append(extra_headers, v, vl);
                    ws_buf_append(extra_headers, "\r\n", 2);
                }
                lua_pop(L, 1);
            }
        }
        lua_settop(L, top);
        return status >= 400 && status <= 599 ? status : 500;
    }
    size_t kl, sl;
    const char *key = lua_tolstring(L, top + 3, &kl);
    const char *sub = lua_tolstring(L, top + 4, &sl);
    if (sub && !header_safe(sub, sl)) {
        ws_buf_append_str(reason, "invalid subprotocol");
        lua_settop(L, top);
        return 500;
    }
    c->route_key = key ? ws_strndup(key, kl) : NULL;
    c->subprotocol = sub ? ws_strndup(sub, sl) : NULL;
    c->gen = lh->gen;
    route_limits(L, top + 2, c);
    route_compression(L, top + 2, dcfg);
    lua_pushvalue(L, top + 2);
    c->handler_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    ws__lconn_new(lh, c, top + 1);
    lua_settop(L, top);
    return 0;
}

/* --- WebSocket events --- */

/* After a reload, find the connection's handler in the new routes by its
 * route key (or its path, for the catch-all). Returns 0 when the new script
 * no longer serves the route: the connection is then closed with 1001. */
static int rebind(ws_lhost_t *lh, ws_conn_t *c)
{
    lua_State *L = lh->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, lh->server_ref);
    lua_getfield(L, -1, "resolve");
    lua_remove(L, -2);
    lua_rawgeti(L, LUA_REGISTRYINDEX, lh->app_ref);
    if (c->route_key)
        lua_pushstring(L, c->route_key);
    else
        lua_pushnil(L);
    ws__lconn_push(lh, c);
    if (lua_type(L, -1) == LUA_TUSERDATA) {
        lua_getiuservalue(L, -1, 1);
        lua_getfield(L, -1, "path");
        lua_replace(L, -3);
        lua_pop(L, 1);
    }
    if (ws__lhost_pcall(lh, 3, 1, "rebinding a connection after reload") != 0)
        lua_pushnil(L);
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        static const char msg[] = "endpoint removed by a reload";
        ws_conn_close(c, WS_CLOSE_GOING_AWAY, msg, sizeof msg - 1);
        return 0;
    }
    luaL_unref(L, LUA_REGISTRYINDEX, c->handler_ref);
    c->handler_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    c->gen = lh->gen;
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
    ws_log_error("%s (%s, conn %llu): %s", name, c->route_key ? c->route_key : "*",
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
    luaL_unref(L, LUA_REGISTRYINDEX, c->handler_ref);
    c->handler_ref = LUA_NOREF;
}
