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
#include "frame.h"

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

/* Parse bytes placed at the guard page; also checks that every shorter prefix
 * of a good header asks for more instead of reading past it. */
static int parse_at_guard(const void *bytes, size_t n, unsigned rsv_allowed, int require_mask,
                          ws_frame_hdr_t *h)
{
    guard_t g;
    guard_init(&g, n);
    int rc = ws_frame_parse_header(guard_put(&g, bytes, n), n, rsv_allowed, require_mask, h);
    if (rc > 0) {
        for (size_t k = 0; k < (size_t)rc; k++) {
            ws_frame_hdr_t tmp;
            assert_int_equal(
                ws_frame_parse_header(guard_put(&g, bytes, k), k, rsv_allowed, require_mask, &tmp),
                WS_EAGAIN);
        }
    }
    guard_free(&g);
    return rc;
}

static const uint8_t rfc_key[4] = {0x37, 0xfa, 0x21, 0x3d};

/* --- RFC 6455 section 5.7 examples --- */

static void test_frame_parses_rfc_unmasked_hello(void **state)
{
    static const uint8_t f[] = {0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
    ws_frame_hdr_t h;
    assert_int_equal(parse_at_guard(f, sizeof(f), 0, 0, &h), 2);
    assert_int_equal(h.fin, 1);
    assert_int_equal(h.rsv, 0);
    assert_int_equal(h.opcode, WS_OP_TEXT);
    assert_int_equal(h.masked, 0);
    assert_int_equal(h.len, 5);
    assert_memory_equal(f + 2, "Hello", 5);
}

static void test_frame_parses_and_unmasks_rfc_masked_hello(void **state)
{
    uint8_t f[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    ws_frame_hdr_t h;
    assert_int_equal(parse_at_guard(f, sizeof(f), 0, 1, &h), 6);
    assert_int_equal(h.fin, 1);
    assert_int_equal(h.opcode, WS_OP_TEXT);
    assert_int_equal(h.masked, 1);
    assert_memory_equal(h.mask, rfc_key, 4);
    assert_int_equal(h.len, 5);
    ws_frame_mask(f + 6, 5, h.mask, 0);
    assert_memory_equal(f + 6, "Hello", 5);
}

static void test_frame_parses_rfc_fragmented_hello(void **state)
{
    static const uint8_t f1[] = {0x01, 0x03, 0x48, 0x65, 0x6c};
    static const uint8_t f2[] = {0x80, 0x02, 0x6c, 0x6f};
    ws_frame_hdr_t h;
    assert_int_equal(parse_at_guard(f1, sizeof(f1), 0, 0, &h), 2);
    assert_int_equal(h.fin, 0);
    assert_int_equal(h.opcode, WS_OP_TEXT);
    assert_int_equal(h.len, 3);
    assert_int_equal(parse_at_guard(f2, sizeof(f2), 0, 0, &h), 2);
    assert_int_equal(h.fin, 1);
    assert_int_equal(h.opcode, WS_OP_CONT);
    assert_int_equal(h.len, 2);
}

static void test_frame_parses_rfc_ping_and_masked_pong(void **state)
{
    static const uint8_t ping[] = {0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
    uint8_t pong[] = {0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    uint8_t mping[sizeof(pong)];
    ws_frame_hdr_t h;

    assert_int_equal(parse_at_guard(ping, sizeof(ping), 0, 0, &h), 2);
    assert_int_equal(h.opcode, WS_OP_PING);
    assert_int_equal(h.len, 5);
    assert_int_equal(parse_at_guard(pong, sizeof(pong), 0, 1, &h), 6);
    assert_int_equal(h.opcode, WS_OP_PONG);
    ws_frame_mask(pong + 6, 5, h.mask, 0);
    assert_memory_equal(pong + 6, "Hello", 5);

    size_t n = ws_frame_write_header(mping, WS_FRAME_FIN | WS_OP_PING, 5, rfc_key);
    assert_int_equal(n, 6);
    memcpy(mping + n, "Hello", 5);
    ws_frame_mask(mping + n, 5, rfc_key, 0);
    static const uint8_t want[] = {0x89, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    assert_memory_equal(mping, want, sizeof(want));
}

static void test_frame_parses_rfc_256_byte_and_64k_binary(void **state)
{
    static const uint8_t h256[] = {0x82, 0x7e, 0x01, 0x00};
    static const uint8_t h64k[] = {0x82, 0x7f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00};
    uint8_t out[WS_FRAME_HDR_MAX];
    ws_frame_hdr_t h;

    assert_int_equal(parse_at_guard(h256, sizeof(h256), 0, 0, &h), 4);
    assert_int_equal(h.opcode, WS_OP_BINARY);
    assert_int_equal(h.len, 256);
    assert_int_equal(ws_frame_write_header(out, 0x82, 256, NULL), 4);
    assert_memory_equal(out, h256, 4);

    assert_int_equal(parse_at_guard(h64k, sizeof(h64k), 0, 0, &h), 10);
    assert_int_equal(h.len, 65536);
    assert_int_equal(ws_frame_write_header(out, 0x82, 65536, NULL), 10);
    assert_memory_equal(out, h64k, 10);
}

/* --- length encodings --- */

static void test_frame_round_trips_every_length_encoding_boundary(void **state)
{
    static const struct {
        uint64_t len;
        size_t hdr;
    } cases[] = {
        {0, 2},      {1, 2},          {125, 2},         {126, 4},  {127, 4},
        {65535, 4},  {65536, 10},     {UINT64_C(1) << 32, 10},
        {(UINT64_C(1) << 63) - 1, 10},
    };
    uint8_t out[WS_FRAME_HDR_MAX];
    ws_frame_hdr_t h;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        for (int masked = 0; masked <= 1; masked++) {
            size_t n = ws_frame_write_header(out, WS_FRAME_FIN | WS_OP_BINARY, cases[i].len,
                                             masked ? rfc_key : NULL);
            assert_int_equal(n, cases[i].hdr + (masked ? 4 : 0));
            assert_int_equal(parse_at_guard(out, n, 0, masked, &h), (int)n);
            assert_true(h.len == cases[i].len);
            assert_int_equal(h.masked, (unsigned)masked);
            assert_int_equal(h.fin, 1);
            assert_int_equal(h.opcode, WS_OP_BINARY);
            if (masked)
                assert_memory_equal(h.mask, rfc_key, 4);
        }
    }

    assert_int_equal(ws_frame_write_header(out, 0x81, 125, NULL), 2);
    assert_int_equal(out[1], 125);
    assert_int_equal(ws_frame_write_header(out, 0x81, 126, NULL), 4);
    assert_memory_equal(out + 1, "\x7e\x00\x7e", 3);
    assert_int_equal(ws_frame_write_header(out, 0x81, 65535, NULL), 4);
    assert_memory_equal(out + 1, "\x7e\xff\xff", 3);
    assert_int_equal(ws_frame_write_header(out, 0x81, 65536, rfc_key), 14);
    assert_memory_equal(out + 1, "\xff\x00\x00\x00\x00\x00\x01\x00\x00\x37\xfa\x21\x3d", 13);
}

static void test_frame_accepts_control_payload_of_125(void **state)
{
    static const uint8_t f[] = {0x89, 0xfd, 1, 2, 3, 4};
    ws_frame_hdr_t h;
    assert_int_equal(parse_at_guard(f, sizeof(f), 0, 1, &h), 6);
    assert_int_equal(h.len, 125);
}

/* --- header errors --- */

static void test_frame_rejects_unmasked_client_frame(void **state)
{
    static const uint8_t f[] = {0x81, 0x05};
    ws_frame_hdr_t h;
    assert_int_equal(parse_at_guard(f, sizeof(f), 0, 1, &h), WS_EUNMASKED);
    assert_int_equal(parse_at_guard(f, sizeof(f), 0, 0, &h), 2);
}

static void test_frame_rejects_rsv_bits_without_extension(void **state)
{
    static const uint8_t rsv[] = {WS_FRAME_RSV1, WS_FRAME_RSV2, WS_FRAME_RSV3};
    ws_frame_hdr_t h;
    for (size_t i = 0; i < 3; i++) {
        uint8_t f[] = {(uint8_t)(0x81 | rsv[i]), 0x80, 1, 2, 3, 4};
        assert_int_equal(parse_at_guard(f, 1, 0, 1, &h), WS_ERSV);
        assert_int_equal(parse_at_guard(f, sizeof(f), 0, 1, &h), WS_ERSV);
    }
    /* RSV2 stays refused when only RSV1 is negotiated. */
    static const uint8_t f2[] = {0xa1, 0x80, 1, 2, 3, 4};
    assert_int_equal(parse_at_guard(f2, sizeof(f2), WS_FRAME_RSV1, 1, &h), WS_ERSV);
}

static void test_frame_accepts_rsv1_when_negotiated(void **state)
{
    static const uint8_t f[] = {0xc1, 0x80, 1, 2, 3, 4};
    ws_frame_hdr_t h;
    assert_int_equal(parse_at_guard(f, sizeof(f), WS_FRAME_RSV1, 1, &h), 6);
    assert_int_equal(h.rsv, WS_FRAME_RSV1);
}

static void test_frame_rejects_rsv_on_control_frame_even_when_negotiated(void **state)
{
    static const uint8_t f[] = {0xc9, 0x80, 1, 2, 3, 4};
    ws_frame_hdr_t h;
    assert_int_equal(parse_at_guard(f, sizeof(f), WS_FRAME_RSV1, 1, &h), WS_ERSV);
}

static void test_frame_rejects_reserved_opcodes(void **state)
{
    static const unsigned ops[] = {3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf};
    ws_frame_hdr_t h;
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        uint8_t f[] = {(uint8_t)(0x80 | ops[i]), 0x80, 1, 2, 3, 4};
        assert_int_equal(parse_at_guard(f, 1, 0, 1, &h), WS_EOPCODE);
        assert_int_equal(parse_at_guard(f, sizeof(f), 0, 1, &h), WS_EOPCODE);
    }
}

static void test_frame_rejects_fragmented_control_frame(void **state)
{
    static const uint8_t ops[] = {WS_OP_CLOSE, WS_OP_PING, WS_OP_PONG};
    ws_frame_hdr_t h;
    for (size_t i = 0; i < 3; i++) {
        uint8_t f[] = {ops[i], 0x80, 1, 2, 3, 4};
        assert_int_equal(parse_at_guard(f, sizeof(f), 0, 1, &h), WS_ECTRLFRAG);
    }
}

static void test_frame_rejects_control_payload_over_125(void **state)
{
    static const uint8_t f126[] = {0x89, 0xfe, 0x00, 0x7e, 1, 2, 3, 4};
    static const uint8_t f127[] = {0x88, 0xff, 0, 0, 0, 0, 0, 0, 0, 0x7e, 1, 2, 3, 4};
    ws_frame_hdr_t h;
    assert_int_equal(parse_at_guard(f126, 2, 0, 1, &h), WS_ECTRLLEN);
    assert_int_equal(parse_at_guard(f126, sizeof(f126), 0, 1, &h), WS_ECTRLLEN);
    assert_int_equal(parse_at_guard(f127, sizeof(f127), 0, 1, &h), WS_ECTRLLEN);
}

static void test_frame_rejects_64bit_length_with_top_bit_set(void **state)
{
    static const uint8_t f[] = {0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4};
    ws_frame_hdr_t h;
    assert_int_equal(parse_at_guard(f, 3, 0, 1, &h), WS_ELEN64);
    assert_int_equal(parse_at_guard(f, sizeof(f), 0, 1, &h), WS_ELEN64);
}

static void test_frame_asks_for_more_on_empty_input(void **state)
{
    ws_frame_hdr_t h;
    assert_int_equal(ws_frame_parse_header(NULL, 0, 0, 1, &h), WS_EAGAIN);
}

/* --- masking --- */

static void naive_mask(uint8_t *d, size_t n, const uint8_t key[4], uint64_t off)
{
    for (size_t i = 0; i < n; i++)
        d[i] ^= key[(off + i) % 4];
}

static void fill(uint8_t *d, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        d[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 3));
}

static void test_frame_mask_matches_reference_at_every_offset_alignment_and_length(void **state)
{
    static const uint8_t key[4] = {0xa5, 0x3c, 0x0f, 0xf0};
    static const uint64_t bases[] = {0, UINT64_C(1) << 32, UINT64_C(0xfffffffffffffff8)};
    uint8_t want[64], got[64 + 8];
    guard_t g;
    guard_init(&g, 64);

    for (size_t b = 0; b < 3; b++) {
        for (uint64_t off = 0; off < 8; off++) {
            for (size_t len = 0; len <= 40; len++) {
                for (size_t align = 0; align < 8; align++) {
                    fill(want, len, (unsigned)(off + len));
                    memcpy(got + align, want, len);
                    naive_mask(want, len, key, bases[b] + off);
                    ws_frame_mask(got + align, len, key, bases[b] + off);
                    assert_memory_equal(got + align, want, len);
                }
                /* the same at the end of a page, so a word access past the end faults */
                fill(want, len, (unsigned)(off + len));
                uint8_t *p = guard_put(&g, want, len);
                naive_mask(want, len, key, bases[b] + off);
                ws_frame_mask(p, len, key, bases[b] + off);
                assert_memory_equal(p, want, len);
            }
        }
    }
    guard_free(&g);
}

/* ws_frame_unmask_ascii (16 bytes a step where SSE2 is there, a word at a
 * time otherwise): the bytes ws_frame_mask makes, and "all ASCII" exactly
 * when no unmasked byte has its top bit set, at every length to 140, every
 * alignment and every place of one high byte; also at the end of a page. */
static void test_frame_unmask_ascii_matches_mask_and_a_byte_check(void **state)
{
    static const uint8_t key[4] = {0x5a, 0x81, 0x3c, 0x07};
    uint8_t plain[160], want[160], got[160 + 16];
    guard_t g;
    guard_init(&g, 160);
    for (size_t len = 0; len <= 140; len++) {
        for (long bad = -1; bad < (long)len; bad++) {
            for (size_t i = 0; i < len; i++)
                plain[i] = (uint8_t)(' ' + (i * 7 + len) % 90);
            if (bad >= 0)
                plain[bad] = (uint8_t)(0x80 | (bad & 0x7f));
            memcpy(want, plain, len);
            naive_mask(want, len, key, 0); /* the masked frame payload */
            for (size_t align = 0; align < 16; align += bad < 0 ? 1 : 5) {
                memcpy(got + align, want, len);
                int ascii = ws_frame_unmask_ascii(got + align, len, key);
                assert_memory_equal(got + align, plain, len);
                assert_int_equal(ascii, bad < 0);
            }
            uint8_t *p = guard_put(&g, want, len);
            assert_int_equal(ws_frame_unmask_ascii(p, len, key), bad < 0);
            assert_memory_equal(p, plain, len);
        }
    }
    guard_free(&g);
}

static void test_frame_mask_in_chunks_equals_mask_at_once(void **state)
{
    static const size_t chunks[] = {1, 3, 7, 8, 13, 64};
    uint8_t whole[1000], parts[1000];

    for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
        fill(whole, sizeof(whole), 9);
        memcpy(parts, whole, sizeof(whole));
        ws_frame_mask(whole, sizeof(whole), rfc_key, 0);
        for (size_t pos = 0; pos < sizeof(parts); pos += chunks[c]) {
            size_t n = sizeof(parts) - pos < chunks[c] ? sizeof(parts) - pos : chunks[c];
            ws_frame_mask(parts + pos, n, rfc_key, pos);
        }
        assert_memory_equal(parts, whole, sizeof(whole));
    }
}

static void test_frame_mask_twice_restores_data(void **state)
{
    uint8_t a[100], b[100];
    fill(a, sizeof(a), 3);
    memcpy(b, a, sizeof(a));
    ws_frame_mask(b + 1, 99, rfc_key, 5);
    assert_memory_not_equal(a, b, sizeof(a));
    ws_frame_mask(b + 1, 99, rfc_key, 5);
    assert_memory_equal(a, b, sizeof(a));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_parses_rfc_unmasked_hello),
        cmocka_unit_test(test_frame_parses_and_unmasks_rfc_masked_hello),
        cmocka_unit_test(test_frame_parses_rfc_fragmented_hello),
        cmocka_unit_test(test_frame_parses_rfc_ping_and_masked_pong),
        cmocka_unit_test(test_frame_parses_rfc_256_byte_and_64k_binary),
        cmocka_unit_test(test_frame_round_trips_every_length_encoding_boundary),
        cmocka_unit_test(test_frame_accepts_control_payload_of_125),
        cmocka_unit_test(test_frame_rejects_unmasked_client_frame),
        cmocka_unit_test(test_frame_rejects_rsv_bits_without_extension),
        cmocka_unit_test(test_frame_accepts_rsv1_when_negotiated),
        cmocka_unit_test(test_frame_rejects_rsv_on_control_frame_even_when_negotiated),
        cmocka_unit_test(test_frame_rejects_reserved_opcodes),
        cmocka_unit_test(test_frame_rejects_fragmented_control_frame),
        cmocka_unit_test(test_frame_rejects_control_payload_over_125),
        cmocka_unit_test(test_frame_rejects_64bit_length_with_top_bit_set),
        cmocka_unit_test(test_frame_asks_for_more_on_empty_input),
        cmocka_unit_test(test_frame_mask_matches_reference_at_every_offset_alignment_and_length),
        cmocka_unit_test(test_frame_unmask_ascii_matches_mask_and_a_byte_check),
        cmocka_unit_test(test_frame_mask_in_chunks_equals_mask_at_once),
        cmocka_unit_test(test_frame_mask_twice_restores_data),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
