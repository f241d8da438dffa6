/* Unit tests for deflate.c. Longer than our ~600-line guide on purpose: one file per codec, and
 * most of it is tables of offers and streams. */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>
#include <zlib.h>

#include "deflate.h"
#include "error.h"

/* --- helpers --- */

static const uint8_t HELLO_RFC[] = {0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00};

static ws_deflate_config_t cfg_base(void)
{
    ws_deflate_config_t c;
    ws_deflate_config_default(&c);
    c.enabled = 1;
    c.server_no_context_takeover = 0;
    c.release_idle = 0;
    return c;
}

static ws_deflate_params_t params_of(int snct, int cnct, int sbits)
{
    ws_deflate_params_t p = {snct, cnct, sbits, 15};
    return p;
}

/* A codec with the given context modes; release_idle as given. */
static void codec(ws_deflate_t *d, int snct, int cnct, int release_idle)
{
    ws_deflate_config_t c = cfg_base();
    c.release_idle = release_idle;
    ws_deflate_params_t p = params_of(snct, cnct, 15);
    ws_deflate_init(d, &c, &p);
}

static void assert_buf(const ws_buf_t *b, const void *want, size_t n)
{
    assert_int_equal(b->len, n);
    if (n)
        assert_memory_equal(b->data, want, n);
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)rng;
}

/* Compressible-ish random data: runs of a small alphabet mixed with noise. */
static void fill(uint8_t *p, size_t n, int noise)
{
    for (size_t i = 0; i < n; i++)
        p[i] = noise ? (uint8_t)rnd() : (uint8_t)("abcab cabbage\n"[rnd() % 14]);
}

/* A copy of src[0..n) that ends right before a PROT_NONE page: any over-read faults. */
static uint8_t *guard_copy(const void *src, size_t n, uint8_t **map, size_t *map_len)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t data = (n + page - 1) / page * page + page;
    *map_len = data + page;
    *map = mmap(NULL, *map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(*map != MAP_FAILED);
    assert_int_equal(mprotect(*map + data, page, PROT_NONE), 0);
    memcpy(*map + data - n, src, n);
    return *map + data - n;
}

/* Feed in[0..len) to the inflater in pieces of step bytes (0: all at once), then end. */
static int inflate_steps(ws_deflate_t *d, const uint8_t *in, size_t len, size_t step, size_t max,
                         ws_buf_t *out)
{
    if (step == 0)
        step = len ? len : 1;
    for (size_t off = 0; off < len; off += step) {
        size_t n = len - off < step ? len - off : step;
        int rc = ws_deflate_inflate_chunk(d, in + off, n, max, out);
        if (rc < 0)
            return rc;
    }
    return ws_deflate_inflate_end(d, max, out);
}

/* inflate_steps on a guard_copy of src: reading past the input faults. */
static int inflate_guarded(ws_deflate_t *d, const uint8_t *src, size_t len, size_t step, size_t max,
                           ws_buf_t *out)
{
    uint8_t *map;
    size_t map_len;
    const uint8_t *in = guard_copy(src, len, &map, &map_len);
    int rc = inflate_steps(d, in, len, step, max, out);
    munmap(map, map_len);
    return rc;
}

/* --- RFC 7692 section 7.2.3 examples --- */

static void test_deflate_compresses_hello_as_in_rfc(void **state)
{
    ws_deflate_t d;
    codec(&d, 0, 0, 0);
    ws_buf_t out;
    ws_buf_init(&out);
    assert_int_equal(ws_deflate_compress(&d, (const uint8_t *)"Hello", 5, &out), 0);
    assert_buf(&out, HELLO_RFC, sizeof HELLO_RFC);
    ws_buf_free(&out);
    ws_deflate_close(&d);
}

static void test_deflate_second_message_with_context_takeover_is_shorter(void **state)
{
    static const uint8_t second[] = {0xf2, 0x00, 0x11, 0x00, 0x00};
    ws_deflate_t d, peer;
    codec(&d, 0, 0, 0);
    codec(&peer, 0, 0, 0);
    ws_buf_t out, plain;
    ws_buf_init(&out);
    ws_buf_init(&plain);
    assert_int_equal(ws_deflate_compress(&d, (const uint8_t *)"Hello", 5, &out), 0);
    assert_buf(&out, HELLO_RFC, sizeof HELLO_RFC);
    out.len = 0;
    assert_int_equal(ws_deflate_compress(&d, (const uint8_t *)"Hello", 5, &out), 0);
    assert_buf(&out, second, sizeof second);

    /* The RFC bytes decode to "Hello" twice with a context-keeping inflater. */
    assert_int_equal(ws_deflate_inflate(&peer, HELLO_RFC, sizeof HELLO_RFC, 100, &plain), 0);
    assert_buf(&plain, "Hello", 5);
    plain.len = 0;
    assert_int_equal(ws_deflate_inflate(&peer, second, sizeof second, 100, &plain), 0);
    assert_buf(&plain, "Hello", 5);
    ws_buf_free(&out);
    ws_buf_free(&plain);
    ws_deflate_close(&d);
    ws_deflate_close(&peer);
}

static void test_deflate_inflates_rfc_examples(void **state)
{
    static const uint8_t stored[] = {0x00, 0x05, 0x00, 0xfa, 0xff, 0x48,
                                     0x65, 0x6c, 0x6c, 0x6f, 0x00};
    static const uint8_t bfinal[] = {0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00};
    static const uint8_t two_blocks[] = {0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff,
                                         0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00};
    const struct {
        const uint8_t *in;
        size_t len;
    } cases[] = {{HELLO_RFC, sizeof HELLO_RFC},
                 {stored, sizeof stored},
                 {bfinal, sizeof bfinal},
                 {two_blocks, sizeof two_blocks}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (size_t step = 0; step <= 3; step++) {
            ws_deflate_t d;
            codec(&d, 0, 0, 0);
            ws_buf_t out;
            ws_buf_init(&out);
            assert_int_equal(inflate_guarded(&d, cases[i].in, cases[i].len, step, 5, &out), 0);
            assert_buf(&out, "Hello", 5);
            /* The inflater is ready for the next message (after BFINAL it starts afresh). */
            out.len = 0;
            assert_int_equal(ws_deflate_inflate(&d, HELLO_RFC, sizeof HELLO_RFC, 5, &out), 0);
            assert_buf(&out, "Hello", 5);
            ws_buf_free(&out);
            ws_deflate_close(&d);
        }
    }
}

static void test_deflate_inflates_rfc_fragmented_message(void **state)
{
    /* RFC 7692 7.2.3.1 / 7.2.3.2: "Hello" split over two frames. */
    static const uint8_t f1[] = {0xf2, 0x48, 0xcd};
    static const uint8_t f2[] = {0xc9, 0xc9, 0x07, 0x00};
    ws_deflate_t d;
    codec(&d, 0, 0, 0);
    ws_buf_t out;
    ws_buf_init(&out);
    assert_int_equal(ws_deflate_inflate_chunk(&d, f1, sizeof f1, 5, &out), 0);
    assert_int_equal(ws_deflate_inflate_chunk(&d, f2, sizeof f2, 5, &out), 0);
    assert_int_equal(ws_deflate_inflate_end(&d, 5, &out), 0);
    assert_buf(&out, "Hello", 5);
    ws_buf_free(&out);
    ws_deflate_close(&d);
}

static void test_deflate_empty_message_is_one_zero_byte(void **state)
{
    static const uint8_t zero[] = {0x00};
    ws_deflate_t d;
    codec(&d, 1, 1, 1);
    ws_buf_t out;
    ws_buf_init(&out);
    assert_int_equal(ws_deflate_compress(&d, NULL, 0, &out), 0);
    assert_buf(&out, zero, 1);
    out.len = 0;
    assert_int_equal(ws_deflate_inflate(&d, zero, 1, 0, &out), 0);
    assert_int_equal(out.len, 0);
    /* No chunk at all (a compressed message with an empty payload) is also empty. */
    assert_int_equal(ws_deflate_inflate_end(&d, 0, &out), 0);
    assert_int_equal(out.len, 0);
    ws_buf_free(&out);
    ws_deflate_close(&d);
}

/* --- negotiation --- */

typedef struct {
    const char *offer;
    int rc;
    const char *resp;
    int sbits, cbits, snct, cnct;
} neg_case_t;

static void run_neg(const ws_deflate_config_t *c, const neg_case_t *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char resp[WS_DEFLATE_RESPONSE_MAX];
        strcpy(resp, "untouched");
        ws_deflate_params_t p = {-1, -1, -1, -1};
        int rc = ws_deflate_negotiate(c, t[i].offer, strlen(t[i].offer), &p, resp, sizeof resp);
        if (rc != t[i].rc)
            fail_msg("offer \"%s\": rc %d, want %d", t[i].offer, rc, t[i].rc);
        if (rc != 1) {
            assert_string_equal(resp, "untouched");
            assert_int_equal(p.server_max_window_bits, -1);
            continue;
        }
        if (strcmp(resp, t[i].resp) != 0)
            fail_msg("offer \"%s\": response \"%s\", want \"%s\"", t[i].offer, resp, t[i].resp);
        assert_int_equal(p.server_max_window_bits, t[i].sbits);
        assert_int_equal(p.client_max_window_bits, t[i].cbits);
        assert_int_equal(p.server_no_context_takeover, t[i].snct);
        assert_int_equal(p.client_no_context_takeover, t[i].cnct);
    }
}

#define PMD "permessage-deflate"

static void test_deflate_negotiates_single_offers(void **state)
{
    static const neg_case_t t[] = {
        {PMD, 1, PMD, 15, 15, 0, 0},
        {" " PMD " ", 1, PMD, 15, 15, 0, 0},
        {"PerMessage-Deflate; Client_Max_Window_Bits", 1, PMD, 15, 15, 0, 0},
        {PMD "; client_max_window_bits", 1, PMD, 15, 15, 0, 0},
        {PMD "; client_max_window_bits=10", 1, PMD, 15, 10, 0, 0},
        {PMD ";client_max_window_bits = \"9\"", 1, PMD, 15, 9, 0, 0},
        {PMD "; server_no_context_takeover", 1, PMD "; server_no_context_takeover", 15, 15, 1, 0},
        {PMD "; client_no_context_takeover", 1, PMD "; client_no_context_takeover", 15, 15, 0, 1},
        {PMD "; server_max_window_bits=10", 1, PMD "; server_max_window_bits=10", 10, 15, 0, 0},
        {PMD "; server_max_window_bits=15", 1, PMD "; server_max_window_bits=15", 15, 15, 0, 0},
        {PMD "; server_max_window_bits=\"1\\2\"", 1, PMD "; server_max_window_bits=12", 12, 15, 0,
         0},
        {PMD "; server_max_window_bits=9; client_max_window_bits; server_no_context_takeover; "
             "client_no_context_takeover",
         1,
         PMD "; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9",
         9, 15, 1, 1},
    };
    ws_deflate_config_t c = cfg_base();
    run_neg(&c, t, sizeof t / sizeof t[0]);
}

static void test_deflate_declines_invalid_offers(void **state)
{
    static const neg_case_t t[] = {
        {"", 0, NULL, 0, 0, 0, 0},
        {"x-webkit-deflate-frame", 0, NULL, 0, 0, 0, 0},
        {PMD "x", 0, NULL, 0, 0, 0, 0},
        {PMD " x", 0, NULL, 0, 0, 0, 0},
        {PMD ";", 0, NULL, 0, 0, 0, 0},
        {PMD "; ", 0, NULL, 0, 0, 0, 0},
        {PMD "; =10", 0, NULL, 0, 0, 0, 0},
        {PMD "; server_max_window_bits", 0, NULL, 0, 0, 0, 0},
        {PMD "; server_max_window_bits=", 0, NULL, 0, 0, 0, 0},
        {PMD "; server_max_window_bits=\"\"", 0, NULL, 0, 0, 0, 0},
        {PMD "; server_max_window_bits=\"10", 0, NULL, 0, 0, 0, 0},
        {PMD "; server_max_window_bits=7", 0, NULL, 0, 0, 0, 0},
        {PMD "; server_max_window_bits=16", 0, NULL, 0, 0, 0, 0},
        {PMD "; server_max_window_bits=abc", 0, NULL, 0, 0, 0, 0},
        {PMD "; server_max_window_bits=010", 0, NULL, 0, 0, 0, 0},
        {PMD "; server_max_window_bits=-9", 0, NULL, 0, 0, 0, 0},
        {PMD "; server_max_window_bits=99999999999999999999", 0, NULL, 0, 0, 0, 0},
        {PMD "; server_max_window_bits=8", 0, NULL, 0, 0, 0, 0}, /* zlib cannot honour 8 */
        {PMD "; client_max_window_bits=7", 0, NULL, 0, 0, 0, 0},
        {PMD "; client_max_window_bits=16", 0, NULL, 0, 0, 0, 0},
        {PMD "; client_max_window_bits=abc", 0, NULL, 0, 0, 0, 0},
        {PMD "; client_max_window_bits=", 0, NULL, 0, 0, 0, 0},
        {PMD "; server_no_context_takeover=1", 0, NULL, 0, 0, 0, 0},
        {PMD "; client_no_context_takeover=\"\"", 0, NULL, 0, 0, 0, 0},
        {PMD "; server_no_context_takeover; server_no_context_takeover", 0, NULL, 0, 0, 0, 0},
        {PMD "; client_no_context_takeover; client_no_context_takeover", 0, NULL, 0, 0, 0, 0},
        {PMD "; server_max_window_bits=10; server_max_window_bits=10", 0, NULL, 0, 0, 0, 0},
        {PMD "; client_max_window_bits; client_max_window_bits=10", 0, NULL, 0, 0, 0, 0},
        {PMD "; client_max_window_bits=10; client_max_window_bits", 0, NULL, 0, 0, 0, 0},
        {PMD "; foo", 0, NULL, 0, 0, 0, 0},
        {PMD "; foo=1", 0, NULL, 0, 0, 0, 0},
        {PMD "; mux; server_no_context_takeover", 0, NULL, 0, 0, 0, 0},
    };
    ws_deflate_config_t c = cfg_base();
    run_neg(&c, t, sizeof t / sizeof t[0]);
}

static void test_deflate_picks_first_acceptable_of_several_offers(void **state)
{
    static const neg_case_t t[] = {
        {PMD "; server_max_window_bits=12, " PMD, 1, PMD "; server_max_window_bits=12", 12, 15, 0,
         0},
        {PMD "; foo, " PMD "; server_max_window_bits=12", 1, PMD "; server_max_window_bits=12", 12,
         15, 0, 0},
        {PMD "; server_max_window_bits=8, " PMD "; client_no_context_takeover", 1,
         PMD "; client_no_context_takeover", 15, 15, 0, 1},
        {"x-webkit-deflate-frame, " PMD, 1, PMD, 15, 15, 0, 0},
        {"foo; a=\"x,y\", " PMD, 1, PMD, 15, 15, 0, 0},
        {PMD "; foo=\"a, " PMD "\", " PMD "; client_max_window_bits=11", 1, PMD, 15, 11, 0, 0},
        {",, " PMD ",", 1, PMD, 15, 15, 0, 0},
        {PMD "; server_max_window_bits=7, " PMD "; server_max_window_bits=16", 0, NULL, 0, 0, 0, 0},
    };
    ws_deflate_config_t c = cfg_base();
    run_neg(&c, t, sizeof t / sizeof t[0]);
}

static void test_deflate_applies_server_preferences(void **state)
{
    ws_deflate_config_t c = cfg_base();
    c.server_max_window_bits = 12;
    c.client_max_window_bits = 10;
    c.server_no_context_takeover = 1;
    c.client_no_context_takeover = 1;
    static const neg_case_t t[] = {
        /* The client allows client_max_window_bits: we ask for 10. */
        {PMD "; client_max_window_bits", 1,
         PMD "; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12; "
             "client_max_window_bits=10",
         12, 10, 1, 1},
        /* Without the parameter in the offer it must not appear in the response. */
        {PMD, 1,
         PMD "; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12",
         12, 15, 1, 1},
        /* The client already limits itself below what we want. */
        {PMD "; client_max_window_bits=9", 1,
         PMD "; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12",
         12, 9, 1, 1},
        {PMD "; client_max_window_bits=14", 1,
         PMD "; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12; "
             "client_max_window_bits=10",
         12, 10, 1, 1},
        /* The smaller of the offered and configured server windows wins. */
        {PMD "; server_max_window_bits=10", 1,
         PMD "; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10",
         10, 15, 1, 1},
        {PMD "; server_max_window_bits=14", 1,
         PMD "; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12",
         12, 15, 1, 1},
    };
    run_neg(&c, t, sizeof t / sizeof t[0]);

    /* A configured window of 8 works as 9. */
    c = cfg_base();
    c.server_max_window_bits = 8;
    static const neg_case_t t8[] = {{PMD, 1, PMD "; server_max_window_bits=9", 9, 15, 0, 0}};
    run_neg(&c, t8, 1);
}

static void test_deflate_negotiation_disabled_or_misused(void **state)
{
    ws_deflate_config_t c = cfg_base();
    ws_deflate_params_t p;
    char resp[WS_DEFLATE_RESPONSE_MAX];
    c.enabled = 0;
    assert_int_equal(ws_deflate_negotiate(&c, PMD, strlen(PMD), &p, resp, sizeof resp), 0);
    c.enabled = 1;
    assert_int_equal(ws_deflate_negotiate(&c, NULL, 0, &p, resp, sizeof resp), 0);
    assert_int_equal(ws_deflate_negotiate(&c, PMD, strlen(PMD), &p, resp, sizeof resp - 1),
                     WS_EINVAL);
    c.mem_level = 0;
    assert_int_equal(ws_deflate_negotiate(&c, PMD, strlen(PMD), &p, resp, sizeof resp), WS_EINVAL);
    c = cfg_base();
    c.server_max_window_bits = 16;
    assert_int_equal(ws_deflate_negotiate(&c, PMD, strlen(PMD), &p, resp, sizeof resp), WS_EINVAL);

    /* The longest possible response fits. */
    c = cfg_base();
    c.server_no_context_takeover = c.client_no_context_takeover = 1;
    c.server_max_window_bits = 15;
    c.client_max_window_bits = 14;
    const char *o = PMD "; server_max_window_bits=15; client_max_window_bits";
    assert_int_equal(ws_deflate_negotiate(&c, o, strlen(o), &p, resp, sizeof resp), 1);
    assert_true(strlen(resp) + 2 < WS_DEFLATE_RESPONSE_MAX);
}

/* --- limits and errors --- */

static void test_deflate_inflate_bomb_stops_at_max_out(void **state)
{
    /* 64 MiB of zeros deflates to about 64 KB. */
    z_stream z;
    memset(&z, 0, sizeof z);
    assert_int_equal(deflateInit2(&z, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY), Z_OK);
    uint8_t *zeros = calloc(1, 1 << 20);
    ws_buf_t bomb;
    ws_buf_init(&bomb);
    ws_buf_reserve(&bomb, 256 << 10);
    for (int i = 0; i < 64; i++) {
        z.next_in = zeros;
        z.avail_in = 1 << 20;
        z.next_out = bomb.data + bomb.len;
        z.avail_out = (uInt)(bomb.cap - bomb.len);
        assert_int_equal(deflate(&z, i == 63 ? Z_SYNC_FLUSH : Z_NO_FLUSH), Z_OK);
        assert_int_equal(z.avail_in, 0);
        bomb.len = bomb.cap - z.avail_out;
    }
    deflateEnd(&z);
    free(zeros);
    bomb.len -= 4;
    assert_true(bomb.len < 128 << 10);

    const size_t max = 1 << 20;
    for (size_t step = 0; step <= 1000; step += 1000) {
        ws_deflate_t d;
        codec(&d, 0, 0, 0);
        ws_buf_t out;
        ws_buf_init(&out);
        ws_deflate_stats_reset_peak();
        ws_deflate_stats_t s0, s1;
        ws_deflate_stats(&s0);
        assert_int_equal(inflate_steps(&d, bomb.data, bomb.len, step, max, &out), WS_ETOOBIG);
        ws_deflate_stats(&s1);
        assert_int_equal(out.len, max + 1);
        assert_true(out.cap <= max + 1);
        assert_true(s1.mem_peak - s0.mem < 64 << 10);
        /* Sticky: nothing more is inflated. */
        assert_int_equal(ws_deflate_inflate_chunk(&d, HELLO_RFC, sizeof HELLO_RFC, max, &out),
                         WS_ETOOBIG);
        assert_int_equal(ws_deflate_inflate_end(&d, max, &out), WS_ETOOBIG);
        assert_int_equal(out.len, max + 1);
        ws_buf_free(&out);
        ws_deflate_close(&d);
    }
    ws_buf_free(&bomb);
}

static void test_deflate_max_out_is_inclusive(void **state)
{
    for (size_t max = 3; max <= 6; max++) {
        ws_deflate_t d;
        codec(&d, 0, 0, 0);
        ws_buf_t out;
        ws_buf_init(&out);
        int rc = ws_deflate_inflate(&d, HELLO_RFC, sizeof HELLO_RFC, max, &out);
        assert_int_equal(rc, max >= 5 ? 0 : WS_ETOOBIG);
        assert_int_equal(out.len, max >= 5 ? 5 : max + 1);
        ws_buf_free(&out);
        ws_deflate_close(&d);
    }
}

static void test_deflate_rejects_corrupt_input(void **state)
{
    static const uint8_t bad_type[] = {0xff, 0xff, 0xff};               /* block type 3 */
    static const uint8_t bad_stored[] = {0x00, 0x05, 0x00, 0x00, 0x00}; /* NLEN != ~LEN */
    static const uint8_t truncated[] = {0xf2, 0x48, 0xcd};              /* ends inside a block */
    static const uint8_t far_back[] = {0xf2, 0x00, 0x11, 0x00,
                                       0x00}; /* refers to a missing window */
    static const uint8_t after_final[] = {0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x42};
    const struct {
        const uint8_t *in;
        size_t len;
    } cases[] = {{bad_type, sizeof bad_type},
                 {bad_stored, sizeof bad_stored},
                 {truncated, sizeof truncated},
                 {far_back, sizeof far_back},
                 {after_final, sizeof after_final}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (size_t step = 0; step <= 1; step++) {
            ws_deflate_t d;
            codec(&d, 0, 0, 0);
            ws_buf_t out;
            ws_buf_init(&out);
            int rc = inflate_guarded(&d, cases[i].in, cases[i].len, step, 1000, &out);
            if (rc != WS_EINFLATE)
                fail_msg("case %zu step %zu: rc %d", i, step, rc);
            assert_int_equal(ws_deflate_inflate_end(&d, 1000, &out), WS_EINFLATE);
            ws_buf_free(&out);
            ws_deflate_close(&d);
        }
    }
}

static void test_deflate_no_context_takeover_resets_per_message(void **state)
{
    uint8_t msg[2000];
    fill(msg, sizeof msg, 0);
    for (int release = 0; release <= 1; release++) {
        ws_deflate_t d;
        codec(&d, 1, 1, release);
        ws_buf_t a, b, plain;
        ws_buf_init(&a);
        ws_buf_init(&b);
        ws_buf_init(&plain);
        assert_int_equal(ws_deflate_compress(&d, msg, sizeof msg, &a), 0);
        assert_int_equal(ws_deflate_mem(&d) == 0, release);
        assert_int_equal(ws_deflate_compress(&d, msg, sizeof msg, &b), 0);
        /* Without context the same message compresses to the same bytes. */
        assert_int_equal(a.len, b.len);
        assert_memory_equal(a.data, b.data, a.len);
        assert_true(a.len < sizeof msg / 2);

        /* The inflater forgets between messages: each decodes on its own, in any order. */
        assert_int_equal(ws_deflate_inflate(&d, b.data, b.len, sizeof msg, &plain), 0);
        assert_int_equal(ws_deflate_mem(&d) == 0, release);
        assert_int_equal(ws_deflate_inflate(&d, a.data, a.len, sizeof msg, &plain), 0);
        assert_int_equal(plain.len, 2 * sizeof msg);
        assert_memory_equal(plain.data, msg, sizeof msg);
        assert_memory_equal(plain.data + sizeof msg, msg, sizeof msg);
        ws_buf_free(&a);
        ws_buf_free(&b);
        ws_buf_free(&plain);
        ws_deflate_close(&d);
        assert_int_equal(ws_deflate_mem(&d), 0);
    }
}

static void test_deflate_context_takeover_keeps_state(void **state)
{
    uint8_t msg[2000];
    fill(msg, sizeof msg, 0);
    ws_deflate_t d;
    codec(&d, 0, 0, 1); /* release_idle has no effect while context is kept */
    ws_buf_t a, b;
    ws_buf_init(&a);
    ws_buf_init(&b);
    assert_int_equal(ws_deflate_compress(&d, msg, sizeof msg, &a), 0);
    assert_true(ws_deflate_mem(&d) > 0);
    assert_int_equal(ws_deflate_compress(&d, msg, sizeof msg, &b), 0);
    assert_true(b.len < a.len / 4);
    ws_buf_free(&a);
    ws_buf_free(&b);
    ws_deflate_close(&d);
}

static void test_deflate_memory_cap_falls_back_and_refuses(void **state)
{
    ws_deflate_t d, peer;
    codec(&d, 1, 1, 1);
    codec(&peer, 0, 0, 0);
    ws_buf_t out, plain;
    ws_buf_init(&out);
    ws_buf_init(&plain);
    ws_deflate_stats_t s0, s1;
    ws_deflate_stats(&s0);
    ws_deflate_set_mem_limit(ws_deflate_mem_total() + 1000);

    assert_int_equal(ws_deflate_compress(&d, (const uint8_t *)"Hello", 5, &out), WS_ENOMEM);
    assert_int_equal(out.len, 0);
    assert_int_equal(ws_deflate_compress_once(15, 6, 8, (const uint8_t *)"Hello", 5, &out),
                     WS_ENOMEM);
    assert_int_equal(out.len, 0);
    assert_int_equal(ws_deflate_inflate(&d, HELLO_RFC, sizeof HELLO_RFC, 100, &plain), WS_ENOMEM);
    assert_int_equal(ws_deflate_mem(&d), 0);
    ws_deflate_stats(&s1);
    assert_int_equal(s1.deflate_fallbacks - s0.deflate_fallbacks, 2);
    assert_int_equal(s1.inflate_refused - s0.inflate_refused, 1);
    assert_int_equal(s1.mem, s0.mem);
    assert_int_equal(s1.mem_limit, s0.mem + 1000);

    /* A cap that fits the inflater state (~7 KB) but not its 32 KB window:
     * refused at the first output. */
    ws_deflate_set_mem_limit(ws_deflate_mem_total() + 16000);
    assert_int_equal(ws_deflate_inflate(&peer, HELLO_RFC, sizeof HELLO_RFC, 100, &plain),
                     WS_ENOMEM);

    /* Lifting the cap: compression works again on the same connection. */
    ws_deflate_set_mem_limit(0);
    assert_int_equal(ws_deflate_compress(&d, (const uint8_t *)"Hello", 5, &out), 0);
    assert_buf(&out, HELLO_RFC, sizeof HELLO_RFC);
    ws_buf_free(&out);
    ws_buf_free(&plain);
    ws_deflate_close(&d);
    ws_deflate_close(&peer);
}

/* --- round trips --- */

static void test_deflate_round_trips_random_data(void **state)
{
    static const size_t sizes[] = {0,    1,     2,     5,     100,       1023,  1024,
                                   4096, 32767, 32768, 32769, 65536 + 7, 300000};
    static const size_t steps[] = {0, 1, 7, 4096};
    uint8_t *msg = malloc(300000);
    for (int mode = 0; mode < 4; mode++) {
        int nct = mode & 1, release = mode >> 1;
        for (int sbits = 9; sbits <= 15; sbits += 3) {
            ws_deflate_config_t c = cfg_base();
            c.release_idle = release;
            ws_deflate_params_t p = params_of(nct, 0, sbits);
            ws_deflate_params_t q = params_of(0, nct, 15);
            ws_deflate_t tx, rx;
            ws_deflate_init(&tx, &c, &p);
            ws_deflate_init(&rx, &c, &q);
            ws_buf_t z, plain;
            ws_buf_init(&z);
            ws_buf_init(&plain);
            for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
                for (int noise = 0; noise <= 1; noise++) {
                    size_t n = sizes[i];
                    size_t step = steps[(i + (size_t)noise) % 4];
                    if (step == 1 && n > 5000)
                        step = 333;
                    fill(msg, n, noise);
                    z.len = plain.len = 0;
                    assert_int_equal(ws_deflate_compress(&tx, msg, n, &z), 0);
                    assert_int_equal(inflate_steps(&rx, z.data, z.len, step, n, &plain), 0);
                    assert_int_equal(plain.len, n);
                    if (n)
                        assert_memory_equal(plain.data, msg, n);
                }
            }
            ws_buf_free(&z);
            ws_buf_free(&plain);
            ws_deflate_close(&tx);
            ws_deflate_close(&rx);
        }
    }
    free(msg);
    assert_int_equal(ws_deflate_mem_total(), 0);
}

static void test_deflate_shared_frame_interleaves_with_context_takeover(void **state)
{
    uint8_t msg[3000], pub[1500];
    fill(msg, sizeof msg, 0);
    fill(pub, sizeof pub, 0);
    ws_deflate_t tx, rx, nct;
    codec(&tx, 0, 0, 0);
    codec(&rx, 0, 0, 0);
    ws_deflate_config_t c = cfg_base();
    ws_deflate_params_t small = params_of(1, 0, 10);
    ws_deflate_init(&nct, &c, &small);
    ws_buf_t z, shared, plain;
    ws_buf_init(&z);
    ws_buf_init(&shared);
    ws_buf_init(&plain);
    assert_int_equal(ws_deflate_compress_once(12, 6, 8, pub, sizeof pub, &shared), 0);
    assert_int_equal(ws_deflate_compress_once(8, 6, 8, pub, sizeof pub, &z), WS_EINVAL);

    /* A window of 10 cannot take a 12-bit frame; one of 15 can. */
    assert_int_equal(ws_deflate_use_shared(&nct, 12), 0);
    assert_int_equal(ws_deflate_use_shared(&nct, 10), 1);
    assert_int_equal(nct._def_reset, 0);

    /* own message, shared frame, own message: the client keeps one window throughout. */
    for (int round = 0; round < 3; round++) {
        z.len = plain.len = 0;
        assert_int_equal(ws_deflate_compress(&tx, msg, sizeof msg, &z), 0);
        assert_int_equal(ws_deflate_inflate(&rx, z.data, z.len, sizeof msg, &plain), 0);
        assert_int_equal(ws_deflate_use_shared(&tx, 12), 1);
        assert_int_equal(ws_deflate_inflate(&rx, shared.data, shared.len, sizeof pub, &plain), 0);
        assert_int_equal(plain.len, sizeof msg + sizeof pub);
        assert_memory_equal(plain.data, msg, sizeof msg);
        assert_memory_equal(plain.data + sizeof msg, pub, sizeof pub);
    }
    ws_buf_free(&z);
    ws_buf_free(&shared);
    ws_buf_free(&plain);
    ws_deflate_close(&tx);
    ws_deflate_close(&rx);
    ws_deflate_close(&nct);
}

static void test_deflate_threshold_decides_compression(void **state)
{
    ws_deflate_config_t c = cfg_base();
    c.threshold = 100;
    ws_deflate_params_t p = params_of(1, 1, 15);
    ws_deflate_t d;
    ws_deflate_init(&d, &c, &p);
    assert_false(ws_deflate_should_compress(&d, 99));
    assert_true(ws_deflate_should_compress(&d, 100));
    assert_int_equal(ws_deflate_mem(&d), 0); /* init allocates nothing */
    ws_deflate_close(&d);
}

/* --- memory measurement (reported, loosely bounded) --- */

static void measure(const char *label, int sbits, int mem_level, int nct, int release)
{
    ws_deflate_config_t c = cfg_base();
    c.mem_level = mem_level;
    c.release_idle = release;
    ws_deflate_params_t p = params_of(nct, nct, sbits);
    ws_deflate_t d;
    ws_deflate_init(&d, &c, &p);
    uint8_t msg[4096];
    fill(msg, sizeof msg, 0);
    ws_buf_t z, plain;
    ws_buf_init(&z);
    ws_buf_init(&plain);
    ws_deflate_stats_reset_peak();
    size_t base = ws_deflate_mem_total();
    assert_int_equal(ws_deflate_compress(&d, msg, sizeof msg, &z), 0);
    size_t def = ws_deflate_mem(&d);
    assert_int_equal(ws_deflate_inflate(&d, z.data, z.len, sizeof msg, &plain), 0);
    size_t both = ws_deflate_mem(&d);
    ws_deflate_stats_t s;
    ws_deflate_stats(&s);
    print_message("%-34s idle: deflate %6zu  deflate+inflate %6zu  peak %6zu bytes\n", label, def,
                  both, s.mem_peak - base);
    ws_buf_free(&z);
    ws_buf_free(&plain);
    ws_deflate_close(&d);
    assert_int_equal(ws_deflate_mem(&d), 0);
}

static void test_deflate_reports_memory_per_connection(void **state)
{
    measure("defaults (15 bits, memLevel 8)", 15, 8, 0, 0);
    measure("no context takeover, kept", 15, 8, 1, 0);
    measure("no context takeover, release_idle", 15, 8, 1, 1);
    measure("12 bits, memLevel 6", 12, 6, 0, 0);
    measure("10 bits, memLevel 4", 10, 4, 0, 0);
    measure("10 bits, memLevel 4, release_idle", 10, 4, 1, 1);
    assert_int_equal(ws_deflate_mem_total(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deflate_compresses_hello_as_in_rfc),
        cmocka_unit_test(test_deflate_second_message_with_context_takeover_is_shorter),
        cmocka_unit_test(test_deflate_inflates_rfc_examples),
        cmocka_unit_test(test_deflate_inflates_rfc_fragmented_message),
        cmocka_unit_test(test_deflate_empty_message_is_one_zero_byte),
        cmocka_unit_test(test_deflate_negotiates_single_offers),
        cmocka_unit_test(test_deflate_declines_invalid_offers),
        cmocka_unit_test(test_deflate_picks_first_acceptable_of_several_offers),
        cmocka_unit_test(test_deflate_applies_server_preferences),
        cmocka_unit_test(test_deflate_negotiation_disabled_or_misused),
        cmocka_unit_test(test_deflate_inflate_bomb_stops_at_max_out),
        cmocka_unit_test(test_deflate_max_out_is_inclusive),
        cmocka_unit_test(test_deflate_rejects_corrupt_input),
        cmocka_unit_test(test_deflate_no_context_takeover_resets_per_message),
        cmocka_unit_test(test_deflate_context_takeover_keeps_state),
        cmocka_unit_test(test_deflate_memory_cap_falls_back_and_refuses),
        cmocka_unit_test(test_deflate_round_trips_random_data),
        cmocka_unit_test(test_deflate_shared_frame_interleaves_with_context_takeover),
        cmocka_unit_test(test_deflate_threshold_decides_compression),
        cmocka_unit_test(test_deflate_reports_memory_per_connection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
