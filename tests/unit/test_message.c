/* Unit tests for message.c. Longer than our ~600-line guide on purpose: one file per codec, fed
 * in every chunking (whole, split mid-header, byte by byte). */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "error.h"
#include "message.h"

/* --- guard page: chunks are fed from the end of a page followed by a PROT_NONE page --- */

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

/* --- recording callback --- */

typedef struct {
    unsigned op, flags;
    size_t len;
    uint8_t *data;
    const uint8_t *ptr;
} event_t;

typedef struct {
    event_t ev[64];
    size_t n;
    int stop; /* return non-zero from every callback */
} rec_t;

static int record(void *ud, unsigned op, unsigned flags, uint8_t *data, size_t len)
{
    rec_t *r = ud;
    assert_non_null(data);
    assert_true(r->n < 64);
    event_t *e = &r->ev[r->n++];
    e->op = op;
    e->flags = flags;
    e->len = len;
    e->ptr = data;
    e->data = malloc(len ? len : 1);
    memcpy(e->data, data, len);
    return r->stop;
}

static void rec_clear(rec_t *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->ev[i].data);
    r->n = 0;
}

static void rec_expect_same(const rec_t *got, const rec_t *want)
{
    assert_int_equal(got->n, want->n);
    for (size_t i = 0; i < want->n; i++) {
        assert_int_equal(got->ev[i].op, want->ev[i].op);
        assert_int_equal(got->ev[i].flags, want->ev[i].flags);
        assert_int_equal(got->ev[i].len, want->ev[i].len);
        assert_memory_equal(got->ev[i].data, want->ev[i].data, want->ev[i].len);
    }
}

/* --- building client streams --- */

static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};

static void add_frame(ws_buf_t *s, unsigned first, const void *p, size_t n)
{
    uint8_t h[WS_FRAME_HDR_MAX];
    size_t hl = ws_frame_write_header(h, first, n, key);
    ws_buf_append(s, h, hl);
    size_t at = s->len;
    ws_buf_append(s, p, n);
    ws_frame_mask(s->data + at, n, key, 0);
}

/* Feed s[0..n) in chunks of `chunk` bytes (0: all at once) starting after
 * `split` bytes (0: no split), each chunk copied to the guard page. Re-feeds
 * the rest when the callback stops the reader. Returns 0 or the error. */
static long feed_chunks(ws_msg_reader_t *r, const uint8_t *s, size_t n, size_t chunk, size_t split)
{
    guard_t g;
    guard_init(&g, n);
    size_t pos = 0;
    while (pos < n) {
        size_t take = n - pos;
        if (split && pos < split)
            take = split - pos;
        else if (chunk && take > chunk)
            take = chunk;
        uint8_t *p = guard_put(&g, s + pos, take);
        size_t off = 0;
        do {
            long rc = ws_msg_feed(r, p + off, take - off);
            if (rc < 0) {
                guard_free(&g);
                return rc;
            }
            assert_true(rc > 0 || take == off);
            off += (size_t)rc;
        } while (off < take);
        pos += take;
    }
    guard_free(&g);
    return 0;
}

static long feed_all(ws_msg_reader_t *r, const ws_buf_t *s)
{
    return feed_chunks(r, s->data, s->len, 0, 0);
}

static void expect_ev(rec_t *want, unsigned op, unsigned flags, const void *p, size_t n)
{
    record(want, op, flags, (uint8_t *)(n ? p : ""), n);
}

/* A stream exercising interleaving, fragmentation, empty frames and a split
 * code point; `big` adds a 64 KiB binary message with a 64-bit length. */
static void build_stream(ws_buf_t *s, rec_t *want, int big)
{
    static uint8_t b256[256], b64k[65536];
    for (size_t i = 0; i < sizeof(b256); i++)
        b256[i] = (uint8_t)i;
    for (size_t i = 0; i < sizeof(b64k); i++)
        b64k[i] = (uint8_t)(i * 7);

    add_frame(s, 0x81, "Hello", 5);
    expect_ev(want, WS_OP_TEXT, 0, "Hello", 5);

    add_frame(s, 0x01, "Hel", 3);
    add_frame(s, 0x89, "ping!", 5);
    add_frame(s, 0x80, "lo", 2);
    expect_ev(want, WS_OP_PING, 0, "ping!", 5);
    expect_ev(want, WS_OP_TEXT, 0, "Hello", 5);

    add_frame(s, 0x82, b256, sizeof(b256));
    expect_ev(want, WS_OP_BINARY, 0, b256, sizeof(b256));

    add_frame(s, 0x01, "a\xe2", 2);
    add_frame(s, 0x00, "\x82", 1);
    add_frame(s, 0x8a, "", 0);
    add_frame(s, 0x80, "\xac", 1);
    expect_ev(want, WS_OP_PONG, 0, "", 0);
    expect_ev(want, WS_OP_TEXT, 0, "a\xe2\x82\xac", 4);

    add_frame(s, 0x81, "", 0);
    expect_ev(want, WS_OP_TEXT, 0, "", 0);
    add_frame(s, 0x02, "", 0);
    add_frame(s, 0x00, "", 0);
    add_frame(s, 0x80, "", 0);
    expect_ev(want, WS_OP_BINARY, 0, "", 0);
    add_frame(s, 0x01, "", 0);
    add_frame(s, 0x80, "xyz", 3);
    expect_ev(want, WS_OP_TEXT, 0, "xyz", 3);

    if (big) {
        add_frame(s, 0x82, b64k, sizeof(b64k));
        expect_ev(want, WS_OP_BINARY, 0, b64k, sizeof(b64k));
    }
    add_frame(s, 0x88, "\x03\xe8" "bye", 5);
    expect_ev(want, WS_OP_CLOSE, 0, "\x03\xe8" "bye", 5);
}

/* --- RFC 6455 section 5.7 examples --- */

static void test_message_delivers_rfc_masked_hello_in_place(void **state)
{
    uint8_t f[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    rec_t got = {0};
    ws_msg_reader_t r;
    ws_msg_reader_init(&r, 1 << 20, record, &got);
    assert_int_equal(ws_msg_feed(&r, f, sizeof(f)), sizeof(f));
    assert_int_equal(got.n, 1);
    assert_int_equal(got.ev[0].op, WS_OP_TEXT);
    assert_int_equal(got.ev[0].len, 5);
    assert_memory_equal(got.ev[0].data, "Hello", 5);
    assert_ptr_equal(got.ev[0].ptr, f + 6); /* zero copy */
    assert_null(r._msg.data);
    rec_clear(&got);
    ws_msg_reader_free(&r);
}

static void test_message_reassembles_rfc_fragmented_hello(void **state)
{
    ws_buf_t s;
    ws_buf_init(&s);
    add_frame(&s, 0x01, "Hel", 3);
    add_frame(&s, 0x80, "lo", 2);
    rec_t got = {0};
    ws_msg_reader_t r;
    ws_msg_reader_init(&r, 1 << 20, record, &got);
    assert_int_equal(feed_all(&r, &s), 0);
    assert_int_equal(got.n, 1);
    assert_int_equal(got.ev[0].op, WS_OP_TEXT);
    assert_int_equal(got.ev[0].len, 5);
    assert_memory_equal(got.ev[0].data, "Hello", 5);
    rec_clear(&got);
    ws_msg_reader_free(&r);
    ws_buf_free(&s);
}

static void test_message_delivers_rfc_ping_and_pong(void **state)
{
    uint8_t ping[] = {0x89, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    uint8_t pong[] = {0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    rec_t got = {0};
    ws_msg_reader_t r;
    ws_msg_reader_init(&r, 1 << 20, record, &got);
    assert_int_equal(feed_chunks(&r, ping, sizeof(ping), 1, 0), 0);
    assert_int_equal(feed_chunks(&r, pong, sizeof(pong), 0, 0), 0);
    assert_int_equal(got.n, 2);
    assert_int_equal(got.ev[0].op, WS_OP_PING);
    assert_memory_equal(got.ev[0].data, "Hello", 5);
    assert_int_equal(got.ev[1].op, WS_OP_PONG);
    assert_memory_equal(got.ev[1].data, "Hello", 5);
    rec_clear(&got);
    ws_msg_reader_free(&r);
}

static void test_message_delivers_256_byte_and_64k_binary(void **state)
{
    static uint8_t big[65536];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)(i ^ (i >> 8));
    ws_buf_t s;
    ws_buf_init(&s);
    add_frame(&s, 0x82, big, 256);
    add_frame(&s, 0x82, big, sizeof(big));
    assert_memory_equal(s.data, "\x82\xfe\x01\x00", 4);
    assert_memory_equal(s.data + 8 + 256, "\x82\xff\x00\x00\x00\x00\x00\x01\x00\x00", 10);
    rec_t got = {0};
    ws_msg_reader_t r;
    ws_msg_reader_init(&r, 65536, record, &got);
    assert_int_equal(feed_all(&r, &s), 0);
    assert_int_equal(got.n, 2);
    assert_int_equal(got.ev[0].len, 256);
    assert_memory_equal(got.ev[0].data, big, 256);
    assert_int_equal(got.ev[1].len, sizeof(big));
    assert_memory_equal(got.ev[1].data, big, sizeof(big));
    rec_clear(&got);
    ws_msg_reader_free(&r);
    ws_buf_free(&s);
}

/* --- chunking --- */

static void test_message_same_stream_gives_same_events_for_any_chunk_size(void **state)
{
    static const size_t chunks[] = {0, 1, 2, 3, 5, 7, 13, 125, 4096};
    ws_buf_t s;
    rec_t want = {0};
    ws_buf_init(&s);
    build_stream(&s, &want, 1);
    for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
        rec_t got = {0};
        ws_msg_reader_t r;
        ws_msg_reader_init(&r, 1 << 20, record, &got);
        assert_int_equal(feed_chunks(&r, s.data, s.len, chunks[c], 0), 0);
        rec_expect_same(&got, &want);
        assert_int_equal(r._hdr_len, 0);
        rec_clear(&got);
        ws_msg_reader_free(&r);
    }
    rec_clear(&want);
    ws_buf_free(&s);
}

static void test_message_same_stream_split_at_every_byte(void **state)
{
    ws_buf_t s;
    rec_t want = {0};
    ws_buf_init(&s);
    build_stream(&s, &want, 0);
    for (size_t cut = 1; cut < s.len; cut++) {
        rec_t got = {0};
        ws_msg_reader_t r;
        ws_msg_reader_init(&r, 1 << 20, record, &got);
        assert_int_equal(feed_chunks(&r, s.data, s.len, 0, cut), 0);
        rec_expect_same(&got, &want);
        rec_clear(&got);
        ws_msg_reader_free(&r);
    }
    rec_clear(&want);
    ws_buf_free(&s);
}

static void test_message_header_split_across_feeds(void **state)
{
    /* 64-bit length plus mask: 14 header bytes, split after 1, 2, 5 and 13. */
    static uint8_t payload[70000];
    static const size_t cuts[] = {1, 2, 5, 13};
    ws_buf_t s;
    ws_buf_init(&s);
    add_frame(&s, 0x82, payload, sizeof(payload));
    for (size_t i = 0; i < 4; i++) {
        rec_t got = {0};
        ws_msg_reader_t r;
        ws_msg_reader_init(&r, 1 << 20, record, &got);
        assert_int_equal(ws_msg_feed(&r, s.data, cuts[i]), cuts[i]);
        assert_int_equal(got.n, 0);
        assert_int_equal(feed_chunks(&r, s.data + cuts[i], s.len - cuts[i], 0, 0), 0);
        assert_int_equal(got.n, 1);
        assert_int_equal(got.ev[0].len, sizeof(payload));
        rec_clear(&got);
        ws_msg_reader_free(&r);
    }
    ws_buf_free(&s);
}

/* The server trims idle readers; a trim in the middle of anything must be
 * refused, and a trimmed reader must go on parsing split frames. */
static void test_message_trim_only_when_idle_and_reader_goes_on(void **state)
{
    ws_buf_t s;
    ws_buf_init(&s);
    add_frame(&s, 0x01, "ab", 2); /* fragmented text: a message in progress */
    add_frame(&s, 0x89, "ping!", 5);
    add_frame(&s, 0x80, "cd", 2);
    rec_t got = {0};
    ws_msg_reader_t r;
    ws_msg_reader_init(&r, 1 << 20, record, &got);
    assert_int_equal(ws_msg_reader_trim(&r), 0); /* fresh: idle, nothing to release */
    /* The first fragment whole, then 3 bytes of the ping: a split control frame. */
    size_t first = 2 + 4 + 2;
    assert_int_equal(ws_msg_feed(&r, s.data, first + 2 + 4 + 3), (long)(first + 2 + 4 + 3));
    assert_int_equal(ws_msg_reader_trim(&r), 0);
    assert_int_equal(ws_msg_feed(&r, s.data + first + 9, s.len - first - 9), (long)(s.len - first - 9));
    assert_int_equal(got.n, 2);
    assert_int_equal(got.ev[0].op, WS_OP_PING);
    assert_memory_equal(got.ev[0].data, "ping!", 5);
    assert_int_equal(got.ev[1].op, WS_OP_TEXT);
    assert_memory_equal(got.ev[1].data, "abcd", 4);
    assert_int_equal(ws_msg_reader_trim(&r), 1);
    assert_null(r._ctrl);
    assert_int_equal(r._msg.cap, 0);
    /* Trimmed, the same stream split at every byte gives the same events (the
     * first feed unmasked the stream in place: build it again). */
    rec_clear(&got);
    ws_buf_reset(&s, 0);
    add_frame(&s, 0x01, "ab", 2);
    add_frame(&s, 0x89, "ping!", 5);
    add_frame(&s, 0x80, "cd", 2);
    for (size_t i = 0; i < s.len; i++)
        assert_int_equal(ws_msg_feed(&r, s.data + i, 1), 1);
    assert_int_equal(got.n, 2);
    assert_memory_equal(got.ev[0].data, "ping!", 5);
    assert_memory_equal(got.ev[1].data, "abcd", 4);
    rec_clear(&got);
    ws_msg_reader_free(&r);
    ws_buf_free(&s);
}

static void test_message_control_frame_interleaved_in_fragmented_message(void **state)
{
    ws_buf_t s;
    ws_buf_init(&s);
    add_frame(&s, 0x02, "ab", 2);
    add_frame(&s, 0x89, "p1", 2);
    add_frame(&s, 0x00, "cd", 2);
    add_frame(&s, 0x8a, "p2", 2);
    add_frame(&s, 0x80, "ef", 2);
    for (size_t chunk = 0; chunk <= 3; chunk++) {
        rec_t got = {0};
        ws_msg_reader_t r;
        ws_msg_reader_init(&r, 6, record, &got);
        assert_int_equal(feed_chunks(&r, s.data, s.len, chunk, 0), 0);
        assert_int_equal(got.n, 3);
        assert_int_equal(got.ev[0].op, WS_OP_PING);
        assert_memory_equal(got.ev[0].data, "p1", 2);
        assert_int_equal(got.ev[1].op, WS_OP_PONG);
        assert_int_equal(got.ev[2].op, WS_OP_BINARY);
        assert_int_equal(got.ev[2].len, 6);
        assert_memory_equal(got.ev[2].data, "abcdef", 6);
        rec_clear(&got);
        ws_msg_reader_free(&r);
    }
    ws_buf_free(&s);
}

static void test_message_zero_length_messages_get_a_valid_pointer(void **state)
{
    ws_buf_t s;
    ws_buf_init(&s);
    add_frame(&s, 0x82, "", 0);
    add_frame(&s, 0x01, "", 0);
    add_frame(&s, 0x80, "", 0);
    add_frame(&s, 0x89, "", 0);
    add_frame(&s, 0x88, "", 0);
    rec_t got = {0};
    ws_msg_reader_t r;
    ws_msg_reader_init(&r, 0, record, &got);
    /* The last header ends the buffer exactly, so the empty close completes
     * with nothing left to read. */
    assert_int_equal(ws_msg_feed(&r, s.data, s.len), s.len);
    assert_int_equal(got.n, 4);
    assert_int_equal(got.ev[0].op, WS_OP_BINARY);
    assert_int_equal(got.ev[1].op, WS_OP_TEXT);
    assert_int_equal(got.ev[2].op, WS_OP_PING);
    assert_int_equal(got.ev[3].op, WS_OP_CLOSE);
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(got.ev[i].len, 0);
    unsigned code;
    const uint8_t *reason;
    size_t rlen;
    ws_msg_close_parse(got.ev[3].ptr, 0, &code, &reason, &rlen);
    assert_int_equal(code, WS_CLOSE_NO_STATUS);
    assert_int_equal(rlen, 0);
    rec_clear(&got);
    ws_msg_reader_free(&r);
    ws_buf_free(&s);
}

/* --- sequence and header errors --- */

static long feed_one(unsigned max, unsigned rsv_allowed, const ws_buf_t *s, rec_t *got)
{
    ws_msg_reader_t r;
    ws_msg_reader_init(&r, max, record, got);
    r.rsv_allowed = rsv_allowed;
    long rc = feed_all(&r, s);
    ws_msg_reader_free(&r);
    return rc;
}

static void test_message_rejects_continuation_without_message(void **state)
{
    ws_buf_t s;
    rec_t got = {0};
    ws_buf_init(&s);
    add_frame(&s, 0x80, "x", 1);
    assert_int_equal(feed_one(100, 0, &s, &got), WS_ECONT);
    assert_int_equal(got.n, 0);
    ws_buf_free(&s);
}

static void test_message_rejects_new_data_frame_inside_fragmented_message(void **state)
{
    static const unsigned second[] = {0x81, 0x02, 0x01};
    for (size_t i = 0; i < 3; i++) {
        ws_buf_t s;
        rec_t got = {0};
        ws_buf_init(&s);
        add_frame(&s, 0x01, "a", 1);
        add_frame(&s, second[i], "b", 1);
        assert_int_equal(feed_one(100, 0, &s, &got), WS_EINTERLEAVE);
        assert_int_equal(got.n, 0);
        ws_buf_free(&s);
    }
}

static void test_message_passes_header_errors_through(void **state)
{
    static const struct {
        uint8_t b[14];
        size_t n;
        int err;
    } cases[] = {
        {{0x81, 0x05, 'H', 'e', 'l', 'l', 'o'}, 7, WS_EUNMASKED},
        {{0xa1, 0x80, 1, 2, 3, 4}, 6, WS_ERSV},
        {{0x83, 0x80, 1, 2, 3, 4}, 6, WS_EOPCODE},
        {{0x09, 0x80, 1, 2, 3, 4}, 6, WS_ECTRLFRAG},
        {{0x89, 0xfe, 0, 126, 1, 2, 3, 4}, 8, WS_ECTRLLEN},
        {{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}, 14, WS_ELEN64},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        for (size_t chunk = 0; chunk <= 1; chunk++) {
            ws_msg_reader_t r;
            rec_t got = {0};
            ws_msg_reader_init(&r, 1 << 20, record, &got);
            assert_int_equal(feed_chunks(&r, cases[i].b, cases[i].n, chunk, 0), cases[i].err);
            assert_int_equal(got.n, 0);
            ws_msg_reader_free(&r);
        }
    }
}

static void test_message_errors_are_sticky(void **state)
{
    ws_buf_t s;
    rec_t got = {0};
    ws_msg_reader_t r;
    ws_buf_init(&s);
    ws_msg_reader_init(&r, 100, record, &got);
    add_frame(&s, 0x80, "x", 1);
    assert_int_equal(feed_all(&r, &s), WS_ECONT);
    ws_buf_reset(&s, SIZE_MAX);
    add_frame(&s, 0x81, "ok", 2);
    assert_int_equal(feed_all(&r, &s), WS_ECONT);
    assert_int_equal(ws_msg_feed(&r, NULL, 0), WS_ECONT);
    assert_int_equal(got.n, 0);
    ws_msg_reader_free(&r);
    ws_buf_free(&s);
}

/* --- size limit --- */

static void test_message_rejects_too_big_from_the_header(void **state)
{
    uint8_t hdr[WS_FRAME_HDR_MAX];
    ws_msg_reader_t r;
    rec_t got = {0};

    /* Only the header is fed: the payload never arrives. */
    ws_msg_reader_init(&r, 100, record, &got);
    size_t n = ws_frame_write_header(hdr, 0x82, 101, key);
    assert_int_equal(ws_msg_feed(&r, hdr, n), WS_ETOOBIG);
    ws_msg_reader_free(&r);

    ws_msg_reader_init(&r, 100, record, &got);
    n = ws_frame_write_header(hdr, 0x82, UINT64_C(1) << 62, key);
    assert_int_equal(ws_msg_feed(&r, hdr, n), WS_ETOOBIG);
    ws_msg_reader_free(&r);

    /* Fragments count together: 60 buffered + 41 declared is over 100. */
    static uint8_t sixty[60];
    ws_buf_t s;
    ws_buf_init(&s);
    add_frame(&s, 0x01, sixty, 60);
    ws_msg_reader_init(&r, 100, record, &got);
    assert_int_equal(feed_all(&r, &s), 0);
    n = ws_frame_write_header(hdr, 0x80, 41, key);
    assert_int_equal(ws_msg_feed(&r, hdr, n), WS_ETOOBIG);
    ws_msg_reader_free(&r);

    /* ...while 60 + 40 fits exactly, with a ping in between not counted. */
    ws_buf_reset(&s, SIZE_MAX);
    add_frame(&s, 0x02, sixty, 60);
    add_frame(&s, 0x89, sixty, 50);
    add_frame(&s, 0x80, sixty, 40);
    assert_int_equal(feed_one(100, 0, &s, &got), 0);
    assert_int_equal(got.n, 2);
    assert_int_equal(got.ev[1].len, 100);
    rec_clear(&got);
    ws_buf_free(&s);
}

/* With permessage-deflate the limit is on the inflated size, which the caller
 * checks: on the wire a compressed message (RSV1 on its first frame) may be up
 * to max/256 + 1024 larger than the limit, an uncompressed one not at all. */
static void test_message_compressed_limit_has_the_deflate_slack(void **state)
{
    (void)state;
    uint8_t hdr[WS_FRAME_HDR_MAX];
    ws_msg_reader_t r;
    rec_t got = {0};
    const size_t max = 4096, slack = max / 256 + 1024;
    static const struct {
        unsigned b0;
        size_t len;
        int want;
    } cases[] = {
        {0xc2, 4096 + 16 + 1024, 0},                /* compressed, at max + slack */
        {0xc2, 4096 + 16 + 1024 + 1, WS_ETOOBIG},   /* one over */
        {0x82, 4096, 0},                            /* uncompressed, at max */
        {0x82, 4097, WS_ETOOBIG},                   /* no slack for it */
        {0xc1, 4096 + 16 + 1024, 0},                /* text too */
    };
    assert_int_equal(slack, 16 + 1024);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ws_msg_reader_init(&r, max, record, &got);
        r.rsv_allowed = WS_FRAME_RSV1;
        size_t n = ws_frame_write_header(hdr, cases[i].b0, cases[i].len, key);
        /* Only the header is fed: a frame over the limit fails right there. */
        assert_int_equal(ws_msg_feed(&r, hdr, n), cases[i].want ? cases[i].want : (long)n);
        ws_msg_reader_free(&r);
    }

    /* The slack saturates: a huge limit does not wrap around to a small one. */
    ws_msg_reader_init(&r, SIZE_MAX - 10, record, &got);
    r.rsv_allowed = WS_FRAME_RSV1;
    size_t hn = ws_frame_write_header(hdr, 0xc2, UINT64_C(1) << 62, key);
    assert_int_equal(ws_msg_feed(&r, hdr, hn), (long)hn);
    ws_msg_reader_free(&r);

    /* Fragments of a compressed message share the slack: the first frame marks it. */
    static uint8_t part[3000];
    ws_buf_t s;
    ws_buf_init(&s);
    add_frame(&s, 0x42, part, 3000);
    ws_msg_reader_init(&r, max, record, &got);
    r.rsv_allowed = WS_FRAME_RSV1;
    assert_int_equal(feed_all(&r, &s), 0);
    size_t n = ws_frame_write_header(hdr, 0x80, max + slack - 3000, key);
    assert_int_equal(ws_msg_feed(&r, hdr, n), (long)n);
    ws_msg_reader_free(&r);
    ws_msg_reader_init(&r, max, record, &got);
    r.rsv_allowed = WS_FRAME_RSV1;
    assert_int_equal(feed_all(&r, &s), 0);
    n = ws_frame_write_header(hdr, 0x80, max + slack - 3000 + 1, key);
    assert_int_equal(ws_msg_feed(&r, hdr, n), WS_ETOOBIG);
    ws_msg_reader_free(&r);
    rec_clear(&got);
    ws_buf_free(&s);
}

static void test_message_releases_large_buffer_after_message(void **state)
{
    static uint8_t big[200000];
    ws_buf_t s;
    rec_t got = {0};
    ws_msg_reader_t r;
    ws_buf_init(&s);
    add_frame(&s, 0x02, big, 100000);
    add_frame(&s, 0x80, big, 100000);
    ws_msg_reader_init(&r, sizeof(big), record, &got);
    assert_int_equal(feed_all(&r, &s), 0);
    assert_int_equal(got.n, 1);
    assert_int_equal(got.ev[0].len, sizeof(big));
    assert_true(r._msg.cap <= 64 * 1024);
    rec_clear(&got);
    ws_msg_reader_free(&r);
    ws_buf_free(&s);
}

/* --- UTF-8 --- */

static void test_utf8_fails_in_first_fragment_before_fin(void **state)
{
    ws_buf_t s;
    rec_t got = {0};
    ws_msg_reader_t r;
    ws_buf_init(&s);
    add_frame(&s, 0x01, "ok\xc0", 3); /* FIN never comes */
    ws_msg_reader_init(&r, 100, record, &got);
    assert_int_equal(feed_all(&r, &s), WS_EUTF8);
    assert_int_equal(got.n, 0);
    ws_msg_reader_free(&r);
    ws_buf_free(&s);
}

static void test_utf8_fails_on_partial_frame_before_rest_arrives(void **state)
{
    static uint8_t text[1000];
    memset(text, 'a', sizeof(text));
    text[10] = 0xed; /* ED A0: a surrogate, refused at the A0 */
    text[11] = 0xa0;
    ws_buf_t s;
    rec_t got = {0};
    ws_msg_reader_t r;
    ws_buf_init(&s);
    add_frame(&s, 0x81, text, sizeof(text));
    ws_msg_reader_init(&r, sizeof(text), record, &got);
    size_t hdr = 8;
    assert_int_equal(ws_msg_feed(&r, s.data, hdr + 11), hdr + 11);
    assert_int_equal(ws_msg_feed(&r, s.data + hdr + 11, 1), WS_EUTF8);
    ws_msg_reader_free(&r);
    ws_buf_free(&s);
}

static void test_utf8_accepts_codepoint_split_across_fragments(void **state)
{
    ws_buf_t s;
    rec_t got = {0};
    ws_buf_init(&s);
    add_frame(&s, 0x01, "\xf0", 1);
    add_frame(&s, 0x00, "\x9f", 1);
    add_frame(&s, 0x89, "", 0);
    add_frame(&s, 0x00, "\x98", 1);
    add_frame(&s, 0x80, "\x80", 1);
    assert_int_equal(feed_one(100, 0, &s, &got), 0);
    assert_int_equal(got.n, 2);
    assert_int_equal(got.ev[1].op, WS_OP_TEXT);
    assert_memory_equal(got.ev[1].data, "\xf0\x9f\x98\x80", 4);
    rec_clear(&got);
    ws_buf_free(&s);
}

static void test_utf8_rejects_message_ending_inside_codepoint(void **state)
{
    ws_buf_t s;
    rec_t got = {0};
    ws_buf_init(&s);
    add_frame(&s, 0x81, "a\xe2\x82", 3); /* whole frame: checked in place */
    assert_int_equal(feed_one(100, 0, &s, &got), WS_EUTF8);
    ws_buf_reset(&s, SIZE_MAX);
    add_frame(&s, 0x01, "a\xe2", 2); /* fragments: checked at FIN */
    add_frame(&s, 0x80, "\x82", 1);
    assert_int_equal(feed_one(100, 0, &s, &got), WS_EUTF8);
    assert_int_equal(got.n, 0);
    ws_buf_free(&s);
}

static void test_utf8_does_not_check_binary(void **state)
{
    ws_buf_t s;
    rec_t got = {0};
    ws_buf_init(&s);
    add_frame(&s, 0x02, "\xff\xc0", 2);
    add_frame(&s, 0x80, "\xed\xa0", 2);
    assert_int_equal(feed_one(100, 0, &s, &got), 0);
    assert_int_equal(got.n, 1);
    rec_clear(&got);
    ws_buf_free(&s);
}

/* --- RSV1 / permessage-deflate --- */

static void test_message_rsv1_marks_compressed_and_skips_utf8(void **state)
{
    ws_buf_t s;
    rec_t got = {0};
    ws_buf_init(&s);
    add_frame(&s, 0xc1, "\xff", 1);
    add_frame(&s, 0x41, "\xc0", 1);
    add_frame(&s, 0x80, "\x80", 1);
    add_frame(&s, 0x81, "plain", 5);
    assert_int_equal(feed_one(100, 0, &s, &got), WS_ERSV);
    assert_int_equal(feed_one(100, WS_FRAME_RSV1, &s, &got), 0);
    assert_int_equal(got.n, 3);
    assert_int_equal(got.ev[0].flags, WS_MSG_COMPRESSED);
    assert_int_equal(got.ev[1].flags, WS_MSG_COMPRESSED);
    assert_int_equal(got.ev[1].len, 2);
    assert_int_equal(got.ev[2].flags, 0);
    rec_clear(&got);
    ws_buf_free(&s);
}

static void test_message_rejects_rsv1_on_continuation_and_control(void **state)
{
    ws_buf_t s;
    rec_t got = {0};
    ws_buf_init(&s);
    add_frame(&s, 0x41, "a", 1);
    add_frame(&s, 0xc0, "b", 1);
    assert_int_equal(feed_one(100, WS_FRAME_RSV1, &s, &got), WS_ERSV);
    ws_buf_reset(&s, SIZE_MAX);
    add_frame(&s, 0xc9, "", 0);
    assert_int_equal(feed_one(100, WS_FRAME_RSV1, &s, &got), WS_ERSV);
    assert_int_equal(got.n, 0);
    ws_buf_free(&s);
}

/* --- close frames --- */

static void test_message_validates_close_frames(void **state)
{
    static const struct {
        const char *p;
        size_t n;
        int err;
    } cases[] = {
        {"", 0, 0},
        {"\x03", 1, WS_ECLOSELEN},
        {"\x00\x00", 2, WS_ECLOSECODE},        /* 0 */
        {"\x03\xe7", 2, WS_ECLOSECODE},        /* 999 */
        {"\x03\xe8", 2, 0},                    /* 1000 */
        {"\x03\xe9", 2, 0},                    /* 1001 */
        {"\x03\xeb", 2, 0},                    /* 1003 */
        {"\x03\xec", 2, WS_ECLOSECODE},        /* 1004 */
        {"\x03\xed", 2, WS_ECLOSECODE},        /* 1005 */
        {"\x03\xee", 2, WS_ECLOSECODE},        /* 1006 */
        {"\x03\xef", 2, 0},                    /* 1007 */
        {"\x03\xf6", 2, 0},                    /* 1014 */
        {"\x03\xf7", 2, WS_ECLOSECODE},        /* 1015 */
        {"\x03\xf8", 2, WS_ECLOSECODE},        /* 1016 */
        {"\x0b\xb7", 2, WS_ECLOSECODE},        /* 2999 */
        {"\x0b\xb8", 2, 0},                    /* 3000 */
        {"\x13\x87", 2, 0},                    /* 4999 */
        {"\x13\x88", 2, WS_ECLOSECODE},        /* 5000 */
        {"\xff\xff", 2, WS_ECLOSECODE},        /* 65535 */
        {"\x03\xe8" "bye \xe2\x82\xac", 9, 0}, /* 1000, UTF-8 reason */
        {"\x03\xe8" "a\xc0\xaf", 5, WS_EUTF8},
        {"\x03\xe8" "\xed\xa0\x80", 5, WS_EUTF8},
        {"\x03\xe8" "ab\xe2\x82", 6, WS_EUTF8},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        for (size_t chunk = 0; chunk <= 1; chunk++) {
            ws_buf_t s;
            rec_t got = {0};
            ws_msg_reader_t r;
            ws_buf_init(&s);
            add_frame(&s, 0x88, cases[i].p, cases[i].n);
            ws_msg_reader_init(&r, 100, record, &got);
            long rc = feed_chunks(&r, s.data, s.len, chunk, 0);
            if (rc != cases[i].err)
                fail_msg("close case %zu chunk %zu: got %ld want %d", i, chunk, rc, cases[i].err);
            assert_int_equal(got.n, cases[i].err ? 0 : 1);
            rec_clear(&got);
            ws_msg_reader_free(&r);
            ws_buf_free(&s);
        }
    }
}

static void test_message_rejects_one_byte_close_from_header(void **state)
{
    uint8_t hdr[WS_FRAME_HDR_MAX];
    rec_t got = {0};
    ws_msg_reader_t r;
    ws_msg_reader_init(&r, 100, record, &got);
    size_t n = ws_frame_write_header(hdr, 0x88, 1, key);
    assert_int_equal(ws_msg_feed(&r, hdr, n), WS_ECLOSELEN);
    ws_msg_reader_free(&r);
}

static void test_message_close_parse_splits_code_and_reason(void **state)
{
    static const uint8_t p[] = {0x03, 0xe9, 'b', 'y', 'e'};
    unsigned code;
    const uint8_t *reason;
    size_t rlen;
    ws_msg_close_parse(p, sizeof(p), &code, &reason, &rlen);
    assert_int_equal(code, 1001);
    assert_ptr_equal(reason, p + 2);
    assert_int_equal(rlen, 3);
    ws_msg_close_parse(p, 2, &code, &reason, &rlen);
    assert_int_equal(code, 1001);
    assert_int_equal(rlen, 0);
    ws_msg_close_parse(p, 0, &code, &reason, &rlen);
    assert_int_equal(code, WS_CLOSE_NO_STATUS);
    assert_int_equal(rlen, 0);
}

/* --- callback stop --- */

static void test_message_callback_stop_returns_after_that_frame(void **state)
{
    ws_buf_t s;
    ws_buf_init(&s);
    add_frame(&s, 0x81, "one", 3);           /* 9 bytes */
    add_frame(&s, 0x89, "p", 1);             /* 7 bytes */
    add_frame(&s, 0x02, "t", 1);             /* 7 bytes, no event */
    add_frame(&s, 0x80, "wo", 2);            /* 8 bytes */
    rec_t got = {0};
    got.stop = 1;
    ws_msg_reader_t r;
    ws_msg_reader_init(&r, 100, record, &got);
    assert_int_equal(ws_msg_feed(&r, s.data, s.len), 9);
    assert_int_equal(got.n, 1);
    assert_int_equal(ws_msg_feed(&r, s.data + 9, s.len - 9), 7);
    assert_int_equal(got.n, 2);
    assert_int_equal(ws_msg_feed(&r, s.data + 16, s.len - 16), s.len - 16);
    assert_int_equal(got.n, 3);
    assert_int_equal(got.ev[2].op, WS_OP_BINARY);
    assert_memory_equal(got.ev[2].data, "two", 3);
    rec_clear(&got);
    ws_msg_reader_free(&r);

    /* The whole stream with a stop after every event, in several chunkings. */
    rec_t want = {0};
    ws_buf_reset(&s, SIZE_MAX);
    build_stream(&s, &want, 1);
    for (size_t chunk = 0; chunk <= 3; chunk++) {
        rec_t got2 = {0};
        got2.stop = 1;
        ws_msg_reader_init(&r, 1 << 20, record, &got2);
        assert_int_equal(feed_chunks(&r, s.data, s.len, chunk * 100, 0), 0);
        rec_expect_same(&got2, &want);
        rec_clear(&got2);
        ws_msg_reader_free(&r);
    }
    rec_clear(&want);
    ws_buf_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_message_delivers_rfc_masked_hello_in_place),
        cmocka_unit_test(test_message_reassembles_rfc_fragmented_hello),
        cmocka_unit_test(test_message_delivers_rfc_ping_and_pong),
        cmocka_unit_test(test_message_delivers_256_byte_and_64k_binary),
        cmocka_unit_test(test_message_same_stream_gives_same_events_for_any_chunk_size),
        cmocka_unit_test(test_message_same_stream_split_at_every_byte),
        cmocka_unit_test(test_message_header_split_across_feeds),
        cmocka_unit_test(test_message_control_frame_interleaved_in_fragmented_message),
        cmocka_unit_test(test_message_trim_only_when_idle_and_reader_goes_on),
        cmocka_unit_test(test_message_zero_length_messages_get_a_valid_pointer),
        cmocka_unit_test(test_message_rejects_continuation_without_message),
        cmocka_unit_test(test_message_rejects_new_data_frame_inside_fragmented_message),
        cmocka_unit_test(test_message_passes_header_errors_through),
        cmocka_unit_test(test_message_errors_are_sticky),
        cmocka_unit_test(test_message_rejects_too_big_from_the_header),
        cmocka_unit_test(test_message_compressed_limit_has_the_deflate_slack),
        cmocka_unit_test(test_message_releases_large_buffer_after_message),
        cmocka_unit_test(test_utf8_fails_in_first_fragment_before_fin),
        cmocka_unit_test(test_utf8_fails_on_partial_frame_before_rest_arrives),
        cmocka_unit_test(test_utf8_accepts_codepoint_split_across_fragments),
        cmocka_unit_test(test_utf8_rejects_message_ending_inside_codepoint),
        cmocka_unit_test(test_utf8_does_not_check_binary),
        cmocka_unit_test(test_message_rsv1_marks_compressed_and_skips_utf8),
        cmocka_unit_test(test_message_rejects_rsv1_on_continuation_and_control),
        cmocka_unit_test(test_message_validates_close_frames),
        cmocka_unit_test(test_message_rejects_one_byte_close_from_header),
        cmocka_unit_test(test_message_close_parse_splits_code_and_reason),
        cmocka_unit_test(test_message_callback_stop_returns_after_that_frame),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
