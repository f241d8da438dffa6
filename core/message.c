#include "message.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"

#include "error.h"

enum { PH_HDR = 0, PH_PAYLOAD };

/* Reassembly storage above this is released after each message, so an idle
 * connection does not keep the memory of its largest message. */
#define MSG_KEEP (64 * 1024)

void ws_msg_reader_init(ws_msg_reader_t *r, size_t max_message, ws_msg_cb cb, void *ud)
{
    memset(r, 0, sizeof(*r));
    r->max_message = max_message;
    r->cb = cb;
    r->ud = ud;
    r->_phase = PH_HDR;
    ws_buf_init(&r->_msg);
    ws_utf8_init(&r->_utf8);
}

void ws_msg_reader_free(ws_msg_reader_t *r)
{
    ws_buf_free(&r->_msg);
    free(r->_ctrl);
    r->_ctrl = NULL;
}

int ws_msg_reader_trim(ws_msg_reader_t *r)
{
    if (r->_phase != PH_HDR || r->_hdr_len != 0 || r->_msg_op != 0 || r->_err)
        return 0;
    int had = r->_msg.cap > 0 || r->_ctrl;
    ws_msg_reader_free(r);
    return had;
}

static int fail(ws_msg_reader_t *r, int err)
{
    r->_err = err;
    return err;
}

static int is_control(unsigned op)
{
    return (op & 0x8) != 0;
}

static int close_check(const uint8_t *p, size_t n)
{
    if (n == 0)
        return 0;
    if (n == 1)
        return WS_ECLOSELEN;
    if (!ws_close_code_valid((unsigned)p[0] << 8 | p[1]))
        return WS_ECLOSECODE;
    if (!ws_utf8_valid(p + 2, n - 2))
        return WS_EUTF8;
    return 0;
}

static int deliver(ws_msg_reader_t *r, unsigned op, unsigned flags, uint8_t *data, size_t n)
{
    /* An empty message may have no storage behind it; callees get a real
     * pointer anyway so that memcpy(dst, data, 0) and the like stay defined. */
    static uint8_t none;
    if (n == 0)
        data = &none;
    return r->cb ? r->cb(r->ud, op, flags, data, n) : 0;
}

static int text_checked(const ws_msg_reader_t *r)
{
    return r->_msg_op == WS_OP_TEXT && !(r->_msg_flags & WS_MSG_COMPRESSED);
}

/* Frame-sequence rules, applied as soon as a header is complete so that a bad
 * or oversized frame fails before any of its payload is read. */
static int frame_begin(ws_msg_reader_t *r)
{
    const ws_frame_hdr_t *h = &r->_fh;

    if (is_control(h->opcode))
        return (h->opcode == WS_OP_CLOSE && h->len == 1) ? WS_ECLOSELEN : 0;
    if (h->opcode == WS_OP_CONT) {
        if (!r->_msg_op)
            return WS_ECONT;
        /* permessage-deflate marks the first frame only (RFC 7692 6.1). */
        if (h->rsv & WS_FRAME_RSV1)
            return WS_ERSV;
    } else {
        if (r->_msg_op)
            return WS_EINTERLEAVE;
        r->_msg_op = h->opcode;
        r->_msg_flags = (h->rsv & WS_FRAME_RSV1) ? WS_MSG_COMPRESSED : 0;
        ws_utf8_init(&r->_utf8);
    }
    /* A compressed message's limit is on its inflated size, the caller's to check; on the
     * wire an incompressible one may be slightly larger than itself. */
    size_t max = r->max_message;
    if (r->_msg_flags & WS_MSG_COMPRESSED) {
        size_t slack = (max >> 8) + 1024;
        max = max > SIZE_MAX - slack ? SIZE_MAX : max + slack; /* --max-message may be huge */
    }
    /* _msg.len never exceeds this message's max, so the subtraction cannot wrap. */
    if (h->len > max - r->_msg.len)
        return WS_ETOOBIG;
    return 0;
}

/* A frame that lies whole in the fed buffer: unmask and deliver it where it is.
 * Only control frames and single-frame data messages qualify; fragments always
 * go through _msg. The usual message takes message_inplace instead; this is
 * for control frames and messages whose header was split across feeds.
 * Returns <0 error, 0 go on, >0 stop. */
static int frame_inplace(ws_msg_reader_t *r, uint8_t *p, size_t n)
{
    const ws_frame_hdr_t *h = &r->_fh;
    int rc;

    if (h->masked)
        ws_frame_mask(p, n, h->mask, 0);
    if (is_control(h->opcode)) {
        if (h->opcode == WS_OP_CLOSE && (rc = close_check(p, n)) != 0)
            return rc;
        return deliver(r, h->opcode, 0, p, n) ? 1 : 0;
    }
    if (text_checked(r) && !ws_utf8_valid(p, n))
        return WS_EUTF8;
    unsigned op = r->_msg_op, flags = r->_msg_flags;
    r->_msg_op = 0;
    r->_msg_flags = 0;
    return deliver(r, op, flags, p, n) ? 1 : 0;
}

/* The usual message (ws_frame_usual: a text or binary frame with FIN, no RSV
 * bit, masked) with no message in progress, its payload p[0..n) all in the
 * fed buffer. What frame_begin and frame_inplace do for it, in the same
 * order, from the header's bytes at hand: the opcode is not stored in
 * _msg_op to be cleared again before the delivery, and _fh is not written
 * (a header is parsed into it before any use). Returns <0 error, 0 go on,
 * >0 stop. */
static inline int message_inplace(ws_msg_reader_t *r, unsigned op, const uint8_t *mask,
                                  uint8_t *p, size_t n)
{
    ws_utf8_init(&r->_utf8);
    if (n > r->max_message - r->_msg.len)
        return WS_ETOOBIG;
    r->_done = 0;
    /* ASCII is valid UTF-8: what the unmasking saw spares the check. */
    if (!ws_frame_unmask_ascii(p, n, mask) && op == WS_OP_TEXT && !ws_utf8_valid(p, n))
        return WS_EUTF8;
    return deliver(r, op, 0, p, n) ? 1 : 0;
}

/* The next n payload bytes of the current frame (n may be 0). */
static int frame_chunk(ws_msg_reader_t *r, uint8_t *p, size_t n)
{
    const ws_frame_hdr_t *h = &r->_fh;

    if (h->masked)
        ws_frame_mask(p, n, h->mask, r->_done);
    if (is_control(h->opcode)) {
        if (!r->_ctrl)
            r->_ctrl = ws_malloc(125); /* RFC 6455 5.5: control payloads are at most 125 bytes */
        memcpy(r->_ctrl + r->_done, p, n);
        return 0;
    }
    /* Validating each chunk on arrival fails a bad text message at its first
     * bad byte rather than after the whole message has been buffered. */
    if (text_checked(r) && ws_utf8_feed(&r->_utf8, p, n) != 0)
        return WS_EUTF8;
    ws_buf_append(&r->_msg, p, n);
    return 0;
}

/* The current frame's payload is all in: deliver it if it ends something.
 * Returns <0 error, 0 go on, >0 stop. */
static int frame_end(ws_msg_reader_t *r)
{
    const ws_frame_hdr_t *h = &r->_fh;
    int rc;

    if (is_control(h->opcode)) {
        size_t n = (size_t)h->len;
        if (h->opcode == WS_OP_CLOSE && (rc = close_check(r->_ctrl, n)) != 0)
            return rc;
        return deliver(r, h->opcode, 0, r->_ctrl, n) ? 1 : 0;
    }
    if (!h->fin)
        return 0;
    if (text_checked(r) && !ws_utf8_complete(&r->_utf8))
        return WS_EUTF8;
    unsigned op = r->_msg_op, flags = r->_msg_flags;
    r->_msg_op = 0;
    r->_msg_flags = 0;
    rc = deliver(r, op, flags, r->_msg.data, r->_msg.len);
    ws_buf_reset(&r->_msg, MSG_KEEP);
    return rc ? 1 : 0;
}

long ws_msg_feed(ws_msg_reader_t *r, uint8_t *buf, size_t len)
{
    size_t pos = 0;
    int rc;

    if (r->_err)
        return r->_err;
    /* The payload phase also runs with no input left, so that a zero-length
     * frame whose header ended the buffer is finished in this call. */
    while (pos < len || r->_phase == PH_PAYLOAD) {
        if (r->_phase == PH_HDR) {
            if (r->_hdr_len == 0) {
                /* Most often the whole of a usual message is in buf: taken
                 * from its header's bytes where they are. */
                int n = ws_frame_usual(buf + pos, len - pos);
                if (n >= 0 && (size_t)n <= len - pos - 6 && !r->_msg_op) {
                    uint8_t *h = buf + pos;
                    pos += 6 + (size_t)n;
                    rc = message_inplace(r, h[0] & 0x0F, h + 2, h + 6, (size_t)n);
                    if (rc < 0)
                        return fail(r, rc);
                    if (rc > 0)
                        return (long)pos;
                    continue;
                }
                /* Otherwise a header that is whole in buf is parsed where it
                 * is too: the parser reads no further than the header, so the
                 * answer is the one it gives for the header alone. */
                rc = ws_frame_parse_header(buf + pos, len - pos, r->rsv_allowed, 1, &r->_fh);
                if (rc == WS_EAGAIN) {
                    /* Less than a header (< WS_FRAME_HDR_MAX bytes) ends buf:
                     * kept in _hdr until the next feed completes it. */
                    r->_hdr_len = (uint8_t)(len - pos);
                    memcpy(r->_hdr, buf + pos, len - pos);
                    pos = len;
                    break;
                }
            } else {
                /* The rest of a header split across feeds, completed in _hdr. */
                size_t take = len - pos;
                if (take > (size_t)(WS_FRAME_HDR_MAX - r->_hdr_len))
                    take = (size_t)(WS_FRAME_HDR_MAX - r->_hdr_len);
                memcpy(r->_hdr + r->_hdr_len, buf + pos, take);
                rc = ws_frame_parse_header(r->_hdr, r->_hdr_len + take, r->rsv_allowed, 1, &r->_fh);
                if (rc == WS_EAGAIN) {
                    r->_hdr_len = (uint8_t)(r->_hdr_len + take);
                    pos += take;
                    break;
                }
            }
            if (rc < 0)
                return fail(r, rc);
            pos += (size_t)rc - r->_hdr_len;
            r->_hdr_len = 0;
            if ((rc = frame_begin(r)) != 0)
                return fail(r, rc);
            r->_done = 0;
            if (r->_fh.len <= len - pos &&
                (is_control(r->_fh.opcode) || (r->_fh.fin && r->_fh.opcode != WS_OP_CONT))) {
                uint8_t *p = buf + pos;
                pos += (size_t)r->_fh.len;
                rc = frame_inplace(r, p, (size_t)r->_fh.len);
                if (rc < 0)
                    return fail(r, rc);
                if (rc > 0)
                    return (long)pos;
                continue;
            }
            r->_phase = PH_PAYLOAD;
        }

        uint64_t left = r->_fh.len - r->_done;
        size_t n = len - pos;
        if (left < n)
            n = (size_t)left;
        if (n > 0 && (rc = frame_chunk(r, buf + pos, n)) != 0)
            return fail(r, rc);
        pos += n;
        r->_done += n;
        if (r->_done < r->_fh.len)
            break;
        r->_phase = PH_HDR;
        rc = frame_end(r);
        if (rc < 0)
            return fail(r, rc);
        if (rc > 0)
            return (long)pos;
    }
    return (long)pos;
}

void ws_msg_close_parse(const uint8_t *data, size_t len, unsigned *code, const uint8_t **reason,
                        size_t *reason_len)
{
    if (len < 2) {
        *code = WS_CLOSE_NO_STATUS;
        *reason = data;
        *reason_len = 0;
        return;
    }
    *code = (unsigned)data[0] << 8 | data[1];
    *reason = data + 2;
    *reason_len = len - 2;
}
