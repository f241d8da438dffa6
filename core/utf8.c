#include "utf8.h"

#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "error.h"

/*
 * An explicit DFA over RFC 3629 table 3-7. The states that follow a lead byte
 * carry the exact range its first continuation byte may take, so overlongs
 * (E0 80..9F, F0 80..8F), surrogates (ED A0..BF) and code points past U+10FFFF
 * (F4 90..BF) are refused at that continuation byte, never later.
 */
enum { ACCEPT = 0, NEED1, NEED2, NEED3, AFTER_E0, AFTER_ED, AFTER_F0, AFTER_F4, REJECT };

static const struct {
    uint8_t lo, hi, next;
} cont[REJECT] = {
    [NEED1] = {0x80, 0xBF, ACCEPT},   [NEED2] = {0x80, 0xBF, NEED1},
    [NEED3] = {0x80, 0xBF, NEED2},    [AFTER_E0] = {0xA0, 0xBF, NEED1},
    [AFTER_ED] = {0x80, 0x9F, NEED1}, [AFTER_F0] = {0x90, 0xBF, NEED2},
    [AFTER_F4] = {0x80, 0x8F, NEED2},
};

static uint32_t lead(uint8_t c)
{
    if (c < 0x80)
        return ACCEPT;
    if (c < 0xC2) /* stray continuation, or C0/C1 which can only be overlong */
        return REJECT;
    if (c < 0xE0)
        return NEED1;
    if (c == 0xE0)
        return AFTER_E0;
    if (c == 0xED)
        return AFTER_ED;
    if (c < 0xF0)
        return NEED2;
    if (c == 0xF0)
        return AFTER_F0;
    if (c < 0xF4)
        return NEED3;
    if (c == 0xF4)
        return AFTER_F4;
    return REJECT; /* F5..FF: beyond U+10FFFF, or the old 5- and 6-byte forms */
}

void ws_utf8_init(ws_utf8_t *u)
{
    u->state = ACCEPT;
}

int ws_utf8_feed(ws_utf8_t *u, const uint8_t *p, size_t n)
{
    uint32_t s = u->state;
    size_t i = 0;

    if (s == REJECT)
        return WS_EUTF8;
    while (i < n) {
        if (s == ACCEPT) {
            /* Most text is ASCII: test eight bytes per step while between code points. */
            while (n - i >= 8) {
                uint64_t w;
                memcpy(&w, p + i, 8);
                if (w & UINT64_C(0x8080808080808080))
                    break;
                i += 8;
            }
            if (i == n)
                break;
            s = lead(p[i++]);
        } else {
            uint8_t c = p[i++];
            s = (c >= cont[s].lo && c <= cont[s].hi) ? cont[s].next : REJECT;
        }
        if (s == REJECT) {
            u->state = REJECT;
            return WS_EUTF8;
        }
    }
    u->state = s;
    return 0;
}

int ws_utf8_complete(const ws_utf8_t *u)
{
    return u->state == ACCEPT;
}

/* 1 if p[0..n) is all ASCII, n >= 8: words, the last one overlapping the
 * one before (no byte-at-a-time tail). Most messages are. */
static int all_ascii(const uint8_t *p, size_t n)
{
#ifdef __SSE2__
    /* Sixteen bytes a step where SSE2 is there (every x86-64), the last
     * step overlapping the one before; movemask gathers the high bits.
     * Unaligned loads; __m128i may alias any type. */
    if (n >= 16) {
        const uint8_t *last = p + n - 16;
        __m128i acc = _mm_loadu_si128((const __m128i *)last);
        for (; p < last; p += 16)
            acc = _mm_or_si128(acc, _mm_loadu_si128((const __m128i *)p));
        return !_mm_movemask_epi8(acc);
    }
#endif
    uint64_t acc = 0, w;
    size_t i = 0;
    for (; n - i > 8; i += 8) {
        memcpy(&w, p + i, 8);
        acc |= w;
    }
    memcpy(&w, p + n - 8, 8);
    return !((acc | w) & UINT64_C(0x8080808080808080));
}

int ws_utf8_valid(const uint8_t *p, size_t n)
{
    if (n >= 8 && all_ascii(p, n))
        return 1;
    ws_utf8_t u;
    ws_utf8_init(&u);
    return ws_utf8_feed(&u, p, n) == 0 && ws_utf8_complete(&u);
}
