/* The "wspush.native" module: the C codecs that Lua code uses too, so that a
 * rule is written once (the same-origin check, reason phrases, UTF-8
 * validity, realpath). Pure functions, no host: it loads in the server, in a
 * test's state (wspush.testing) and under plain busted (build/lua). */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "handshake.h"
#include "http.h"
#include "lbind.h"
#include "utf8.h"

static int n_same_origin(lua_State *L)
{
    size_t ol, hl;
    const char *o = luaL_checklstring(L, 1, &ol);
    const char *h = luaL_optlstring(L, 2, "", &hl);
    lua_pushboolean(L, ws_handshake_same_origin(o, ol, h, hl));
    return 1;
}

static int n_reason(lua_State *L)
{
    lua_pushstring(L, ws_http_status_text((int)luaL_checkinteger(L, 1)));
    return 1;
}

static int n_utf8_valid(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    lua_pushboolean(L, ws_utf8_valid((const uint8_t *)s, len));
    return 1;
}

static int n_realpath(lua_State *L)
{
    const char *p = luaL_checkstring(L, 1);
    char out[PATH_MAX];
    if (!realpath(p, out)) {
        lua_pushnil(L);
        lua_pushstring(L, strerror(errno));
        return 2;
    }
    lua_pushstring(L, out);
    return 1;
}

int ws__luaopen_native(lua_State *L)
{
    static const luaL_Reg fns[] = {{"same_origin", n_same_origin},
                                   {"reason", n_reason},
                                   {"utf8_valid", n_utf8_valid},
                                   {"realpath", n_realpath},
                                   {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}
