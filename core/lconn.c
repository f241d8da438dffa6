/* The "wspush.conn" userdata: a box (ws_lbox_t) holding a pointer to the C
 * connection, cleared when the connection closes, so a reference kept in Lua
 * is inert and never touches freed memory. Its fields are user values (see
 * ws__lconn_new). */
#include <string.h>

#include "error.h"
#include "frame.h"
#include "lbind.h"
#include "utf8.h"

#define CONN_MT "wspush.conn"

typedef ws_lbox_t box_t;

/* Registry key of wspush.json.encode, shared by every host of a state. */
static const char json_key = 0;

int ws__lconn_push_json(lua_State *L) { return lua_rawgetp(L, LUA_REGISTRYINDEX, &json_key); }

void ws__lconn_set_json(lua_State *L) { lua_rawsetp(L, LUA_REGISTRYINDEX, &json_key); }

void ws__lconn_set_handler(lua_State *L, int *ref)
{
    luaL_unref(L, LUA_REGISTRYINDEX, *ref);
    if (lua_istable(L, -1)) {
        *ref = luaL_ref(L, LUA_REGISTRYINDEX);
    } else {
        lua_pop(L, 1);
        *ref = LUA_NOREF;
    }
}



/* The box's user values. */
enum { UV_PATH = 1, UV_HEADERS, UV_EXTRA, UV_N = UV_EXTRA };

/* Has the value at i the metatable whose address is mt? */
static int has_mt(lua_State *L, int i, const void *mt)
{
    if (!lua_getmetatable(L, i))
        return 0;
    /* Table identity: lua_rawequal would go through the generic equality. */
    int ok = lua_topointer(L, -1) == mt;
    lua_settop(L, -2);
    return ok;
}

/* Every function of this file has the metatable as upvalue 1: comparing
 * against it is cheaper than luaL_checkudata's lookup by name, and this runs
 * on every method call. */
static box_t *check_box(lua_State *L, int i)
{
    box_t *b = lua_touserdata(L, i);
    ws_lhost_t *lh = ws__lhost_own(L);
    /* The connection of the event being handled, known by address (see
     * lh->box_seen): a handler calls its methods again and again. */
    if (b && lh && b == lh->box_seen && lua_type(L, i) == LUA_TUSERDATA)
        return b;
    /* The server's state keeps the metatable's address at hand. */
    if (b && has_mt(L, i, lh ? lh->conn_mt : lua_topointer(L, lua_upvalueindex(1))))
        return b;
    luaL_typeerror(L, i, CONN_MT);
    return NULL;
}

/* The connection if it is open, else NULL. Arguments are checked before
 * this is asked, so misuse raises even on a closed connection. */
static ws_conn_t *open_conn(lua_State *L)
{
    box_t *b = check_box(L, 1);
    return b->c && ws_conn_state(b->c) == WS_CONN_OPEN ? b->c : NULL;
}

static int closed(lua_State *L)
{
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    return 2;
}

const char *ws__lmessage(lua_State *L, int i, size_t *len, unsigned *op)
{
    /* The arguments given are counted first: most calls pass the message alone. */
    int top = lua_gettop(L);
    int binary = top > i && lua_toboolean(L, i + 1);
    /* A string, or a number (made a string, as luaL_checklstring does). */
    const char *data = lua_tolstring(L, i, len);
    if (!data && lua_type(L, i) == LUA_TTABLE) {
        ws__lconn_push_json(L);
        lua_pushvalue(L, i);
        /* A table that is not JSON is a programming error: raised at the
         * caller's line (the handler's), not the encoder's. */
        if (lua_pcall(L, 1, 1, 0) != LUA_OK)
            luaL_error(L, "%s", lua_tostring(L, -1));
        data = lua_tolstring(L, -1, len);
        binary = 0;
    } else if (!data) {
        data = luaL_checklstring(L, i, len); /* raises */
    }
    *op = binary ? WS_OP_BINARY : WS_OP_TEXT;
    if (!binary && !ws_utf8_valid((const uint8_t *)data, *len))
        return NULL;
    return data;
}

int ws__lbad_utf8(lua_State *L)
{
    lua_pushnil(L);
    lua_pushliteral(L, "invalid UTF-8 (send it as binary)");
    return 2;
}

static int m_send(lua_State *L)
{
    ws_conn_t *c = open_conn(L);
    size_t len;
    unsigned op;
    const char *data = ws__lmessage(L, 2, &len, &op);
    if (!c)
        return closed(L);
    if (!data)
        return ws__lbad_utf8(L);
    /* A third argument false sends the message uncompressed (already compressed data). */
    unsigned flags = lua_gettop(L) >= 4 && !lua_isnil(L, 4) && !lua_toboolean(L, 4) ? WS_SEND_PLAIN : 0;
    if (ws_conn_send(c, op, data, len, flags) != 0) {
        /* Backpressure: the policy dropped the message or is closing the connection. */
        ws_conn_want_drain(c);
        lua_pushnil(L);
        lua_pushliteral(L, "buffer full");
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int m_close(lua_State *L)
{
    lua_Integer code = luaL_optinteger(L, 2, WS_CLOSE_NORMAL);
    size_t rlen = 0;
    const char *reason = luaL_optlstring(L, 3, "", &rlen);
    luaL_argcheck(L, code == WS_CLOSE_NORMAL || code == WS_CLOSE_GOING_AWAY ||
                         (code >= 1007 && code <= 1014 && code != 1010) ||
                         (code >= 3000 && code <= 4999),
                  2, "close code must be 1000, 1001, 1007-1014 (not 1010) or 3000-4999");
    luaL_argcheck(L, rlen <= 123, 3, "close reason longer than 123 bytes");
    luaL_argcheck(L, ws_utf8_valid((const uint8_t *)reason, rlen), 3, "close reason is not UTF-8");
    ws_conn_t *c = open_conn(L);
    if (!c)
        return closed(L);
    ws_conn_close(c, (unsigned)code, reason, rlen);
    lua_pushboolean(L, 1);
    return 1;
}

static int m_ping(lua_State *L)
{
    size_t len = 0;
    const char *data = luaL_optlstring(L, 2, "", &len);
    luaL_argcheck(L, len <= 125, 2, "ping payload longer than 125 bytes");
    ws_conn_t *c = open_conn(L);
    if (!c)
        return closed(L);
    ws_conn_send(c, WS_OP_PING, data, len, 0);
    lua_pushboolean(L, 1);
    return 1;
}

static int m_subscribe(lua_State *L)
{
    size_t len;
    const char *topic = luaL_checklstring(L, 2, &len);
    ws_conn_t *c = open_conn(L);
    if (!c)
        return closed(L);
    ws_pubsub_subscribe(&ws_conn_hub(c)->pubsub, ws_conn_topics(c), c, topic, len);
    lua_pushboolean(L, 1);
    return 1;
}

static int m_unsubscribe(lua_State *L)
{
    size_t len;
    const char *topic = luaL_checklstring(L, 2, &len);
    ws_conn_t *c = open_conn(L);
    if (!c)
        return closed(L);
    lua_pushboolean(L, ws_pubsub_unsubscribe(&ws_conn_hub(c)->pubsub, ws_conn_topics(c), topic, len));
    return 1;
}

static int m_topics(lua_State *L)
{
    ws_conn_t *c = open_conn(L);
    if (!c)
        return closed(L);
    const ws_pubsub_member_t *m = ws_conn_topics(c);
    lua_createtable(L, (int)m->n, 0);
    for (size_t i = 0; i < m->n; i++) {
        size_t len;
        const char *name = ws_pubsub_topic_name(m->subs[i], &len);
        lua_pushlstring(L, name, len);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

static int m_buffered(lua_State *L)
{
    box_t *b = check_box(L, 1);
    if (!b->c)
        return closed(L);
    size_t n = ws_conn_buffered(b->c);
    /* A handler that looks at its backlog will want to hear when it is gone. */
    if (n > 0)
        ws_conn_want_drain(b->c);
    lua_pushinteger(L, (lua_Integer)n);
    return 1;
}

static int m_is_open(lua_State *L)
{
    box_t *b = check_box(L, 1);
    lua_pushboolean(L, b->c && ws_conn_state(b->c) == WS_CONN_OPEN);
    return 1;
}

static const luaL_Reg methods[] = {
    {"send", m_send},         {"close", m_close},   {"ping", m_ping},
    {"subscribe", m_subscribe}, {"unsubscribe", m_unsubscribe}, {"topics", m_topics},
    {"buffered", m_buffered}, {"is_open", m_is_open}, {NULL, NULL}};

/* Push the extra-fields table of the box at i, making it if need be. */
static void push_extra(lua_State *L, int i)
{
    if (lua_getiuservalue(L, i, UV_EXTRA) == LUA_TTABLE)
        return;
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, i, UV_EXTRA);
}

/* Methods first, then the extra table, then the fields kept elsewhere (user
 * values, the box, the C connection). Only the VM calls this, on our own
 * userdata: __metatable hides the metatable, so no script can call it on
 * anything else, and it skips check_box (it runs on every conn:method()). */
static int mm_index(lua_State *L)
{
    /* conn:send, on every message of most handlers: its key is known by
     * address (upvalue 3 is the function). */
    ws_lhost_t *lh = ws__lhost_own(L);
    if (lh && lua_topointer(L, 2) == lh->send_key) {
        lua_pushvalue(L, lua_upvalueindex(3));
        return 1;
    }
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(2)) != LUA_TNIL)
        return 1;
    if (lua_getiuservalue(L, 1, UV_EXTRA) == LUA_TTABLE) {
        lua_pushvalue(L, 2);
        if (lua_rawget(L, -2) != LUA_TNIL)
            return 1;
    }
    if (lua_type(L, 2) != LUA_TSTRING)
        return 0;
    const char *k = lua_tostring(L, 2);
    box_t *b = lua_touserdata(L, 1);
    if (strcmp(k, "path") == 0) {
        lua_getiuservalue(L, 1, UV_PATH);
    } else if (strcmp(k, "headers") == 0) {
        lua_getiuservalue(L, 1, UV_HEADERS);
    } else if (strcmp(k, "id") == 0) {
        lua_pushinteger(L, b->id);
    } else if (strcmp(k, "remote") == 0) {
        if (!b->c)
            return 0;
        char r[WS_REMOTE_MAX];
        ws_conn_remote(b->c, r, sizeof r);
        lua_pushstring(L, r);
    } else if (strcmp(k, "data") == 0 || strcmp(k, "query") == 0 || strcmp(k, "params") == 0) {
        push_extra(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, 2);
        lua_pushvalue(L, -2);
        lua_rawset(L, -4);
    } else {
        return 0;
    }
    return 1;
}

/* Only conn.data may be replaced: the other fields describe the connection. */
static int mm_newindex(lua_State *L)
{
    check_box(L, 1);
    const char *k = lua_tostring(L, 2);
    if (!k || strcmp(k, "data") != 0)
        return luaL_error(L, "conn.%s is read-only (use conn.data for your own state)",
                          k ? k : "?");
    push_extra(L, 1);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 3);
    lua_rawset(L, -3);
    return 0;
}

static int mm_tostring(lua_State *L)
{
    box_t *b = check_box(L, 1);
    lua_pushfstring(L, "wspush.conn %I (%s)", b->id, b->c ? "open" : "closed");
    return 1;
}

void ws__lconn_register(lua_State *L)
{
    if (!luaL_newmetatable(L, CONN_MT)) {
        lua_pop(L, 1); /* registered by an earlier host of this state */
        return;
    }
    int mt = lua_gettop(L);
    lua_newtable(L);
    lua_pushvalue(L, mt);
    luaL_setfuncs(L, methods, 1);
    lua_pushvalue(L, mt);
    lua_insert(L, -2);
    lua_getfield(L, -1, "send");
    lua_pushcclosure(L, mm_index, 3);
    lua_setfield(L, mt, "__index");
    lua_pushvalue(L, mt);
    lua_pushcclosure(L, mm_newindex, 1);
    lua_setfield(L, mt, "__newindex");
    lua_pushvalue(L, mt);
    lua_pushcclosure(L, mm_tostring, 1);
    lua_setfield(L, mt, "__tostring");
    lua_pushliteral(L, "wspush.conn");
    lua_setfield(L, -2, "__name");
    lua_pushliteral(L, "wspush.conn");
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
}

void ws__lconn_fast(ws_lhost_t *lh)
{
    lua_State *L = lh->L;
    luaL_getmetatable(L, CONN_MT);
    lh->conn_mt = lua_topointer(L, -1);
    /* A key of the methods table, so this string lives as long as the state. */
    lua_pushliteral(L, "send");
    lh->send_key = lua_topointer(L, -1);
    lua_pop(L, 2);
}

/* Is the value at i a table with no entries? */
static int empty_table(lua_State *L, int i)
{
    if (!lua_istable(L, i))
        return 0;
    i = lua_absindex(L, i);
    lua_pushnil(L);
    if (lua_next(L, i)) {
        lua_pop(L, 2);
        return 0;
    }
    return 1;
}

void ws__lconn_new(ws_lhost_t *lh, ws_conn_t *c, int req, const char *subprotocol)
{
    /* Idle connections are most of a server's memory, so a connection keeps
     * only what cannot be made later: path and headers as user values, and
     * query, params and subprotocol in the extra table when they have
     * something. conn.id is in the box, conn.remote comes from the C
     * connection until it closes, and conn.data and an empty query or params
     * table are made on first use (mm_index). */
    static const char *const extra[] = {"query", "params"};
    lua_State *L = lh->L;
    req = lua_absindex(L, req);
    box_t *b = lua_newuserdatauv(L, sizeof *b, UV_N);
    int box = lua_gettop(L);
    b->c = c;
    b->id = (lua_Integer)ws_conn_id(c);
    luaL_setmetatable(L, CONN_MT);
    lua_getfield(L, req, "path");
    lua_setiuservalue(L, box, UV_PATH);
    lua_getfield(L, req, "headers");
    lua_setiuservalue(L, box, UV_HEADERS);
    for (int i = 0; i < 2; i++) {
        if (lua_getfield(L, req, extra[i]) != LUA_TNIL && !empty_table(L, -1)) {
            push_extra(L, box);
            lua_insert(L, -2);
            lua_setfield(L, -2, extra[i]);
        }
        lua_pop(L, 1);
    }
    if (subprotocol) {
        push_extra(L, box);
        lua_pushstring(L, subprotocol);
        lua_setfield(L, -2, "subprotocol");
        lua_pop(L, 1);
    }
    /* The connection table is the only reference: a second one (a registry
     * ref) would cost every connection another slot. */
    lua_rawgeti(L, LUA_REGISTRYINDEX, lh->conns_ref);
    lua_pushvalue(L, box);
    lua_rawseti(L, -2, b->id);
    lua_pop(L, 2);
}

void ws__lconn_set_data(ws_lhost_t *lh, ws_conn_t *c, int i)
{
    lua_State *L = lh->L;
    i = lua_absindex(L, i);
    ws__lconn_push(lh, L, c);
    push_extra(L, lua_gettop(L));
    lua_pushvalue(L, i);
    lua_setfield(L, -2, "data");
    lua_pop(L, 2);
}

void ws__lconn_push(ws_lhost_t *lh, lua_State *L, ws_conn_t *c)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, lh->conns_ref);
    lua_rawgeti(L, -1, (lua_Integer)ws_conn_id(c));
    lua_replace(L, -2); /* cheaper than lua_remove's rotation: it runs per event */
}

void ws__lconn_push_in_task(lua_State *co, ws_conn_t *c)
{
    lua_rawgeti(co, WS_LTASK_CONNS_IDX, (lua_Integer)ws_conn_id(c));
}

void ws__lconn_note(ws_lhost_t *lh, lua_State *L, int i)
{
    /* Proved as check_box would, once per event: a connections table that
     * a script reached (debug) may hold anything. */
    lh->box_seen = lh->conn_mt && lua_type(L, i) == LUA_TUSERDATA && has_mt(L, i, lh->conn_mt)
                       ? lua_touserdata(L, i)
                       : NULL;
}

int ws__lconn_is_open(lua_State *L, int i)
{
    const box_t *b = lua_touserdata(L, i);
    return b && b->c && ws_conn_state(b->c) == WS_CONN_OPEN;
}

void ws__lconn_detach(ws_lhost_t *lh, ws_conn_t *c)
{
    lua_State *L = lh->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, lh->conns_ref);
    lua_Integer id = (lua_Integer)ws_conn_id(c);
    if (lua_rawgeti(L, -1, id) == LUA_TUSERDATA) {
        box_t *b = lua_touserdata(L, -1);
        /* conn.remote must answer after the close too: fix it in the fields. */
        push_extra(L, lua_gettop(L));
        char r[WS_REMOTE_MAX];
        ws_conn_remote(c, r, sizeof r);
        lua_pushstring(L, r);
        lua_setfield(L, -2, "remote");
        lua_pop(L, 1);
        b->c = NULL;
    }
    lua_pop(L, 1);
    lua_pushnil(L);
    lua_rawseti(L, -2, id);
    lua_pop(L, 1);
}
