/*
 * fuzz_httpc: the client side of HTTP/1.1 (core/httpc.h), what wspush.fetch
 * reads back from other services: ws_httpc_res_feed / ws_httpc_res_eof on
 * arbitrary bytes as a response (and the responses pipelined after it), fed
 * whole, split at one point, and in random chunks; and, on the same bytes
 * taken as a caller's header lines, ws_httpc_headers_valid,
 * ws_httpc_has_header, ws_httpc_drop_headers and ws_httpc_head.
 *
 * Input: byte 0 is flags (bit 0: the request was HEAD, bit 1: skip a
 * redirect's body, bit 2: read the responses that follow a complete one);
 * byte 1 picks max_body; bytes 2-3 the split point (modulo the data's
 * length + 1); byte 4 seeds the chunk sizes, byte 5 their maximum (0: 1..16);
 * the rest is what the server sent.
 *
 * Invariants (besides ASan/UBSan): consumed counts in range; the body never
 * longer than max_body, nor its buffer larger; when the head was accepted,
 * its headers hold at most WS_HTTPC_MAX_HEAD bytes; every header name is a
 * non-empty run without ':', whitespace, CR, LF or NUL, and no value has CR,
 * LF, NUL or trailing whitespace; ws_httpc_res_header finds the first header
 * of a name in any case; a complete response has a final status and no body
 * where HTTP allows none (HEAD, 204, 304, a skipped redirect); errors are
 * one of the two documented strings, and sticky; the three feeding patterns
 * give the same responses, bytes consumed and outcome; the buffers' memory
 * (mem.h) returns to what it was after ws_httpc_res_free. The header-line
 * half: a set ws_httpc_headers_valid accepts has only token names and never
 * frames a body, ws_httpc_has_header agrees with a reference scan,
 * ws_httpc_drop_headers leaves a valid set without the dropped names, and
 * the head ws_httpc_head builds carries the lines, one Host and one
 * Content-Length when due, and ends with the empty line.
 */
#include "fuzz_util.h"

#include <strings.h>

#include "httpc.h"
#include "mem.h"
#include "url.h"

#define MAX_RESPONSES 8
#define MAX_PIECES 4096

static size_t pick_max_body(unsigned v)
{
    static const size_t sizes[] = {1, 16, 100, 1000, 4096, 65536, 1 << 20, 4 << 20};
    return sizes[v & 7];
}

/* --- the response --- */

static int is_redirect(int st) { return st == 301 || st == 302 || st == 303 || st == 307 || st == 308; }

static int bad_name_byte(unsigned char c)
{
    return c == ':' || c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == 0;
}

/* Check r as it stands, whatever its state. */
static void check_state(const ws_httpc_res_t *r, size_t max_body)
{
    size_t bl;
    const uint8_t *body = ws_httpc_res_body(r, &bl);
    FUZZ_CHECK(body != NULL);
    FUZZ_CHECK(bl <= max_body);
    FUZZ_CHECK(r->_body.cap <= max_body);
    FUZZ_CHECK(!r->error || !strcmp(r->error, "response too large") ||
               !strcmp(r->error, "invalid response"));
    FUZZ_CHECK(!(r->complete && r->error));
}

/* Check a response whose head is in, and fold it into a hash. */
static uint64_t check_response(const ws_httpc_res_t *r, size_t max_body, int head, int skip,
                               uint64_t hash)
{
    size_t n = ws_httpc_res_nheaders(r);
    ws_header_t *hv = malloc((n ? n : 1) * sizeof *hv);
    ws_httpc_res_headers(r, hv);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const ws_header_t *h = &hv[i];
        FUZZ_CHECK(h->name_len > 0 && h->name != NULL && h->value != NULL);
        /* A field name is a token (RFC 9110 5.1); RFC 9112 5.1: no whitespace
         * between it and the colon (a client must reject or remove it, as a
         * proxy must). regressions/httpc/header-name-space*: llhttp, lenient
         * with responses, lets "Location :", "Content-Typ e:" and a trailer " X: 1" through and
         * httpc.c hands the names on with their spaces ("Location ", so a
         * lookup of "location", the redirect's included, misses it). */
        FUZZ_CHECK((h->name[0] != ' ' && h->name[0] != '\t') || fz_skip("header-name-space"));
        for (size_t k = 0; k < h->name_len; k++) {
            unsigned char c = (unsigned char)h->name[k];
            FUZZ_CHECK(!bad_name_byte(c) ||
                       ((c == ' ' || c == '\t') && fz_skip("header-name-space")));
        }
        for (size_t k = 0; k < h->value_len; k++) {
            unsigned char c = (unsigned char)h->value[k];
            FUZZ_CHECK(c != '\r' && c != '\n' && c != 0);
        }
        FUZZ_CHECK(h->value_len == 0 ||
                   (h->value[h->value_len - 1] != ' ' && h->value[h->value_len - 1] != '\t'));
        total += h->name_len + h->value_len;
        /* the first header of this name, in any case, is what a lookup finds */
        char *name = malloc(h->name_len + 1);
        memcpy(name, h->name, h->name_len);
        name[h->name_len] = 0;
        for (size_t k = 0; k < h->name_len; k++)
            if (i & 1)
                name[k] = (char)((name[k] >= 'a' && name[k] <= 'z') ? name[k] - 32 : name[k]);
        size_t first = 0;
        while (first < i && !(hv[first].name_len == h->name_len &&
                              !strncasecmp(hv[first].name, name, h->name_len)))
            first++;
        size_t vl = 12345;
        const char *v = ws_httpc_res_header(r, name, &vl);
        FUZZ_CHECK(v != NULL && vl == hv[first].value_len && !memcmp(v, hv[first].value, vl));
        free(name);
        hash = fz_hash(hash, h->name, h->name_len);
        hash = fz_hash_u64(hash, 0x3A);
        hash = fz_hash(hash, h->value, h->value_len);
        hash = fz_hash_u64(hash, 0x0A);
    }
    free(hv);
    FUZZ_CHECK(total <= WS_HTTPC_MAX_HEAD);
    size_t ll;
    if (r->complete) {
        FUZZ_CHECK(r->status >= 200 || r->status == 101);
        FUZZ_CHECK(r->status <= 999);
        size_t bl;
        const uint8_t *body = ws_httpc_res_body(r, &bl);
        if (head || r->status == 204 || r->status == 304 || r->status == 101)
            FUZZ_CHECK(bl == 0);
        /* (a Location among a chunked body's trailers comes too late to skip) */
        if (r->skipped)
            FUZZ_CHECK(skip && is_redirect(r->status) && ws_httpc_res_header(r, "location", &ll) &&
                       bl == 0);
        FUZZ_CHECK(bl <= max_body);
        hash = fz_hash(hash, body, bl);
        hash = fz_hash_u64(hash, (uint64_t)r->status << 8 | (uint64_t)r->keep_alive << 1 |
                                     (uint64_t)r->skipped);
    }
    return hash;
}

typedef struct {
    const size_t *cuts; /* ascending split positions */
    size_t ncuts;
} pieces_t;

/* Read every response in data, feeding it in the pieces given; a hash of
 * what was read. */
static uint64_t run(const uint8_t *data, size_t size, int head, int skip, int pipeline,
                    size_t max_body, const pieces_t *pc)
{
    size_t mem0 = ws_mem_used(WS_MEM_BUFFERS);
    ws_httpc_res_t r;
    memset(&r, 0, sizeof r);
    ws_httpc_res_init(&r, head, max_body, skip);
    uint64_t hash = 0xcbf29ce484222325ull;
    size_t off = 0, ci = 0;
    int responses = 0;
    for (size_t step = 0; step < MAX_PIECES + 2 * MAX_RESPONSES; step++) {
        while (ci < pc->ncuts && pc->cuts[ci] <= off)
            ci++;
        size_t end = ci < pc->ncuts ? pc->cuts[ci] : size;
        if (off >= size)
            break;
        /* an exact-size copy: a read past the piece is caught by ASan */
        size_t len = end - off;
        uint8_t *piece = malloc(len);
        memcpy(piece, data + off, len);
        long rc = ws_httpc_res_feed(&r, piece, len);
        free(piece);
        check_state(&r, max_body);
        if (rc < 0) {
            FUZZ_CHECK(rc == -1 && r.error != NULL);
            FUZZ_CHECK(ws_httpc_res_feed(&r, (const uint8_t *)"HTTP/1.1", 8) == -1);
            FUZZ_CHECK(!ws_httpc_res_eof(&r));
            /* (where it failed depends on the pieces: only what failed counts) */
            hash = fz_hash(hash, r.error, strlen(r.error));
            break;
        }
        FUZZ_CHECK((size_t)rc <= len);
        FUZZ_CHECK(r.complete || (size_t)rc == len);
        off += (size_t)rc;
        if (!r.complete)
            continue;
        hash = check_response(&r, max_body, head, skip, hash);
        hash = fz_hash_u64(hash, off);
        /* a complete response takes nothing more */
        FUZZ_CHECK(ws_httpc_res_feed(&r, (const uint8_t *)"x", 1) == 0);
        if (!pipeline || ++responses >= MAX_RESPONSES)
            break;
        ws_httpc_res_init(&r, head, max_body, skip); /* the next one, buffers kept */
    }
    if (!r.error && !r.complete) {
        /* the server closes: a body delimited by the close is complete now */
        int done = ws_httpc_res_eof(&r);
        FUZZ_CHECK(done == r.complete);
        check_state(&r, max_body);
        if (done)
            hash = check_response(&r, max_body, head, skip, hash);
        hash = fz_hash_u64(hash, 0xE0F0u | (uint64_t)done);
    }
    ws_httpc_res_free(&r);
    FUZZ_CHECK(ws_mem_used(WS_MEM_BUFFERS) == mem0);
    return hash;
}

/* --- the caller's header lines --- */

static int tchar(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* Reference: is there a line whose name is `name`? (lines known valid) */
static int ref_has(const char *s, size_t len, const char *name)
{
    size_t i = 0, nl = strlen(name);
    while (i < len) {
        size_t e = i;
        while (e < len && s[e] != '\n')
            e++;
        const char *colon = memchr(s + i, ':', e - i);
        if (colon && (size_t)(colon - (s + i)) == nl && !strncasecmp(s + i, name, nl))
            return 1;
        i = e + 1;
    }
    return 0;
}

static size_t count_lines(const char *s, size_t len, const char *prefix)
{
    size_t n = 0, pl = strlen(prefix);
    for (size_t i = 0; i + pl <= len; i++)
        if ((i == 0 || s[i - 1] == '\n') && !strncasecmp(s + i, prefix, pl))
            n++;
    return n;
}

static int contains(const char *h, size_t hl, const char *n, size_t nl)
{
    for (size_t i = 0; i + nl <= hl; i++)
        if (!memcmp(h + i, n, nl))
            return 1;
    return 0;
}

static void check_lines(const uint8_t *data, size_t size, unsigned flags)
{
    const char *s = (const char *)data;
    if (!ws_httpc_headers_valid(s, size))
        return;
    /* valid: "token: value\r\n" lines, none framing the body */
    size_t i = 0;
    while (i < size) {
        size_t n = 0;
        while (tchar((unsigned char)s[i + n]))
            n++;
        FUZZ_CHECK(n > 0 && s[i + n] == ':');
        FUZZ_CHECK(!(n == 14 && !strncasecmp(s + i, "content-length", 14)));
        FUZZ_CHECK(!(n == 17 && !strncasecmp(s + i, "transfer-encoding", 17)));
        const char *eol = memchr(s + i, '\n', size - i);
        FUZZ_CHECK(eol && eol > s + i && eol[-1] == '\r');
        FUZZ_CHECK(!memchr(s + i, 0, (size_t)(eol - (s + i))));
        i = (size_t)(eol - s) + 1;
    }
    static const char *const names[] = {"host", "user-agent", "authorization", "cookie",
                                        "content-type", "x-a", NULL};
    for (const char *const *p = names; *p; p++)
        FUZZ_CHECK(ws_httpc_has_header(s, size, *p) == ref_has(s, size, *p));

    ws_buf_t b;
    ws_buf_init(&b);
    ws_buf_append(&b, s, size);
    const char *const drop[] = {names[flags & 3], names[3 + ((flags >> 2) % 3)], NULL};
    ws_httpc_drop_headers(&b, drop);
    FUZZ_CHECK(b.len <= size);
    FUZZ_CHECK(ws_httpc_headers_valid((const char *)b.data, b.len));
    FUZZ_CHECK(!ref_has((const char *)b.data, b.len, drop[0]));
    FUZZ_CHECK(!ref_has((const char *)b.data, b.len, drop[1]));

    /* The head of a request with these lines. */
    static const char *const urls[] = {"http://u:p%40ss@example.com:8080/a?b", "http://[::1]/",
                                       "http://h/x", "https://x.test:443/p?q#f"};
    static const char *const methods[] = {"GET", "POST", "HEAD", "PATCH"};
    ws_url_t u;
    char why[128];
    const char *url = urls[(flags >> 4) & 3];
    FUZZ_CHECK(ws_url_parse(&u, url, strlen(url), why, sizeof why) == 0);
    const char *method = methods[(flags >> 6) & 3];
    size_t body_len = (flags & 1) ? 10 : 0;
    ws_buf_t out;
    ws_buf_init(&out);
    ws_httpc_head(&out, method, &u, s, size, body_len);
    const char *o = (const char *)out.data;
    size_t ol = out.len;
    size_t rl = strlen(method) + 1 + strlen(u.target) + strlen(" HTTP/1.1\r\n");
    FUZZ_CHECK(ol >= rl + 2 && !memcmp(o + ol - 4, "\r\n\r\n", 4));
    FUZZ_CHECK(!memcmp(o, method, strlen(method)) && o[strlen(method)] == ' ');
    /* the caller's lines, verbatim, inside */
    FUZZ_CHECK(size == 0 || contains(o, ol, s, size));
    const char *lines = o + rl;
    size_t ll = ol - rl;
    FUZZ_CHECK(count_lines(lines, ll, "host:") == (ref_has(s, size, "host") ? count_lines(s, size, "host:") : 1));
    int framed = body_len || !strcmp(method, "POST") || !strcmp(method, "PATCH");
    FUZZ_CHECK(count_lines(lines, ll, "content-length:") == (size_t)framed);
    FUZZ_CHECK(count_lines(lines, ll, "transfer-encoding:") == 0);
    if (!ref_has(s, size, "authorization"))
        FUZZ_CHECK(count_lines(lines, ll, "authorization:") == (u.user ? 1u : 0u));
    /* no line break but the lines' own */
    for (size_t k = 0; k < ol; k++)
        if (o[k] == '\n')
            FUZZ_CHECK(k > 0 && o[k - 1] == '\r');
        else if (o[k] == '\r')
            FUZZ_CHECK(k + 1 < ol && o[k + 1] == '\n');
    ws_buf_free(&out);
    ws_buf_free(&b);
    ws_url_free(&u);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 6)
        return 0;
    unsigned flags = data[0];
    int head = flags & 1, skip = (flags >> 1) & 1, pipeline = (flags >> 2) & 1;
    size_t max_body = pick_max_body(data[1]);
    unsigned split = (unsigned)data[2] << 8 | data[3];
    fz_chunker_t ch;
    fz_chunker_init(&ch, data[4], data[5] ? data[5] : 16);
    data += 6;
    size -= 6;

    pieces_t whole = {NULL, 0};
    size_t k = split % (size + 1);
    pieces_t one = {&k, 1};
    size_t *cuts = malloc(MAX_PIECES * sizeof *cuts);
    size_t n = 0, at = 0;
    while (n < MAX_PIECES) {
        at += fz_chunk_next(&ch);
        if (at >= size)
            break;
        cuts[n++] = at;
    }
    pieces_t chunks = {cuts, n};

    uint64_t a = run(data, size, head, skip, pipeline, max_body, &whole);
    uint64_t b = run(data, size, head, skip, pipeline, max_body, &one);
    uint64_t c = run(data, size, head, skip, pipeline, max_body, &chunks);
    FUZZ_CHECK(a == b);
    FUZZ_CHECK(a == c);
    free(cuts);

    check_lines(data, size, flags);
    return 0;
}
