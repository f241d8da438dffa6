/*
 * handshake.h: RFC 6455 section 4 server-side opening handshake. Pure: the
 * caller (http.c) has parsed the request; this checks it and builds responses.
 * No I/O, no Lua, no allocation.
 */
#ifndef WS_HANDSHAKE_H
#define WS_HANDSHAKE_H

#include <stddef.h>

typedef struct {
    const char *name;   /* as received; compare case-insensitively */
    size_t name_len;
    const char *value;  /* leading/trailing whitespace already trimmed */
    size_t value_len;
} ws_header_t;

typedef struct {
    const char *method; /* e.g. "GET" */
    size_t method_len;
    int http_major, http_minor;
    const ws_header_t *headers;
    size_t nheaders;
} ws_hs_request_t;

typedef struct {
    int status;                /* 0 when the request is a valid upgrade, else the HTTP status to answer */
    const char *reason;        /* static short reason for an error body ("missing Sec-WebSocket-Key") */
    char accept[29];           /* Sec-WebSocket-Accept value, NUL-terminated, when status == 0 */
    const char *protocols;     /* raw value of Sec-WebSocket-Protocol (all such headers: first one), or NULL */
    size_t protocols_len;
    const char *extensions;    /* raw value of Sec-WebSocket-Extensions, or NULL */
    size_t extensions_len;
    const char *origin;        /* Origin header value, or NULL */
    size_t origin_len;
    const char *host;          /* Host header value, or NULL */
    size_t host_len;
} ws_hs_result_t;

/* Find a header by name (case-insensitive). Returns its index or -1. */
long ws_header_find(const ws_header_t *h, size_t n, const char *name);

/* 1 if the comma-separated list value[0..len) contains token (case-insensitive,
 * surrounding whitespace ignored), e.g. "keep-alive, Upgrade" has "upgrade". */
int ws_token_list_has(const char *value, size_t len, const char *token);

/* 1 if the request asks for a WebSocket upgrade at all (an Upgrade header
 * whose token list contains "websocket"). */
int ws_handshake_is_upgrade(const ws_hs_request_t *req);

/* Check an upgrade request. Fills out and returns out->status:
 *   0    valid: out->accept is set;
 *   405  method is not GET;
 *   400  HTTP/1.0 or older, missing Host, Upgrade without "websocket",
 *        Connection without "upgrade", missing or malformed Sec-WebSocket-Key
 *        (must be base64 of exactly 16 bytes);
 *   426  Sec-WebSocket-Version missing or not 13 (the response must carry
 *        "Sec-WebSocket-Version: 13").
 * out->reason names the first problem found. Pointers in out point into req. */
int ws_handshake_check(const ws_hs_request_t *req, ws_hs_result_t *out);

/* Sec-WebSocket-Accept for key[0..len): base64(SHA-1(key + GUID)) into out (29 bytes incl. NUL). */
void ws_handshake_accept(const char *key, size_t len, char out[29]);

/* 1 if origin (a serialized origin such as "https://example.com:8443") names
 * the same host and port as the Host header value host ("example.com:8443").
 * Default ports (80 for http/ws, 443 for https/wss) are implied when absent;
 * host names compare case-insensitively. "null" or a malformed origin -> 0. */
int ws_handshake_same_origin(const char *origin, size_t origin_len, const char *host, size_t host_len);

/* Iterate the comma-separated tokens of list[0..len): *pos starts at 0; each
 * call stores the next non-empty trimmed token and returns 1, or returns 0 at the end. */
int ws_token_next(const char *list, size_t len, size_t *pos, const char **tok, size_t *tok_len);

/* Write the 101 response into out[0..cap). subprotocol and extensions may be
 * NULL (header omitted). Returns the length, or WS_EINVAL when cap is too small. */
long ws_handshake_response(char *out, size_t cap, const char *accept, const char *subprotocol,
                           const char *extensions);

#endif
