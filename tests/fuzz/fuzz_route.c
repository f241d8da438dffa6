/*
 * fuzz_route: routing and query/form decoding, which live in Lua
 * (lua/wspush/router.lua, lua/wspush/http.lua, lua/wspush/server.lua), driven
 * through one long-lived lua_State. Only this driver is instrumented; liblua
 * and the Lua code are not, so coverage counts are those of the driver.
 *
 * Input: text lines split at the first three '\n':
 *   method \n request-target \n content-type \n body (the rest, may hold '\n')
 * An empty method becomes "GET"; a missing content-type line means no
 * Content-Type header; a missing body is "". The request target is split into
 * path and rawquery exactly as core/lhost.c push_request() does (path ends at
 * the first '?', else the first '#'; rawquery is nil without '?').
 *
 * Checked here (C reference, written independently of the Lua):
 *   - http.unescape and router.unescape equal a byte-loop %XX decoder, on
 *     every part of the input;
 *   - http.decode_query equals a reference split ('&', first '=', '+' -> ' ',
 *     %XX, empty keys dropped, last value wins) on the query, the body and the
 *     whole input.
 * Checked in tests/fuzz/fuzz_route.lua (one(), against Lua references):
 *   - router:match against a reference segment matcher over the route table:
 *     the route returned really matches and is the most specific, params equal
 *     the reference captures and are strings; nil, 404 / nil, 405 + Allow
 *     exactly when no route (with that method) matches;
 *   - unescape(escape(x)) == x, escape() output alphabet, decode_query
 *     (encode_query(t)) == t, decode_form == decode_query;
 *   - S.http never raises on any request and returns status, string body and
 *     a headers table a client could receive; the echo route returns exactly
 *     the params/query/form it was given; the static handler never asks
 *     realpath about a path outside its root; S.upgrade / S.resolve agree.
 * Any Lua error that escapes (an invariant or a bug in the modules) aborts
 * with its message and traceback. A count hook aborts an input that runs more
 * than FUZZ_ROUTE_MAX_INSNS Lua instructions (a runaway loop), so it is a
 * crash rather than a hang; time spent inside one C string function (a slow
 * pattern match) is caught by libFuzzer's -timeout instead.
 *
 * Compile-time: WSPUSH_LUA_DIR (the repo's lua/ dir) and FUZZ_ROUTE_LUA (the
 * path of fuzz_route.lua). package.cpath keeps its default, for cjson. The
 * C codecs the modules share with the core ("wspush.native", lnative.c) are
 * linked in and preloaded, as the server does.
 */
#include "fuzz_util.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

int ws__luaopen_native(lua_State *L); /* lnative.c */

#ifndef WSPUSH_LUA_DIR
#error "define WSPUSH_LUA_DIR (the repository's lua/ directory)"
#endif
#ifndef FUZZ_ROUTE_LUA
#error "define FUZZ_ROUTE_LUA (the path of tests/fuzz/fuzz_route.lua)"
#endif

#define FUZZ_ROUTE_HOOK_EVERY 1000
#define FUZZ_ROUTE_MAX_INSNS 50000000L

static lua_State *L;
static int harness_ref = LUA_NOREF;
static long hook_ticks;

/* Lua line coverage for libFuzzer: liblua is not instrumented, so a line hook
 * hashes (chunk, line, previous line) into counters in the section libFuzzer
 * reads as extra features (Linux). Outside libFuzzer nobody reads them. */
#define LUA_COV_SIZE (1u << 14)
__attribute__((section("__libfuzzer_extra_counters"), used)) static uint8_t lua_cov[LUA_COV_SIZE];
static uint32_t lua_cov_prev;

static void hook(lua_State *l, lua_Debug *ar)
{
    if (ar->event == LUA_HOOKLINE) {
        if (lua_getinfo(l, "S", ar) && ar->source) {
            uint32_t cur = (uint32_t)((uintptr_t)ar->source * 2654435761u) ^
                           (uint32_t)ar->currentline * 0x9E3779B1u;
            uint8_t *c = &lua_cov[(cur ^ lua_cov_prev) % LUA_COV_SIZE];
            if (*c < 255)
                (*c)++;
            lua_cov_prev = cur >> 1;
        }
        return;
    }
    if (++hook_ticks <= FUZZ_ROUTE_MAX_INSNS / FUZZ_ROUTE_HOOK_EVERY)
        return;
    luaL_traceback(l, l, NULL, 0);
    fprintf(stderr, "fuzz_route: more than %ld Lua instructions for one input (runaway loop?)\n%s\n",
            FUZZ_ROUTE_MAX_INSNS, lua_tostring(l, -1));
    abort();
}

static int msgh(lua_State *l)
{
    const char *msg = lua_tostring(l, 1);
    if (!msg)
        msg = lua_pushfstring(l, "(error object is a %s value)", luaL_typename(l, 1));
    luaL_traceback(l, l, msg, 1);
    return 1;
}

/* Call the function on the stack top with nargs arguments under msgh; abort
 * with the message on error. Leaves nres results. */
static void call_or_die(int nargs, int nres, const char *what)
{
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, msgh);
    lua_insert(L, base);
    if (lua_pcall(L, nargs, nres, base) != LUA_OK) {
        fprintf(stderr, "fuzz_route: Lua error in %s:\n%s\n", what, lua_tostring(L, -1));
        abort();
    }
    lua_remove(L, base);
}

static void init(void)
{
    L = luaL_newstate();
    FUZZ_CHECK(L != NULL);
    luaL_openlibs(L);
    lua_getglobal(L, "package");
    lua_pushstring(L, WSPUSH_LUA_DIR "/?.lua;" WSPUSH_LUA_DIR "/?/init.lua");
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, ws__luaopen_native);
    lua_setfield(L, -2, "wspush.native");
    lua_pop(L, 1);
    lua_pushcfunction(L, msgh);
    if (luaL_loadfile(L, FUZZ_ROUTE_LUA) != LUA_OK) {
        fprintf(stderr, "fuzz_route: %s\n", lua_tostring(L, -1));
        abort();
    }
    if (lua_pcall(L, 0, 1, -2) != LUA_OK) {
        fprintf(stderr, "fuzz_route: loading the harness:\n%s\n", lua_tostring(L, -1));
        abort();
    }
    FUZZ_CHECK(lua_istable(L, -1));
    harness_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1); /* msgh */
    lua_sethook(L, hook, LUA_MASKCOUNT | LUA_MASKLINE, FUZZ_ROUTE_HOOK_EVERY);
}

/* --- C references --- */

typedef struct {
    char *p;
    size_t n;
} str_t;

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* %XX -> byte; plus_space: '+' -> ' ' first (query strings). Caller frees. */
static str_t ref_unescape(const char *s, size_t n, int plus_space)
{
    str_t o = {malloc(n + 1), 0};
    for (size_t i = 0; i < n; i++) {
        int hi, lo;
        if (s[i] == '%' && i + 2 < n && (hi = hexval((unsigned char)s[i + 1])) >= 0 &&
            (lo = hexval((unsigned char)s[i + 2])) >= 0) {
            o.p[o.n++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            o.p[o.n++] = plus_space && s[i] == '+' ? ' ' : s[i];
        }
    }
    return o;
}

typedef struct {
    str_t k, v;
} kv_t;

/* Reference decode_query: pairs with unique non-empty keys, last value wins. */
static size_t ref_decode_query(const char *s, size_t n, kv_t **out)
{
    kv_t *kv = NULL;
    size_t count = 0, i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && s[j] != '&')
            j++;
        if (j > i) {
            const char *eq = memchr(s + i, '=', j - i);
            size_t klen = eq ? (size_t)(eq - (s + i)) : j - i;
            str_t k = ref_unescape(s + i, klen, 1);
            str_t v = eq ? ref_unescape(eq + 1, (size_t)(s + j - eq - 1), 1) : ref_unescape("", 0, 1);
            if (k.n == 0) {
                free(k.p);
                free(v.p);
            } else {
                size_t x = 0;
                while (x < count && !(kv[x].k.n == k.n && memcmp(kv[x].k.p, k.p, k.n) == 0))
                    x++;
                if (x < count) {
                    free(k.p);
                    free(kv[x].v.p);
                    kv[x].v = v;
                } else {
                    kv = realloc(kv, (count + 1) * sizeof *kv);
                    kv[count].k = k;
                    kv[count].v = v;
                    count++;
                }
            }
        }
        i = j + 1;
    }
    *out = kv;
    return count;
}

/* --- comparisons against the Lua functions --- */

static void push_harness_fn(const char *name)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, harness_ref);
    lua_getfield(L, -1, name);
    lua_remove(L, -2);
}

static void check_unescape(const char *fn, const char *s, size_t n)
{
    push_harness_fn(fn);
    lua_pushlstring(L, s, n);
    call_or_die(1, 1, fn);
    size_t ln;
    const char *got = lua_tolstring(L, -1, &ln);
    str_t want = ref_unescape(s, n, 0);
    if (!got || ln != want.n || memcmp(got, want.p, ln) != 0) {
        fprintf(stderr, "fuzz_route: %s(%.*s) differs from the reference\n", fn, (int)n, s);
        FUZZ_CHECK(!"unescape == reference");
    }
    free(want.p);
    lua_pop(L, 1);
}

static void check_decode_query(const char *s, size_t n)
{
    push_harness_fn("decode_query");
    lua_pushlstring(L, s, n);
    call_or_die(1, 1, "decode_query");
    FUZZ_CHECK(lua_istable(L, -1));
    kv_t *kv;
    size_t count = ref_decode_query(s, n, &kv);
    for (size_t i = 0; i < count; i++) {
        lua_pushlstring(L, kv[i].k.p, kv[i].k.n);
        lua_rawget(L, -2);
        size_t ln;
        const char *got = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &ln) : NULL;
        if (!got || ln != kv[i].v.n || memcmp(got, kv[i].v.p, ln) != 0) {
            fprintf(stderr, "fuzz_route: decode_query: key [%.*s] gives %s, want [%.*s]\n",
                    (int)kv[i].k.n, kv[i].k.p, got ? got : "(not a string)", (int)kv[i].v.n,
                    kv[i].v.p);
            FUZZ_CHECK(!"decode_query == reference");
        }
        lua_pop(L, 1);
        free(kv[i].k.p);
        free(kv[i].v.p);
    }
    free(kv);
    size_t in_lua = 0;
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        in_lua++;
        lua_pop(L, 1);
    }
    FUZZ_CHECK(in_lua == count);
    lua_pop(L, 1);
}

/* Cut the next '\n'-terminated field off *rest (the last one runs to the end).
 * Returns 0 when nothing is left: no field, not even an empty one. */
typedef struct {
    const char *p;
    size_t n;
    int more; /* a field (possibly empty) remains */
} cursor_t;

static int next_line(cursor_t *c, const char **s, size_t *n)
{
    if (!c->more)
        return 0;
    const char *nl = memchr(c->p, '\n', c->n);
    *s = c->p;
    *n = nl ? (size_t)(nl - c->p) : c->n;
    if (nl) {
        c->n -= (size_t)(nl + 1 - c->p);
        c->p = nl + 1;
    } else {
        c->more = 0;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!L)
        init();
    hook_ticks = 0;
    lua_cov_prev = 0;

    cursor_t cur = {(const char *)data, size, 1};
    const char *method = "", *url = "", *ctype = NULL, *body = "";
    size_t mlen = 0, ulen = 0, clen = 0, blen = 0;
    next_line(&cur, &method, &mlen);
    next_line(&cur, &url, &ulen);
    int have_ctype = next_line(&cur, &ctype, &clen);
    if (cur.more) {
        body = cur.p;
        blen = cur.n;
    }
    if (mlen == 0) {
        method = "GET";
        mlen = 3;
    }

    /* core/lhost.c push_request(): path and rawquery from the request target */
    const char *q = memchr(url, '?', ulen);
    const char *hash = memchr(url, '#', ulen);
    size_t plen = q ? (size_t)(q - url) : hash ? (size_t)(hash - url) : ulen;
    size_t qlen = 0;
    if (q)
        qlen = (hash && hash > q ? (size_t)(hash - q) : ulen - (size_t)(q - url)) - 1;

    const char *parts[] = {method, url, url, q ? q + 1 : "", ctype ? ctype : "", body,
                           (const char *)data};
    size_t lens[] = {mlen, ulen, plen, qlen, clen, blen, size};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        check_unescape("unescape", parts[i], lens[i]);
        check_unescape("router_unescape", parts[i], lens[i]);
    }
    check_decode_query(q ? q + 1 : "", qlen);
    check_decode_query(body, blen);
    check_decode_query((const char *)data, size);

    push_harness_fn("one");
    lua_pushlstring(L, method, mlen);
    lua_pushlstring(L, url, plen);
    if (q)
        lua_pushlstring(L, q + 1, qlen);
    else
        lua_pushnil(L);
    if (have_ctype)
        lua_pushlstring(L, ctype, clen);
    else
        lua_pushnil(L);
    lua_pushlstring(L, body, blen);
    call_or_die(5, 0, "one()");
    FUZZ_CHECK(lua_gettop(L) == 0);
    /* Free this input's garbage now: with mallocs and frees balanced per
     * input, libFuzzer does not run a (whole-heap) LeakSanitizer scan after
     * most inputs, which otherwise dominates the run time. */
    lua_gc(L, LUA_GCCOLLECT);
    return 0;
}
