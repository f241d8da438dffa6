/* Requests from the Lua side: a plain HTTP request answered by a route's
 * function, and the routing, origin and subprotocol decisions of an upgrade
 * (plus the route's own limits). The routing itself is lua/wspush/server.lua. */
#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "error.h"
#include "http.h"
#include "lbind.h"
#include "log.h"
#include "stats.h"

/* Push a table describing the request: method, path, rawquery, headers
 * (lower-case names, repeated ones joined with ", "), body, remote. */
static void push_request(lua_State *L, ws_conn_t *c, const ws_request_t *rq, int skip)
{
    const ws_hs_request_t *req = rq->hs;
    size_t ulen = rq->url_len;
    const char *url = rq->url;
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
    /* Sized by insertion when headers are skipped: a table sized for all of
     * them would keep empty slots for the connection's lifetime. */
    lua_createtable(L, 0, skip ? 0 : (int)req->nheaders);
    for (size_t i = 0; i < req->nheaders; i++) {
        char name[256];
        size_t n = req->headers[i].name_len < sizeof name ? req->headers[i].name_len : sizeof name;
        for (size_t k = 0; k < n; k++)
            name[k] = (char)tolower((unsigned char)req->headers[i].name[k]);
        lua_pushlstring(L, name, n);
        if (skip) {
            lua_pushvalue(L, -1);
            if (lua_rawget(L, skip) != LUA_TNIL) {
                lua_pop(L, 2);
                continue;
            }
            lua_pop(L, 1);
        }
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
    lua_pushlstring(L, rq->body, rq->body_len);
    lua_setfield(L, -2, "body");
    char r[WS_REMOTE_MAX];
    ws_conn_remote(c, r, sizeof r);
    lua_pushstring(L, r);
    lua_setfield(L, -2, "remote");
}

/* The headers table at index headers into out (string keys; string or number values). */
static void add_headers(lua_State *L, int headers, ws_buf_t *out)
{
    if (!lua_istable(L, headers))
        return;
    lua_pushnil(L);
    while (lua_next(L, headers)) {
        if (lua_type(L, -2) == LUA_TSTRING &&
            (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER)) {
            size_t kl, vl;
            const char *k = lua_tolstring(L, -2, &kl);
            const char *v = lua_tolstring(L, -1, &vl);
            if (ws_http_header_add(out, k, kl, v, vl) < 0)
                ws_log_warn("response header '%.*s' dropped: contains CR, LF or NUL",
                            (int)(kl > 64 ? 64 : kl), k);
        }
        lua_pop(L, 1);
    }
}

/* A request whose answer waits for its task: the connection's host data
 * until answered. */
typedef struct {
    uint8_t kind;          /* WS_HD_PENDING */
    ws_lhost_t *lh;
    ws_conn_t *c;          /* NULL once the answer is no longer wanted */
    ws_ltask_t *task;
    ws_response_t *res;    /* an HTTP request's answer, or */
    ws_upgrade_t *up;      /* an upgrade's decision */
    int req_ref;           /* upgrade: the request table, for the connection's fields */
    ws_timer_t timer;      /* upgrade: --upgrade-timeout */
    char what[300];        /* for the log */
} pending_t;

static pending_t *pending_new(ws_lhost_t *lh, ws_conn_t *c, ws_ltask_t *t, const char *what,
                              ws_ltask_done_fn done)
{
    pending_t *p = ws_calloc(1, sizeof *p);
    p->kind = WS_HD_PENDING;
    p->lh = lh;
    p->c = c;
    p->task = t;
    p->req_ref = LUA_NOREF;
    snprintf(p->what, sizeof p->what, "%s", what);
    t->done = done;
    t->ud = p;
    ws_conn_set_host_data(c, p);
    return p;
}

static void pending_free(ws_lhost_t *lh, pending_t *p)
{
    ws_timer_stop(&lh->hub->timers, &p->timer);
    luaL_unref(lh->L, LUA_REGISTRYINDEX, p->req_ref);
    free(p);
}

/* "HTTP handler GET /path" */
static void describe(char *out, size_t n, const char *kind, const ws_request_t *req)
{
    snprintf(out, n, "%s %.*s %.*s", kind, (int)req->hs->method_len, req->hs->method,
             (int)(req->url_len > 200 ? 200 : req->url_len), req->url);
}

/* The answer of S.http: status, body, headers at top + 1..3 (status 200
 * when nil), or the task's failure. */
static void http_answer(ws_lhost_t *lh, int status, int top, ws_response_t *res, const char *what)
{
    lua_State *L = lh->L;
    if (status != LUA_OK) {
        ws__lcall_log_error(lh, what);
        res->status = 500;
        ws_buf_append_str(&res->body, "Internal Server Error\n");
        return;
    }
    /* S.http normalised them; still, nothing here may raise outside a pcall. */
    int isnum = 1;
    lua_Integer st = lua_isnil(L, top + 1) ? 200 : lua_tointegerx(L, top + 1, &isnum);
    res->status = !isnum || st < 100 || st > 999 ? 500 : (int)st;
    size_t blen = 0;
    const char *body = lua_tolstring(L, top + 2, &blen);
    if (body)
        ws_buf_append(&res->body, body, blen);
    add_headers(L, top + 3, &res->headers);
}

static void http_done(ws_lhost_t *lh, ws_ltask_t *t, int status, int nres)
{
    pending_t *p = t->ud;
    lua_State *L = lh->L;
    if (status == WS_LTASK_ABANDONED) {
        pending_free(lh, p);
        return;
    }
    int top = lua_gettop(L) - (status == LUA_OK ? nres : 1);
    ws_conn_t *c = p->c;
    if (!c) {
        /* The client left: the answer goes nowhere, an error is still news. */
        if (status != LUA_OK)
            ws__lcall_log_error(lh, p->what);
    } else {
        http_answer(lh, status, top, p->res, p->what);
        ws_conn_set_host_data(c, NULL);
    }
    lua_settop(L, top);
    pending_free(lh, p);
    if (c)
        ws_conn_http_done(c);
}

static int http_op(ws_lhost_t *lh, ws_conn_t *c, const ws_request_t *req, ws_response_t *res)
{
    lua_State *L = lh->L;
    int top = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, lh->server_ref);
    lua_getfield(L, -1, "http");
    lua_remove(L, -2);
    lua_rawgeti(L, LUA_REGISTRYINDEX, lh->app_ref);
    push_request(L, c, req, 0);
    char what[300];
    describe(what, sizeof what, "HTTP handler", req);
    ws_ltask_t *t;
    int st = ws__ltask_run(lh, 2, 3, &t);
    if (st == WS_LTASK_WAITING) {
        pending_new(lh, c, t, what, http_done)->res = res;
        return WS_HOST_PENDING;
    }
    http_answer(lh, st, top, res, what);
    lua_settop(L, top);
    return 0;
}

/* A number field of the route's settings within [lo, hi], or def (with a
 * warning when the field is there but is not such a number: NaN and
 * infinities included, which no conversion below may see). */
static double opt_number(lua_State *L, int handler, const char *name, double def, double lo,
                         double hi)
{
    double v = def;
    int t = lua_getfield(L, handler, name);
    if (t == LUA_TNUMBER && lua_tonumber(L, -1) >= lo && lua_tonumber(L, -1) <= hi)
        v = lua_tonumber(L, -1);
    else if (t != LUA_TNIL)
        ws_log_warn("route option %s must be a number from %g to %g; using %g", name, lo, hi, def);
    lua_pop(L, 1);
    return v;
}

/* Per-route limits: a WebSocket handler table may override the server's
 * max_message, max_buffered, backpressure, idle_timeout, rate_limit and
 * rate_burst for its connections. The ranges are the command line's. */
static void route_limits(lua_State *L, int handler, ws_route_limits_t *c)
{
    c->max_message = (size_t)opt_number(L, handler, "max_message", (double)c->max_message, 1, 1e15);
    c->max_buffered =
        (size_t)opt_number(L, handler, "max_buffered", (double)c->max_buffered, 1, 1e15);
    c->idle_ms = (uint32_t)(opt_number(L, handler, "idle_timeout", c->idle_ms / 1000.0, 0, 864000) *
                            1000);
    c->rate = (float)opt_number(L, handler, "rate_limit", c->rate, 0, 1e9);
    c->burst = (float)opt_number(L, handler, "rate_burst", c->burst, 1, 1e9);
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
        d->level = (int)opt_number(L, tab, "level", d->level, 0, 9);
        d->threshold = (size_t)opt_number(L, tab, "threshold", (double)d->threshold, 0, 1e15);
        d->server_max_window_bits =
            (int)opt_number(L, tab, "window_bits", d->server_max_window_bits, 9, 15);
        d->mem_level = (int)opt_number(L, tab, "mem_level", d->mem_level, 1, 9);
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

#define UPGRADE_GC_EVERY 64
/* Messages a connection may have waiting while its handler waits, unless
 * its route says max_pending. */
#define WS_LREQ_MAX_PENDING 16

struct ws_route_s *ws__lhost_route(ws_lhost_t *lh, const char *key, size_t len)
{
    struct ws_route_s *r;
    for (r = lh->routes; r; r = r->next)
        if (r->len == len && memcmp(r->key, key, len) == 0)
            return r;
    r = ws_calloc(1, sizeof *r + len + 1);
    r->kind = WS_HD_ROUTE;
    r->handler_ref = LUA_NOREF;
    r->gen = 0;
    r->shared = 1;
    r->len = len;
    memcpy(r->key, key, len);
    r->key[len] = '\0';
    r->next = lh->routes;
    lh->routes = r;
    return r;
}

struct ws_route_s *ws__lhost_route_own(ws_lhost_t *lh, int handler)
{
    struct ws_route_s *r = ws_calloc(1, sizeof *r + 1);
    r->handler_ref = LUA_NOREF;
    r->gen = lh->gen;
    lua_pushvalue(lh->L, handler);
    ws__lconn_set_handler(lh->L, &r->handler_ref);
    return r;
}

void ws__lhost_free_routes(ws_lhost_t *lh)
{
    while (lh->routes) {
        struct ws_route_s *r = lh->routes;
        lh->routes = r->next;
        free(r);
    }
}

/* S.upgrade's decision: the request table at index req, then handler, key,
 * subprotocol, settings, data (accepted) or nil, status, reason, headers
 * (refused), or the task's failure on top. */
static void upgrade_answer(ws_lhost_t *lh, ws_conn_t *c, int status, int req, ws_upgrade_t *up,
                           const char *what)
{
    lua_State *L = lh->L;
    if (status != LUA_OK) {
        ws_stats_inc(WS_STAT_REFUSED_ERROR);
        ws__lcall_log_error(lh, what);
        ws_buf_append_str(&up->reason, "internal error");
        up->status = 500;
        return;
    }
    if (!lua_istable(L, req + 1)) {
        /* S.upgrade says why: "origin", "route", or the handler's hook. */
        const char *kind = lua_type(L, req + 5) == LUA_TSTRING ? lua_tostring(L, req + 5) : "";
        ws_stats_inc(strcmp(kind, "origin") == 0  ? WS_STAT_REFUSED_ORIGIN
                     : strcmp(kind, "route") == 0 ? WS_STAT_REFUSED_ROUTE
                                                  : WS_STAT_REFUSED_HOOK);
        int isnum = 1;
        lua_Integer st = lua_isnil(L, req + 2) ? 404 : lua_tointegerx(L, req + 2, &isnum);
        if (!isnum || st < 400 || st > 599)
            st = 500;
        const char *why = lua_tostring(L, req + 3);
        ws_buf_append_str(&up->reason, why ? why : ws_http_status_text((int)st));
        add_headers(L, req + 4, &up->headers);
        up->status = (int)st;
        return;
    }
    size_t kl, sl;
    const char *key = lua_tolstring(L, req + 2, &kl);
    const char *sub = lua_tolstring(L, req + 3, &sl);
    if (sub && (memchr(sub, '\r', sl) || memchr(sub, '\n', sl) || strlen(sub) != sl)) {
        ws_buf_append_str(&up->reason, "invalid subprotocol");
        up->status = 500;
        return;
    }
    struct ws_route_s *route = key ? ws__lhost_route(lh, key, kl) : NULL;
    up->subprotocol = sub ? ws_strndup(sub, sl) : NULL;
    /* Within one generation a route key always gives the same handler. */
    if (route && (route->gen != lh->gen || route->handler_ref == LUA_NOREF)) {
        lua_pushvalue(L, req + 1);
        ws__lconn_set_handler(L, &route->handler_ref);
        route->gen = lh->gen;
    }
    if (!route)
        route = ws__lhost_route_own(lh, req + 1);
    /* The route's settings, as S.upgrade read them from the handler (a plain
     * table: nothing here may run a metamethod of the user's). */
    route->max_pending = WS_LREQ_MAX_PENDING;
    if (lua_istable(L, req + 4)) {
        route_limits(L, req + 4, &up->limits);
        route_compression(L, req + 4, &up->limits.deflate);
        route->max_pending = (unsigned)opt_number(L, req + 4, "max_pending", WS_LREQ_MAX_PENDING,
                                                  1, 1e6);
    }
    ws_conn_set_host_data(c, route);
    ws__lconn_new(lh, c, req, up->subprotocol);
    if (lua_istable(L, req + 5))
        ws__lconn_set_data(lh, c, req + 5);
    /* An upgrade leaves ~0.5 KB of garbage (the request) next to the ~0.2 KB
     * the connection keeps. Left to the collector's pace, a burst of
     * handshakes spreads it between the live objects, where freeing it later
     * leaves holes that stay in the RSS: measured ~90 bytes per idle
     * connection. A collector step every UPGRADE_GC_EVERY upgrades reclaims it
     * while the burst goes on, for ~2.5 us per upgrade. */
    if (++lh->upgrades % UPGRADE_GC_EVERY == 0)
        ws__lcall_gc_step(lh, 0);
}

static void upgrade_done(ws_lhost_t *lh, ws_ltask_t *t, int status, int nres)
{
    pending_t *p = t->ud;
    lua_State *L = lh->L;
    if (status == WS_LTASK_ABANDONED) {
        pending_free(lh, p);
        return;
    }
    int top = lua_gettop(L) - (status == LUA_OK ? nres : 1);
    ws_conn_t *c = p->c;
    if (!c) {
        /* It timed out or the client left: the decision goes nowhere. */
        if (status != LUA_OK)
            ws__lcall_log_error(lh, p->what);
        lua_settop(L, top);
        pending_free(lh, p);
        return;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->req_ref);
    lua_insert(L, top + 1);
    ws_conn_set_host_data(c, NULL);
    upgrade_answer(lh, c, status, top + 1, p->up, p->what);
    lua_settop(L, top);
    pending_free(lh, p);
    ws_conn_upgrade_done(c);
}

/* No decision within --upgrade-timeout: 503, and the task is told. */
static void upgrade_timeout(ws_timer_t *tm)
{
    pending_t *p = (pending_t *)((char *)tm - offsetof(pending_t, timer));
    ws_lhost_t *lh = p->lh;
    ws_conn_t *c = p->c;
    ws_log_warn("%s: no decision within --upgrade-timeout (%g s): 503", p->what,
                lh->hub->cfg.upgrade_timeout);
    p->c = NULL;
    ws_conn_set_host_data(c, NULL);
    p->up->status = 503;
    ws_stats_inc(WS_STAT_REFUSED_TIMEOUT);
    ws_buf_append_str(&p->up->reason, "upgrade decision timed out");
    ws_http_header_add(&p->up->headers, "Retry-After", 11, "5", 1);
    ws_conn_upgrade_done(c);
    ws__lbudget_start(lh);
    ws__ltask_interrupt(lh, p->task, "timeout");
    ws__lbudget_end(lh);
}

static int upgrade_op(ws_lhost_t *lh, ws_conn_t *c, const ws_request_t *req,
                      const char *protocols, size_t protocols_len, ws_upgrade_t *up)
{
    lua_State *L = lh->L;
    int top = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, lh->server_ref);
    lua_getfield(L, -1, "upgrade");
    lua_remove(L, -2);
    lua_rawgeti(L, LUA_REGISTRYINDEX, lh->app_ref);
    /* The handshake's own headers, which the core has checked, are left out
     * of req.headers: it becomes conn.headers, kept as long as the connection. */
    lua_rawgeti(L, LUA_REGISTRYINDEX, lh->server_ref);
    lua_getfield(L, -1, "HANDSHAKE_ONLY");
    lua_remove(L, -2);
    int skip = lua_gettop(L);
    push_request(L, c, req, lua_istable(L, skip) ? skip : 0);
    lua_remove(L, skip);
    int req_idx = lua_gettop(L);
    lua_newtable(L);
    size_t pos = 0, tl;
    const char *tok;
    int n = 0;
    while (protocols && ws_token_next(protocols, protocols_len, &pos, &tok, &tl)) {
        lua_pushlstring(L, tok, tl);
        lua_rawseti(L, -2, ++n);
    }
    lua_pushvalue(L, req_idx); /* keep the request: it becomes the connection's fields */
    lua_insert(L, top + 1);
    char what[300];
    describe(what, sizeof what, "WebSocket upgrade", req);
    ws_ltask_t *t;
    int st = ws__ltask_run(lh, 3, 5, &t);
    if (st == WS_LTASK_WAITING) {
        pending_t *p = pending_new(lh, c, t, what, upgrade_done);
        p->up = up;
        p->req_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        ws_hub_t *h = lh->hub;
        ws_timer_start(&h->timers, &p->timer, ws_hub_now(h),
                       (uint64_t)(h->cfg.upgrade_timeout * 1000), 0, upgrade_timeout);
        lua_settop(L, top);
        return WS_HOST_PENDING;
    }
    upgrade_answer(lh, c, st, top + 1, up, what);
    lua_settop(L, top);
    return 0;
}

/* The host operations: every entry runs under the time budget (see levent.c). */
int ws__lhost_http(void *ud, ws_conn_t *c, const ws_request_t *req, ws_response_t *res)
{
    ws_lhost_t *lh = ud;
    ws__lbudget_start(lh);
    int r = http_op(lh, c, req, res);
    ws__lbudget_end(lh);
    return r;
}

int ws__lhost_upgrade(void *ud, ws_conn_t *c, const ws_request_t *req, const char *protocols,
                      size_t protocols_len, ws_upgrade_t *up)
{
    ws_lhost_t *lh = ud;
    ws__lbudget_start(lh);
    int r = upgrade_op(lh, c, req, protocols, protocols_len, up);
    ws__lbudget_end(lh);
    return r;
}

void ws__lhost_cancel(void *ud, ws_conn_t *c)
{
    ws_lhost_t *lh = ud;
    pending_t *p = ws_conn_host_data(c);
    if (!p || p->kind != WS_HD_PENDING)
        return;
    p->c = NULL;
    ws_conn_set_host_data(c, NULL);
    ws_timer_stop(&lh->hub->timers, &p->timer);
    ws__lbudget_start(lh);
    ws__ltask_interrupt(lh, p->task, "closed");
    ws__lbudget_end(lh);
}
