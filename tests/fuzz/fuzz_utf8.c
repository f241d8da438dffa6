/*
 * fuzz_utf8: ws_utf8_feed over chunks vs ws_utf8_valid on the whole buffer vs
 * the reference decoder in fuzz_util.h, including where validation fails
 * (fail fast: in the chunk holding the first byte that cannot be completed).
 *
 * Input: byte 0 seeds the chunk sizes, byte 1 their maximum; the rest is text.
 */
#include "fuzz_util.h"

#include "error.h"
#include "utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    fz_chunker_t ch;
    fz_chunker_init(&ch, data[0], (size_t)data[1] % 32 + 1);
    data += 2;
    size -= 2;

    uint8_t *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);

    int boundary = 0;
    size_t bad = fz_u8_first_bad(buf, size, &boundary);
    int ref = bad == size && boundary;

    FUZZ_CHECK(ws_utf8_valid(buf, size) == ref);

    ws_utf8_t u;
    ws_utf8_init(&u);
    size_t off = 0;
    int failed = 0;
    while (off < size) {
        size_t n = fz_chunk_next(&ch);
        if (n > size - off)
            n = size - off;
        /* each chunk in its own allocation, so over-reads are caught */
        uint8_t *c = malloc(n);
        memcpy(c, buf + off, n);
        int rc = ws_utf8_feed(&u, c, n);
        free(c);
        FUZZ_CHECK(rc == 0 || rc == WS_EUTF8);
        if (rc) {
            /* fails exactly in the chunk that holds the first bad byte */
            FUZZ_CHECK(bad >= off && bad < off + n);
            failed = 1;
            /* and stays failed */
            FUZZ_CHECK(ws_utf8_feed(&u, (const uint8_t *)"a", 1) == WS_EUTF8);
            FUZZ_CHECK(!ws_utf8_complete(&u));
            break;
        }
        off += n;
        FUZZ_CHECK(bad >= off);
        int b = 0;
        fz_u8_first_bad(buf, off, &b);
        FUZZ_CHECK(ws_utf8_complete(&u) == b);
    }
    if (!failed) {
        FUZZ_CHECK(bad == size);
        FUZZ_CHECK(ws_utf8_complete(&u) == boundary);
    }
    /* zero-length feeds change nothing */
    ws_utf8_init(&u);
    FUZZ_CHECK(ws_utf8_feed(&u, buf, 0) == 0 && ws_utf8_complete(&u));
    free(buf);
    return 0;
}
