#include "frame.h"

#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "error.h"

static int is_control(unsigned op)
{
    return (op & 0x8) != 0;
}

static int is_known(unsigned op)
{
    return op <= WS_OP_BINARY || (op >= WS_OP_CLOSE && op <= WS_OP_PONG);
}

/*
 * Violations are checked in the order their bits appear on the wire and each
 * as soon as its byte is present, so a bad frame fails on its first bad byte
 * and the answer does not depend on how the input was chunked.
 */
int ws_frame_parse_header(const uint8_t *buf, size_t len, unsigned rsv_allowed, int require_mask,
                          ws_frame_hdr_t *h)
{
    if (len < 1)
        return WS_EAGAIN;

    unsigned b0 = buf[0];
    unsigned rsv = b0 & (WS_FRAME_RSV1 | WS_FRAME_RSV2 | WS_FRAME_RSV3);
    unsigned op = b0 & 0x0F;
    if (rsv & ~rsv_allowed)
        return WS_ERSV;
    /* Extensions such as permessage-deflate apply to data frames only. */
    if (rsv && is_control(op))
        return WS_ERSV;
    if (!is_known(op))
        return WS_EOPCODE;
    if (is_control(op) && !(b0 & WS_FRAME_FIN))
        return WS_ECTRLFRAG;
    if (len < 2)
        return WS_EAGAIN;

    unsigned b1 = buf[1];
    unsigned masked = b1 >> 7;
    unsigned len7 = b1 & 0x7F;
    if (require_mask && !masked)
        return WS_EUNMASKED;
    if (is_control(op) && len7 > 125)
        return WS_ECTRLLEN;

    size_t need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (masked ? 4 : 0);
    if (len7 == 127 && len >= 3 && (buf[2] & 0x80))
        return WS_ELEN64;
    if (len < need)
        return WS_EAGAIN;

    uint64_t plen = len7;
    size_t pos = 2;
    if (len7 == 126) {
        plen = (uint64_t)buf[2] << 8 | buf[3];
        pos = 4;
    } else if (len7 == 127) {
        plen = 0;
        for (pos = 2; pos < 10; pos++)
            plen = plen << 8 | buf[pos];
    }
    h->fin = (b0 & WS_FRAME_FIN) != 0;
    h->rsv = (uint8_t)rsv;
    h->opcode = (uint8_t)op;
    h->masked = (uint8_t)masked;
    h->len = plen;
    if (masked)
        memcpy(h->mask, buf + pos, 4);
    else
        memset(h->mask, 0, 4);
    return (int)need;
}

size_t ws_frame_write_header(uint8_t *out, unsigned first_byte, uint64_t len, const uint8_t *mask)
{
    uint8_t mbit = mask ? 0x80 : 0;

    out[0] = (uint8_t)first_byte;
    if (len < 126) {
        out[1] = mbit | (uint8_t)len;
    } else if (len <= 0xFFFF) {
        out[1] = mbit | 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
    } else {
        out[1] = mbit | 127;
        for (int i = 0; i < 8; i++)
            out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    }
    /* The length callers reserve by (ws_frame_header_len). */
    size_t n = ws_frame_header_len(len, 0);
    if (mask)
        memcpy(out + n, mask, 4);
    return n + (mask ? 4 : 0);
}

void ws_frame_mask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t offset)
{
    unsigned ph = (unsigned)(offset & 3);
    size_t i = 0;

    if (len >= 8) {
        /* The key repeats every 4 bytes, so 8 key bytes starting at the payload
         * phase form a word that stays in phase for every 8-byte step. memcpy
         * keeps the loads and stores legal at any alignment. */
        uint8_t kb[8];
        uint64_t k, w;
        memcpy(kb, mask, 4);
        memcpy(kb + 4, mask, 4);
        uint32_t k32;
        memcpy(&k32, kb + ph, 4);
        k = (uint64_t)k32 * UINT64_C(0x100000001); /* the 4 key bytes from the phase on, twice */
        for (; len - i >= 8; i += 8) {
            memcpy(&w, data + i, 8);
            w ^= k;
            memcpy(data + i, &w, 8);
        }
    }
    for (; i < len; i++)
        data[i] ^= mask[(ph + i) & 3];
}

int ws_frame_unmask_ascii(uint8_t *data, size_t len, const uint8_t mask[4])
{
    uint32_t k32;
    memcpy(&k32, mask, 4);
    uint64_t k = (uint64_t)k32 * UINT64_C(0x100000001), w, acc = 0;
    uint8_t *p = data, *end = data + len;
    int high = 0; /* a byte of the 16-byte steps had its high bit set */
#ifdef __SSE2__
    /* Sixteen bytes a step where SSE2 is there (every x86-64): the key is the
     * same 4 bytes in each 32-bit lane, and the lanes' high bits gathered by
     * movemask say whether any byte was not ASCII. Unaligned loads and
     * stores; __m128i may alias any type. */
    if (end - p >= 16) {
        __m128i kv = _mm_set1_epi32((int)k32), av = _mm_setzero_si128();
        do {
            __m128i v = _mm_xor_si128(_mm_loadu_si128((const __m128i *)p), kv);
            _mm_storeu_si128((__m128i *)p, v);
            av = _mm_or_si128(av, v);
            p += 16;
        } while (end - p >= 16);
        high = _mm_movemask_epi8(av);
    }
    if (end - p >= 8) {
#else
    while (end - p >= 8) {
#endif
        memcpy(&w, p, 8);
        w ^= k;
        memcpy(p, &w, 8);
        acc |= w;
        p += 8;
    }
    /* The key's phase is the offset from the start of the payload. */
    for (; p < end; p++) {
        *p ^= mask[(p - data) & 3];
        acc |= *p;
    }
    return !high && !(acc & UINT64_C(0x8080808080808080));
}
