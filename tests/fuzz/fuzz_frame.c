/*
 * fuzz_frame: ws_frame_parse_header on arbitrary bytes, every prefix of them,
 * a write/parse round trip, and ws_frame_mask in two chunks against a byte loop.
 *
 * Input: byte 0 picks rsv_allowed (bits 4..6 as RSV3..RSV1) and require_mask
 * (bit 0); byte 1 picks where to split the masking; the rest is the wire.
 */
#include "fuzz_util.h"

#include "error.h"
#include "frame.h"

static int same_hdr(const ws_frame_hdr_t *a, const ws_frame_hdr_t *b)
{
    return a->fin == b->fin && a->rsv == b->rsv && a->opcode == b->opcode &&
           a->masked == b->masked && a->len == b->len && (!a->masked || !memcmp(a->mask, b->mask, 4));
}

static int is_error(int rc)
{
    return rc == WS_ERSV || rc == WS_EOPCODE || rc == WS_ECTRLFRAG || rc == WS_ECTRLLEN ||
           rc == WS_ELEN64 || rc == WS_EUNMASKED;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    unsigned rsv_allowed = data[0] & (WS_FRAME_RSV1 | WS_FRAME_RSV2 | WS_FRAME_RSV3);
    int require_mask = data[0] & 1;
    size_t split_seed = data[1];
    data += 2;
    size -= 2;

    /* A private copy: ASan then catches any read past the bytes we pass. */
    uint8_t *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);

    ws_frame_hdr_t h, hp;
    int rc = ws_frame_parse_header(buf, size, rsv_allowed, require_mask, &h);
    FUZZ_CHECK(rc == WS_EAGAIN || is_error(rc) || (rc >= 2 && rc <= WS_FRAME_HDR_MAX));

    if (rc > 0) {
        FUZZ_CHECK((size_t)rc <= size);
        unsigned op = h.opcode;
        int control = (op & 8) != 0;
        FUZZ_CHECK(op <= 2 || (op >= 8 && op <= 10));
        FUZZ_CHECK((h.rsv & ~rsv_allowed) == 0);
        FUZZ_CHECK(!control || (h.rsv == 0 && h.fin && h.len <= 125));
        FUZZ_CHECK(!require_mask || h.masked);
        FUZZ_CHECK(h.len >> 63 == 0);
        FUZZ_CHECK(h.fin == !!(buf[0] & 0x80));
        FUZZ_CHECK(rc == 2 + (h.masked ? 4 : 0) + ((buf[1] & 0x7F) == 126 ? 2 : (buf[1] & 0x7F) == 127 ? 8 : 0));

        /* Round trip through the writer (minimal length encoding). */
        uint8_t out[WS_FRAME_HDR_MAX + 1];
        unsigned first = (h.fin ? WS_FRAME_FIN : 0) | h.rsv | h.opcode;
        size_t n = ws_frame_write_header(out, first, h.len, h.masked ? h.mask : NULL);
        FUZZ_CHECK(n >= 2 && n <= WS_FRAME_HDR_MAX && n <= (size_t)rc);
        ws_frame_hdr_t h2;
        int rc2 = ws_frame_parse_header(out, n, rsv_allowed, require_mask, &h2);
        FUZZ_CHECK(rc2 == (int)n);
        FUZZ_CHECK(same_hdr(&h, &h2));

        /* Unmask the rest of the buffer in two chunks, compare with a byte loop. */
        size_t plen = size - (size_t)rc;
        uint8_t *a = buf + rc;
        uint8_t *b = malloc(plen ? plen : 1);
        memcpy(b, a, plen);
        size_t cut = plen ? split_seed % (plen + 1) : 0;
        uint64_t base = h.len & 0xFFFF;
        ws_frame_mask(a, cut, h.mask, base);
        ws_frame_mask(a + cut, plen - cut, h.mask, base + cut);
        for (size_t i = 0; i < plen; i++)
            b[i] ^= h.mask[(base + i) & 3];
        FUZZ_CHECK(memcmp(a, b, plen) == 0);
        free(b);
        memcpy(buf, data, size);
    }

    /* Every prefix: "need more" until the answer, then the same answer; the
     * result must not depend on how much of the header has arrived. */
    int settled = 0;
    for (size_t k = 0; k <= size && k <= WS_FRAME_HDR_MAX + 1; k++) {
        uint8_t *pre = malloc(k ? k : 1);
        memcpy(pre, data, k);
        int r = ws_frame_parse_header(pre, k, rsv_allowed, require_mask, &hp);
        free(pre);
        if (r == WS_EAGAIN) {
            FUZZ_CHECK(!settled);
            continue;
        }
        settled = 1;
        FUZZ_CHECK(r == rc);
        if (r > 0)
            FUZZ_CHECK(same_hdr(&h, &hp));
    }
    FUZZ_CHECK(settled || rc == WS_EAGAIN);
    free(buf);
    return 0;
}
