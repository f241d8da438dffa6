#include "http.h"

#include <string.h>
#include <strings.h>

#include "error.h"

#define MAX_URL 8192

static ws_http_t *of(llhttp_t *p) { return (ws_http_t *)p->data; }

static int fail(ws_http_t *h, int err)
{
    h->_err = err;
    return HPE_USER;
}

/* Every byte of the request line and headers counts against max_header, so a
 * client cannot grow our memory by sending headers slowly. */
static int count(ws_http_t *h, size_t n)
{
    h->_bytes += n;
    return h->_bytes > h->max_header;
}

static int on_message_begin(llhttp_t *p)
{
    ws_http_t *h = of(p);
    h->_raw.len = 0;
    h->_body.len = 0;
    h->_url_len = h->_nhdr = h->_bytes = 0;
    h->_in_value = 0;
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n)
{
    ws_http_t *h = of(p);
    if (h->_url_len + n > MAX_URL)
        return fail(h, WS_EURITOOBIG);
    if (count(h, n))
        return fail(h, WS_EHDRTOOBIG);
    ws_buf_append(&h->_raw, at, n);
    h->_url_len += n;
    return 0;
}

/* Header spans arrive in pieces; the *_complete callbacks delimit them.
 * _in_value: 0 between headers, 1 inside a name, 2 inside a value. */
static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
    ws_http_t *h = of(p);
    if (count(h, n))
        return fail(h, WS_EHDRTOOBIG);
    if (h->_in_value != 1) {
        if (h->_nhdr == WS_HTTP_MAX_HEADERS)
            return fail(h, WS_EHDRTOOBIG);
        ws_http_span_t *s = &h->_hdr[h->_nhdr++];
        s->name_off = (uint32_t)h->_raw.len;
        s->name_len = s->value_len = s->value_off = 0;
        h->_in_value = 1;
    }
    ws_buf_append(&h->_raw, at, n);
    h->_hdr[h->_nhdr - 1].name_len += (uint32_t)n;
    return 0;
}

static int on_header_field_complete(llhttp_t *p)
{
    ws_http_t *h = of(p);
    /* No name bytes came: a line such as ": value" (llhttp 8 lets it through,
     * sometimes as an empty span). */
    if (h->_in_value != 1 || h->_hdr[h->_nhdr - 1].name_len == 0)
        return fail(h, WS_EHTTP);
    h->_hdr[h->_nhdr - 1].value_off = (uint32_t)h->_raw.len;
    h->_in_value = 2;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
    ws_http_t *h = of(p);
    if (count(h, n))
        return fail(h, WS_EHDRTOOBIG);
    if (h->_in_value != 2)
        return fail(h, WS_EHTTP);
    ws_buf_append(&h->_raw, at, n);
    h->_hdr[h->_nhdr - 1].value_len += (uint32_t)n;
    return 0;
}

static int on_header_value_complete(llhttp_t *p)
{
    of(p)->_in_value = 0;
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    ws_http_t *h = of(p);
    if (p->content_length > h->max_body) {
        h->_err = WS_EBODYTOOBIG;
        return -1;
    }
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    ws_http_t *h = of(p);
    if (h->_body.len + n > h->max_body)
        return fail(h, WS_EBODYTOOBIG);
    ws_buf_append(&h->_body, at, n);
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    ws_http_t *h = of(p);
    h->complete = 1;
    h->upgrade = p->upgrade;
    h->keep_alive = llhttp_should_keep_alive(p);
    return HPE_PAUSED;
}

static llhttp_settings_t settings;

void ws_http_init(ws_http_t *h, size_t max_header, size_t max_body)
{
    if (!settings.on_message_begin) {
        llhttp_settings_init(&settings);
        settings.on_message_begin = on_message_begin;
        settings.on_url = on_url;
        settings.on_header_field = on_header_field;
        settings.on_header_value = on_header_value;
        settings.on_header_field_complete = on_header_field_complete;
        settings.on_header_value_complete = on_header_value_complete;
        settings.on_headers_complete = on_headers_complete;
        settings.on_body = on_body;
        settings.on_message_complete = on_message_complete;
    }
    memset(h, 0, sizeof *h);
    llhttp_init(&h->parser, HTTP_REQUEST, &settings);
    h->parser.data = h;
    h->max_header = max_header;
    h->max_body = max_body;
    ws_buf_init(&h->_raw);
    ws_buf_init(&h->_body);
}

void ws_http_free(ws_http_t *h)
{
    ws_buf_free(&h->_raw);
    ws_buf_free(&h->_body);
}

long ws_http_feed(ws_http_t *h, const char *data, size_t len)
{
    if (h->_err)
        return h->_err;
    if (h->complete)
        return 0;
    llhttp_errno_t e = llhttp_execute(&h->parser, data, len);
    if (e == HPE_OK)
        return (long)len;
    if (e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE) {
        const char *pos = llhttp_get_error_pos(&h->parser);
        return pos ? (long)(pos - data) : (long)len;
    }
    if (!h->_err)
        h->_err = WS_EHTTP;
    return h->_err;
}

void ws_http_request(ws_http_t *h, ws_hs_request_t *req, ws_header_t *hdrs)
{
    const char *m = llhttp_method_name((llhttp_method_t)h->parser.method);
    const char *raw = (const char *)h->_raw.data;
    req->method = m;
    req->method_len = strlen(m);
    req->http_major = h->parser.http_major;
    req->http_minor = h->parser.http_minor;
    for (size_t i = 0; i < h->_nhdr; i++) {
        ws_http_span_t *s = &h->_hdr[i];
        const char *v = raw + s->value_off;
        size_t vl = s->value_len;
        /* llhttp strips leading whitespace but keeps trailing. */
        while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
            vl--;
        hdrs[i].name = raw + s->name_off;
        hdrs[i].name_len = s->name_len;
        hdrs[i].value = v;
        hdrs[i].value_len = vl;
    }
    req->headers = hdrs;
    req->nheaders = h->_nhdr;
}

const char *ws_http_url(const ws_http_t *h, size_t *len)
{
    *len = h->_url_len;
    return h->_url_len ? (const char *)h->_raw.data : "";
}

const char *ws_http_body(const ws_http_t *h, size_t *len)
{
    *len = h->_body.len;
    return h->_body.len ? (const char *)h->_body.data : "";
}

void ws_http_next(ws_http_t *h)
{
    h->complete = 0;
    h->upgrade = 0;
    ws_buf_reset(&h->_raw, 4096);
    ws_buf_reset(&h->_body, 4096);
    llhttp_resume(&h->parser);
}

int ws_http_error_status(int err)
{
    switch (err) {
    case WS_EHDRTOOBIG: return 431;
    case WS_EURITOOBIG: return 414;
    case WS_EBODYTOOBIG: return 413;
    default: return 400;
    }
}

const char *ws_http_status_text(int status)
{
    /* RFC 9110's reason phrases, and a few more that handlers use. */
    static const struct {
        int code;
        const char *text;
    } known[] = {
        {100, "Continue"}, {101, "Switching Protocols"}, {200, "OK"}, {201, "Created"},
        {202, "Accepted"}, {203, "Non-Authoritative Information"}, {204, "No Content"},
        {205, "Reset Content"}, {206, "Partial Content"}, {300, "Multiple Choices"},
        {301, "Moved Permanently"}, {302, "Found"}, {303, "See Other"}, {304, "Not Modified"},
        {307, "Temporary Redirect"}, {308, "Permanent Redirect"}, {400, "Bad Request"},
        {401, "Unauthorized"}, {402, "Payment Required"}, {403, "Forbidden"},
        {404, "Not Found"}, {405, "Method Not Allowed"}, {406, "Not Acceptable"},
        {407, "Proxy Authentication Required"}, {408, "Request Timeout"}, {409, "Conflict"},
        {410, "Gone"}, {411, "Length Required"}, {412, "Precondition Failed"},
        {413, "Content Too Large"}, {414, "URI Too Long"}, {415, "Unsupported Media Type"},
        {416, "Range Not Satisfiable"}, {417, "Expectation Failed"}, {418, "I'm a teapot"},
        {421, "Misdirected Request"}, {422, "Unprocessable Content"}, {423, "Locked"},
        {425, "Too Early"}, {426, "Upgrade Required"}, {428, "Precondition Required"},
        {429, "Too Many Requests"}, {431, "Request Header Fields Too Large"},
        {451, "Unavailable For Legal Reasons"}, {500, "Internal Server Error"},
        {501, "Not Implemented"}, {502, "Bad Gateway"}, {503, "Service Unavailable"},
        {504, "Gateway Timeout"}, {505, "HTTP Version Not Supported"},
    };
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        if (known[i].code == status)
            return known[i].text;
    /* A code of its own: its class says what it is. */
    static const char *const classes[] = {"Informational", "Success", "Redirection",
                                          "Client Error", "Server Error"};
    return status >= 100 && status <= 599 ? classes[status / 100 - 1] : "Unknown";
}

static int header_safe(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0')
            return 0;
    return 1;
}

static int named(const char *name, size_t nlen, const char *what)
{
    return nlen == strlen(what) && strncasecmp(name, what, nlen) == 0;
}

int ws_http_header_add(ws_buf_t *headers, const char *name, size_t nlen, const char *value,
                       size_t vlen)
{
    if (!header_safe(name, nlen) || !header_safe(value, vlen))
        return -1;
    /* We frame the body ourselves; a handler's value would desync the stream. */
    if (nlen == 0 || named(name, nlen, "content-length") || named(name, nlen, "connection") ||
        named(name, nlen, "transfer-encoding"))
        return 0;
    ws_buf_append(headers, name, nlen);
    ws_buf_append(headers, ": ", 2);
    ws_buf_append(headers, value, vlen);
    ws_buf_append(headers, "\r\n", 2);
    return 1;
}
