#include "handshake.h"

#include "base64.h"
#include "error.h"
#include "sha1.h"

#include <string.h>

static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/* --- small helpers --- */

/* ASCII-only folding: header names and tokens are ASCII by RFC 7230, and the
 * C library's tolower() would make the result depend on the process locale. */
static int lower(int c) { return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c; }

static int eq_nocase(const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen != blen)
        return 0;
    for (size_t i = 0; i < alen; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return 0;
    return 1;
}

static int is_ows(char c) { return c == ' ' || c == '\t'; }

static int name_is(const ws_header_t *h, const char *name)
{
    return eq_nocase(h->name, h->name_len, name, strlen(name));
}

static size_t count_headers(const ws_hs_request_t *req, const char *name, const ws_header_t **first)
{
    size_t n = 0;
    *first = NULL;
    for (size_t i = 0; i < req->nheaders; i++) {
        if (name_is(&req->headers[i], name)) {
            if (!n)
                *first = &req->headers[i];
            n++;
        }
    }
    return n;
}

/* RFC 7230 3.2.2 lets a list-valued header be split over several lines, so the
 * token must be looked for in every occurrence, not only the first. */
static int headers_have_token(const ws_hs_request_t *req, const char *name, const char *token)
{
    for (size_t i = 0; i < req->nheaders; i++) {
        const ws_header_t *h = &req->headers[i];
        if (name_is(h, name) && ws_token_list_has(h->value, h->value_len, token))
            return 1;
    }
    return 0;
}

/* --- header and token lists --- */

long ws_header_find(const ws_header_t *h, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (name_is(&h[i], name))
            return (long)i;
    return -1;
}

int ws_token_next(const char *list, size_t len, size_t *pos, const char **tok, size_t *tok_len)
{
    size_t i = *pos;
    while (i < len) {
        while (i < len && (is_ows(list[i]) || list[i] == ','))
            i++;
        size_t start = i;
        while (i < len && list[i] != ',')
            i++;
        size_t end = i;
        while (end > start && is_ows(list[end - 1]))
            end--;
        if (end > start) {
            *tok = list + start;
            *tok_len = end - start;
            *pos = i;
            return 1;
        }
    }
    *pos = len;
    return 0;
}

int ws_token_list_has(const char *value, size_t len, const char *token)
{
    size_t pos = 0, tlen = strlen(token), n;
    const char *t;
    while (ws_token_next(value, len, &pos, &t, &n))
        if (eq_nocase(t, n, token, tlen))
            return 1;
    return 0;
}

/* --- the handshake --- */

int ws_handshake_is_upgrade(const ws_hs_request_t *req)
{
    return headers_have_token(req, "Upgrade", "websocket");
}

static int fail(ws_hs_result_t *out, int status, const char *reason)
{
    out->status = status;
    out->reason = reason;
    return status;
}

int ws_handshake_check(const ws_hs_request_t *req, ws_hs_result_t *out)
{
    const ws_header_t *h;

    memset(out, 0, sizeof *out);
    if (count_headers(req, "Sec-WebSocket-Protocol", &h)) {
        out->protocols = h->value;
        out->protocols_len = h->value_len;
    }
    if (count_headers(req, "Sec-WebSocket-Extensions", &h)) {
        out->extensions = h->value;
        out->extensions_len = h->value_len;
    }
    if (count_headers(req, "Origin", &h)) {
        out->origin = h->value;
        out->origin_len = h->value_len;
    }
    size_t nhost = count_headers(req, "Host", &h);
    if (nhost) {
        out->host = h->value;
        out->host_len = h->value_len;
    }

    /* Method names are case-sensitive (RFC 7231 4.1), so "get" is not GET. */
    if (req->method_len != 3 || memcmp(req->method, "GET", 3) != 0)
        return fail(out, 405, "method must be GET");
    if (req->http_major < 1 || (req->http_major == 1 && req->http_minor < 1))
        return fail(out, 400, "HTTP/1.1 or later required");
    if (nhost == 0 || h->value_len == 0)
        return fail(out, 400, "missing Host");
    /* RFC 7230 5.4 requires a 400 for several Host lines: they are a request smuggling vector. */
    if (nhost > 1)
        return fail(out, 400, "duplicate Host");
    if (!headers_have_token(req, "Upgrade", "websocket"))
        return fail(out, 400, "Upgrade must name websocket");
    if (!headers_have_token(req, "Connection", "upgrade"))
        return fail(out, 400, "Connection must include upgrade");

    size_t nver = 0;
    for (size_t i = 0; i < req->nheaders; i++) {
        const ws_header_t *v = &req->headers[i];
        if (!name_is(v, "Sec-WebSocket-Version"))
            continue;
        if (v->value_len != 2 || memcmp(v->value, "13", 2) != 0)
            return fail(out, 426, "unsupported Sec-WebSocket-Version");
        nver++;
    }
    if (nver == 0)
        return fail(out, 426, "missing Sec-WebSocket-Version");

    size_t nkey = count_headers(req, "Sec-WebSocket-Key", &h);
    if (nkey == 0)
        return fail(out, 400, "missing Sec-WebSocket-Key");
    if (nkey > 1)
        return fail(out, 400, "duplicate Sec-WebSocket-Key");
    /* 16 bytes always encode to 24 characters; checking that first bounds the decode buffer. */
    uint8_t nonce[18];
    if (h->value_len != 24 || ws_base64_decode(h->value, 24, nonce) != 16)
        return fail(out, 400, "malformed Sec-WebSocket-Key");

    ws_handshake_accept(h->value, h->value_len, out->accept);
    return 0;
}

void ws_handshake_accept(const char *key, size_t len, char out[29])
{
    ws_sha1_t s;
    uint8_t digest[20];
    ws_sha1_init(&s);
    ws_sha1_update(&s, key, len);
    ws_sha1_update(&s, guid, sizeof guid - 1);
    ws_sha1_final(&s, digest);
    ws_base64_encode(digest, sizeof digest, out);
}

/* --- same-origin check --- */

typedef struct {
    const char *host;
    size_t host_len;
    long port; /* -1 when absent */
} authority_t;

static int host_char_ok(unsigned char c)
{
    if (c <= 0x20 || c >= 0x7f)
        return 0;
    return !strchr("/?#@[]\\:", c);
}

/* Parse host[:port] or [v6]:port covering all of s[0..n). Returns 0 on success. */
static int parse_authority(const char *s, size_t n, authority_t *a)
{
    size_t i = 0;
    a->port = -1;
    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close || close == s + 1)
            return -1;
        a->host = s + 1;
        a->host_len = (size_t)(close - s) - 1;
        for (size_t j = 0; j < a->host_len; j++) {
            char c = a->host[j];
            if (!((c >= '0' && c <= '9') || (lower(c) >= 'a' && lower(c) <= 'f') || c == ':' ||
                  c == '.'))
                return -1;
        }
        i = (size_t)(close - s) + 1;
    } else {
        while (i < n && s[i] != ':') {
            if (!host_char_ok((unsigned char)s[i]))
                return -1;
            i++;
        }
        if (i == 0)
            return -1;
        a->host = s;
        a->host_len = i;
    }
    if (i == n)
        return 0;
    if (s[i] != ':' || ++i == n)
        return -1;
    long port = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        port = port * 10 + (s[i] - '0');
        if (port > 65535)
            return -1;
    }
    a->port = port;
    return 0;
}

int ws_handshake_same_origin(const char *origin, size_t origin_len, const char *host,
                             size_t host_len)
{
    static const struct {
        const char *scheme;
        long port;
    } defaults[] = {{"http", 80}, {"ws", 80}, {"https", 443}, {"wss", 443}};

    if (!origin || !host)
        return 0;
    const char *sep = NULL;
    for (size_t i = 0; i + 3 <= origin_len; i++) {
        if (memcmp(origin + i, "://", 3) == 0) {
            sep = origin + i;
            break;
        }
    }
    if (!sep)
        return 0; /* covers the opaque origin "null" */
    size_t scheme_len = (size_t)(sep - origin);
    long default_port = -1;
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++)
        if (eq_nocase(origin, scheme_len, defaults[i].scheme, strlen(defaults[i].scheme)))
            default_port = defaults[i].port;
    if (default_port < 0)
        return 0;

    authority_t o, h;
    const char *rest = sep + 3;
    if (parse_authority(rest, origin_len - (size_t)(rest - origin), &o) != 0 ||
        parse_authority(host, host_len, &h) != 0)
        return 0;
    if (!eq_nocase(o.host, o.host_len, h.host, h.host_len))
        return 0;
    long oport = o.port < 0 ? default_port : o.port;
    /* A Host without a port does not say whether the client used TLS (a proxy may
     * have terminated it), so accept the origin's own default port either way. */
    if (h.port < 0)
        return oport == default_port;
    return oport == h.port;
}

/* --- the 101 response --- */

static int safe_value(const char *s)
{
    /* A CR or LF would let a handler inject headers into the response. */
    return !strpbrk(s, "\r\n");
}

long ws_handshake_response(char *out, size_t cap, const char *accept, const char *subprotocol,
                           const char *extensions)
{
    const char *parts[] = {
        "HTTP/1.1 101 Switching Protocols\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        "Sec-WebSocket-Accept: ",
        accept,
        "\r\n",
        subprotocol ? "Sec-WebSocket-Protocol: " : "",
        subprotocol ? subprotocol : "",
        subprotocol ? "\r\n" : "",
        extensions ? "Sec-WebSocket-Extensions: " : "",
        extensions ? extensions : "",
        extensions ? "\r\n" : "",
        "\r\n",
    };
    if (!out || !accept || !safe_value(accept) || (subprotocol && !safe_value(subprotocol)) ||
        (extensions && !safe_value(extensions)))
        return WS_EINVAL;

    size_t len = 0;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        len += strlen(parts[i]);
    /* Leave room for a NUL so callers may also treat out as a string. */
    if (len >= cap)
        return WS_EINVAL;
    char *p = out;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        size_t n = strlen(parts[i]);
        memcpy(p, parts[i], n);
        p += n;
    }
    *p = '\0';
    return (long)len;
}
