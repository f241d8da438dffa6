/* The client side of HTTP/1.1: request heads out, responses in (llhttp). */
#include "httpc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base64.h"

/* --- the request --- */

static int tchar(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static int name_is(const char *s, size_t n, const char *name)
{
    return n == strlen(name) && strncasecmp(s, name, n) == 0;
}

int ws_httpc_method_valid(const char *m)
{
    size_t n = strlen(m);
    if (n == 0 || n > 32)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!tchar((unsigned char)m[i]))
            return 0;
    return 1;
}

int ws_httpc_headers_valid(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        size_t n = 0;
        while (i + n < len && tchar((unsigned char)s[i + n]))
            n++;
        if (n == 0 || i + n == len || s[i + n] != ':')
            return 0;
        if (name_is(s + i, n, "content-length") || name_is(s + i, n, "transfer-encoding"))
            return 0;
        size_t j = i + n + 1;
        while (j < len && s[j] != '\r' && s[j] != '\n' && s[j] != '\0')
            j++;
        if (j + 1 >= len || s[j] != '\r' || s[j + 1] != '\n')
            return 0;
        i = j + 2;
    }
    return 1;
}

int ws_httpc_has_header(const char *s, size_t len, const char *name)
{
    const char *end = s + len;
    while (s < end) {
        const char *colon = memchr(s, ':', (size_t)(end - s));
        const char *eol = memchr(s, '\n', (size_t)(end - s));
        if (colon && name_is(s, (size_t)(colon - s), name))
            return 1;
        s = eol ? eol + 1 : end;
    }
    return 0;
}

void ws_httpc_drop_headers(ws_buf_t *h, const char *const *names)
{
    size_t o = 0, i = 0;
    while (i < h->len) {
        const char *s = (const char *)h->data + i;
        const char *eol = memchr(s, '\n', h->len - i);
        size_t n = eol ? (size_t)(eol - s) + 1 : h->len - i;
        const char *colon = memchr(s, ':', n);
        int drop = 0;
        for (const char *const *p = names; *p && colon; p++)
            drop |= name_is(s, (size_t)(colon - s), *p);
        if (!drop) {
            memmove(h->data + o, s, n);
            o += n;
        }
        i += n;
    }
    h->len = o;
}

static void basic_auth(ws_buf_t *b, const char *user, const char *pass)
{
    size_t ul = strlen(user), pl = strlen(pass), n = ul + pl + 1;
    char *cred = ws_malloc(n);
    char *enc = ws_malloc(4 * ((n + 2) / 3) + 1);
    memcpy(cred, user, ul);
    cred[ul] = ':';
    memcpy(cred + ul + 1, pass, pl);
    size_t elen = ws_base64_encode((const uint8_t *)cred, n, enc);
    ws_buf_append_str(b, "Authorization: Basic ");
    ws_buf_append(b, enc, elen);
    ws_buf_append(b, "\r\n", 2);
    /* not left lying in freed heap memory */
    memset(cred, 0, n);
    memset(enc, 0, elen);
    free(cred);
    free(enc);
}

void ws_httpc_head(ws_buf_t *b, const char *method, const ws_url_t *u, const char *hdrs, size_t hlen,
                   size_t body_len)
{
    ws_buf_append_str(b, method);
    ws_buf_append(b, " ", 1);
    ws_buf_append_str(b, u->target);
    ws_buf_append_str(b, " HTTP/1.1\r\n");
    if (!ws_httpc_has_header(hdrs, hlen, "host")) {
        ws_buf_append_str(b, "Host: ");
        ws_url_authority(u, b);
        ws_buf_append(b, "\r\n", 2);
    }
    if (!ws_httpc_has_header(hdrs, hlen, "user-agent"))
        ws_buf_append_str(b, "User-Agent: wspush/" WSPUSH_VERSION "\r\n");
    if (u->user && !ws_httpc_has_header(hdrs, hlen, "authorization"))
        basic_auth(b, u->user, u->pass);
    ws_buf_append(b, hdrs, hlen);
    if (body_len || !strcmp(method, "POST") || !strcmp(method, "PUT") || !strcmp(method, "PATCH")) {
        char num[48];
        int n = snprintf(num, sizeof num, "Content-Length: %zu\r\n", body_len);
        ws_buf_append(b, num, (size_t)n);
    }
    ws_buf_append(b, "\r\n", 2);
}

/* --- the response --- */

static ws_httpc_res_t *of(llhttp_t *p) { return p->data; }

static int bad(ws_httpc_res_t *r, const char *why)
{
    r->error = why;
    return HPE_USER;
}

/* Every byte of the head counts, interim responses' too: a server cannot
 * grow our memory, or keep us parsing, with an endless head. */
static int count(ws_httpc_res_t *r, size_t n)
{
    r->_hbytes += n;
    return r->_hbytes > WS_HTTPC_MAX_HEAD;
}

static ws_httpc_span_t *last_span(ws_httpc_res_t *r)
{
    return (ws_httpc_span_t *)(void *)(r->_spans.data + r->_spans.len) - 1;
}

static int on_message_begin(llhttp_t *p)
{
    ws_httpc_res_t *r = of(p);
    r->_raw.len = r->_spans.len = 0;
    r->_in_value = 0;
    /* the status line's fixed part, so that endless 1xx are bounded too */
    return count(r, 16) ? bad(r, "invalid response") : 0;
}

static int on_status(llhttp_t *p, const char *at, size_t n)
{
    (void)at;
    return count(of(p), n) ? bad(of(p), "invalid response") : 0;
}

/* Header spans arrive in pieces. _in_value: 0 between headers, 1 inside a
 * name, 2 inside a value. */
static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
    ws_httpc_res_t *r = of(p);
    /* The separators count too: a flood of empty headers is bounded. */
    if (count(r, n + (r->_in_value != 1 ? 4 : 0)))
        return bad(r, "invalid response");
    if (r->_in_value != 1) {
        ws_httpc_span_t s = {(uint32_t)r->_raw.len, 0, 0, 0};
        ws_buf_append(&r->_spans, &s, sizeof s);
        r->_in_value = 1;
    }
    ws_buf_append(&r->_raw, at, n);
    last_span(r)->name_len += (uint32_t)n;
    return 0;
}

static int on_header_field_complete(llhttp_t *p)
{
    ws_httpc_res_t *r = of(p);
    if (r->_in_value != 1 || last_span(r)->name_len == 0)
        return bad(r, "invalid response");
    /* llhttp lets whitespace into a response's header names ("Location :"):
     * a name is a token, or the response is not one we act on. */
    const ws_httpc_span_t *s = last_span(r);
    for (uint32_t i = 0; i < s->name_len; i++)
        if (!tchar((unsigned char)r->_raw.data[s->name_off + i]))
            return bad(r, "invalid response");
    last_span(r)->value_off = (uint32_t)r->_raw.len;
    r->_in_value = 2;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
    ws_httpc_res_t *r = of(p);
    if (count(r, n) || r->_in_value != 2)
        return bad(r, "invalid response");
    ws_buf_append(&r->_raw, at, n);
    last_span(r)->value_len += (uint32_t)n;
    return 0;
}

static int on_header_value_complete(llhttp_t *p)
{
    of(p)->_in_value = 0;
    return 0;
}

static int is_redirect(int status)
{
    return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

static int on_headers_complete(llhttp_t *p)
{
    ws_httpc_res_t *r = of(p);
    int st = p->status_code;
    size_t ll;
    r->status = st;
    if (st < 200)
        return 1; /* interim (or 101): no body */
    r->skipped = r->skip_redirect && is_redirect(st) && ws_httpc_res_header(r, "location", &ll);
    /* RFC 9110 6.4.1 and 9.3.2: never a body, whatever the head says */
    if (r->head || st == 204 || st == 304)
        return 1;
    if (!r->skipped && (p->flags & F_CONTENT_LENGTH) && p->content_length > r->max_body) {
        r->error = "response too large";
        return -1;
    }
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    ws_httpc_res_t *r = of(p);
    ws_buf_t *b = &r->_body;
    if (r->skipped)
        return 0;
    if (n > r->max_body - b->len)
        return bad(r, "response too large");
    if (b->cap - b->len < n) {
        /* Grow with what arrives, doubling, never past max_body: a
         * Content-Length is the server's word, not memory to set aside. */
        size_t cap = b->cap ? b->cap * 2 : 4096;
        if (cap > r->max_body)
            cap = r->max_body;
        if (cap < b->len + n)
            cap = b->len + n;
        ws_buf_resize(b, cap);
    }
    memcpy(b->data + b->len, at, n);
    b->len += n;
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    ws_httpc_res_t *r = of(p);
    int st = p->status_code;
    if (st < 200 && st != 101) {
        /* 100 Continue and friends: forget them, parse on */
        r->_raw.len = r->_spans.len = 0;
        return 0;
    }
    r->complete = 1;
    r->keep_alive = llhttp_should_keep_alive(p) && st != 101;
    return HPE_PAUSED;
}

static llhttp_settings_t settings;

void ws_httpc_res_init(ws_httpc_res_t *r, int head, size_t max_body, int skip_redirect)
{
    if (!settings.on_message_complete) {
        llhttp_settings_init(&settings);
        settings.on_message_begin = on_message_begin;
        settings.on_status = on_status;
        settings.on_header_field = on_header_field;
        settings.on_header_field_complete = on_header_field_complete;
        settings.on_header_value = on_header_value;
        settings.on_header_value_complete = on_header_value_complete;
        settings.on_headers_complete = on_headers_complete;
        settings.on_body = on_body;
        settings.on_message_complete = on_message_complete;
    }
    r->max_body = max_body;
    r->head = head;
    r->skip_redirect = skip_redirect;
    r->status = r->complete = r->keep_alive = r->skipped = 0;
    r->error = NULL;
    r->_in_value = 0;
    r->_hbytes = 0;
    ws_buf_reset(&r->_raw, 4096);
    ws_buf_reset(&r->_spans, 4096);
    ws_buf_reset(&r->_body, 0);
    llhttp_init(&r->_p, HTTP_RESPONSE, &settings);
    r->_p.data = r;
}

void ws_httpc_res_free(ws_httpc_res_t *r)
{
    ws_buf_free(&r->_raw);
    ws_buf_free(&r->_spans);
    ws_buf_free(&r->_body);
}

long ws_httpc_res_feed(ws_httpc_res_t *r, const uint8_t *data, size_t len)
{
    if (r->error)
        return -1;
    if (r->complete)
        return 0;
    llhttp_errno_t e = llhttp_execute(&r->_p, (const char *)data, len);
    if (r->complete) {
        const char *pos = llhttp_get_error_pos(&r->_p);
        return pos ? (long)(pos - (const char *)data) : (long)len;
    }
    if (e == HPE_OK)
        return (long)len;
    if (!r->error)
        r->error = "invalid response";
    return -1;
}

int ws_httpc_res_eof(ws_httpc_res_t *r)
{
    if (!r->complete && !r->error)
        llhttp_finish(&r->_p);
    return r->complete;
}

static const char *value_of(const ws_httpc_res_t *r, const ws_httpc_span_t *s, size_t *len)
{
    const char *v = (const char *)r->_raw.data + s->value_off;
    size_t vl = s->value_len;
    while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
        vl--; /* llhttp strips leading whitespace, not trailing */
    *len = vl;
    return vl ? v : "";
}

const char *ws_httpc_res_header(const ws_httpc_res_t *r, const char *name, size_t *len)
{
    const ws_httpc_span_t *sp = (const ws_httpc_span_t *)(const void *)r->_spans.data;
    size_t n = ws_httpc_res_nheaders(r);
    for (size_t i = 0; i < n; i++)
        if (name_is((const char *)r->_raw.data + sp[i].name_off, sp[i].name_len, name))
            return value_of(r, &sp[i], len);
    return NULL;
}

size_t ws_httpc_res_nheaders(const ws_httpc_res_t *r) { return r->_spans.len / sizeof(ws_httpc_span_t); }

void ws_httpc_res_headers(const ws_httpc_res_t *r, ws_header_t *out)
{
    const ws_httpc_span_t *sp = (const ws_httpc_span_t *)(const void *)r->_spans.data;
    size_t n = ws_httpc_res_nheaders(r);
    for (size_t i = 0; i < n; i++) {
        out[i].name = (const char *)r->_raw.data + sp[i].name_off;
        out[i].name_len = sp[i].name_len;
        out[i].value = value_of(r, &sp[i], &out[i].value_len);
    }
}

const uint8_t *ws_httpc_res_body(const ws_httpc_res_t *r, size_t *len)
{
    *len = r->_body.len;
    return r->_body.len ? r->_body.data : (const uint8_t *)"";
}
