/*
 * frame.h: RFC 6455 section 5 frame codec. Pure: bytes in, header out;
 * no I/O, no Lua, no allocation.
 */
#ifndef WS_FRAME_H
#define WS_FRAME_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    WS_OP_CONT = 0x0,
    WS_OP_TEXT = 0x1,
    WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8,
    WS_OP_PING = 0x9,
    WS_OP_PONG = 0xA
} ws_opcode_t;

#define WS_FRAME_FIN 0x80
#define WS_FRAME_RSV1 0x40
#define WS_FRAME_RSV2 0x20
#define WS_FRAME_RSV3 0x10
#define WS_FRAME_HDR_MAX 14 /* 2 + 8 (64-bit length) + 4 (mask) */

/* Every connection's reader holds one: bytes, not words. */
typedef struct {
    uint8_t fin;       /* 1 if FIN is set */
    uint8_t rsv;       /* the RSV bits as in byte 0 (WS_FRAME_RSV1|2|3 mask) */
    uint8_t opcode;    /* ws_opcode_t */
    uint8_t masked;    /* 1 if the mask bit is set */
    uint8_t mask[4];   /* masking key, valid when masked */
    uint64_t len;      /* payload length */
} ws_frame_hdr_t;

/* Parse one frame header from buf[0..len).
 * rsv_allowed: the RSV bits a negotiated extension permits (0 without one).
 * require_mask: 1 on a server (client frames must be masked).
 * Returns the header length (2..14) on success; WS_EAGAIN if buf holds only
 * part of a header; or the error for the first violation found in the header:
 * WS_ERSV (RSV bit not in rsv_allowed; RSV bits on control frames are always
 * refused), WS_EOPCODE (reserved opcode 3-7, 0xB-0xF), WS_ECTRLFRAG (control
 * frame without FIN), WS_ECTRLLEN (control payload > 125), WS_ELEN64 (64-bit
 * length with the top bit set), WS_EUNMASKED (require_mask and no mask).
 * h is filled only on success. */
int ws_frame_parse_header(const uint8_t *buf, size_t len, unsigned rsv_allowed, int require_mask,
                          ws_frame_hdr_t *h);

/* The usual header of a client's message: FIN, text or binary, no RSV bit,
 * masked, a 7-bit length; 6 bytes, the key at buf + 2. Returns the payload
 * length when buf[0..len) starts with such a header, else -1: the reader then
 * skips ws_frame_parse_header, which would accept it with these values. */
static inline int ws_frame_usual(const uint8_t *buf, size_t len)
{
    if (len < 6 || buf[0] - 0x81u > 1 || buf[1] - 0x80u > 125)
        return -1;
    return buf[1] & 0x7F;
}

/* Write a frame header into out (room for WS_FRAME_HDR_MAX bytes).
 * first_byte: FIN/RSV bits | opcode. mask: NULL for server frames, else the
 * 4-byte key (the mask bit is set and the key is written; the caller masks the
 * payload with ws_frame_mask). Uses the minimal length encoding.
 * Returns the number of bytes written. */
size_t ws_frame_write_header(uint8_t *out, unsigned first_byte, uint64_t len, const uint8_t *mask);

/* The length of the header ws_frame_write_header writes for a payload of len
 * bytes, masked or not: a caller can make room for header and payload at
 * once and write the header in its place. */
static inline size_t ws_frame_header_len(uint64_t len, int masked)
{
    return (len < 126 ? 2 : len <= 0xFFFF ? 4 : 10) + (masked ? 4 : 0);
}

/* XOR data[0..len) in place with mask, as if data started at payload offset
 * `offset` (so a payload may be unmasked in several chunks). Works a machine
 * word at a time; data need not be aligned. */
void ws_frame_mask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t offset);

/* ws_frame_mask of a whole payload (offset 0), which also tells whether the
 * bytes it unmasked are all ASCII (1) or not (0): a text message then needs
 * no UTF-8 check, and the reader does not read its bytes a second time. */
int ws_frame_unmask_ascii(uint8_t *data, size_t len, const uint8_t mask[4]);

#endif
