/*
 * fuzz_message: the inbound message reader (ws_msg_feed) fed an arbitrary
 * stream in arbitrary chunk splits.
 *
 * Input: 6 parameter bytes, then the wire bytes.
 *   p[0..1]  max_message (see pick_max)
 *   p[2]     bit 0: rsv_allowed = RSV1 (as if permessage-deflate was negotiated)
 *            bits 1..7: the callback asks to stop after every (n+1)th frame (0: never)
 *   p[3]     chunk size seed; p[4] largest chunk (1..256, 0 = the whole stream at once)
 *   p[5]     unused (reserved for later knobs)
 *
 * Invariants: every data message is <= max_message; text (uncompressed) is
 * valid UTF-8 by the reference decoder; control payloads are <= 125 bytes;
 * close payloads are empty or a valid code + UTF-8 reason; a compressed flag
 * only with RSV1 allowed. The same stream fed in one piece must deliver the
 * same messages and end in the same error. After an error, every feed returns it.
 */
#include "fuzz_util.h"

#include "error.h"
#include "message.h"

typedef struct {
    size_t max_message;
    unsigned rsv_allowed;
    unsigned stop_every;
    unsigned frames;
    uint64_t hash;
    size_t count;
} run_t;

static int on_frame(void *ud, unsigned op, unsigned flags, uint8_t *data, size_t len)
{
    run_t *r = ud;

    FUZZ_CHECK(data != NULL);
    switch (op) {
    case WS_OP_TEXT:
    case WS_OP_BINARY:
        /* A compressed message may exceed the limit on the wire by the deflate slack: its
         * inflated size is the caller's to check (message.h). */
        FUZZ_CHECK(len <= r->max_message + ((flags & WS_MSG_COMPRESSED)
                                                ? (r->max_message >> 8) + 1024
                                                : 0));
        FUZZ_CHECK((flags & ~(unsigned)WS_MSG_COMPRESSED) == 0);
        FUZZ_CHECK(!(flags & WS_MSG_COMPRESSED) || (r->rsv_allowed & WS_FRAME_RSV1));
        if (op == WS_OP_TEXT && !(flags & WS_MSG_COMPRESSED))
            FUZZ_CHECK(fz_u8_valid(data, len));
        break;
    case WS_OP_PING:
    case WS_OP_PONG:
        FUZZ_CHECK(flags == 0 && len <= 125);
        break;
    case WS_OP_CLOSE: {
        FUZZ_CHECK(flags == 0 && len <= 125 && len != 1);
        if (len >= 2) {
            FUZZ_CHECK(fz_close_code_ok((unsigned)data[0] << 8 | data[1]));
            FUZZ_CHECK(fz_u8_valid(data + 2, len - 2));
        }
        unsigned code;
        const uint8_t *reason;
        size_t rlen;
        ws_msg_close_parse(data, len, &code, &reason, &rlen);
        FUZZ_CHECK(len ? (code == ((unsigned)data[0] << 8 | data[1]) && reason == data + 2 &&
                          rlen == len - 2)
                       : (code == 1005 && rlen == 0));
        break;
    }
    default:
        FUZZ_CHECK(0 && "unexpected opcode delivered");
    }
    /* touch every byte: ASan checks the pointer really covers len bytes */
    r->hash = fz_hash_u64(r->hash, op);
    r->hash = fz_hash_u64(r->hash, flags);
    r->hash = fz_hash_u64(r->hash, len);
    r->hash = fz_hash(r->hash, data, len);
    /* the callee may modify data in place */
    if (len)
        data[0] ^= 0xFF;
    r->count++;
    r->frames++;
    return r->stop_every && r->frames % r->stop_every == 0;
}

static size_t pick_max(unsigned v)
{
    switch (v & 7) {
    case 0: return 0;
    case 1: return 1;
    case 2: return 125;
    case 3: return 126;
    case 4: return 65536;
    case 5: return (size_t)1 << 20;
    default: return v >> 3; /* 0..8191 */
    }
}

/* Feed stream[0..n) with chunk sizes from ch (ch NULL: all at once).
 * Returns the final status: 0 or the sticky error. */
static long run(run_t *r, const uint8_t *stream, size_t n, fz_chunker_t *ch)
{
    ws_msg_reader_t rd;
    ws_msg_reader_init(&rd, r->max_message, on_frame, r);
    rd.rsv_allowed = r->rsv_allowed;
    long status = 0;
    size_t off = 0;
    while (off < n) {
        size_t c = ch ? fz_chunk_next(ch) : n;
        if (c > n - off)
            c = n - off;
        /* each chunk in an allocation of its own size: over-reads are caught */
        uint8_t *b = malloc(c);
        memcpy(b, stream + off, c);
        size_t done = 0;
        /* a stop request returns early; feed the rest again (bounded: each
         * round consumes at least one frame's header byte or ends) */
        for (int guard = 0; done < c; guard++) {
            FUZZ_CHECK(guard <= (int)c + 1);
            long rc = ws_msg_feed(&rd, b + done, c - done);
            if (rc < 0) {
                status = rc;
                break;
            }
            FUZZ_CHECK((size_t)rc <= c - done);
            if ((size_t)rc == c - done) {
                done = c;
                break;
            }
            /* stopped early: only after a frame the callback asked to stop on */
            FUZZ_CHECK(r->stop_every && r->frames % r->stop_every == 0);
            done += (size_t)rc;
        }
        free(b);
        if (status)
            break;
        off += c;
    }
    if (status) {
        FUZZ_CHECK(status <= WS_EPROTO && status > WS_EHDRTOOBIG);
        uint8_t x[2] = {0x81, 0x80};
        FUZZ_CHECK(ws_msg_feed(&rd, x, sizeof x) == status);
        FUZZ_CHECK(ws_msg_feed(&rd, x, 0) == status);
    }
    ws_msg_reader_free(&rd);
    return status;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 6)
        return 0;
    run_t a = {0};
    a.max_message = pick_max((unsigned)data[0] | (unsigned)data[1] << 8);
    a.rsv_allowed = (data[2] & 1) ? WS_FRAME_RSV1 : 0;
    a.stop_every = data[2] >> 1 & 3;
    fz_chunker_t ch;
    fz_chunker_init(&ch, data[3], data[4] ? (size_t)data[4] : size);
    const uint8_t *stream = data + 6;
    size_t n = size - 6;

    run_t b = a;
    long sa = run(&a, stream, n, &ch);
    long sb = run(&b, stream, n, NULL);
    FUZZ_CHECK(sa == sb);
    FUZZ_CHECK(a.count == b.count);
    FUZZ_CHECK(a.hash == b.hash);
    return 0;
}
