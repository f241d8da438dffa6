/*
 * fuzz_url: the URLs of wspush.fetch (core/url.h): ws_url_parse of
 * arbitrary bytes, and ws_url_resolve of a redirect's Location against a
 * URL, both taken from the input.
 *
 * Input: bytes 0-1 pick where the data splits (modulo its length + 1) into
 * a base URL and a reference; the whole data is parsed too.
 *
 * Invariants (besides ASan/UBSan):
 *  - parse: a refusal gives one of url.c's fixed reasons (so never a piece
 *    of the URL, credentials included) and nothing to free; an accepted URL
 *    has only printable ASCII, a lowercase host of at most WS_URL_HOST_MAX
 *    bytes (host characters, or an IPv6 literal), a port of 1-65535 with
 *    default_port right, a target that starts with '/', has no fragment and
 *    is at most one byte longer than the input, and userinfo no longer than
 *    the input; rebuilt from its fields (userinfo percent-encoded,
 *    ws_url_authority for the authority) it parses to the same fields, and
 *    is the same origin.
 *  - resolve (of a base that parses): a refusal is one of its two reasons
 *    and appends nothing; a result is NUL-terminated with no NUL inside; an
 *    absolute reference is kept as it is, a network-path one gets the
 *    base's scheme; a reference without scheme or authority gives exactly
 *    what an independent RFC 3986 section 5.2 implementation below gives,
 *    and, when the result parses, it is the base's origin with the base's
 *    userinfo, and resolving "" against it gives it back.
 */
#include "fuzz_util.h"

#include <arpa/inet.h>
#include <strings.h>

#include "buf.h"
#include "url.h"

static const char *const PARSE_ERRORS[] = {
    "too long (over 8192 bytes)", "space or control character",
    "non-ASCII character (percent-encode it)", "missing scheme (http:// or https://)",
    "unsupported scheme (only http and https)", "missing // after the scheme",
    "unterminated IPv6 address", "bad characters after the IPv6 address", "empty host",
    "host too long", "bad IPv6 address", "invalid character in host", "bad port (1-65535)",
    "bad percent-encoding in userinfo", NULL};

static int known(const char *err, const char *const *list)
{
    for (; *list; list++)
        if (!strcmp(err, *list))
            return 1;
    return 0;
}

static int host_char(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
           c == '~';
}

static int same_fields(const ws_url_t *a, const ws_url_t *b)
{
    return a->https == b->https && a->host_v6 == b->host_v6 && a->port == b->port &&
           a->default_port == b->default_port && !strcmp(a->host, b->host) &&
           !strcmp(a->target, b->target) && (a->user == NULL) == (b->user == NULL) &&
           (!a->user || (!strcmp(a->user, b->user) && !strcmp(a->pass, b->pass)));
}

static void pct_all(ws_buf_t *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        char e[3] = {'%', hex[(unsigned char)*s >> 4], hex[(unsigned char)*s & 15]};
        ws_buf_append(b, e, 3);
    }
}

/* Parse s[0..n) and check the result; returns 0 with u filled, or -1. */
static int parse_checked(ws_url_t *u, const char *s, size_t n)
{
    char err[160];
    err[0] = 'X';
    err[1] = 0;
    if (ws_url_parse(u, s, n, err, sizeof err) != 0) {
        FUZZ_CHECK(known(err, PARSE_ERRORS));
        FUZZ_CHECK(u->_mem == NULL && u->host == NULL && u->user == NULL);
        return -1;
    }
    FUZZ_CHECK(n <= WS_URL_MAX);
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK((unsigned char)s[i] > 0x20 && (unsigned char)s[i] < 0x7f);
    FUZZ_CHECK(u->https == (n >= 6 && !strncasecmp(s, "https:", 6)));
    size_t hl = strlen(u->host);
    FUZZ_CHECK(hl > 0 && hl <= WS_URL_HOST_MAX && hl <= n);
    if (u->host_v6) {
        struct in6_addr a6;
        FUZZ_CHECK(inet_pton(AF_INET6, u->host, &a6) == 1);
        for (size_t i = 0; i < hl; i++)
            FUZZ_CHECK(!(u->host[i] >= 'A' && u->host[i] <= 'Z'));
    } else {
        for (size_t i = 0; i < hl; i++)
            FUZZ_CHECK(host_char((unsigned char)u->host[i]));
    }
    FUZZ_CHECK(u->port >= 1);
    FUZZ_CHECK(u->default_port == (u->port == (u->https ? 443 : 80)));
    size_t tl = strlen(u->target);
    FUZZ_CHECK(u->target[0] == '/' && tl <= n + 1);
    for (size_t i = 0; i < tl; i++) {
        unsigned char c = (unsigned char)u->target[i];
        FUZZ_CHECK(c > 0x20 && c < 0x7f && c != '#');
    }
    FUZZ_CHECK((u->user == NULL) == (u->pass == NULL));
    if (u->user)
        FUZZ_CHECK(strlen(u->user) + strlen(u->pass) <= n);
    return 0;
}

/* Rebuild u as a string and parse it again: the same fields. */
static void round_trip(const ws_url_t *u)
{
    ws_buf_t b;
    ws_buf_init(&b);
    ws_buf_append_str(&b, u->https ? "https://" : "http://");
    if (u->user) {
        pct_all(&b, u->user);
        ws_buf_append(&b, ":", 1);
        pct_all(&b, u->pass);
        ws_buf_append(&b, "@", 1);
    }
    ws_url_authority(u, &b);
    ws_buf_append_str(&b, u->target);
    if (b.len <= WS_URL_MAX) {
        ws_url_t v;
        FUZZ_CHECK(parse_checked(&v, (const char *)b.data, b.len) == 0);
        FUZZ_CHECK(same_fields(u, &v));
        FUZZ_CHECK(ws_url_same_origin(u, &v) && ws_url_same_origin(&v, u));
        ws_url_free(&v);
    }
    ws_buf_free(&b);
}

/* --- an independent RFC 3986 section 5.2 --- */

typedef struct {
    const char *p;
    size_t n;
    int defined;
} part_t;

typedef struct {
    part_t scheme, authority, path, query;
} ref_t;

/* The regex of RFC 3986 appendix B, with url.c's notion of a scheme
 * (ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ), section 3.1). */
static void split_ref(const char *s, size_t n, ref_t *r)
{
    memset(r, 0, sizeof *r);
    size_t i = 0;
    if (n && ((s[0] | 32) >= 'a' && (s[0] | 32) <= 'z')) {
        size_t j = 1;
        while (j < n && (((s[j] | 32) >= 'a' && (s[j] | 32) <= 'z') || (s[j] >= '0' && s[j] <= '9') ||
                         s[j] == '+' || s[j] == '-' || s[j] == '.'))
            j++;
        if (j < n && s[j] == ':') {
            r->scheme = (part_t){s, j, 1};
            i = j + 1;
        }
    }
    if (n - i >= 2 && s[i] == '/' && s[i + 1] == '/') {
        size_t j = i + 2;
        while (j < n && s[j] != '/' && s[j] != '?' && s[j] != '#')
            j++;
        r->authority = (part_t){s + i + 2, j - i - 2, 1};
        i = j;
    }
    size_t j = i;
    while (j < n && s[j] != '?' && s[j] != '#')
        j++;
    r->path = (part_t){s + i, j - i, 1};
    i = j;
    if (i < n && s[i] == '?') {
        j = i + 1;
        while (j < n && s[j] != '#')
            j++;
        r->query = (part_t){s + i + 1, j - i - 1, 1};
    }
}

/* Section 5.2.4, step by step on strings. */
static void remove_dot_segments(const char *p, size_t n, ws_buf_t *out)
{
    char *in = malloc(n + 2);
    memcpy(in, p, n);
    size_t il = n, o0 = out->len;
    char *s = in;
    while (il > 0) {
        if (il >= 3 && !memcmp(s, "../", 3)) {
            s += 3, il -= 3;
        } else if (il >= 2 && !memcmp(s, "./", 2)) {
            s += 2, il -= 2;
        } else if (il >= 3 && !memcmp(s, "/./", 3)) {
            s += 2, il -= 2;
        } else if (il == 2 && !memcmp(s, "/.", 2)) {
            s += 1, il -= 1;
            s[0] = '/';
        } else if ((il >= 4 && !memcmp(s, "/../", 4)) || (il == 3 && !memcmp(s, "/..", 3))) {
            if (il == 3) {
                s += 2, il -= 2;
                s[0] = '/';
            } else {
                s += 3, il -= 3;
            }
            size_t k = out->len;
            while (k > o0 && out->data[k - 1] != '/')
                k--;
            out->len = k > o0 ? k - 1 : o0;
        } else if ((il == 1 && s[0] == '.') || (il == 2 && !memcmp(s, "..", 2))) {
            il = 0;
        } else {
            size_t k = 1;
            while (k < il && s[k] != '/')
                k++;
            ws_buf_append(out, s, k);
            s += k, il -= k;
        }
    }
    free(in);
}

/* Section 5.2.2 for a reference with neither scheme nor authority, and 5.3
 * to recompose (the fragment dropped). */
static void reference_resolve(const char *base, size_t bl, const char *ref, size_t rl, ws_buf_t *out)
{
    ref_t B, R;
    split_ref(base, bl, &B);
    split_ref(ref, rl, &R);
    ws_buf_append(out, B.scheme.p, B.scheme.n);
    ws_buf_append(out, "://", 3);
    ws_buf_append(out, B.authority.p, B.authority.n);
    const part_t *q;
    if (R.path.n == 0) {
        ws_buf_append(out, B.path.p, B.path.n);
        q = R.query.defined ? &R.query : &B.query;
    } else {
        if (R.path.p[0] == '/') {
            remove_dot_segments(R.path.p, R.path.n, out);
        } else {
            /* 5.2.3 merge */
            ws_buf_t m;
            ws_buf_init(&m);
            if (B.authority.defined && B.path.n == 0) {
                ws_buf_append(&m, "/", 1);
            } else {
                size_t k = B.path.n;
                while (k > 0 && B.path.p[k - 1] != '/')
                    k--;
                ws_buf_append(&m, B.path.p, k);
            }
            ws_buf_append(&m, R.path.p, R.path.n);
            remove_dot_segments(m.len ? (const char *)m.data : "", m.len, out);
            ws_buf_free(&m);
        }
        q = &R.query;
    }
    if (q->defined) {
        ws_buf_append(out, "?", 1);
        ws_buf_append(out, q->p, q->n);
    }
}

static void check_resolve(const char *base, size_t bl, const ws_url_t *bu, const char *ref, size_t rl)
{
    ws_buf_t out;
    ws_buf_init(&out);
    char err[160] = "X";
    if (ws_url_resolve(base, bl, ref, rl, &out, err, sizeof err) != 0) {
        static const char *const errs[] = {"too long (over 8192 bytes)", "space or control character",
                                           NULL};
        FUZZ_CHECK(known(err, errs));
        FUZZ_CHECK(out.len == 0);
        int ctl = 0;
        for (size_t i = 0; i < rl; i++)
            ctl |= (unsigned char)ref[i] < 0x20 || ref[i] == 0x7f;
        FUZZ_CHECK(ctl || rl > WS_URL_MAX);
        ws_buf_free(&out);
        return;
    }
    const char *o = (const char *)out.data;
    FUZZ_CHECK(o && o[out.len] == 0 && strlen(o) == out.len);
    ref_t R;
    split_ref(ref, rl, &R);
    if (R.scheme.defined) {
        FUZZ_CHECK(out.len == rl && !memcmp(o, ref, rl));
    } else if (R.authority.defined) {
        size_t sl = (size_t)(strchr(base, ':') - base);
        FUZZ_CHECK(out.len == sl + 1 + rl && !memcmp(o, base, sl + 1) && !memcmp(o + sl + 1, ref, rl));
    } else {
        ws_buf_t want;
        ws_buf_init(&want);
        reference_resolve(base, bl, ref, rl, &want);
        if (!(want.len == out.len && !memcmp(want.data, o, out.len))) {
            fprintf(stderr, "resolve(\"%.*s\", \"%.*s\")\n  url.c:     \"%s\"\n  reference: \"%.*s\"\n",
                    (int)bl, base, (int)rl, ref, o, (int)want.len, (const char *)want.data);
            FUZZ_CHECK(!"ws_url_resolve equals RFC 3986 5.2");
        }
        ws_buf_free(&want);
        ws_url_t v;
        if (parse_checked(&v, o, out.len) == 0) {
            /* a relative Location never leaves the base's origin, and keeps its userinfo */
            FUZZ_CHECK(ws_url_same_origin(bu, &v));
            FUZZ_CHECK((bu->user == NULL) == (v.user == NULL));
            FUZZ_CHECK(!bu->user || (!strcmp(bu->user, v.user) && !strcmp(bu->pass, v.pass)));
            ws_buf_t again;
            ws_buf_init(&again);
            FUZZ_CHECK(ws_url_resolve(o, out.len, "", 0, &again, err, sizeof err) == 0);
            FUZZ_CHECK(again.len == out.len && !memcmp(again.data, o, out.len));
            ws_buf_free(&again);
            ws_url_free(&v);
        }
    }
    /* whatever it is, parsing it either works (checked) or is refused with a reason */
    ws_url_t w;
    if (parse_checked(&w, o, out.len) == 0)
        ws_url_free(&w);
    ws_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t k = ((size_t)data[0] << 8 | data[1]);
    data += 2;
    size -= 2;
    k %= size + 1;

    /* exact-size copies, so that reading past either is caught */
    char *all = malloc(size ? size : 1);
    memcpy(all, data, size);
    ws_url_t u;
    if (parse_checked(&u, all, size) == 0) {
        round_trip(&u);
        ws_url_free(&u);
    }

    /* the base as ws_url_resolve gets it in fetch.c: a parsed URL, NUL-terminated */
    char *base = malloc(k + 1);
    memcpy(base, data, k);
    base[k] = 0;
    char *ref = malloc(size - k ? size - k : 1);
    memcpy(ref, data + k, size - k);
    ws_url_t bu;
    if (memchr(base, 0, k) == NULL && parse_checked(&bu, base, k) == 0) {
        check_resolve(base, k, &bu, ref, size - k);
        ws_url_free(&bu);
    }
    free(ref);
    free(base);
    free(all);
    return 0;
}
