/* The loop, the scripted servers and the results test_fetch.c uses. */
#include "fetch_harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "mem.h"

/* --- the scripted server --- */

static void sconn_closed(uv_handle_t *h)
{
    sconn_t *c = h->data;
    c->closed = 1;
    c->s->open--;
}

void srv_close(sconn_t *c)
{
    c->closing = 1;
    if (!uv_is_closing((uv_handle_t *)&c->h))
        uv_close((uv_handle_t *)&c->h, sconn_closed);
}

static void on_shut(uv_shutdown_t *req, int status)
{
    (void)status;
    sconn_t *c = req->data;
    free(req);
    srv_close(c);
}

void srv_end(sconn_t *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    uv_shutdown_t *req = malloc(sizeof *req);
    req->data = c;
    if (uv_shutdown(req, (uv_stream_t *)&c->h, on_shut) != 0) {
        free(req);
        srv_close(c);
    }
}

void srv_sendn(sconn_t *c, const void *data, size_t len)
{
    if (!c->closing)
        lh_write_copy((uv_stream_t *)&c->h, data, len);
}

void srv_send(sconn_t *c, const char *bytes) { srv_sendn(c, bytes, strlen(bytes)); }

void srv_path(const char *req, char *out, size_t outlen)
{
    const char *sp = strchr(req, ' ');
    const char *end = sp ? strchr(sp + 1, ' ') : NULL;
    size_t n = end ? (size_t)(end - sp - 1) : 0;
    if (n >= outlen)
        n = outlen - 1;
    memcpy(out, sp ? sp + 1 : "", n);
    out[n] = '\0';
}

void srv_answer_ok(srv_t *s, sconn_t *c, const char *req, size_t len)
{
    (void)s, (void)req, (void)len;
    srv_send(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
}

void srv_answer_hold(srv_t *s, sconn_t *c, const char *req, size_t len)
{
    (void)req, (void)len;
    if (s->nheld < SRV_MAX_HELD)
        s->held[s->nheld++] = c;
}

static void srv_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    static char buf[65536];
    (void)h, (void)suggested;
    *b = uv_buf_init(buf, sizeof buf);
}

/* Length of the request at the start of in, or 0 while it is incomplete. */
static size_t request_len(const ws_buf_t *in)
{
    const char *s = (const char *)in->data;
    size_t head = 0;
    for (size_t i = 3; i < in->len; i++) {
        if (memcmp(s + i - 3, "\r\n\r\n", 4) == 0) {
            head = i + 1;
            break;
        }
    }
    if (!head)
        return 0;
    size_t body = 0;
    for (size_t i = 0; i + 16 < head; i++)
        if (s[i] == '\n' && strncasecmp(s + i + 1, "content-length:", 15) == 0)
            body = strtoul(s + i + 16, NULL, 10);
    return in->len >= head + body ? head + body : 0;
}

static void srv_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    sconn_t *c = st->data;
    srv_t *s = c->s;
    if (n < 0) {
        srv_close(c);
        return;
    }
    ws_buf_append(&c->in, b->base, (size_t)n);
    size_t len;
    while (!c->closing && (len = request_len(&c->in)) > 0) {
        s->requests++;
        c->nreq++;
        size_t keep = len < sizeof s->last - 1 ? len : sizeof s->last - 1;
        memcpy(s->last, c->in.data, keep);
        s->last[keep] = '\0';
        ws_buf_append(&s->log, c->in.data, len);
        ws_buf_reserve(&s->log, 1);
        s->log.data[s->log.len] = '\0';
        if (s->answer)
            s->answer(s, c, s->last, len);
        memmove(c->in.data, c->in.data + len, c->in.len - len);
        c->in.len -= len;
    }
}

static void srv_accept(uv_stream_t *ls, int status)
{
    srv_t *s = ls->data;
    if (status < 0 || s->accepted >= SRV_MAX_CONNS)
        return;
    sconn_t *c = calloc(1, sizeof *c);
    c->s = s;
    c->id = s->accepted + 1;
    uv_tcp_init(ls->loop, &c->h);
    c->h.data = c;
    s->conns[s->accepted++] = c;
    s->open++;
    if (uv_accept(ls, (uv_stream_t *)&c->h) != 0) {
        srv_close(c);
        return;
    }
    if (!s->no_read)
        uv_read_start((uv_stream_t *)&c->h, srv_alloc, srv_read);
}

void srv_start(fx_t *fx, srv_t *s, srv_answer_fn fn)
{
    memset(s, 0, sizeof *s);
    s->answer = fn;
    struct sockaddr_in a;
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &a), 0);
    assert_int_equal(uv_tcp_init(&fx->lh.loop, &s->l), 0);
    s->l.data = s;
    assert_int_equal(uv_tcp_bind(&s->l, (struct sockaddr *)&a, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&s->l, 128, srv_accept), 0);
    struct sockaddr_storage ss;
    int len = sizeof ss;
    assert_int_equal(uv_tcp_getsockname(&s->l, (struct sockaddr *)&ss, &len), 0);
    s->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    s->listening = 1;
}

void srv_stop(srv_t *s)
{
    if (s->listening) {
        uv_close((uv_handle_t *)&s->l, NULL);
        s->listening = 0;
    }
    for (int i = 0; i < s->accepted; i++)
        srv_close(s->conns[i]);
}

static void srv_free(srv_t *s)
{
    for (int i = 0; i < s->accepted; i++) {
        ws_buf_free(&s->conns[i]->in);
        free(s->conns[i]);
        s->conns[i] = NULL;
    }
    ws_buf_free(&s->log);
}

/* --- the loop --- */

void fx_setup(fx_t *fx, const ws_fetch_config_t *cfg)
{
    memset(fx, 0, sizeof *fx);
    fx->mem_buffers = ws_mem_used(WS_MEM_BUFFERS);
    fx->mem_queue = ws_mem_used(WS_MEM_QUEUE);
    assert_int_equal(lh_init(&fx->lh), 0);
    fx->f = ws_fetcher_new(&fx->lh.io, cfg);
    srv_start(fx, &fx->srv, srv_answer_ok);
}

int fx_no_connections(void *ud)
{
    fx_t *fx = ud;
    return ws_fetcher_connections(fx->f) == 0;
}

void fx_teardown(fx_t *fx)
{
    ws_fetcher_free(fx->f);
    fx->f = NULL;
    srv_stop(&fx->srv);
    if (fx->srv2.port)
        srv_stop(&fx->srv2);
    assert_int_equal(lh_close(&fx->lh), 0);
    srv_free(&fx->srv);
    srv_free(&fx->srv2);
    /* Everything the client held for requests and responses is released. */
    assert_int_equal(ws_mem_used(WS_MEM_BUFFERS), fx->mem_buffers);
    assert_int_equal(ws_mem_used(WS_MEM_QUEUE), fx->mem_queue);
}

/* --- requests and results --- */

static int g_in_start;

static void on_result(void *ud, const ws_fetch_res_t *res)
{
    result_t *r = ud;
    r->done++;
    r->in_start |= g_in_start;
    r->at = uv_now(&r->fx->lh.loop);
    r->turn = r->fx->lh.turns;
    r->status = res->status;
    snprintf(r->error, sizeof r->error, "%s", res->error ? res->error : "");
    snprintf(r->url, sizeof r->url, "%s", res->url ? res->url : "(null)");
    free(r->body);
    r->body = malloc(res->body_len + 1);
    if (res->body_len)
        memcpy(r->body, res->body, res->body_len);
    r->body[res->body_len] = '\0';
    r->body_len = res->body_len;
    size_t n = 1;
    for (size_t i = 0; i < res->nheaders; i++)
        n += res->headers[i].name_len + res->headers[i].value_len + 3;
    free(r->headers);
    r->headers = malloc(n);
    char *p = r->headers;
    for (size_t i = 0; i < res->nheaders; i++)
        p += sprintf(p, "%.*s: %.*s\n", (int)res->headers[i].name_len, res->headers[i].name,
                     (int)res->headers[i].value_len, res->headers[i].value);
    *p = '\0';
    if (r->then)
        r->then(r->then_ud, res);
    if (r->free_fetcher) {
        ws_fetcher_free(r->fx->f);
        r->fx->f = NULL;
    }
}

void result_init(result_t *r, fx_t *fx)
{
    memset(r, 0, sizeof *r);
    r->fx = fx;
}

void result_free(result_t *r)
{
    free(r->body);
    free(r->headers);
    r->body = r->headers = NULL;
}

int result_done(void *r) { return ((result_t *)r)->done > 0; }

int result_has_header(const result_t *r, const char *line)
{
    if (!r->headers)
        return 0;
    size_t n = strlen(line);
    for (const char *p = r->headers; (p = strstr(p, line)) != NULL; p++)
        if ((p == r->headers || p[-1] == '\n') && p[n] == '\n')
            return 1;
    return 0;
}

ws_fetch_t *fx_fetch(fx_t *fx, result_t *r, const char *method, const char *url, const char *headers,
                     const char *body, size_t body_len, uint32_t timeout_ms, size_t max_body, int follow)
{
    ws_fetch_req_t req;
    memset(&req, 0, sizeof req);
    req.method = method;
    req.url = url;
    req.url_len = strlen(url);
    req.headers = headers;
    req.headers_len = headers ? strlen(headers) : 0;
    req.body = body;
    req.body_len = body_len;
    req.timeout_ms = timeout_ms ? timeout_ms : 5000;
    req.max_body = max_body;
    req.follow = follow;
    g_in_start = 1;
    ws_fetch_t *x = ws_fetch_start(fx->f, &req, on_result, r);
    g_in_start = 0;
    return x;
}
