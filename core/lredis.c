/* wspush.redis's native half. core.redis_open(url, timeout, max_queued,
 * methods) gives the client of url (one per URL string and host, kept across
 * reloads; it connects on its first call); core.redis_call(client, cmd, ...)
 * or core.redis_call(client, {cmd...}, {cmd...}, ...) (a unit: MULTI ...
 * EXEC, whose last reply is returned) waits for the reply. lua/wspush/init.lua
 * checks commands (those that would break the shared pipeline are refused)
 * and answers them itself under wspush.testing's fake. */
#include <stdlib.h>
#include <string.h>

#include "lbind.h"
#include "redis.h"

#define REDIS_MT "wspush.redis"

/* One client: the userdata Lua holds. The host's table of clients
 * (lh->redis_ref, URL string -> client) keeps it alive as long as the host;
 * the host frees its connection at shutdown, its __gc the rest. */
struct ws_lredis_s {
    struct ws_lredis_s *next; /* the host's clients */
    ws_redis_url_t url;
    ws_redis_opts_t o;
    ws_redis_t *r;        /* made on the first call; NULL again at shutdown */
};

typedef struct {
    ws_lwait_t w;
    ws_lhost_t *lh;
    ws_redis_call_t *call;
} redis_wait_t;

static void redis_cancel(ws_lwait_t *w)
{
    redis_wait_t *rw = (redis_wait_t *)w;
    ws_redis_cancel(rw->call);
    free(rw);
}

/* Push rep as Lua values (nested arrays: hiredis's reader nests at most 7
 * deep). An error inside an array is { err = text }; a null element false,
 * so that the array keeps its length. */
static void push_value(lua_State *L, const redisReply *rep, int top)
{
    switch (rep->type) {
    case REDIS_REPLY_STRING:
        lua_pushlstring(L, rep->str, rep->len);
        break;
    case REDIS_REPLY_STATUS:
        if (rep->len == 2 && memcmp(rep->str, "OK", 2) == 0)
            lua_pushboolean(L, 1);
        else
            lua_pushlstring(L, rep->str, rep->len);
        break;
    case REDIS_REPLY_INTEGER:
        lua_pushinteger(L, (lua_Integer)rep->integer);
        break;
    case REDIS_REPLY_ARRAY:
        luaL_checkstack(L, 4, "redis reply");
        lua_createtable(L, (int)rep->elements, 0);
        for (size_t i = 0; i < rep->elements; i++) {
            push_value(L, rep->element[i], 0);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        break;
    case REDIS_REPLY_ERROR:
        lua_createtable(L, 0, 1);
        lua_pushlstring(L, rep->str, rep->len);
        lua_setfield(L, -2, "err");
        break;
    default: /* REDIS_REPLY_NIL */
        if (top)
            lua_pushnil(L);
        else
            lua_pushboolean(L, 0);
    }
}

/* Under lua_pcall: a reply too large for the heap cap fails its call
 * instead of the process. */
static int convert(lua_State *L)
{
    const redisReply *rep = lua_touserdata(L, 1);
    if (rep->type == REDIS_REPLY_ERROR) {
        lua_pushnil(L);
        lua_pushlstring(L, rep->str, rep->len);
        return 2;
    }
    push_value(L, rep, 1);
    return 1;
}

static void call_done(void *ud, const redisReply *rep, const char *error)
{
    redis_wait_t *rw = ud;
    ws_lhost_t *lh = rw->lh;
    ws_ltask_t *t = rw->w.task;
    lua_State *L = lh->L;
    free(rw);
    int top = lua_gettop(L);
    if (rep) {
        lua_pushcfunction(L, convert);
        lua_pushlightuserdata(L, (void *)rep);
        if (lua_pcall(L, 1, LUA_MULTRET, 0) == LUA_OK) {
            ws__ltask_resume(lh, t, lua_gettop(L) - top);
            return;
        }
        lua_settop(L, top);
        error = "reply too large for the Lua heap";
    }
    lua_pushnil(L);
    lua_pushstring(L, error);
    ws__ltask_resume(lh, t, 2);
}

static struct ws_lredis_s *check_client(lua_State *L, int i)
{
    return luaL_checkudata(L, i, REDIS_MT);
}

/* The strings of the command at index i (a table) or of the arguments
 * from i to top, appended to argv/lens; returns how many. */
static int gather(lua_State *L, int i, int top, int table, const char ***argv, size_t **lens,
                  int *n, int *cap)
{
    int count = table ? (int)lua_rawlen(L, i) : top - i + 1;
    if (count < 1)
        luaL_error(L, "wspush.redis: a command needs at least its name");
    if (*n + count > *cap) {
        *cap = (*n + count) * 2;
        *argv = ws_realloc(*argv, (size_t)*cap * sizeof **argv);
        *lens = ws_realloc(*lens, (size_t)*cap * sizeof **lens);
    }
    for (int k = 0; k < count; k++) {
        if (table)
            lua_rawgeti(L, i, k + 1);
        else
            lua_pushvalue(L, i + k);
        /* init.lua turned numbers into strings: the string stays referenced
         * by the table or the arguments, so the pointer outlives the pop */
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "wspush.redis: argument %d of a command is a %s, not a string or a number",
                       k + 1, luaL_typename(L, -1));
        (*argv)[*n] = lua_tolstring(L, -1, &(*lens)[*n]);
        (*n)++;
        lua_pop(L, 1);
    }
    return count;
}

static int l_redis_call(lua_State *L)
{
    ws_lhost_t *lh = ws__lhost_up(L);
    struct ws_lredis_s *cl = check_client(L, 1);
    int top = lua_gettop(L);
    ws_ltask_t *t = ws__ltask_waitable(lh, L, "wspush.redis");
    if (!lh->own_state)
        return luaL_error(L, "wspush.redis under wspush.testing makes no network calls: answer "
                             "them with app:fake_redis(fn)");
    if (!lh->hub || lh->redis_closed)
        return luaL_error(L, "wspush.redis: the server is stopping");
    const char **argv = NULL;
    size_t *lens = NULL;
    int n = 0, cap = 0, table = lua_type(L, 2) == LUA_TTABLE;
    int argc[64];
    unsigned ncmds = 0;
    if (table) {
        luaL_argcheck(L, top - 1 <= 64, 2, "at most 64 commands in a unit");
        for (int i = 2; i <= top; i++) {
            luaL_checktype(L, i, LUA_TTABLE);
            argc[ncmds++] = gather(L, i, top, 1, &argv, &lens, &n, &cap);
        }
    } else {
        argc[ncmds++] = gather(L, 2, top, 0, &argv, &lens, &n, &cap);
    }
    if (!cl->r)
        cl->r = ws_redis_new(lh->hub->io, &cl->url, &cl->o);
    redis_wait_t *rw = ws_calloc(1, sizeof *rw);
    rw->lh = lh;
    rw->w.cancel = redis_cancel;
    const char *err = NULL;
    rw->call = ws_redis_call(cl->r, ncmds, argc, argv, lens, call_done, rw, &err);
    free(argv);
    free(lens);
    if (!rw->call) {
        free(rw);
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    return ws__ltask_wait(L, t, &rw->w);
}

static int l_redis_tostring(lua_State *L)
{
    lua_pushfstring(L, "wspush.redis(%s)", check_client(L, 1)->url.display);
    return 1;
}

/* core.redis_timeout(client): seconds (wspush.testing's fake waits as long). */
static int l_redis_timeout(lua_State *L)
{
    lua_pushnumber(L, check_client(L, 1)->o.timeout_ms / 1000.0);
    return 1;
}

static int l_redis_gc(lua_State *L)
{
    struct ws_lredis_s *cl = check_client(L, 1);
    ws_redis_free(cl->r); /* NULL by now in the server: released at shutdown */
    cl->r = NULL;
    ws_redis_url_free(&cl->url);
    return 0;
}

/* core.redis_open(url, timeout, max_queued, methods); timeout and
 * max_queued nil: the client's own (the defaults for a new one). */
static int l_redis_open(lua_State *L)
{
    ws_lhost_t *lh = ws__lhost_up(L);
    size_t len;
    const char *url = luaL_checklstring(L, 1, &len);
    lua_Number timeout = luaL_optnumber(L, 2, 0);
    lua_Integer max_queued = luaL_optinteger(L, 3, 0);
    luaL_checktype(L, 4, LUA_TTABLE);
    ws_redis_opts_t o = { /* 0: keep (or the default) */
        .timeout_ms = timeout <= 0 ? 0 : timeout * 1000 < 1 ? 1 : (uint32_t)(timeout * 1000 + 0.5),
        .max_queued = (unsigned)max_queued,
    };
    if (luaL_newmetatable(L, REDIS_MT)) {
        lua_pushcfunction(L, l_redis_tostring);
        lua_setfield(L, -2, "__tostring");
        lua_pushcfunction(L, l_redis_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pushvalue(L, 4); /* the methods of the wspush module loaded now */
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    /* one client per URL string */
    lua_rawgeti(L, LUA_REGISTRYINDEX, lh->redis_ref);
    lua_pushvalue(L, 1);
    if (lua_rawget(L, -2) == LUA_TUSERDATA) {
        struct ws_lredis_s *cl = check_client(L, -1);
        if (o.timeout_ms)
            cl->o.timeout_ms = o.timeout_ms;
        if (o.max_queued)
            cl->o.max_queued = o.max_queued;
        o = cl->o;
        if (cl->r)
            ws_redis_set_opts(cl->r, &o);
        return 1;
    }
    lua_pop(L, 1);
    if (lh->redis_closed)
        return luaL_error(L, "wspush.redis: the server is stopping");
    char why[256];
    ws_redis_url_t u;
    if (ws_redis_url_parse(&u, url, len, why, sizeof why) != 0)
        return luaL_error(L, "wspush.redis: invalid url: %s", why);
    struct ws_lredis_s *cl = lua_newuserdatauv(L, sizeof *cl, 0);
    memset(cl, 0, sizeof *cl);
    cl->url = u;
    cl->o.timeout_ms = o.timeout_ms ? o.timeout_ms : WS_REDIS_TIMEOUT_MS;
    cl->o.max_queued = o.max_queued ? o.max_queued : WS_REDIS_MAX_QUEUED;
    luaL_setmetatable(L, REDIS_MT);
    cl->next = lh->redis;
    lh->redis = cl;
    lua_pushvalue(L, 1);
    lua_pushvalue(L, -2);
    lua_rawset(L, -4);
    return 1;
}

void ws__lredis_register(ws_lhost_t *lh, int core)
{
    lua_State *L = lh->L;
    if (!lh->redis_ref) { /* once per host: the clients outlive reloads */
        lua_newtable(L);
        lh->redis_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_pushlightuserdata(L, lh);
    lua_pushcclosure(L, l_redis_open, 1);
    lua_setfield(L, core, "redis_open");
    lua_pushlightuserdata(L, lh);
    lua_pushcclosure(L, l_redis_call, 1);
    lua_setfield(L, core, "redis_call");
    lua_pushcfunction(L, l_redis_timeout);
    lua_setfield(L, core, "redis_timeout");
}

void ws__lredis_release(ws_lhost_t *lh)
{
    lh->redis_closed = 1;
    for (struct ws_lredis_s *cl = lh->redis; cl; cl = cl->next) {
        ws_redis_free(cl->r);
        cl->r = NULL;
    }
    lh->redis = NULL; /* the clients themselves go with their userdata */
}
