#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto_harness.h"

#include "error.h"
#include "log.h"
#include "outq.h"

/* --- the fake host --- */

static void fh_logf(fake_host_t *fh, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fh_logf(fake_host_t *fh, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof tmp)
        n = (int)sizeof tmp - 1;
    /* Keep it a C string: the NUL is written, then not counted. */
    ws_buf_append(&fh->log, tmp, (size_t)n + 1);
    fh->log.len--;
}

static void copy_str(char *dst, size_t cap, const void *src, size_t len)
{
    if (len >= cap)
        len = cap - 1;
    memcpy(dst, src, len);
    dst[len] = '\0';
}

static void fh_keep_request(fake_host_t *fh, const ws_request_t *req)
{
    copy_str(fh->url, sizeof fh->url, req->url, req->url_len);
    fh->keep_alive = req->keep_alive;
}

static int fh_http(void *host, ws_conn_t *c, const ws_request_t *req, ws_response_t *res)
{
    fake_host_t *fh = host;
    fh->n_http++;
    fh_keep_request(fh, req);
    fh_logf(fh, "http:%s;", fh->url);
    res->status = fh->http_status;
    if (fh->http_body)
        ws_buf_append_str(&res->body, fh->http_body);
    if (fh->fill_http)
        fh->fill_http(fh, req, res);
    if (fh->http_pending) {
        fh->pending_conn = c;
        fh->pending_res = res;
        return WS_HOST_PENDING;
    }
    return 0;
}

static int fh_upgrade(void *host, ws_conn_t *c, const ws_request_t *req, const char *protocols,
                      size_t protocols_len, ws_upgrade_t *up)
{
    fake_host_t *fh = host;
    fh->n_upgrade++;
    fh_keep_request(fh, req);
    fh->has_protocols = protocols != NULL;
    if (protocols)
        copy_str(fh->protocols, sizeof fh->protocols, protocols, protocols_len);
    fh_logf(fh, "upgrade:%s;", fh->url);
    up->status = fh->upgrade_status;
    if (fh->upgrade_reason)
        ws_buf_append_str(&up->reason, fh->upgrade_reason);
    if (fh->subprotocol)
        up->subprotocol = ws_strndup(fh->subprotocol, strlen(fh->subprotocol));
    if (fh->backpressure >= 0)
        up->limits.backpressure = fh->backpressure;
    if (fh->max_buffered)
        up->limits.max_buffered = fh->max_buffered;
    if (fh->fill_upgrade)
        fh->fill_upgrade(fh, up);
    if (fh->upgrade_pending) {
        fh->pending_conn = c;
        fh->pending_up = up;
        return WS_HOST_PENDING;
    }
    return 0;
}

static void fh_cancel(void *host, ws_conn_t *c)
{
    fake_host_t *fh = host;
    (void)c;
    fh->n_cancel++;
    fh_logf(fh, "cancel;");
    fh->pending_conn = NULL;
    fh->pending_res = NULL;
    fh->pending_up = NULL;
}

static void fh_open(void *host, ws_conn_t *c)
{
    fake_host_t *fh = host;
    fh->n_open++;
    fh_logf(fh, "open;");
    if (fh->on_open)
        fh->on_open(fh, c);
}

static void fh_message(void *host, ws_conn_t *c, const uint8_t *data, size_t len, int binary)
{
    fake_host_t *fh = host;
    fh->n_message++;
    if (fh->nmsgs == fh->msgs_cap) {
        fh->msgs_cap = fh->msgs_cap ? fh->msgs_cap * 2 : 16;
        fh->msgs = ws_realloc(fh->msgs, fh->msgs_cap * sizeof *fh->msgs);
    }
    fh_msg_t *m = &fh->msgs[fh->nmsgs++];
    m->c = c;
    m->data = ws_malloc(len + 1);
    memcpy(m->data, data, len);
    m->data[len] = '\0';
    m->len = len;
    m->binary = binary;
    if (!binary && len <= 40)
        fh_logf(fh, "msg:%.*s;", (int)len, (const char *)data);
    else
        fh_logf(fh, "msg[%zu];", len);
    if (fh->on_message)
        fh->on_message(fh, c, data, len);
}

static void fh_control(void *host, ws_conn_t *c, unsigned op, const uint8_t *data, size_t len)
{
    fake_host_t *fh = host;
    (void)c;
    fh->n_control++;
    fh->control_op = op;
    fh->control_len = len <= sizeof fh->control_data ? len : sizeof fh->control_data;
    if (fh->control_len)
        memcpy(fh->control_data, data, fh->control_len);
    fh_logf(fh, "%s:%.*s;", op == WS_OP_PING ? "ping" : "pong", (int)fh->control_len,
            (const char *)data);
}

static void fh_drain(void *host, ws_conn_t *c)
{
    fake_host_t *fh = host;
    fh->n_drain++;
    fh_logf(fh, "drain;");
    if (fh->on_drain)
        fh->on_drain(fh, c);
}

static void fh_closed(void *host, ws_conn_t *c, unsigned code, const char *reason)
{
    fake_host_t *fh = host;
    fh->n_closed++;
    fh->closed_code = code;
    fh->closed_conn = c;
    copy_str(fh->closed_reason, sizeof fh->closed_reason, reason, strlen(reason));
    fh_logf(fh, "closed:%u;", code);
}

static void fh_flush(void *host, ws_conn_t *c)
{
    (void)c;
    fh_logf(host, "flush;");
}

/* The same host, as one that holds messages back would be told (flush). */
const ws_host_ops_t *fake_host_ops_flush(void)
{
    static ws_host_ops_t ops;
    ops = fake_host_ops;
    ops.flush = fh_flush;
    return &ops;
}

const ws_host_ops_t fake_host_ops = {
    .http = fh_http,
    .upgrade = fh_upgrade,
    .cancel = fh_cancel,
    .open = fh_open,
    .message = fh_message,
    .control = fh_control,
    .drain = fh_drain,
    .closed = fh_closed,
};

const char *hs_log(harness_t *h) { return h->host.log.len ? (const char *)h->host.log.data : ""; }

void hs_log_clear(harness_t *h)
{
    h->host.log.len = 0;
    if (h->host.log.data)
        h->host.log.data[0] = '\0';
}

/* --- the harness --- */

static uint64_t fake_clock(void *ud) { return *(const uint64_t *)ud; }

int hs_setup(void **state)
{
    harness_t *h = ws_calloc(1, sizeof *h);
    ws_cli_defaults(&h->cfg);
    /* The dropped-header warnings and the like are expected here. */
    ws_log_set_level(WS_LOG_ERROR);
    /* Not 0: the connection uses 0 for "no ping outstanding". */
    h->now = 1000000;
    h->host.http_status = 200;
    h->host.http_body = "ok";
    h->host.backpressure = -1;
    ws_buf_init(&h->host.log);
    ws_buf_init(&h->frame.payload);
    ws_buf_init(&h->resp.head);
    ws_buf_init(&h->resp.body);
    *state = h;
    return 0;
}

void hs_start(harness_t *h)
{
    assert_false(h->started);
    assert_int_equal(uv_loop_init(&h->loop), 0);
    ws_io_init(&h->io, &h->loop);
    ws_hub_init(&h->hub, &h->io, &h->cfg);
    ws_hub_set_host(&h->hub, &fake_host_ops, &h->host);
    h->hub.clock = fake_clock;
    h->hub.clock_ud = &h->now;
    h->started = 1;
}

void hs_finish(harness_t *h)
{
    if (h->started) {
        h->started = 0;
        ws_hub_abort_all(&h->hub);
        /* Each close completes on a later ws_io_run. */
        for (int i = 0; i < 100 && h->hub.nconns; i++)
            ws_hub_flush(&h->hub);
        size_t left = h->hub.nconns;
        for (size_t i = 0; i < h->nmemio; i++)
            ws_memio_free(h->memio[i]);
        h->nmemio = 0;
        /* A memio whose owner had not closed it yet goes with that close. */
        for (int i = 0; i < 100 && ws_io_run(&h->io); i++)
            ;
        ws_hub_free(&h->hub);
        ws_io_free(&h->io);
        ws_outq_release_pool();
        uv_run(&h->loop, UV_RUN_NOWAIT);
        assert_int_equal(uv_loop_close(&h->loop), 0);
        assert_int_equal(left, 0);
    }
    for (size_t i = 0; i < h->host.nmsgs; i++)
        free(h->host.msgs[i].data);
    free(h->host.msgs);
    h->host.msgs = NULL;
    h->host.nmsgs = h->host.msgs_cap = 0;
    ws_buf_free(&h->host.log);
    ws_buf_free(&h->frame.payload);
    ws_buf_free(&h->resp.head);
    ws_buf_free(&h->resp.body);
}

int hs_teardown(void **state)
{
    harness_t *h = *state;
    hs_finish(h);
    free(h);
    return 0;
}

void hs_pump(harness_t *h)
{
    int i = 0;
    while (ws_hub_flush(&h->hub) && i < 64)
        i++;
    assert_true(i < 64); /* work that never settles is a bug of its own */
}

void hs_tick(harness_t *h)
{
    ws_hub_tick(&h->hub);
    hs_pump(h);
}

ws_memio_t *hs_memio(harness_t *h)
{
    assert_true(h->nmemio < HS_MAX_MEMIO);
    ws_memio_t *m = ws_memio_new(&h->io, "127.0.0.1", 40000 + (int)h->nmemio);
    h->memio[h->nmemio++] = m;
    return m;
}

ws_conn_t *hs_conn(harness_t *h, ws_memio_t **mp)
{
    ws_memio_t *m = hs_memio(h);
    *mp = m;
    return ws_conn_new(&h->hub, ws_memio_transport(m));
}

ws_conn_t *hs_open(harness_t *h, ws_memio_t **mp)
{
    ws_conn_t *c = hs_conn(h, mp);
    ws_buf_t req;
    ws_buf_init(&req);
    hs_upgrade_request(&req, "/ws", NULL, NULL, NULL);
    hs_feed(h, *mp, req.data, req.len);
    ws_buf_free(&req);
    const hs_response_t *r = hs_take_response(h, *mp, 1);
    assert_non_null(r);
    assert_int_equal(r->status, 101);
    return ws_conn_state(c) == WS_CONN_OPEN ? c : NULL;
}

void hs_feed(harness_t *h, ws_memio_t *m, const void *data, size_t len)
{
    ws_memio_feed(m, data, len);
    hs_pump(h);
}

void hs_feed_str(harness_t *h, ws_memio_t *m, const char *s) { hs_feed(h, m, s, strlen(s)); }

size_t hs_pending_output(const ws_memio_t *m)
{
    size_t len;
    (void)ws_memio_output(m, &len);
    return len;
}

/* --- what the peer writes --- */

void hs_upgrade_request(ws_buf_t *out, const char *path, const char *key, const char *version,
                        const char *extra)
{
    char line[256];
    snprintf(line, sizeof line,
             "GET %s HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\n",
             path);
    ws_buf_append_str(out, line);
    if (!key)
        key = HS_KEY;
    if (!version)
        version = "13";
    if (*key) {
        snprintf(line, sizeof line, "Sec-WebSocket-Key: %s\r\n", key);
        ws_buf_append_str(out, line);
    }
    if (*version) {
        snprintf(line, sizeof line, "Sec-WebSocket-Version: %s\r\n", version);
        ws_buf_append_str(out, line);
    }
    if (extra)
        ws_buf_append_str(out, extra);
    ws_buf_append_str(out, "\r\n");
}

/* The RFC 6455 section 5.7 sample key: any key works, a fixed one keeps
 * failures reproducible. */
static const uint8_t client_mask[4] = {0x37, 0xfa, 0x21, 0x3d};

void hs_client_frame(ws_buf_t *out, unsigned first_byte, const void *payload, size_t len)
{
    uint8_t hdr[WS_FRAME_HDR_MAX];
    size_t hl = ws_frame_write_header(hdr, first_byte, len, client_mask);
    ws_buf_append(out, hdr, hl);
    size_t at = out->len;
    ws_buf_append(out, payload, len);
    if (len)
        ws_frame_mask(out->data + at, len, client_mask, 0);
}

void hs_client_close(ws_buf_t *out, unsigned code, const char *reason)
{
    uint8_t p[125];
    size_t rl = reason ? strlen(reason) : 0;
    assert_true(rl <= 123);
    p[0] = (uint8_t)(code >> 8);
    p[1] = (uint8_t)code;
    if (rl)
        memcpy(p + 2, reason, rl);
    hs_client_frame(out, WS_FRAME_FIN | WS_OP_CLOSE, p, 2 + rl);
}

void hs_send_frame(harness_t *h, ws_memio_t *m, unsigned first_byte, const void *payload,
                   size_t len)
{
    ws_buf_t b;
    ws_buf_init(&b);
    hs_client_frame(&b, first_byte, payload, len);
    ws_memio_feed(m, b.data, b.len);
    ws_buf_free(&b);
    hs_pump(h);
}

void hs_send_close(harness_t *h, ws_memio_t *m, unsigned code, const char *reason)
{
    ws_buf_t b;
    ws_buf_init(&b);
    hs_client_close(&b, code, reason);
    ws_memio_feed(m, b.data, b.len);
    ws_buf_free(&b);
    hs_pump(h);
}

/* --- what the peer reads --- */

const hs_frame_t *hs_next_frame(harness_t *h, ws_memio_t *m)
{
    size_t len;
    const uint8_t *out = ws_memio_output(m, &len);
    if (len == 0)
        return NULL;
    ws_frame_hdr_t fh;
    int r = ws_frame_parse_header(out, len, WS_FRAME_RSV1, 0, &fh);
    if (r == WS_EAGAIN)
        return NULL;
    assert_true(r > 0);
    assert_false(fh.masked); /* RFC 6455 5.1: a server never masks */
    if (len - (size_t)r < fh.len)
        return NULL;
    hs_frame_t *f = &h->frame;
    f->fin = fh.fin;
    f->rsv = fh.rsv;
    f->opcode = fh.opcode;
    f->masked = fh.masked;
    f->payload.len = 0;
    ws_buf_append(&f->payload, out + r, (size_t)fh.len);
    ws_buf_append(&f->payload, "", 1);
    f->payload.len--;
    ws_memio_consume(m, (size_t)r + (size_t)fh.len);
    return f;
}

unsigned hs_close_code(const hs_frame_t *f)
{
    if (f->payload.len < 2)
        return WS_CLOSE_NO_STATUS;
    return (unsigned)f->payload.data[0] << 8 | f->payload.data[1];
}

const char *hs_close_reason(const hs_frame_t *f)
{
    return f->payload.len > 2 ? (const char *)f->payload.data + 2 : "";
}

static long find(const uint8_t *hay, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(hay + i, needle, k) == 0)
            return (long)i;
    return -1;
}

const hs_response_t *hs_take_response(harness_t *h, ws_memio_t *m, int no_body)
{
    size_t len;
    const uint8_t *out = ws_memio_output(m, &len);
    long end = find(out, len, "\r\n\r\n");
    if (end < 0)
        return NULL;
    size_t head_len = (size_t)end + 4;
    hs_response_t *r = &h->resp;
    r->head.len = 0;
    ws_buf_append(&r->head, out, head_len);
    ws_buf_append(&r->head, "", 1);
    r->head.len--;
    const char *head = (const char *)r->head.data;
    r->status = 0;
    assert_int_equal(sscanf(head, "HTTP/1.1 %d ", &r->status), 1);
    size_t body_len = 0;
    const char *cl = strstr(head, "\r\nContent-Length: ");
    if (cl && !no_body)
        body_len = strtoul(cl + 18, NULL, 10);
    if (len - head_len < body_len)
        return NULL;
    r->body.len = 0;
    ws_buf_append(&r->body, out + head_len, body_len);
    ws_buf_append(&r->body, "", 1);
    r->body.len--;
    ws_memio_consume(m, head_len + body_len);
    return r;
}

int hs_has_header(const hs_response_t *r, const char *line)
{
    char want[1024];
    snprintf(want, sizeof want, "\r\n%s\r\n", line);
    return strstr((const char *)r->head.data, want) != NULL;
}
