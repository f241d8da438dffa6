/*
 * fuzz_util.h: helpers shared by the fuzz drivers (header-only, static).
 *
 * Everything here is written independently of core/ so that the drivers can
 * check the codecs against it: a reference UTF-8 decoder that works on code
 * point arithmetic rather than a state table, the close code list copied from
 * RFC 6455 7.4 and the IANA registry, and a tiny PRNG that turns a few input
 * bytes into chunk sizes.
 *
 * FUZZ_CHECK aborts with a message, so libFuzzer (and the regression runner)
 * report an invariant violation like any other crash.
 */
#ifndef WS_FUZZ_UTIL_H
#define WS_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Known, reported bugs can be skipped while they wait for a fix, so that a long
 * run keeps finding new ones: WSPUSH_FUZZ_SKIP="name1,name2". The regression
 * runner (ctest) never sets it, so the inputs in regressions/ keep failing until
 * the bug is fixed. */
static inline int fz_skip(const char *name)
{
    const char *v = getenv("WSPUSH_FUZZ_SKIP");
    return v && strstr(v, name) != NULL;
}

/* --- chunking --- */

typedef struct {
    uint32_t s;
    size_t max; /* largest chunk */
} fz_chunker_t;

static inline void fz_chunker_init(fz_chunker_t *c, uint32_t seed, size_t max)
{
    c->s = seed * 2654435761u + 0x9E3779B9u;
    c->max = max ? max : 1;
}

/* The next chunk size in 1..max (xorshift32; deterministic for a given seed). */
static inline size_t fz_chunk_next(fz_chunker_t *c)
{
    uint32_t x = c->s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    c->s = x;
    return 1 + (size_t)(x % c->max);
}

/* --- reference UTF-8 (RFC 3629) --- */

/* Can a sequence of total length L whose first k bytes give the high bits
 * `partial` still be completed into a scalar value that needs exactly L bytes?
 * Answered with interval arithmetic on code points, not with a byte table. */
static inline int fz_u8_completable(uint32_t partial, int k, int L)
{
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    static const uint32_t max_cp[5] = {0, 0x7F, 0x7FF, 0xFFFF, 0x10FFFF};
    int rest = 6 * (L - k);
    uint32_t lo = partial << rest;
    uint32_t hi = rest ? lo | ((1u << rest) - 1u) : lo;
    if (lo < min_cp[L])
        lo = min_cp[L];
    if (hi > max_cp[L])
        hi = max_cp[L];
    if (lo > hi)
        return 0;
    /* the interval must contain something outside the surrogates D800..DFFF */
    if (lo >= 0xD800 && hi <= 0xDFFF)
        return 0;
    return 1;
}

/* Index of the first byte of p[0..n) after which no valid completion exists,
 * or n when p[0..n) is valid or a valid prefix. *boundary (may be NULL) is set
 * to 1 when p[0..n) ends on a code point boundary (only meaningful if n is returned). */
static inline size_t fz_u8_first_bad(const uint8_t *p, size_t n, int *boundary)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = p[i];
        int L;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            L = 2;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            L = 3;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            L = 4;
            cp = c & 0x07;
        } else {
            return i; /* continuation byte or F8..FF as a lead */
        }
        if (!fz_u8_completable(cp, 1, L))
            return i;
        for (int k = 1; k < L; k++) {
            if (i + (size_t)k >= n) {
                if (boundary)
                    *boundary = 0;
                return n;
            }
            uint8_t d = p[i + (size_t)k];
            if ((d & 0xC0) != 0x80)
                return i + (size_t)k;
            cp = cp << 6 | (d & 0x3F);
            if (!fz_u8_completable(cp, k + 1, L))
                return i + (size_t)k;
        }
        i += (size_t)L;
    }
    if (boundary)
        *boundary = 1;
    return n;
}

static inline int fz_u8_valid(const uint8_t *p, size_t n)
{
    int b = 0;
    return fz_u8_first_bad(p, n, &b) == n && b;
}

/* --- RFC 6455 7.4 close codes a peer may send --- */

static inline int fz_close_code_ok(unsigned code)
{
    static const unsigned ok[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009,
                                  1010, 1011, 1012, 1013, 1014};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (code == ok[i])
            return 1;
    return code >= 3000 && code <= 4999;
}

/* --- hashing, to compare two runs --- */

static inline uint64_t fz_hash(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001B3ull;
    return h;
}

static inline uint64_t fz_hash_u64(uint64_t h, uint64_t v)
{
    return fz_hash(h, &v, sizeof v);
}

#endif
