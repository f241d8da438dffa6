#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "error.h"
#include "utf8.h"

/* --- guard page: inputs end right before a PROT_NONE page, so any over-read faults --- */

typedef struct {
    uint8_t *base;
    size_t map_len, cap;
} guard_t;

static void guard_init(guard_t *g, size_t cap)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t data = (cap + page - 1) / page * page;
    if (data == 0)
        data = page;
    g->map_len = data + page;
    g->cap = data;
    g->base = mmap(NULL, g->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(g->base != MAP_FAILED);
    assert_int_equal(mprotect(g->base + data, page, PROT_NONE), 0);
}

static uint8_t *guard_put(guard_t *g, const void *src, size_t n)
{
    assert_true(n <= g->cap);
    uint8_t *p = g->base + g->cap - n;
    if (n)
        memcpy(p, src, n);
    return p;
}

static void guard_free(guard_t *g)
{
    munmap(g->base, g->map_len);
}

/* --- reference: a plain decoder written straight from RFC 3629 --- */

static int ref_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint32_t c = s[i], min;
        size_t k;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            k = 1, c &= 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            k = 2, c &= 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            k = 3, c &= 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if (n - i <= k)
            return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80)
                return 0;
            c = c << 6 | (s[i + j] & 0x3F);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
            return 0;
        i += k + 1;
    }
    return 1;
}

/* --- tables --- */

typedef struct {
    const char *name;
    const char *s;
    size_t n;
} valid_case;

#define V(name, lit) {name, lit, sizeof(lit) - 1}

static const valid_case valid_cases[] = {
    V("empty", ""),
    V("ascii", "Hello, world"),
    V("nul and del", "\x00\x7f"),
    V("U+0080", "\xc2\x80"),
    V("U+07FF", "\xdf\xbf"),
    V("U+0800", "\xe0\xa0\x80"),
    V("U+D7FF", "\xed\x9f\xbf"),
    V("U+E000", "\xee\x80\x80"),
    V("U+FFFD", "\xef\xbf\xbd"),
    V("U+FFFF noncharacter", "\xef\xbf\xbf"),
    V("U+10000", "\xf0\x90\x80\x80"),
    V("U+10FFFF", "\xf4\x8f\xbf\xbf"),
    V("kosme", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"),
    V("mixed", "a\xc3\xa9z\xe2\x82\xac\xf0\x9f\x98\x80!"),
    V("long ascii then multibyte", "0123456789abcdefghij\xe2\x82\xac"),
};

/* fail_at: index of the first byte that must be refused; -1 when every byte is
 * acceptable as a prefix but the text stops inside a code point. */
typedef struct {
    const char *name;
    const char *s;
    size_t n;
    int fail_at;
} invalid_case;

#define I(name, lit, at) {name, lit, sizeof(lit) - 1, at}

static const invalid_case invalid_cases[] = {
    I("lone continuation 80", "\x80", 0),
    I("lone continuation BF", "\xbf", 0),
    I("C0 overlong lead", "\xc0\x80", 0),
    I("C1 overlong lead", "\xc1\xbf", 0),
    I("overlong slash 2-byte", "\xc0\xaf", 0),
    I("overlong 3-byte E0 80", "\xe0\x80\xaf", 1),
    I("overlong 3-byte max E0 9F BF", "\xe0\x9f\xbf", 1),
    I("overlong 4-byte F0 80", "\xf0\x80\x80\xaf", 1),
    I("overlong 4-byte max F0 8F BF BF", "\xf0\x8f\xbf\xbf", 1),
    I("surrogate U+D800", "\xed\xa0\x80", 1),
    I("surrogate U+DBFF", "\xed\xaf\xbf", 1),
    I("surrogate U+DC00", "\xed\xb0\x80", 1),
    I("surrogate U+DFFF", "\xed\xbf\xbf", 1),
    I("surrogate pair", "\xed\xa0\x80\xed\xb0\x80", 1),
    I("U+110000", "\xf4\x90\x80\x80", 1),
    I("F4 BF", "\xf4\xbf\xbf\xbf", 1),
    I("F5 lead", "\xf5\x80\x80\x80", 0),
    I("F7 lead (U+1FFFFF)", "\xf7\xbf\xbf\xbf", 0),
    I("5-byte form", "\xf8\x88\x80\x80\x80", 0),
    I("6-byte form", "\xfc\x84\x80\x80\x80\x80", 0),
    I("FE", "\xfe", 0),
    I("FF", "\xff", 0),
    I("2-byte missing continuation", "\xc2\x41", 1),
    I("3-byte missing last", "\xe1\x80\x41", 2),
    I("4-byte missing last", "\xf1\x80\x80\x41", 3),
    I("ascii then bad", "Hello\xc0", 5),
    I("long ascii then bad", "0123456789abcdefghijkl\xff", 22),
    I("valid then bad continuation", "\xe2\x82\xac\x80", 3),
    I("truncated 2-byte", "\xc2", -1),
    I("truncated 3-byte", "\xe1\x80", -1),
    I("truncated 4-byte", "\xf0\x90\x80", -1),
    I("truncated U+10FFFF", "\xf4\x8f\xbf", -1),
    I("ascii then truncated", "abcdefghij\xe2", -1),
};

static void test_utf8_accepts_valid_table(void **state)
{
    guard_t g;
    guard_init(&g, 64);
    for (size_t i = 0; i < sizeof(valid_cases) / sizeof(valid_cases[0]); i++) {
        const valid_case *c = &valid_cases[i];
        const uint8_t *p = guard_put(&g, c->s, c->n);
        if (ws_utf8_valid(p, c->n) != 1 || ref_valid(p, c->n) != 1)
            fail_msg("refused valid case: %s", c->name);
    }
    guard_free(&g);
}

static void test_utf8_rejects_invalid_table_at_first_bad_byte(void **state)
{
    guard_t g;
    guard_init(&g, 64);
    for (size_t i = 0; i < sizeof(invalid_cases) / sizeof(invalid_cases[0]); i++) {
        const invalid_case *c = &invalid_cases[i];
        const uint8_t *p = guard_put(&g, c->s, c->n);
        if (ws_utf8_valid(p, c->n) != 0 || ref_valid(p, c->n) != 0)
            fail_msg("accepted invalid case: %s", c->name);

        /* Fed a byte at a time, every byte before fail_at is accepted. */
        ws_utf8_t u;
        ws_utf8_init(&u);
        size_t stop = c->fail_at < 0 ? c->n : (size_t)c->fail_at;
        for (size_t j = 0; j < stop; j++)
            if (ws_utf8_feed(&u, p + j, 1) != 0)
                fail_msg("%s: refused byte %zu, expected %d", c->name, j, c->fail_at);
        if (c->fail_at < 0) {
            assert_int_equal(ws_utf8_complete(&u), 0);
        } else {
            if (ws_utf8_feed(&u, p + stop, 1) != WS_EUTF8)
                fail_msg("%s: accepted byte %zu", c->name, stop);
            /* ...and fed whole, the prefix up to fail_at is fine, the rest is not. */
            ws_utf8_init(&u);
            assert_int_equal(ws_utf8_feed(&u, p, stop), 0);
            assert_int_equal(ws_utf8_feed(&u, p + stop, c->n - stop), WS_EUTF8);
        }
    }
    guard_free(&g);
}

static void test_utf8_accepts_codepoint_split_across_fragments(void **state)
{
    guard_t g;
    guard_init(&g, 64);
    for (size_t i = 0; i < sizeof(valid_cases) / sizeof(valid_cases[0]); i++) {
        const valid_case *c = &valid_cases[i];
        for (size_t cut = 0; cut <= c->n; cut++) {
            ws_utf8_t u;
            ws_utf8_init(&u);
            const uint8_t *a = guard_put(&g, c->s, cut);
            assert_int_equal(ws_utf8_feed(&u, a, cut), 0);
            const uint8_t *b = guard_put(&g, c->s + cut, c->n - cut);
            assert_int_equal(ws_utf8_feed(&u, b, c->n - cut), 0);
            assert_int_equal(ws_utf8_complete(&u), 1);
        }
    }
    guard_free(&g);
}

static void test_utf8_reports_incomplete_between_fragments(void **state)
{
    ws_utf8_t u;
    ws_utf8_init(&u);
    assert_int_equal(ws_utf8_complete(&u), 1);
    assert_int_equal(ws_utf8_feed(&u, (const uint8_t *)"\xf0\x9f", 2), 0);
    assert_int_equal(ws_utf8_complete(&u), 0);
    assert_int_equal(ws_utf8_feed(&u, (const uint8_t *)"\x98", 1), 0);
    assert_int_equal(ws_utf8_complete(&u), 0);
    assert_int_equal(ws_utf8_feed(&u, (const uint8_t *)"\x80", 1), 0);
    assert_int_equal(ws_utf8_complete(&u), 1);
}

static void test_utf8_stays_failed_after_error(void **state)
{
    ws_utf8_t u;
    ws_utf8_init(&u);
    assert_int_equal(ws_utf8_feed(&u, (const uint8_t *)"\xc0", 1), WS_EUTF8);
    assert_int_equal(ws_utf8_feed(&u, (const uint8_t *)"abcdefghijkl", 12), WS_EUTF8);
    assert_int_equal(ws_utf8_feed(&u, (const uint8_t *)"", 0), WS_EUTF8);
    assert_int_equal(ws_utf8_complete(&u), 0);
}

static void test_utf8_empty_input_is_valid(void **state)
{
    ws_utf8_t u;
    ws_utf8_init(&u);
    assert_int_equal(ws_utf8_feed(&u, NULL, 0), 0);
    assert_int_equal(ws_utf8_valid(NULL, 0), 1);
}

/* The word-at-a-time path must not read past the end and must hand over to the
 * byte path at every position within and after an 8-byte block. */
static void test_utf8_ascii_fast_path_at_every_length_and_position(void **state)
{
    guard_t g;
    guard_init(&g, 128);
    uint8_t tmp[80];
    for (size_t n = 0; n <= 70; n++) {
        memset(tmp, 'a', n);
        assert_int_equal(ws_utf8_valid(guard_put(&g, tmp, n), n), 1);
        for (size_t bad = 0; bad < n; bad++) {
            memset(tmp, 'a', n);
            tmp[bad] = 0x80;
            const uint8_t *p = guard_put(&g, tmp, n);
            ws_utf8_t u;
            ws_utf8_init(&u);
            assert_int_equal(ws_utf8_feed(&u, p, bad), 0);
            assert_int_equal(ws_utf8_feed(&u, p + bad, n - bad), WS_EUTF8);
            assert_int_equal(ws_utf8_valid(p, n), 0);
            /* a valid 2-byte sequence at the same spot, with its tail just before the guard */
            if (bad + 1 < n) {
                tmp[bad] = 0xc3;
                tmp[bad + 1] = 0xa9;
                assert_int_equal(ws_utf8_valid(guard_put(&g, tmp, n), n), 1);
            }
        }
    }
    guard_free(&g);
}

/* ws_utf8_valid (its ASCII run 16 bytes a step where SSE2 is there) against
 * the byte-at-a-time decoder, over pseudo-random text of every length to
 * 140 at every alignment to 16: ASCII with now and then a stray high byte or
 * a valid 2-, 3- or 4-byte sequence. */
static void test_utf8_valid_matches_the_decoder_on_mixed_text(void **state)
{
    static const char *const seqs[] = {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\x80",
                                       "\xc3", "\xed\xa0\x80"};
    uint8_t buf[200];
    uint32_t x = 12345;
    for (int round = 0; round < 40; round++) {
        for (size_t len = 0; len <= 140; len++) {
            size_t n = 0;
            while (n < len) {
                x = x * 1103515245u + 12345u;
                unsigned r = (x >> 16) % 64;
                const char *sq = r < 6 ? seqs[r] : NULL;
                size_t k = sq ? strlen(sq) : 1;
                if (n + k > len)
                    sq = NULL, k = 1;
                if (sq)
                    memcpy(buf + 16 + n, sq, k);
                else
                    buf[16 + n] = (uint8_t)('a' + r % 26);
                n += k;
            }
            ws_utf8_t u;
            ws_utf8_init(&u);
            int want = ws_utf8_feed(&u, buf + 16, len) == 0 && ws_utf8_complete(&u);
            for (size_t align = 0; align < 16; align++) {
                memmove(buf + align, buf + 16, len);
                assert_int_equal(ws_utf8_valid(buf + align, len), want);
                memmove(buf + 16, buf + align, len);
            }
        }
    }
}

/* Every 1- and 2-byte string, and 3- and 4-byte strings over all lead bytes
 * E0..FF, every second byte and the boundary values of the rest. */
static void test_utf8_matches_reference_decoder(void **state)
{
    static const uint8_t edge[] = {0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xff};
    const size_t ne = sizeof(edge);
    uint8_t s[4];

    for (unsigned a = 0; a < 256; a++) {
        s[0] = (uint8_t)a;
        assert_int_equal(ws_utf8_valid(s, 1), ref_valid(s, 1));
        for (unsigned b = 0; b < 256; b++) {
            s[1] = (uint8_t)b;
            assert_int_equal(ws_utf8_valid(s, 2), ref_valid(s, 2));
        }
    }
    for (unsigned a = 0xe0; a < 256; a++) {
        s[0] = (uint8_t)a;
        for (unsigned b = 0; b < 256; b++) {
            s[1] = (uint8_t)b;
            for (size_t c = 0; c < ne; c++) {
                s[2] = edge[c];
                assert_int_equal(ws_utf8_valid(s, 3), ref_valid(s, 3));
                for (size_t d = 0; d < ne; d++) {
                    s[3] = edge[d];
                    if (ws_utf8_valid(s, 4) != ref_valid(s, 4))
                        fail_msg("mismatch %02x %02x %02x %02x", s[0], s[1], s[2], s[3]);
                }
            }
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_accepts_valid_table),
        cmocka_unit_test(test_utf8_rejects_invalid_table_at_first_bad_byte),
        cmocka_unit_test(test_utf8_accepts_codepoint_split_across_fragments),
        cmocka_unit_test(test_utf8_reports_incomplete_between_fragments),
        cmocka_unit_test(test_utf8_stays_failed_after_error),
        cmocka_unit_test(test_utf8_empty_input_is_valid),
        cmocka_unit_test(test_utf8_ascii_fast_path_at_every_length_and_position),
        cmocka_unit_test(test_utf8_matches_reference_decoder),
        cmocka_unit_test(test_utf8_valid_matches_the_decoder_on_mixed_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
