/*
 * error.h: the one error enum of wspush, and RFC 6455 close codes.
 *
 * Every function that can fail returns a negative ws_err (or a libuv error,
 * which passes through unchanged: libuv errors are in -4095..-1 and ours are
 * grouped below -100, so the two never collide).
 */
#ifndef WS_ERROR_H
#define WS_ERROR_H

typedef enum {
    WS_OK = 0,
    /* Not an error: the input ended before a complete unit. Feed more. */
    WS_EAGAIN = -100,

    /* Protocol violations by the peer (RFC 6455). Map to close 1002. */
    WS_EPROTO = -200,     /* generic protocol error */
    WS_EUNMASKED = -201,  /* client frame without the mask bit */
    WS_ERSV = -202,       /* RSV bit set without a negotiated extension */
    WS_EOPCODE = -203,    /* reserved opcode */
    WS_ECTRLLEN = -204,   /* control frame payload over 125 bytes */
    WS_ECTRLFRAG = -205,  /* fragmented control frame */
    WS_ECONT = -206,      /* continuation frame with no message in progress */
    WS_EINTERLEAVE = -207,/* new data frame while a fragmented one is open */
    WS_ECLOSECODE = -208, /* close frame with an invalid status code */
    WS_ECLOSELEN = -209,  /* close frame with a 1-byte payload */
    WS_ELEN64 = -210,     /* 64-bit length with the most significant bit set */
    WS_EUTF8 = -220,      /* invalid UTF-8 in a text message or close reason (1007) */

    /* Limits set by configuration. */
    WS_ETOOBIG = -300,    /* message over --max-message (1009) */
    WS_EHDRTOOBIG = -301, /* HTTP header block over the limit (431) */
    WS_EBODYTOOBIG = -302,/* HTTP body over the limit (413) */
    WS_EURITOOBIG = -303, /* request target over the limit (414) */
    WS_EFULL = -304,      /* outbound queue over --max-buffered (backpressure) */
    WS_EINFLATE = -310,   /* permessage-deflate data could not be inflated */

    /* HTTP and handshake. */
    WS_EHTTP = -400,      /* malformed HTTP request */

    /* Usage and resources. */
    WS_EINVAL = -500,     /* bad argument or configuration */
    WS_ENOMEM = -501
} ws_err;

/* RFC 6455 section 7.4.1 status codes used by the server. */
typedef enum {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_GOING_AWAY = 1001,
    WS_CLOSE_PROTOCOL = 1002,
    WS_CLOSE_UNSUPPORTED = 1003,
    WS_CLOSE_NO_STATUS = 1005,   /* never sent: reported when a close had no code */
    WS_CLOSE_ABNORMAL = 1006,    /* never sent: reported when TCP died without a close */
    WS_CLOSE_INVALID_DATA = 1007,
    WS_CLOSE_POLICY = 1008,
    WS_CLOSE_TOO_BIG = 1009,
    WS_CLOSE_EXTENSION = 1010,
    WS_CLOSE_INTERNAL = 1011,
    WS_CLOSE_TRY_AGAIN = 1013
} ws_close_code;

/* Short symbolic name of an error ("WS_EUTF8"), or "UV_*" style text for libuv errors. Never NULL. */
const char *ws_err_name(int err);

/* Human-readable message for an error. Never NULL; static storage. */
const char *ws_strerror(int err);

/* The close code a connection must be failed with for error err:
 * 1002 for protocol errors, 1007 for WS_EUTF8/WS_EINFLATE, 1009 for WS_ETOOBIG,
 * 1013 for WS_ENOMEM (a server memory limit), 1011 otherwise. */
int ws_err_close_code(int err);

/* 1 if a peer may send this status code in a close frame (RFC 6455 7.4, IANA registry):
 * 1000-1003, 1007-1014, 3000-4999. 0 for 0-999, 1004-1006, 1015, 1016-2999, 5000+. */
int ws_close_code_valid(unsigned code);

#endif
