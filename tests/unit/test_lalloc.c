/* The Lua allocator (core/lalloc.c): Lua's allocation contract across the
 * size classes, and a Lua state that lives on it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "lalloc.h"

/* Whether this is an AddressSanitizer build, detected as core/lalloc.c does
 * (GCC defines __SANITIZE_ADDRESS__; clang answers __has_feature): there the
 * allocator does not pool, so that ASan sees every free. */
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

static void fill(uint8_t *p, size_t n, uint8_t seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(seed + i * 7);
}

static int same(const uint8_t *p, size_t n, uint8_t seed)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (uint8_t)(seed + i * 7))
            return 0;
    return 1;
}

/* Every size from 1 to 600 (small classes and beyond) grows and shrinks to
 * every class boundary with its bytes kept. */
static void test_lalloc_realloc_keeps_the_bytes_across_classes(void **state)
{
    (void)state;
    static const size_t to[] = {1, 24, 25, 40, 41, 263, 264, 265, 1000, 5000, 3};
    for (size_t n = 1; n <= 600; n += 7) {
        uint8_t *p = ws__lalloc(NULL, NULL, 4 /* LUA_TSTRING: a tag, not a size */, n);
        assert_non_null(p);
        fill(p, n, (uint8_t)n);
        size_t cur = n;
        for (size_t i = 0; i < sizeof to / sizeof *to; i++) {
            uint8_t *q = ws__lalloc(NULL, p, cur, to[i]);
            assert_non_null(q);
            size_t kept = cur < to[i] ? cur : to[i];
            assert_true(same(q, kept, (uint8_t)n));
            fill(q, to[i], (uint8_t)n);
            p = q;
            cur = to[i];
        }
        assert_null(ws__lalloc(NULL, p, cur, 0));
    }
    ws__lalloc_trim();
}

/* Blocks freed to a class come back for the next request of that class
 * (the point of the pool), never for a larger one. Without pooling (under
 * ASan) the blocks are plain malloc blocks: ASan keeps a freed block in
 * quarantine, so it must not come back at once (were it pooled, ASan could
 * not see a use after free in Lua). */
static void test_lalloc_reuses_a_freed_block_of_the_same_class(void **state)
{
    (void)state;
    void *a = ws__lalloc(NULL, NULL, 0, 40);
    memset(a, 0xAB, 40);
    ws__lalloc(NULL, a, 40, 0);
    void *b = ws__lalloc(NULL, NULL, 0, 30); /* same class as 40 (25..40) */
    memset(b, 0xCD, 30);
    void *c = ws__lalloc(NULL, NULL, 0, 41); /* the next class: a new block */
    memset(c, 0xEF, 41);
#if UNDER_ASAN
    assert_ptr_not_equal(a, b);
#else
    assert_ptr_equal(a, b);
#endif
    assert_ptr_not_equal(b, c);
    ws__lalloc(NULL, b, 30, 0);
    ws__lalloc(NULL, c, 41, 0);
    ws__lalloc_trim();
}

/* A Lua state on the allocator: strings, tables and garbage, several cycles. */
static void test_lalloc_serves_a_lua_state(void **state)
{
    (void)state;
    lua_State *L = lua_newstate(ws__lalloc, NULL);
    assert_non_null(L);
    luaL_openlibs(L);
    const char *chunk =
        "local t, s = {}, 0\n"
        "for i = 1, 200000 do\n"
        "  local m = 'message ' .. i\n"
        "  t[i % 1000] = { m, #m, ('x'):rep(i % 300) }\n"
        "  s = s + #t[i % 1000][3]\n"
        "end\n"
        "collectgarbage()\n"
        "return s, #table.concat({ 'a', 'b', ('c'):rep(70000) })\n";
    assert_int_equal(luaL_dostring(L, chunk), LUA_OK);
    long long s = 0;
    for (int i = 1; i <= 200000; i++)
        s += i % 300;
    assert_int_equal(lua_tointeger(L, -2), s);
    assert_int_equal(lua_tointeger(L, -1), 70002);
    lua_close(L);
    ws__lalloc_trim();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lalloc_realloc_keeps_the_bytes_across_classes),
        cmocka_unit_test(test_lalloc_reuses_a_freed_block_of_the_same_class),
        cmocka_unit_test(test_lalloc_serves_a_lua_state),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
