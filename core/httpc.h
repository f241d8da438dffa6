/*
 * httpc.h: the client side of HTTP/1.1 (http.h is the server side): the
 * head of a request we send, and the response we read back, on llhttp.
 * Pure: bytes in, bytes and values out; no I/O, no Lua.
 *
 * Reading a response: ws_httpc_res_init, then ws_httpc_res_feed with what
 * arrives until it reports the response complete or an error; on the end
 * of the stream, ws_httpc_res_eof (a body delimited by the close completes
 * there). Interim 1xx responses are skipped; the body of a response to
 * HEAD, of 204 and of 304 is empty whatever the head says.
 */
#ifndef WS_HTTPC_H
#define WS_HTTPC_H

#include <llhttp.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "handshake.h" /* ws_header_t */
#include "url.h"

/* 1 when m (NUL-terminated) is an HTTP method: a token of 1 to 32 bytes. */
int ws_httpc_method_valid(const char *m);

/* 1 when h[0..len) is a run of "Name: value\r\n" lines (the name a token,
 * the value without CR, LF or NUL) and none of them is Content-Length or
 * Transfer-Encoding (the body's framing is ours). */
int ws_httpc_headers_valid(const char *h, size_t len);

/* 1 when the (valid) lines h[0..len) have a header called name (any case). */
int ws_httpc_has_header(const char *h, size_t len, const char *name);

/* Remove from the (valid) lines in h those called one of names (a
 * NULL-terminated list, any case). */
void ws_httpc_drop_headers(ws_buf_t *h, const char *const *names);

/* Append the head of a request to out: "METHOD target HTTP/1.1", then
 * Host (u's authority), User-Agent "wspush/<version>" and, when u has
 * userinfo, Basic Authorization, each unless hdrs has it; then hdrs (valid
 * lines); then Content-Length when body_len > 0 or the method is POST, PUT
 * or PATCH; then the empty line. The credentials are wiped from the scratch
 * memory used to encode them (out holds them, base64-encoded). */
void ws_httpc_head(ws_buf_t *out, const char *method, const ws_url_t *u, const char *hdrs,
                   size_t hlen, size_t body_len);

#define WS_HTTPC_MAX_HEAD 65536

typedef struct {
    uint32_t name_off, name_len, value_off, value_len;
} ws_httpc_span_t;

typedef struct {
    /* Set by ws_httpc_res_init. */
    size_t max_body;     /* a body over this fails with "response too large" */
    int head;            /* the request was HEAD */
    int skip_redirect;   /* keep no body for a 301/302/303/307/308 with a Location */

    /* What was read: status and headers once the head is in, the rest
     * once complete. */
    int status;
    int complete;        /* the final response is whole */
    int keep_alive;      /* the connection may carry another request */
    int skipped;         /* its body was a redirect's, not kept */
    const char *error;   /* after a failed feed: "response too large" or "invalid response" */

    /* private */
    llhttp_t _p;
    int _in_value;
    size_t _hbytes;      /* head bytes so far, interim responses included */
    ws_buf_t _raw;       /* header names and values */
    ws_buf_t _spans;     /* ws_httpc_span_t[] into _raw */
    ws_buf_t _body;
} ws_httpc_res_t;

/* Start reading a response. r is zero-filled before its first init; after
 * that, init starts the next response (buffers are kept). r must stay in
 * place while a response is read (llhttp points at it). */
void ws_httpc_res_init(ws_httpc_res_t *r, int head, size_t max_body, int skip_redirect);
/* Release the buffers (counted in mem.h's budget as buffers). */
void ws_httpc_res_free(ws_httpc_res_t *r);

/* Feed data[0..len). Returns how many bytes were consumed: all of them
 * while the response is incomplete, the bytes up to its end once
 * r->complete is set (what follows is not part of it); or -1 with r->error
 * set ("response too large" when the Content-Length or the body exceeds
 * max_body, "invalid response" for anything llhttp refuses or a head over
 * WS_HTTPC_MAX_HEAD bytes). Feeding a complete response consumes nothing. */
long ws_httpc_res_feed(ws_httpc_res_t *r, const uint8_t *data, size_t len);

/* The server closed its side: a body delimited by the close is complete
 * now. Returns r->complete. */
int ws_httpc_res_eof(ws_httpc_res_t *r);

/* The value of the first header called name (any case), trailing
 * whitespace trimmed, or NULL. Valid until the next init or free. */
const char *ws_httpc_res_header(const ws_httpc_res_t *r, const char *name, size_t *len);

/* How many headers (trailers of a chunked body included); fill out with
 * them (names as received). Valid until the next init or free. */
size_t ws_httpc_res_nheaders(const ws_httpc_res_t *r);
void ws_httpc_res_headers(const ws_httpc_res_t *r, ws_header_t *out);

/* The body (empty for HEAD, 204, 304 and a skipped redirect). */
const uint8_t *ws_httpc_res_body(const ws_httpc_res_t *r, size_t *len);

#endif
