/*
 * wspush.metrics's native half: the script's families and series (series.h)
 * and the text a scrape gets (the built-in figures, stats.h, then the
 * script's). lua/wspush/metrics.lua checks the arguments and keeps each
 * series' cell, so that an inc is one call here and one add.
 */
#include <string.h>

#include "gauges.h"
#include "lbind.h"
#include "series.h"
#include "stats.h"

/* The table: the workers' shared one, or this host's own. */
static ws_series_t *table(lua_State *L)
{
    ws_lhost_t *lh = ws__lhost_up(L);
    if (lh->hub->tally)
        return ws_tally_series(lh->hub->tally);
    if (!lh->series && !(lh->series = ws_series_new_private()))
        luaL_error(L, "wspush.metrics: out of memory");
    return lh->series;
}

/* metrics_family(name, help, kind, labels, buckets) -> index | nil, err */
static int m_family(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    const char *help = luaL_checkstring(L, 2);
    static const char *const kinds[] = {"counter", "gauge", "histogram", NULL};
    int kind = luaL_checkoption(L, 3, NULL, kinds);
    luaL_checktype(L, 4, LUA_TTABLE);
    const char *labels[WS_SERIES_LABELS];
    double buckets[WS_SERIES_BUCKETS];
    size_t n = (size_t)luaL_len(L, 4), nb = 0;
    if (n > WS_SERIES_LABELS)
        n = WS_SERIES_LABELS + 1; /* refused by ws_series_family */
    for (size_t i = 0; i < n && i < WS_SERIES_LABELS; i++) {
        lua_rawgeti(L, 4, (lua_Integer)i + 1);
        labels[i] = luaL_checkstring(L, -1);
        lua_pop(L, 1); /* the table keeps the string */
    }
    if (lua_istable(L, 5)) {
        nb = (size_t)luaL_len(L, 5);
        if (nb > WS_SERIES_BUCKETS)
            nb = WS_SERIES_BUCKETS + 1;
        for (size_t i = 0; i < nb && i < WS_SERIES_BUCKETS; i++) {
            lua_rawgeti(L, 5, (lua_Integer)i + 1);
            buckets[i] = luaL_checknumber(L, -1);
            lua_pop(L, 1);
        }
    }
    char err[256];
    int f = ws_series_family(table(L), name, help, (ws_series_kind_t)kind, labels, n, buckets, nb,
                             err, sizeof err);
    if (f < 0) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    lua_pushinteger(L, f);
    return 1;
}

/* metrics_series(family, value...) -> cell | nil (refused: the table is full)
 * | false (the label text is too long) */
static int m_series(lua_State *L)
{
    int fam = (int)luaL_checkinteger(L, 1);
    size_t n = (size_t)lua_gettop(L) - 1;
    const char *values[WS_SERIES_LABELS];
    size_t lens[WS_SERIES_LABELS];
    if (n > WS_SERIES_LABELS)
        return luaL_error(L, "too many label values");
    for (size_t i = 0; i < n; i++)
        values[i] = luaL_checklstring(L, (int)i + 2, &lens[i]);
    long cell = ws_series_get(table(L), fam, values, lens, n);
    if (cell == -2)
        lua_pushboolean(L, 0);
    else if (cell < 0)
        lua_pushnil(L);
    else
        lua_pushinteger(L, cell);
    return 1;
}

/* The cell at index i, of family fam (-1: a counter's or gauge's, any):
 * the numbers come from Lua, which could have made them up. */
static long cell_arg(lua_State *L, ws_series_t *s, int fam, int i)
{
    lua_Integer c = luaL_checkinteger(L, i);
    int ok = fam < 0 ? c >= 0 && c < WS_SERIES_CELLS : ws_series_valid_cell(s, fam, (long)c);
    luaL_argcheck(L, ok, i, "not a metric's cell");
    return (long)c;
}

/* metrics_add(cell, n), metrics_set(cell, v): the Lua side keeps the cell
 * ws_series_get gave it. */
static int m_add(lua_State *L)
{
    ws_series_t *s = table(L);
    ws_series_add(s, cell_arg(L, s, -1, 1), luaL_checknumber(L, 2));
    return 0;
}

static int m_set(lua_State *L)
{
    ws_series_t *s = table(L);
    ws_series_set(s, cell_arg(L, s, -1, 1), luaL_checknumber(L, 2));
    return 0;
}

static int m_observe(lua_State *L)
{
    ws_series_t *s = table(L);
    int fam = (int)luaL_checkinteger(L, 1);
    ws_series_observe(s, fam, cell_arg(L, s, fam, 2), luaL_checknumber(L, 3));
    return 0;
}

/* metrics_render() -> the text: the server's built-in figures (every
 * worker's, summed), then the script's. */
static int m_render(lua_State *L)
{
    ws_lhost_t *lh = ws__lhost_up(L);
    ws_hub_t *h = lh->hub;
    ws_gauges_sample(h);
    ws_stats_t sum;
    if (h->tally)
        ws_tally_stats_sum(h->tally, &sum);
    else
        sum = *ws_stats;
    ws_buf_t out;
    ws_buf_init(&out);
    ws_stats_render(&sum, &out);
    ws_series_render(table(L), &out);
    lua_pushlstring(L, out.len ? (const char *)out.data : "", out.len);
    ws_buf_free(&out);
    return 1;
}

void ws__lmetrics_register(ws_lhost_t *lh, int core)
{
    lua_State *L = lh->L;
    static const luaL_Reg fns[] = {{"metrics_family", m_family}, {"metrics_series", m_series},
                                   {"metrics_add", m_add},       {"metrics_set", m_set},
                                   {"metrics_observe", m_observe}, {"metrics_render", m_render},
                                   {NULL, NULL}};
    lua_pushvalue(L, core);
    lua_pushlightuserdata(L, lh);
    luaL_setfuncs(L, fns, 1);
    lua_pop(L, 1);
}
