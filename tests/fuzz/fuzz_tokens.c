/*
 * fuzz_tokens: the small string helpers under the handshake: ws_token_next /
 * ws_token_list_has (comma lists), ws_header_find, ws_handshake_same_origin,
 * ws_base64_encode / ws_base64_decode and ws_handshake_accept.
 *
 * Input: byte 0 is ignored (kept so that inputs line up with other targets'
 * parameter bytes); the rest is split at the first 0x00 into a and b (a list
 * and a token, header names and a name, an origin and a host); base64 and the
 * accept value take the whole rest.
 */
#include "fuzz_util.h"

#include "base64.h"
#include "error.h"
#include "handshake.h"

static int lc(int c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

static int eq_ci(const char *a, size_t an, const char *b, size_t bn)
{
    if (an != bn)
        return 0;
    for (size_t i = 0; i < an; i++)
        if (lc((unsigned char)a[i]) != lc((unsigned char)b[i]))
            return 0;
    return 1;
}

static int ows(char c) { return c == ' ' || c == '\t'; }

/* Reference: split on ',' and trim OWS, skip empty elements. */
static int ref_list_has(const char *v, size_t n, const char *tok, size_t tn)
{
    size_t i = 0;
    while (i <= n) {
        size_t j = i;
        while (j < n && v[j] != ',')
            j++;
        size_t s = i, e = j;
        while (s < e && ows(v[s]))
            s++;
        while (e > s && ows(v[e - 1]))
            e--;
        if (e > s && eq_ci(v + s, e - s, tok, tn))
            return 1;
        i = j + 1;
    }
    return 0;
}

static void check_tokens(const char *a, size_t an, const char *b, size_t bn)
{
    size_t pos = 0, prev = 0, count = 0;
    const char *t;
    size_t tl;
    while (ws_token_next(a, an, &pos, &t, &tl)) {
        FUZZ_CHECK(count++ <= an);
        FUZZ_CHECK(pos > prev || (count == 1 && pos > 0));
        FUZZ_CHECK(pos <= an);
        FUZZ_CHECK(t >= a && t + tl <= a + an && tl > 0);
        FUZZ_CHECK(memchr(t, ',', tl) == NULL);
        FUZZ_CHECK(!ows(t[0]) && !ows(t[tl - 1]));
        prev = pos;
    }
    FUZZ_CHECK(pos == an);

    /* ws_token_list_has takes a NUL-terminated token; trimmed, no commas, non-empty
     * tokens are the ones a caller can ask for. */
    char *tok = malloc(bn + 1);
    memcpy(tok, b, bn);
    tok[bn] = 0;
    size_t tn = strlen(tok);
    int ok = tn > 0 && !strchr(tok, ',') && !ows(tok[0]) && !ows(tok[tn - 1]);
    if (ok)
        FUZZ_CHECK(ws_token_list_has(a, an, tok) == ref_list_has(a, an, tok, tn));
    free(tok);
}

static void check_headers(const char *a, size_t an, const char *b, size_t bn)
{
    /* headers named by the bytes of a, split on '\n'; look up b */
    ws_header_t h[16];
    size_t n = 0, s = 0;
    for (size_t i = 0; i <= an && n < 16; i++) {
        if (i == an || a[i] == '\n') {
            h[n].name = a + s;
            h[n].name_len = i - s;
            h[n].value = "";
            h[n].value_len = 0;
            n++;
            s = i + 1;
        }
    }
    char *name = malloc(bn + 1);
    memcpy(name, b, bn);
    name[bn] = 0;
    size_t nl = strlen(name);
    long r = ws_header_find(h, n, name);
    long ref = -1;
    for (size_t i = 0; i < n; i++)
        if (eq_ci(h[i].name, h[i].name_len, name, nl)) {
            ref = (long)i;
            break;
        }
    FUZZ_CHECK(r == ref);
    free(name);
}

static void check_origin(const char *a, size_t an, const char *b, size_t bn)
{
    char *o = malloc(an ? an : 1), *h = malloc(bn ? bn : 1);
    memcpy(o, a, an);
    memcpy(h, b, bn);
    int r = ws_handshake_same_origin(o, an, h, bn);
    FUZZ_CHECK(r == 0 || r == 1);
    if (r) {
        /* an accepted origin names a known scheme and contains the host name */
        FUZZ_CHECK(an > 3);
        const char *sep = NULL;
        for (size_t i = 0; i + 3 <= an; i++)
            if (!memcmp(o + i, "://", 3)) {
                sep = o + i;
                break;
            }
        FUZZ_CHECK(sep != NULL);
        size_t sl = (size_t)(sep - o);
        FUZZ_CHECK(eq_ci(o, sl, "http", 4) || eq_ci(o, sl, "https", 5) || eq_ci(o, sl, "ws", 2) ||
                   eq_ci(o, sl, "wss", 3));
        /* an origin never carries a path, query, fragment or userinfo */
        const char *rest = sep + 3;
        size_t rl = an - (size_t)(rest - o);
        FUZZ_CHECK(rl > 0);
        for (size_t i = 0; i < rl; i++)
            FUZZ_CHECK(rest[i] != '/' && rest[i] != '?' && rest[i] != '#' && rest[i] != '@' &&
                       rest[i] != ' ');
    }
    /* scheme and host compare case-insensitively: upper-casing the origin changes nothing */
    char *up = malloc(an ? an : 1);
    for (size_t i = 0; i < an; i++)
        up[i] = (char)((a[i] >= 'a' && a[i] <= 'z') ? a[i] - 32 : a[i]);
    FUZZ_CHECK(ws_handshake_same_origin(up, an, h, bn) == r);
    free(up);
    free(o);
    free(h);
}

static void check_base64(const uint8_t *p, size_t n)
{
    /* decode arbitrary text: success means canonical, so it re-encodes to itself */
    uint8_t *out = malloc(3 * n / 4 + 1);
    char *s = malloc(n ? n : 1);
    memcpy(s, p, n);
    long d = ws_base64_decode(s, n, out);
    FUZZ_CHECK(d == WS_EINVAL || (d >= 0 && (size_t)d <= 3 * n / 4));
    if (d >= 0) {
        char *enc = malloc(4 * (((size_t)d + 2) / 3) + 1);
        size_t el = ws_base64_encode(out, (size_t)d, enc);
        FUZZ_CHECK(el == n && !memcmp(enc, s, n));
        free(enc);
    }
    /* encode arbitrary bytes, decode back */
    size_t cap = 4 * ((n + 2) / 3) + 1;
    char *enc = malloc(cap);
    size_t el = ws_base64_encode(p, n, enc);
    FUZZ_CHECK(el == cap - 1 && enc[el] == 0);
    uint8_t *back = malloc(3 * el / 4 + 1);
    FUZZ_CHECK(ws_base64_decode(enc, el, back) == (long)n);
    FUZZ_CHECK(!memcmp(back, p, n));
    free(back);
    free(enc);
    free(out);
    free(s);

    char acc[29];
    memset(acc, 'x', sizeof acc);
    ws_handshake_accept((const char *)p, n, acc);
    FUZZ_CHECK(acc[28] == 0 && strlen(acc) == 28);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    data++;
    size--;
    const uint8_t *z = memchr(data, 0, size);
    size_t an = z ? (size_t)(z - data) : size;
    const char *a = (const char *)data;
    const char *b = z ? (const char *)z + 1 : "";
    size_t bn = z ? size - an - 1 : 0;

    char *ac = malloc(an ? an : 1);
    memcpy(ac, a, an);
    check_tokens(ac, an, b, bn);
    check_headers(ac, an, b, bn);
    free(ac);
    check_origin(a, an, b, bn);
    check_base64(data, size);
    return 0;
}
