/*
 * message.h: the inbound side of a WebSocket connection above the frame codec:
 * streaming frame parsing, unmasking, fragment reassembly, the message size
 * limit, UTF-8 validation of text (incremental, across fragments, failing at
 * the first bad byte) and close-frame validation. Pure: no I/O, no Lua.
 *
 * Bytes are fed in arbitrary chunks; every complete message and every control
 * frame is handed to one callback. A message that arrives whole inside one fed
 * chunk is delivered in place (unmasked inside the caller's buffer, no copy);
 * otherwise it is reassembled in the reader's own buffer.
 */
#ifndef WS_MESSAGE_H
#define WS_MESSAGE_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "frame.h"
#include "utf8.h"

/* flags passed to the callback */
#define WS_MSG_COMPRESSED 0x1 /* RSV1 was set on the first frame (permessage-deflate) */

/* Called once per complete message (op WS_OP_TEXT or WS_OP_BINARY) and once
 * per control frame (WS_OP_PING, WS_OP_PONG, WS_OP_CLOSE). data is valid only
 * during the call (it may point into the fed buffer or the reader's buffer);
 * the callee may modify it in place.
 * For WS_OP_CLOSE the payload has been validated: len is 0 or >= 2, the code is
 * ws_close_code_valid and the reason is valid UTF-8.
 * Return 0 to go on, non-zero to make ws_msg_feed stop right after this frame. */
typedef int (*ws_msg_cb)(void *ud, unsigned op, unsigned flags, uint8_t *data, size_t len);

typedef struct {
    /* configuration (set before feeding) */
    size_t max_message;    /* largest message, reassembled; larger -> WS_ETOOBIG (a compressed
                              one, RSV1, may be max_message / 256 + 1024 larger on the wire:
                              its inflated size is the caller's to hold to max_message) */
    ws_msg_cb cb;
    void *ud;
    unsigned rsv_allowed;  /* WS_FRAME_RSV1 when permessage-deflate is negotiated, else 0 */

    /* private state (ordered to leave no padding: every connection has one) */
    int _err;              /* sticky error after a violation */
    int _phase;            /* header / payload */
    unsigned _msg_op;      /* opcode of the message in progress (0: none) */
    unsigned _msg_flags;
    ws_utf8_t _utf8;
    uint8_t _hdr[WS_FRAME_HDR_MAX];
    uint8_t _hdr_len;
    ws_frame_hdr_t _fh;    /* current frame */
    uint64_t _done;        /* payload bytes of the current frame already consumed */
    ws_buf_t _msg;         /* reassembly of a fragmented or split data message */
    uint8_t *_ctrl;        /* a control frame split across feeds: 125 bytes made on
                              first need, so that idle readers stay small */
} ws_msg_reader_t;

/* Initialise with the given limit; cb receives ud. The caller may adjust rsv_allowed after. */
void ws_msg_reader_init(ws_msg_reader_t *r, size_t max_message, ws_msg_cb cb, void *ud);

/* Release the reassembly buffer. The reader may be re-initialised after. */
void ws_msg_reader_free(ws_msg_reader_t *r);

/* Release the buffers of an idle reader (no message or control frame in
 * progress); they are made again when needed. Returns 1 if it released any. */
int ws_msg_reader_trim(ws_msg_reader_t *r);

/* Feed buf[0..len). buf is modified (unmasked in place).
 * Returns the number of bytes consumed: len, or fewer when the callback asked
 * to stop (the rest is not parsed; feed it again to continue).
 * Returns a negative ws_err on the first violation (WS_EPROTO family, WS_EUTF8,
 * WS_ETOOBIG; for a too-big message this is detected from the frame header,
 * before the payload arrives); after an error every call returns the same error.
 * Text messages without WS_MSG_COMPRESSED are UTF-8 validated incrementally;
 * compressed ones are left to the caller (validate after inflating). */
long ws_msg_feed(ws_msg_reader_t *r, uint8_t *buf, size_t len);

/* Parse a validated close payload: code (WS_CLOSE_NO_STATUS when len == 0)
 * and the reason (pointer into data, may be empty). */
void ws_msg_close_parse(const uint8_t *data, size_t len, unsigned *code, const uint8_t **reason,
                        size_t *reason_len);

#endif
