/*
 * deflate.h: permessage-deflate (RFC 7692) on zlib. Pure: no I/O, no Lua.
 *
 * Three parts:
 *   - negotiation: a Sec-WebSocket-Extensions offer and the server's
 *     configuration in, the agreed parameters and the response string out;
 *   - a per-connection codec (ws_deflate_t) that compresses outgoing messages
 *     and inflates incoming ones, fragment by fragment, with a size bound;
 *   - a one-shot compressor for publish, whose output can be shared by every
 *     subscriber that allows it (see ws_deflate_compress_once).
 *
 * Memory: zlib state is allocated lazily, the first time a direction is used,
 * through allocator hooks that count every byte. The count is kept per
 * connection and for the whole process, and ws_deflate_set_mem_limit caps the
 * process total. At the cap, outgoing messages fall back to uncompressed
 * (RSV1 is per message, so that is always allowed) and incoming compressed
 * messages are refused with WS_ENOMEM.
 *
 * Window bits: zlib cannot produce a raw deflate stream with an 8-bit
 * (256-byte) window: deflateInit2 silently turns 8 into 9. Our compressor
 * therefore uses 9..15, and an offer with server_max_window_bits=8 is declined
 * (the response may not exceed the offered value). The inflater always uses a
 * 15-bit window: a bigger window decodes every stream made with a smaller one.
 */
#ifndef WS_DEFLATE_H
#define WS_DEFLATE_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* --- negotiation --- */

/* Longest response ws_deflate_negotiate can produce, NUL included. */
#define WS_DEFLATE_RESPONSE_MAX 160

/* Server-side settings, from the command line. */
typedef struct {
    int enabled;                    /* 0: never accept an offer */
    int server_max_window_bits;     /* 8..15: largest window our compressor uses (8 acts as 9) */
    int client_max_window_bits;     /* 8..15: asked of clients that allow it; 15 = no request */
    int server_no_context_takeover; /* 1: reset our compressor after every message (and say so) */
    int client_no_context_takeover; /* 1: ask clients to reset theirs (frees our inflater) */
    int mem_level;                  /* zlib memLevel of the compressor, 1..9 */
    int level;                      /* zlib compression level, 0..9, or -1 for zlib's default (6) */
    size_t threshold;               /* messages shorter than this are sent uncompressed */
    int release_idle;               /* free zlib state after messages when no context is kept */
} ws_deflate_config_t;

/* What was agreed with one client. */
typedef struct {
    int server_no_context_takeover; /* 1: we reset our compressor after every message */
    int client_no_context_takeover; /* 1: the client resets its compressor, we our inflater */
    int server_max_window_bits;     /* 9..15: the window our compressor uses for this client */
    int client_max_window_bits;     /* 8..15: the bound the client uses (15 when none was given) */
} ws_deflate_params_t;

/* Fill cfg with the recommended defaults: disabled; when enabled, server
 * window 15, client window not constrained (15), server_no_context_takeover 1,
 * client_no_context_takeover 0, memLevel 8, level 6, threshold 1024,
 * release_idle 1. */
void ws_deflate_config_default(ws_deflate_config_t *cfg);

/* Choose among the offers in the Sec-WebSocket-Extensions value
 * offers[0..len) (several headers must be joined with ", " by the caller).
 * Extensions other than permessage-deflate are skipped. The first
 * permessage-deflate offer that is acceptable wins. An offer is declined when
 * a parameter is unknown or repeated, when a value is missing, present where
 * none is allowed, or not a decimal 8..15 without leading zeros (a
 * quoted-string value is unquoted first), or when it asks for
 * server_max_window_bits=8 (see above).
 * Returns 1 when an offer is accepted: *params is set and resp[0..resp_cap)
 * receives the NUL-terminated response extension, such as
 * "permessage-deflate; server_no_context_takeover; client_max_window_bits=12".
 * Returns 0 when there is nothing to accept (disabled, no offer, or every
 * offer declined): the handshake goes on without the extension; *params and
 * resp are untouched. Returns WS_EINVAL when cfg is out of range or resp_cap <
 * WS_DEFLATE_RESPONSE_MAX. Never allocates. */
int ws_deflate_negotiate(const ws_deflate_config_t *cfg, const char *offers, size_t len,
                         ws_deflate_params_t *params, char *resp, size_t resp_cap);

/* --- per-connection codec --- */

struct z_stream_s;

typedef struct {
    ws_deflate_params_t params; /* as negotiated; read-only after init */
    int level, mem_level;
    size_t threshold;
    int release_idle;

    /* private state */
    struct z_stream_s *_def; /* compressor, NULL until first needed */
    struct z_stream_s *_inf; /* inflater, NULL until first needed */
    size_t _mem;             /* bytes zlib holds for this connection */
    size_t _inf_total;       /* bytes inflated so far for the message in progress */
    int _inf_err;            /* sticky inflate error */
    int _def_reset;          /* drop the compressor's context before the next message */
    int _inf_ended;          /* the message in progress ended with a BFINAL block */
} ws_deflate_t;

/* Set up a codec for a connection that negotiated params, with the level,
 * memLevel, threshold and release_idle of cfg. Allocates nothing. */
void ws_deflate_init(ws_deflate_t *d, const ws_deflate_config_t *cfg,
                     const ws_deflate_params_t *params);

/* Free all zlib state. d may be initialised again after. */
void ws_deflate_close(ws_deflate_t *d);

/* 1 if a message of len bytes should be compressed (len >= threshold), else 0. */
int ws_deflate_should_compress(const ws_deflate_t *d, size_t len);

/* Compress one whole message in[0..len) and append it to out, ready to be
 * the payload of a frame with RSV1 set: raw deflate, flushed with
 * Z_SYNC_FLUSH, the trailing 00 00 ff ff removed (RFC 7692 7.2.1). An empty
 * message gives the single byte 00 without touching zlib. With server_no_context_takeover the
 * compressor is reset after the message (and freed when release_idle).
 * Returns 0 on success.
 * Returns WS_ENOMEM, appending nothing, when the compressor had to be created
 * and the process zlib memory cap does not allow it: send the message
 * uncompressed (RSV1 clear); the fallback is counted in the stats.
 * Once 0 was returned the compressed bytes must be sent: with context
 * takeover the next message may refer to them. (With no context takeover
 * the caller may still send the original instead if it is shorter.) */
int ws_deflate_compress(ws_deflate_t *d, const uint8_t *in, size_t len, ws_buf_t *out);

/* Inflate the payload in[0..len) of one frame of a compressed message (the
 * first frame had RSV1; continuation frames are fed the same way) and append
 * the output to out. max_out bounds the inflated size of the whole message,
 * counted from its first chunk; it is enforced while inflating, so at most
 * max_out + 1 bytes are ever produced and out grows to at most its length at
 * the first chunk + max_out + 1.
 * Returns 0 (feed the next fragment, or call ws_deflate_inflate_end after the
 * FIN frame), or:
 *   WS_ETOOBIG  the message inflates to more than max_out bytes (close 1009);
 *   WS_EINFLATE the data is not a valid deflate stream (close 1007);
 *   WS_ENOMEM   the process zlib memory cap was reached (close 1013, try again
 *               later: this is the server's condition, not the peer's fault).
 * After an error out holds a partial result, the inflater is unusable and
 * every later call returns the same error: fail the connection. */
int ws_deflate_inflate_chunk(ws_deflate_t *d, const uint8_t *in, size_t len, size_t max_out,
                             ws_buf_t *out);

/* Finish the message: inflate the 00 00 ff ff tail the sender removed,
 * then reset the inflater when client_no_context_takeover (and free it when
 * release_idle). Same returns as ws_deflate_inflate_chunk; on 0 the next
 * message may begin. */
int ws_deflate_inflate_end(ws_deflate_t *d, size_t max_out, ws_buf_t *out);

/* A whole message in one call: ws_deflate_inflate_chunk then ws_deflate_inflate_end. */
int ws_deflate_inflate(ws_deflate_t *d, const uint8_t *in, size_t len, size_t max_out,
                       ws_buf_t *out);

/* --- shared frames for publish --- */

/* Compress in[0..len) as a self-contained message (no context before or
 * after) with a window of window_bits (9..15), and append it to out in the
 * same form as ws_deflate_compress. The zlib state lives only for the call.
 * Returns 0, WS_EINVAL for bad arguments, or WS_ENOMEM at the memory cap (the
 * caller sends the message uncompressed, or compresses per connection). */
int ws_deflate_compress_once(int window_bits, int level, int mem_level, const uint8_t *in,
                             size_t len, ws_buf_t *out);

/* Whether a frame made by ws_deflate_compress_once(window_bits, ...) may be
 * sent to this connection instead of compressing for it. It may when the
 * client accepted a window at least that big (window_bits <=
 * params.server_max_window_bits): the client's decoder then reads it like any
 * other message. Our own compressor never saw the message, so if it keeps
 * context its next message could refer back across the shared one with
 * wrong distances; hence, with context takeover, this call also makes the
 * compressor drop its context before its next message (compression of later
 * messages gets a little worse). With server_no_context_takeover nothing
 * changes. Returns 1 (send the shared frame; this connection is marked) or 0
 * (its window is too small: compress for it or send it uncompressed).
 * Publish therefore compresses once with the smallest server_max_window_bits
 * among the subscribers, or groups subscribers by it. */
int ws_deflate_use_shared(ws_deflate_t *d, int window_bits);

/* Some compressed messages will never reach the client (dropped by
 * backpressure): with context takeover, make the compressor drop its context
 * before its next message, so nothing refers back to them. No-op otherwise. */
void ws_deflate_forget(ws_deflate_t *d);

/* --- memory accounting --- */

typedef struct {
    size_t mem;                 /* bytes currently allocated by zlib, all connections */
    size_t mem_peak;            /* highest mem since start or ws_deflate_stats_reset_peak */
    size_t mem_limit;           /* the cap, 0 = none */
    uint64_t deflate_fallbacks; /* outgoing messages sent uncompressed because of the cap */
    uint64_t inflate_refused;   /* inbound messages refused because of the cap */
} ws_deflate_stats_t;

/* Cap the zlib memory of the whole process at bytes (0 = no cap, the
 * default). Allocations already made are kept. Thread-safe. */
void ws_deflate_set_mem_limit(size_t bytes);

/* Rough zlib bytes of one connection that keeps both contexts at the default
 * window and memLevel (268 KB compressor + 40 KB inflater, measured). */
#define WS_DEFLATE_CONN_ESTIMATE (320u * 1024u)

/* Bytes zlib currently holds for this connection (compressor + inflater). */
size_t ws_deflate_mem(const ws_deflate_t *d);

/* Bytes zlib currently holds in the whole process. */
size_t ws_deflate_mem_total(void);

void ws_deflate_stats(ws_deflate_stats_t *out);
void ws_deflate_stats_reset_peak(void);

#endif
