/* Unit tests for sha1.c, base64.c and handshake.c. Longer than our ~600-line
 * guide on purpose: one file for the three codecs of the handshake, most of it
 * tables (tests/lua/parity_spec.lua runs rows of the same-origin one through Lua). */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS for the guard page */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "base64.h"
#include "error.h"
#include "handshake.h"
#include "sha1.h"

/* --- guard page: inputs end right before an unmapped page, so any read past
 * the given length faults even without a sanitizer --- */

static uint8_t *guard_area;
static size_t page_size;

static int setup_guard(void **state)
{
    page_size = (size_t)sysconf(_SC_PAGESIZE);
    void *p = mmap(NULL, 2 * page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -1;
    guard_area = p;
    return mprotect(guard_area + page_size, page_size, PROT_NONE);
}

static int teardown_guard(void **state) { return munmap(guard_area, 2 * page_size); }

static const char *at_guard(const char *s, size_t n)
{
    assert_true(n <= page_size);
    char *dst = (char *)guard_area + page_size - n;
    memcpy(dst, s, n);
    return dst;
}

/* --- sha1 --- */

static void hex(const uint8_t *d, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", d[i]);
}

static void sha1_chunked(const void *p, size_t n, size_t chunk, char out[41])
{
    ws_sha1_t s;
    uint8_t d[20];
    const uint8_t *b = p;
    ws_sha1_init(&s);
    for (size_t off = 0; off < n; off += chunk)
        ws_sha1_update(&s, b + off, n - off < chunk ? n - off : chunk);
    ws_sha1_final(&s, d);
    hex(d, 20, out);
}

static void test_sha1_hashes_fips_vectors(void **state)
{
    static const struct {
        const char *in, *digest;
    } v[] = {
        {"", "da39a3ee5e6b4b0d3255bfef95601890afd80709"},
        {"abc", "a9993e364706816aba3e25717850c26c9cd0d89d"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "84983e441c3bd26ebaae4aa1f95129e5e54670f1"},
        {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrl"
         "m"
         "nopqrsmnopqrstnopqrstu",
         "a49b2446a02c645bf419f995b67091253a04a259"},
    };
    char out[41];
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        size_t n = strlen(v[i].in);
        sha1_chunked(v[i].in, n, n ? n : 1, out);
        assert_string_equal(out, v[i].digest);
        sha1_chunked(v[i].in, n, 1, out);
        assert_string_equal(out, v[i].digest);
    }
}

static void test_sha1_hashes_million_a_in_any_chunking(void **state)
{
    static uint8_t buf[1000000];
    memset(buf, 'a', sizeof buf);
    static const size_t chunks[] = {sizeof buf, 1, 63, 64, 65, 1000};
    char out[41];
    for (size_t i = 0; i < sizeof chunks / sizeof chunks[0]; i++) {
        sha1_chunked(buf, sizeof buf, chunks[i], out);
        assert_string_equal(out, "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
    }
}

/* Lengths around 56 and 64 exercise the branch that needs an extra padding block. */
static void test_sha1_pads_at_block_boundaries(void **state)
{
    static const struct {
        size_t n;
        const char *digest;
    } v[] = {
        {55, "c1c8bbdc22796e28c0e15163d20899b65621d65a"},
        {56, "c2db330f6083854c99d4b5bfb6e8f29f201be699"},
        {63, "03f09f5b158a7a8cdad920bddc29b81c18a551f5"},
        {64, "0098ba824b5c16427bd7a1122a5a442a25ec644d"},
        {65, "11655326c708d70319be2610e8a57d9a5b959d3b"},
        {119, "ee971065aaa017e0632a8ca6c77bb3bf8b1dfc56"},
        {120, "f34c1488385346a55709ba056ddd08280dd4c6d6"},
    };
    uint8_t buf[128];
    char out[41];
    memset(buf, 'a', sizeof buf);
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        sha1_chunked(buf, v[i].n, v[i].n, out);
        assert_string_equal(out, v[i].digest);
        sha1_chunked(buf, v[i].n, 7, out);
        assert_string_equal(out, v[i].digest);
    }
}

/* --- base64 --- */

static const struct {
    const char *raw, *enc;
} rfc4648[] = {
    {"", ""},
    {"f", "Zg=="},
    {"fo", "Zm8="},
    {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="},
    {"fooba", "Zm9vYmE="},
    {"foobar", "Zm9vYmFy"},
};

static void test_base64_encodes_rfc4648_vectors(void **state)
{
    char out[16];
    for (size_t i = 0; i < sizeof rfc4648 / sizeof rfc4648[0]; i++) {
        size_t n = ws_base64_encode((const uint8_t *)rfc4648[i].raw, strlen(rfc4648[i].raw), out);
        assert_int_equal(n, strlen(rfc4648[i].enc));
        assert_string_equal(out, rfc4648[i].enc);
    }
}

static void test_base64_decodes_rfc4648_vectors(void **state)
{
    uint8_t out[16];
    for (size_t i = 0; i < sizeof rfc4648 / sizeof rfc4648[0]; i++) {
        size_t n = strlen(rfc4648[i].enc);
        long r = ws_base64_decode(at_guard(rfc4648[i].enc, n), n, out);
        assert_int_equal(r, (long)strlen(rfc4648[i].raw));
        assert_memory_equal(out, rfc4648[i].raw, (size_t)r);
    }
}

static void test_base64_roundtrips_every_byte_value(void **state)
{
    uint8_t raw[256], back[256];
    char enc[4 * ((256 + 2) / 3) + 1];
    for (size_t i = 0; i < sizeof raw; i++)
        raw[i] = (uint8_t)(255 - i);
    for (size_t n = 0; n <= sizeof raw; n++) {
        size_t e = ws_base64_encode(raw, n, enc);
        assert_int_equal(e, 4 * ((n + 2) / 3));
        assert_int_equal(ws_base64_decode(at_guard(enc, e), e, back), (long)n);
        assert_memory_equal(back, raw, n);
    }
}

static void test_base64_rejects_noncanonical_and_malformed_input(void **state)
{
    static const char *bad[] = {
        "Zg",       /* length not a multiple of 4 */
        "Zg=",      /* ditto */
        "Zm9vY",    /* ditto */
        "Zh==",     /* nonzero bits under the padding */
        "Zm9=",     /* ditto, one '=' */
        "Z===",     /* three '=' */
        "====",     /* only padding */
        "Z=g=",     /* data after padding */
        "Zg==Zm9v", /* padding in the middle */
        "Zm9v\n",   /* line break */
        "Zm 9v",    /* space */
        "Zm9-",     /* URL-safe alphabet */
        "Zm9_",     /* URL-safe alphabet */
        "Zm9\x80",  /* high byte */
    };
    uint8_t out[16];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t n = strlen(bad[i]);
        if (ws_base64_decode(at_guard(bad[i], n), n, out) != WS_EINVAL)
            fail_msg("accepted \"%s\"", bad[i]);
    }
    /* An embedded NUL must not end the input early. */
    assert_int_equal(ws_base64_decode(at_guard("Zm\0v", 4), 4, out), WS_EINVAL);
}

/* --- request fixtures --- */

#define MAXH 16

typedef struct {
    const char *method;
    int major, minor;
    const char *h[MAXH][2]; /* name, value; ends at a NULL name */
} req_spec_t;

typedef struct {
    ws_header_t headers[MAXH];
    ws_hs_request_t req;
} req_t;

static void build(req_t *r, const req_spec_t *s)
{
    size_t n = 0;
    for (; n < MAXH && s->h[n][0]; n++) {
        r->headers[n].name = s->h[n][0];
        r->headers[n].name_len = strlen(s->h[n][0]);
        r->headers[n].value = s->h[n][1];
        r->headers[n].value_len = strlen(s->h[n][1]);
    }
    r->req.method = s->method;
    r->req.method_len = strlen(s->method);
    r->req.http_major = s->major;
    r->req.http_minor = s->minor;
    r->req.headers = r->headers;
    r->req.nheaders = n;
}

#define SAMPLE_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define SAMPLE_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

#define H_HOST                                                                                     \
    {                                                                                              \
        "Host", "server.example.com"                                                               \
    }
#define H_UPGRADE                                                                                  \
    {                                                                                              \
        "Upgrade", "websocket"                                                                     \
    }
#define H_CONN                                                                                     \
    {                                                                                              \
        "Connection", "Upgrade"                                                                    \
    }
#define H_VERSION                                                                                  \
    {                                                                                              \
        "Sec-WebSocket-Version", "13"                                                              \
    }
#define H_KEY                                                                                      \
    {                                                                                              \
        "Sec-WebSocket-Key", SAMPLE_KEY                                                            \
    }

static int check(const req_spec_t *s, ws_hs_result_t *out)
{
    req_t r;
    build(&r, s);
    return ws_handshake_check(&r.req, out);
}

/* --- accept key and valid requests --- */

static void test_handshake_accepts_rfc6455_sample_key(void **state)
{
    char out[29];
    ws_handshake_accept(SAMPLE_KEY, strlen(SAMPLE_KEY), out);
    assert_string_equal(out, SAMPLE_ACCEPT);
}

static void test_handshake_accepts_rfc6455_sample_request(void **state)
{
    req_spec_t s = {"GET",
                    1,
                    1,
                    {H_HOST,
                     H_UPGRADE,
                     H_CONN,
                     H_KEY,
                     {"Origin", "http://example.com"},
                     {"Sec-WebSocket-Protocol", "chat, superchat"},
                     {"Sec-WebSocket-Protocol", "ignored"},
                     {"Sec-WebSocket-Extensions", "permessage-deflate"},
                     H_VERSION}};
    ws_hs_result_t out;
    assert_int_equal(check(&s, &out), 0);
    assert_int_equal(out.status, 0);
    assert_null(out.reason);
    assert_string_equal(out.accept, SAMPLE_ACCEPT);
    assert_int_equal(out.protocols_len, strlen("chat, superchat"));
    assert_memory_equal(out.protocols, "chat, superchat", out.protocols_len);
    assert_ptr_equal(out.protocols, s.h[5][1]); /* points into the request */
    assert_memory_equal(out.extensions, "permessage-deflate", out.extensions_len);
    assert_memory_equal(out.origin, "http://example.com", out.origin_len);
    assert_memory_equal(out.host, "server.example.com", out.host_len);
}

static void test_handshake_leaves_optional_fields_null_when_absent(void **state)
{
    req_spec_t s = {"GET", 1, 1, {H_HOST, H_UPGRADE, H_CONN, H_VERSION, H_KEY}};
    ws_hs_result_t out;
    assert_int_equal(check(&s, &out), 0);
    assert_null(out.protocols);
    assert_null(out.extensions);
    assert_null(out.origin);
}

static void test_handshake_accepts_case_and_token_list_variants(void **state)
{
    static const req_spec_t ok[] = {
        {"GET",
         1,
         1,
         {H_HOST,
          {"Upgrade", "WebSocket"},
          {"Connection", "keep-alive, Upgrade"},
          H_VERSION,
          H_KEY}},
        {"GET",
         1,
         1,
         {{"HOST", "x"},
          {"upgrade", "WEBSOCKET"},
          {"CONNECTION", "UPGRADE"},
          {"sec-websocket-version", "13"},
          {"SEC-WEBSOCKET-KEY", SAMPLE_KEY}}},
        {"GET",
         1,
         1,
         {H_HOST,
          {"Upgrade", "h2c, websocket"},
          {"Connection", "\tkeep-alive ,upgrade\t"},
          H_VERSION,
          H_KEY}},
        /* a list split over two header lines counts as one list */
        {"GET",
         1,
         1,
         {H_HOST,
          H_UPGRADE,
          {"Connection", "keep-alive"},
          {"Connection", "Upgrade"},
          H_VERSION,
          H_KEY}},
        {"GET",
         1,
         1,
         {H_HOST, {"Upgrade", "foo"}, {"Upgrade", "websocket"}, H_CONN, H_VERSION, H_KEY}},
        /* a repeated but consistent version is not an error */
        {"GET", 1, 1, {H_HOST, H_UPGRADE, H_CONN, H_VERSION, H_VERSION, H_KEY}},
        {"GET", 1, 2, {H_HOST, H_UPGRADE, H_CONN, H_VERSION, H_KEY}},
        {"GET", 2, 0, {H_HOST, H_UPGRADE, H_CONN, H_VERSION, H_KEY}},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        ws_hs_result_t out;
        int st = check(&ok[i], &out);
        if (st != 0)
            fail_msg("case %zu: status %d (%s)", i, st, out.reason);
        assert_string_equal(out.accept, SAMPLE_ACCEPT);
    }
}

/* --- rejections --- */

static void test_handshake_rejects_post_with_405(void **state)
{
    req_spec_t s = {"POST", 1, 1, {H_HOST, H_UPGRADE, H_CONN, H_VERSION, H_KEY}};
    ws_hs_result_t out;
    assert_int_equal(check(&s, &out), 405);
    assert_int_equal(out.status, 405);
    assert_non_null(out.reason);
}

static void test_handshake_rejects_version_8_with_426(void **state)
{
    req_spec_t s = {
        "GET", 1, 1, {H_HOST, H_UPGRADE, H_CONN, {"Sec-WebSocket-Version", "8"}, H_KEY}};
    ws_hs_result_t out;
    assert_int_equal(check(&s, &out), 426);
    assert_non_null(strstr(out.reason, "Version"));
}

static void test_handshake_rejects_duplicate_key_with_400(void **state)
{
    req_spec_t s = {"GET", 1, 1, {H_HOST, H_UPGRADE, H_CONN, H_VERSION, H_KEY, H_KEY}};
    ws_hs_result_t out;
    assert_int_equal(check(&s, &out), 400);
    assert_string_equal(out.reason, "duplicate Sec-WebSocket-Key");
}

static void test_handshake_rejects_malformed_requests(void **state)
{
    static const struct {
        req_spec_t req;
        int status;
        const char *reason; /* substring of out.reason */
    } bad[] = {
        /* method */
        {{"POST", 1, 1, {H_HOST, H_UPGRADE, H_CONN, H_VERSION, H_KEY}}, 405, "GET"},
        {{"get", 1, 1, {H_HOST, H_UPGRADE, H_CONN, H_VERSION, H_KEY}}, 405, "GET"},
        {{"GETX", 1, 1, {H_HOST, H_UPGRADE, H_CONN, H_VERSION, H_KEY}}, 405, "GET"},
        {{"", 1, 1, {H_HOST, H_UPGRADE, H_CONN, H_VERSION, H_KEY}}, 405, "GET"},
        /* HTTP version */
        {{"GET", 1, 0, {H_HOST, H_UPGRADE, H_CONN, H_VERSION, H_KEY}}, 400, "HTTP/1.1"},
        {{"GET", 0, 9, {H_HOST, H_UPGRADE, H_CONN, H_VERSION, H_KEY}}, 400, "HTTP/1.1"},
        /* Host */
        {{"GET", 1, 1, {H_UPGRADE, H_CONN, H_VERSION, H_KEY}}, 400, "Host"},
        {{"GET", 1, 1, {{"Host", ""}, H_UPGRADE, H_CONN, H_VERSION, H_KEY}}, 400, "Host"},
        {{"GET", 1, 1, {H_HOST, {"Host", "evil.example"}, H_UPGRADE, H_CONN, H_VERSION, H_KEY}},
         400,
         "duplicate Host"},
        /* Upgrade */
        {{"GET", 1, 1, {H_HOST, H_CONN, H_VERSION, H_KEY}}, 400, "Upgrade"},
        {{"GET", 1, 1, {H_HOST, {"Upgrade", "h2c"}, H_CONN, H_VERSION, H_KEY}}, 400, "Upgrade"},
        {{"GET", 1, 1, {H_HOST, {"Upgrade", "websockets"}, H_CONN, H_VERSION, H_KEY}},
         400,
         "Upgrade"},
        {{"GET", 1, 1, {H_HOST, {"Upgrade", ""}, H_CONN, H_VERSION, H_KEY}}, 400, "Upgrade"},
        /* Connection */
        {{"GET", 1, 1, {H_HOST, H_UPGRADE, H_VERSION, H_KEY}}, 400, "Connection"},
        {{"GET", 1, 1, {H_HOST, H_UPGRADE, {"Connection", "keep-alive"}, H_VERSION, H_KEY}},
         400,
         "Connection"},
        {{"GET", 1, 1, {H_HOST, H_UPGRADE, {"Connection", "upgraded"}, H_VERSION, H_KEY}},
         400,
         "Connection"},
        {{"GET", 1, 1, {H_HOST, H_UPGRADE, {"Connection", "keep-alive upgrade"}, H_VERSION, H_KEY}},
         400,
         "Connection"},
        /* version */
        {{"GET", 1, 1, {H_HOST, H_UPGRADE, H_CONN, H_KEY}}, 426, "Version"},
        {{"GET", 1, 1, {H_HOST, H_UPGRADE, H_CONN, {"Sec-WebSocket-Version", "8"}, H_KEY}},
         426,
         "Version"},
        {{"GET", 1, 1, {H_HOST, H_UPGRADE, H_CONN, {"Sec-WebSocket-Version", "013"}, H_KEY}},
         426,
         "Version"},
        {{"GET", 1, 1, {H_HOST, H_UPGRADE, H_CONN, {"Sec-WebSocket-Version", "13, 8"}, H_KEY}},
         426,
         "Version"},
        {{"GET", 1, 1, {H_HOST, H_UPGRADE, H_CONN, {"Sec-WebSocket-Version", ""}, H_KEY}},
         426,
         "Version"},
        {{"GET",
          1,
          1,
          {H_HOST, H_UPGRADE, H_CONN, H_VERSION, {"Sec-WebSocket-Version", "8"}, H_KEY}},
         426,
         "Version"},
        /* key */
        {{"GET", 1, 1, {H_HOST, H_UPGRADE, H_CONN, H_VERSION}}, 400, "missing Sec-WebSocket-Key"},
        {{"GET", 1, 1, {H_HOST, H_UPGRADE, H_CONN, H_VERSION, {"Sec-WebSocket-Key", ""}}},
         400,
         "Sec-WebSocket-Key"},
        {{"GET",
          1,
          1,
          {H_HOST, H_UPGRADE, H_CONN, H_VERSION, H_KEY, {"sec-websocket-key", SAMPLE_KEY}}},
         400,
         "duplicate Sec-WebSocket-Key"},
        /* 15, 17 and 18 bytes */
        {{"GET",
          1,
          1,
          {H_HOST, H_UPGRADE, H_CONN, H_VERSION, {"Sec-WebSocket-Key", "AAECAwQFBgcICQoLDA0O"}}},
         400,
         "malformed"},
        {{"GET",
          1,
          1,
          {H_HOST,
           H_UPGRADE,
           H_CONN,
           H_VERSION,
           {"Sec-WebSocket-Key", "AAECAwQFBgcICQoLDA0ODxA="}}},
         400,
         "malformed"},
        {{"GET",
          1,
          1,
          {H_HOST,
           H_UPGRADE,
           H_CONN,
           H_VERSION,
           {"Sec-WebSocket-Key", "AAECAwQFBgcICQoLDA0ODxAR"}}},
         400,
         "malformed"},
        /* nonzero bits under the padding, bad alphabet, missing padding, 25 chars */
        {{"GET",
          1,
          1,
          {H_HOST,
           H_UPGRADE,
           H_CONN,
           H_VERSION,
           {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZR=="}}},
         400,
         "malformed"},
        {{"GET",
          1,
          1,
          {H_HOST,
           H_UPGRADE,
           H_CONN,
           H_VERSION,
           {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZ!=="}}},
         400,
         "malformed"},
        {{"GET",
          1,
          1,
          {H_HOST, H_UPGRADE, H_CONN, H_VERSION, {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ"}}},
         400,
         "malformed"},
        {{"GET",
          1,
          1,
          {H_HOST, H_UPGRADE, H_CONN, H_VERSION, {"Sec-WebSocket-Key", SAMPLE_KEY "="}}},
         400,
         "malformed"},
        {{"GET",
          1,
          1,
          {H_HOST, H_UPGRADE, H_CONN, H_VERSION, {"Sec-WebSocket-Key", "the sample nonce"}}},
         400,
         "malformed"},
        /* check order: the first failing step names the status */
        {{"POST", 1, 0, {H_UPGRADE}}, 405, "GET"},
        {{"GET", 1, 0, {H_UPGRADE, H_CONN, H_VERSION, H_KEY}}, 400, "HTTP/1.1"},
        {{"GET", 1, 1, {{"Upgrade", "h2c"}}}, 400, "Host"},
        {{"GET", 1, 1, {H_HOST, {"Sec-WebSocket-Version", "8"}}}, 400, "Upgrade"},
        {{"GET", 1, 1, {H_HOST, H_UPGRADE, {"Sec-WebSocket-Version", "8"}}}, 400, "Connection"},
        {{"GET", 1, 1, {H_HOST, H_UPGRADE, H_CONN, {"Sec-WebSocket-Key", "bad"}}}, 426, "Version"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ws_hs_result_t out;
        int st = check(&bad[i].req, &out);
        if (st != bad[i].status || out.status != st)
            fail_msg("case %zu: got %d, want %d", i, st, bad[i].status);
        if (!out.reason || !strstr(out.reason, bad[i].reason))
            fail_msg("case %zu: reason \"%s\" lacks \"%s\"", i, out.reason ? out.reason : "(null)",
                     bad[i].reason);
        assert_int_equal(out.accept[0], '\0');
    }
}

static void test_handshake_is_upgrade_looks_for_websocket_token(void **state)
{
    req_t r;
    req_spec_t yes = {"GET", 1, 1, {{"upgrade", "foo, WebSocket"}}};
    req_spec_t split = {"GET", 1, 1, {{"Upgrade", "foo"}, {"Upgrade", "websocket"}}};
    req_spec_t no = {"GET", 1, 1, {{"Upgrade", "h2c"}, {"X-Upgrade", "websocket"}}};
    req_spec_t none = {"GET", 1, 1, {H_HOST}};
    build(&r, &yes);
    assert_true(ws_handshake_is_upgrade(&r.req));
    build(&r, &split);
    assert_true(ws_handshake_is_upgrade(&r.req));
    build(&r, &no);
    assert_false(ws_handshake_is_upgrade(&r.req));
    build(&r, &none);
    assert_false(ws_handshake_is_upgrade(&r.req));
}

/* --- headers and token lists --- */

static void test_header_find_ignores_case_and_returns_first(void **state)
{
    req_t r;
    req_spec_t s = {"GET", 1, 1, {{"Host", "a"}, {"X-Thing", "1"}, {"x-thing", "2"}}};
    build(&r, &s);
    assert_int_equal(ws_header_find(r.headers, r.req.nheaders, "host"), 0);
    assert_int_equal(ws_header_find(r.headers, r.req.nheaders, "X-THING"), 1);
    assert_int_equal(ws_header_find(r.headers, r.req.nheaders, "X-Thin"), -1);
    assert_int_equal(ws_header_find(r.headers, r.req.nheaders, "X-Things"), -1);
    assert_int_equal(ws_header_find(r.headers, 0, "Host"), -1);
}

static void test_token_list_has_matches_whole_tokens(void **state)
{
    static const struct {
        const char *list, *token;
        int want;
    } v[] = {
        {"Upgrade", "upgrade", 1},
        {"keep-alive, Upgrade", "upgrade", 1},
        {"keep-alive,Upgrade", "upgrade", 1},
        {" \tUPGRADE\t ", "upgrade", 1},
        {",,upgrade,,", "upgrade", 1},
        {"upgrade, keep-alive", "keep-alive", 1},
        {"upgraded", "upgrade", 0},
        {"pgrade", "upgrade", 0},
        {"keep-alive upgrade", "upgrade", 0},
        {"", "upgrade", 0},
        {" , ,", "upgrade", 0},
        {"upgrade", "", 0},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        size_t n = strlen(v[i].list);
        if (ws_token_list_has(at_guard(v[i].list, n), n, v[i].token) != v[i].want)
            fail_msg("\"%s\" has \"%s\": want %d", v[i].list, v[i].token, v[i].want);
    }
}

static void test_token_next_yields_trimmed_nonempty_tokens(void **state)
{
    static const char list[] = " a ,, bb\t,c d ,\t, ";
    static const char *want[] = {"a", "bb", "c d"};
    const char *p = at_guard(list, sizeof list - 1);
    size_t pos = 0, n, k = 0;
    const char *tok;
    while (ws_token_next(p, sizeof list - 1, &pos, &tok, &n)) {
        assert_true(k < 3);
        assert_int_equal(n, strlen(want[k]));
        assert_memory_equal(tok, want[k], n);
        k++;
    }
    assert_int_equal(k, 3);
    /* Stays at the end once exhausted. */
    assert_int_equal(ws_token_next(p, sizeof list - 1, &pos, &tok, &n), 0);
    pos = 0;
    assert_int_equal(ws_token_next(p, 0, &pos, &tok, &n), 0);
}

/* --- same origin --- */

static void test_handshake_same_origin_table(void **state)
{
    static const struct {
        const char *origin, *host;
        int want;
    } v[] = {
        {"http://example.com", "example.com", 1},
        {"https://example.com", "example.com", 1},
        {"ws://example.com", "example.com", 1},
        {"wss://example.com", "example.com", 1},
        {"http://example.com:8000", "example.com:8000", 1},
        {"https://example.com:8443", "example.com:8443", 1},
        {"http://example.com", "example.com:80", 1},
        {"https://example.com", "example.com:443", 1},
        {"http://example.com:80", "example.com", 1},
        {"https://example.com:443", "example.com", 1},
        {"HTTP://Example.COM", "example.com", 1},
        {"http://example.com", "EXAMPLE.com", 1},
        {"http://[::1]:8000", "[::1]:8000", 1},
        {"http://[::1]", "[::1]", 1},
        {"http://[::ABCD]:80", "[::abcd]", 1},
        {"http://127.0.0.1:8000", "127.0.0.1:8000", 1},
        {"http://example.com:08000", "example.com:8000", 1},
        /* mismatches */
        {"http://example.com", "example.com:8000", 0},
        {"http://example.com:8000", "example.com", 0},
        {"https://example.com", "example.com:80", 0},
        {"http://example.com", "example.com:443", 0},
        {"http://example.com:8000", "example.com:8001", 0},
        {"http://evil.com", "example.com", 0},
        {"http://example.com.evil.com", "example.com", 0},
        {"http://example.co", "example.com", 0},
        {"http://[::1]:8000", "[::2]:8000", 0},
        {"http://[::1]:8000", "::1:8000", 0},
        /* malformed or opaque */
        {"null", "example.com", 0},
        {"", "example.com", 0},
        {"http://", "example.com", 0},
        {"example.com", "example.com", 0},
        {"ftp://example.com", "example.com", 0},
        {"file://example.com", "example.com", 0},
        {"http://example.com/", "example.com", 0},
        {"http://example.com/path", "example.com", 0},
        {"http://user@example.com", "example.com", 0},
        {"http://example.com:", "example.com", 0},
        {"http://example.com:x", "example.com", 0},
        {"http://example.com:65536", "example.com:65536", 0},
        {"http://example.com:-1", "example.com", 0},
        {"http://[::1", "[::1", 0},
        {"http://[]:80", "[]:80", 0},
        {"http://[::1]x", "[::1]", 0},
        {"http://exa mple.com", "exa mple.com", 0},
        {"http://example.com", "", 0},
        {"http://example.com", "example.com:", 0},
        {"http://example.com", ":80", 0},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        size_t on = strlen(v[i].origin), hn = strlen(v[i].host);
        /* Each input sits at its own guard page in turn, so over-reads of either fault. */
        char host_copy[64];
        memcpy(host_copy, v[i].host, hn);
        int got = ws_handshake_same_origin(at_guard(v[i].origin, on), on, host_copy, hn);
        if (got != v[i].want)
            fail_msg("origin \"%s\" host \"%s\": got %d want %d", v[i].origin, v[i].host, got,
                     v[i].want);
        char origin_copy[64];
        memcpy(origin_copy, v[i].origin, on);
        got = ws_handshake_same_origin(origin_copy, on, at_guard(v[i].host, hn), hn);
        assert_int_equal(got, v[i].want);
    }
}

static void test_handshake_same_origin_rejects_null_pointers(void **state)
{
    assert_int_equal(ws_handshake_same_origin(NULL, 0, "example.com", 11), 0);
    assert_int_equal(ws_handshake_same_origin("http://example.com", 18, NULL, 0), 0);
}

/* --- the 101 response --- */

#define RESP_HEAD                                                                                  \
    "HTTP/1.1 101 Switching Protocols\r\n"                                                         \
    "Upgrade: websocket\r\n"                                                                       \
    "Connection: Upgrade\r\n"                                                                      \
    "Sec-WebSocket-Accept: " SAMPLE_ACCEPT "\r\n"

static void test_handshake_response_formats_minimal_101(void **state)
{
    char out[512];
    long n = ws_handshake_response(out, sizeof out, SAMPLE_ACCEPT, NULL, NULL);
    assert_int_equal(n, (long)strlen(RESP_HEAD "\r\n"));
    assert_string_equal(out, RESP_HEAD "\r\n");
}

static void test_handshake_response_adds_protocol_and_extensions(void **state)
{
    char out[512];
    static const char both[] = RESP_HEAD "Sec-WebSocket-Protocol: chat\r\n"
                                         "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n";
    long n = ws_handshake_response(out, sizeof out, SAMPLE_ACCEPT, "chat", "permessage-deflate");
    assert_int_equal(n, (long)sizeof both - 1);
    assert_string_equal(out, both);

    n = ws_handshake_response(out, sizeof out, SAMPLE_ACCEPT, "chat", NULL);
    assert_string_equal(out, RESP_HEAD "Sec-WebSocket-Protocol: chat\r\n\r\n");
    assert_int_equal(n, (long)strlen(out));

    n = ws_handshake_response(out, sizeof out, SAMPLE_ACCEPT, NULL, "x-ext");
    assert_string_equal(out, RESP_HEAD "Sec-WebSocket-Extensions: x-ext\r\n\r\n");
    assert_int_equal(n, (long)strlen(out));
}

static void test_handshake_response_rejects_too_small_buffer(void **state)
{
    static const char want[] = RESP_HEAD "Sec-WebSocket-Protocol: chat\r\n\r\n";
    char out[sizeof want];
    memset(out, 'X', sizeof out);
    /* The text plus its NUL must fit; one byte less fails and writes nothing. */
    assert_int_equal(ws_handshake_response(out, sizeof want - 1, SAMPLE_ACCEPT, "chat", NULL),
                     WS_EINVAL);
    assert_int_equal(out[0], 'X');
    assert_int_equal(ws_handshake_response(out, 0, SAMPLE_ACCEPT, "chat", NULL), WS_EINVAL);
    assert_int_equal(ws_handshake_response(out, sizeof want, SAMPLE_ACCEPT, "chat", NULL),
                     (long)sizeof want - 1);
    assert_string_equal(out, want);
}

static void test_handshake_response_rejects_header_injection(void **state)
{
    char out[512];
    assert_int_equal(
        ws_handshake_response(out, sizeof out, SAMPLE_ACCEPT, "chat\r\nX-Evil: 1", NULL),
        WS_EINVAL);
    assert_int_equal(ws_handshake_response(out, sizeof out, SAMPLE_ACCEPT, NULL, "x\nX-Evil: 1"),
                     WS_EINVAL);
    assert_int_equal(ws_handshake_response(out, sizeof out, NULL, NULL, NULL), WS_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha1_hashes_fips_vectors),
        cmocka_unit_test(test_sha1_hashes_million_a_in_any_chunking),
        cmocka_unit_test(test_sha1_pads_at_block_boundaries),
        cmocka_unit_test(test_base64_encodes_rfc4648_vectors),
        cmocka_unit_test(test_base64_decodes_rfc4648_vectors),
        cmocka_unit_test(test_base64_roundtrips_every_byte_value),
        cmocka_unit_test(test_base64_rejects_noncanonical_and_malformed_input),
        cmocka_unit_test(test_handshake_accepts_rfc6455_sample_key),
        cmocka_unit_test(test_handshake_accepts_rfc6455_sample_request),
        cmocka_unit_test(test_handshake_leaves_optional_fields_null_when_absent),
        cmocka_unit_test(test_handshake_accepts_case_and_token_list_variants),
        cmocka_unit_test(test_handshake_rejects_post_with_405),
        cmocka_unit_test(test_handshake_rejects_version_8_with_426),
        cmocka_unit_test(test_handshake_rejects_duplicate_key_with_400),
        cmocka_unit_test(test_handshake_rejects_malformed_requests),
        cmocka_unit_test(test_handshake_is_upgrade_looks_for_websocket_token),
        cmocka_unit_test(test_header_find_ignores_case_and_returns_first),
        cmocka_unit_test(test_token_list_has_matches_whole_tokens),
        cmocka_unit_test(test_token_next_yields_trimmed_nonempty_tokens),
        cmocka_unit_test(test_handshake_same_origin_table),
        cmocka_unit_test(test_handshake_same_origin_rejects_null_pointers),
        cmocka_unit_test(test_handshake_response_formats_minimal_101),
        cmocka_unit_test(test_handshake_response_adds_protocol_and_extensions),
        cmocka_unit_test(test_handshake_response_rejects_too_small_buffer),
        cmocka_unit_test(test_handshake_response_rejects_header_injection),
    };
    return cmocka_run_group_tests(tests, setup_guard, teardown_guard);
}
