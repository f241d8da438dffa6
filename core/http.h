/*
 * http.h: HTTP/1.1 request parsing on llhttp, with size limits. Pure: bytes
 * in, one request at a time out; no I/O, no Lua.
 *
 * Usage: feed bytes until ws_http_feed reports a complete request (or an
 * error); read it with ws_http_request; answer it; call ws_http_next before
 * feeding the bytes that followed it (keep-alive and pipelining).
 */
#ifndef WS_HTTP_H
#define WS_HTTP_H

#include <llhttp.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "handshake.h"

#define WS_HTTP_MAX_HEADERS 100

typedef struct {
    uint32_t name_off, name_len, value_off, value_len;
} ws_http_span_t;

typedef struct {
    llhttp_t parser;
    size_t max_header;   /* bytes of request line + headers; over it -> WS_EHDRTOOBIG */
    size_t max_body;     /* over it -> WS_EBODYTOOBIG */
    int complete;        /* 1 once a whole request is parsed */
    int upgrade;         /* 1 if llhttp saw Connection: upgrade + Upgrade (bytes after are not HTTP) */
    int keep_alive;      /* 1 if the connection may stay open after the response */

    /* private */
    int _err;
    int _in_value;
    size_t _url_len;
    size_t _bytes;       /* header bytes so far */
    ws_buf_t _raw;       /* url, then header names and values */
    ws_http_span_t _hdr[WS_HTTP_MAX_HEADERS];
    size_t _nhdr;
    ws_buf_t _body;
} ws_http_t;

/* Initialise a parser for requests. */
void ws_http_init(ws_http_t *h, size_t max_header, size_t max_body);
void ws_http_free(ws_http_t *h);

/* Feed data[0..len). Returns the number of bytes consumed: all of them while
 * the request is incomplete; when it completes (h->complete set), the bytes up
 * to its end (the rest belongs to the next request, or is WebSocket data if
 * h->upgrade). Returns a negative ws_err on failure: WS_EHTTP (malformed),
 * WS_EHDRTOOBIG (431), WS_EURITOOBIG (414), WS_EBODYTOOBIG (413). */
long ws_http_feed(ws_http_t *h, const char *data, size_t len);

/* Describe the complete request: fills req (pointers valid until ws_http_next
 * or ws_http_free) with hdrs as its header array (room for WS_HTTP_MAX_HEADERS). */
void ws_http_request(ws_http_t *h, ws_hs_request_t *req, ws_header_t *hdrs);

/* The request target (path and query), not NUL-terminated. */
const char *ws_http_url(const ws_http_t *h, size_t *len);
/* The body bytes. */
const char *ws_http_body(const ws_http_t *h, size_t *len);

/* Forget the current request and get ready for the next on the same connection. */
void ws_http_next(ws_http_t *h);

/* The HTTP status that answers error err (400, 413, 414, 431). */
int ws_http_error_status(int err);

/* Reason phrase for a status code ("Not Found"): RFC 9110's, or the class
 * ("Client Error") for a code it does not name; "Unknown" outside 100..599. */
const char *ws_http_status_text(int status);

/* Append "name: value\r\n" to a response's header lines. Returns 1 when
 * added; -1 (nothing added) when the name or value holds CR, LF or NUL; 0
 * when the name is empty or one the server sets itself (Content-Length,
 * Connection, Transfer-Encoding). */
int ws_http_header_add(ws_buf_t *headers, const char *name, size_t nlen, const char *value,
                       size_t vlen);

#endif
