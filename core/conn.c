#include "conn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "error.h"
#include "frame.h"
#include "handshake.h"
#include "lhost.h"
#include "outq.h"
#include "utf8.h"
#include "log.h"

static uint64_t now_ms(ws_conn_t *c) { return uv_now(c->srv->loop); }

/* --- lifecycle --- */

/* The server keeps open WebSocket connections apart from the others (HTTP,
 * closing): the others have deadlines checked every sweep, open ones only
 * need the slower heartbeat sweep. */
/* HTTP parsers (1.8 KB each) live only until the upgrade. Recycling them,
 * instead of freeing, keeps them from leaving holes between the connections
 * allocated during a burst of handshakes: fragmentation that would stay in
 * the RSS for as long as those connections live. */
#define HTTP_POOL_MAX 64
static ws_http_t *http_pool[HTTP_POOL_MAX];
static size_t http_pooled;

static ws_http_t *http_new(void)
{
    return http_pooled ? http_pool[--http_pooled] : ws_malloc(sizeof(ws_http_t));
}

static void http_release(ws_http_t *h)
{
    ws_http_free(h);
    if (http_pooled < HTTP_POOL_MAX)
        http_pool[http_pooled++] = h;
    else
        free(h);
}

static void link(ws_conn_t *c, ws_conn_t **list)
{
    c->on_open_list = list == &c->srv->open;
    c->prev = NULL;
    c->next = *list;
    if (*list)
        (*list)->prev = c;
    *list = c;
}

static void unlink(ws_conn_t *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        *(c->on_open_list ? &c->srv->open : &c->srv->conns) = c->next;
    if (c->next)
        c->next->prev = c->prev;
}

/* Leaving state OPEN: back on the list the fast sweep visits. */
static void leave_open(ws_conn_t *c)
{
    if (c->on_open_list) {
        unlink(c);
        link(c, &c->srv->conns);
    }
}

static void on_closed(uv_handle_t *h)
{
    ws_conn_t *c = (ws_conn_t *)h;
    ws_server_t *s = c->srv;
    unlink(c);
    s->nconns--;
    ws__outq_free(c);
    if (c->http) {
        http_release(c->http);
    }
    ws_msg_reader_free(&c->reader);
    if (c->deflate) {
        ws_deflate_close(c->deflate);
        free(c->deflate);
    }
    free(c->subprotocol);
    free(c->close_reason);
    free(c);
    ws__server_conn_gone(s);
}

/* Close the TCP connection now. Lua hears of it (on_close) here, exactly once. */
void ws__conn_finish(ws_conn_t *c)
{
    if (c->state == WS_CONN_CLOSED)
        return;
    leave_open(c);
    c->state = WS_CONN_CLOSED;
    if (c->ip_counted) {
        char ip[WS_REMOTE_MAX];
        ws_conn_ip(c, ip, sizeof ip);
        ws_iptab_dec(&c->srv->ips, ip);
    }
    if (c->is_ws) {
        c->srv->nopen--;
        ws_pubsub_unsubscribe_all(&c->srv->pubsub, c);
        ws_lhost_closed(c->srv->lh, c);
    }
    uv_read_stop((uv_stream_t *)&c->tcp);
    ws__outq_cancel(c);
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

void ws_conn_abort(ws_conn_t *c, unsigned code)
{
    if (!c->close_received && !c->close_sent)
        c->close_code = code;
    ws__conn_finish(c);
}

static void set_deadline(ws_conn_t *c)
{
    if (!c->deadline)
        c->deadline = uv_now(c->srv->loop) + (uint64_t)(c->srv->cfg.close_timeout * 1000.0);
}

static void http_error(ws_conn_t *c, int status, const char *reason, const char *extra);

/* How long a connection must be quiet before its buffers are released. */
#define IDLE_TRIM_MS 1000

void ws_conn_sweep(ws_conn_t *c, uint64_t now)
{
    const ws_config_t *cfg = &c->srv->cfg;
    if (c->deadline && now >= c->deadline) {
        ws_conn_abort(c, WS_CLOSE_ABNORMAL);
        return;
    }
    if (c->state == WS_CONN_HTTP) {
        /* Slowloris: a request must be whole by its deadline; an idle
         * keep-alive connection simply ends. */
        if (!c->end_after_write && now >= c->t_http) {
            if (c->http_partial)
                http_error(c, 408, "request not received in time", NULL);
            else
                ws__conn_finish(c);
        }
        return;
    }
    if (c->state != WS_CONN_OPEN)
        return;
    if (cfg->ping_interval > 0) {
        /* Any bytes from the peer after our ping prove it alive, a pong included. */
        if (c->t_ping && c->t_rx >= c->t_ping)
            c->t_ping = 0;
        if (c->t_ping) {
            if (now - c->t_ping >= (uint64_t)(cfg->ping_timeout * 1000)) {
                ws_log_debug("conn %llu: no pong within %.1f s, closing",
                             (unsigned long long)c->id, cfg->ping_timeout);
                ws_conn_abort(c, WS_CLOSE_ABNORMAL);
                return;
            }
        } else if (now - c->t_rx >= (uint64_t)(cfg->ping_interval * 1000)) {
            ws__outq_frame(c, WS_OP_PING, NULL, 0);
            c->t_ping = now;
        }
    }
    if (c->idle_ms && now - c->t_msg >= c->idle_ms) {
        static const char msg[] = "idle timeout";
        ws_conn_close(c, WS_CLOSE_GOING_AWAY, msg, sizeof msg - 1);
        return;
    }
    /* A quiet connection holds no buffers: they come back on the next use. */
    if (now - c->t_rx >= IDLE_TRIM_MS && now - c->t_msg >= IDLE_TRIM_MS) {
        int released = ws_msg_reader_trim(&c->reader);
        released |= ws__outq_trim(c);
        if (released)
            ws_log_debug("conn %llu: idle, buffers released", (unsigned long long)c->id);
    }
}

void ws_conn_shutdown(ws_conn_t *c, const char *reason)
{
    if (c->state == WS_CONN_OPEN) {
        ws_conn_close(c, WS_CLOSE_GOING_AWAY, reason, strlen(reason));
    } else if (c->state == WS_CONN_HTTP) {
        if (c->qn == 0 && !c->w) {
            ws__conn_finish(c);
        } else {
            c->end_after_write = 1;
            set_deadline(c);
        }
    }
}

void ws_conn_ip(const ws_conn_t *c, char *out, size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (c->peer_family)
        uv_inet_ntop(c->peer_family, c->peer_addr, ip, sizeof ip);
    snprintf(out, len, "%s", ip);
}

void ws_conn_remote(const ws_conn_t *c, char *out, size_t len)
{
    char ip[INET6_ADDRSTRLEN];
    ws_conn_ip(c, ip, sizeof ip);
    snprintf(out, len, c->peer_family == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, c->peer_port);
}

static void send_close_frame(ws_conn_t *c, unsigned code, const char *reason, size_t len)
{
    uint8_t payload[125];
    size_t n = 0;
    if (code != WS_CLOSE_NO_STATUS) {
        if (len > 123)
            len = 123;
        payload[0] = (uint8_t)(code >> 8);
        payload[1] = (uint8_t)code;
        memcpy(payload + 2, reason, len);
        n = 2 + len;
    }
    ws__outq_frame(c, WS_OP_CLOSE, payload, n);
    c->close_sent = 1;
    leave_open(c);
    c->state = WS_CONN_CLOSING;
    set_deadline(c);
}

int ws_conn_close(ws_conn_t *c, unsigned code, const char *reason, size_t len)
{
    if (c->state != WS_CONN_OPEN)
        return WS_EINVAL;
    c->close_code = code;
    free(c->close_reason);
    c->close_reason = ws_strndup(reason ? reason : "", reason ? len : 0);
    send_close_frame(c, code, reason, len);
    return 0;
}

/* Fail the WebSocket connection (RFC 6455 7.1.7): close frame with the code
 * for err, then end TCP without waiting for the peer's close. */
static void fail(ws_conn_t *c, int err)
{
    unsigned code = (unsigned)ws_err_close_code(err);
    const char *why = ws_strerror(err);
    ws_log_debug("conn %llu: %s -> close %u", (unsigned long long)c->id, why, code);
    if (!c->close_sent) {
        c->close_code = code;
        free(c->close_reason);
        c->close_reason = ws_strndup(why, strlen(why));
        send_close_frame(c, code, why, strlen(why));
    }
    c->end_after_write = 1;
}

int ws_conn_send(ws_conn_t *c, unsigned op, const void *data, size_t len, unsigned flags)
{
    if (c->state != WS_CONN_OPEN)
        return WS_EINVAL;
    if (op < WS_OP_CLOSE) {
        int r = ws__outq_make_room(c, len + WS_FRAME_HDR_MAX);
        if (r)
            return r;
        c->t_msg = now_ms(c);
        if (c->deflate && !(flags & WS_SEND_PLAIN) && ws_deflate_should_compress(c->deflate, len)) {
            ws_buf_t *z = &c->srv->zout;
            z->len = 0;
            /* WS_ENOMEM (the zlib memory cap) means: send it plain. */
            if (ws_deflate_compress(c->deflate, data, len, z) == 0) {
                ws__outq_frame(c, op | WS_FRAME_RSV1, z->data, z->len);
                ws_buf_reset(z, 1 << 20);
                return 0;
            }
        }
    }
    ws__outq_frame(c, op, data, len);
    return 0;
}

int ws_conn_send_chunk(ws_conn_t *c, ws_chunk_t *frame)
{
    if (c->state != WS_CONN_OPEN)
        return WS_EINVAL;
    int r = ws__outq_make_room(c, frame->len);
    if (r)
        return r;
    c->t_msg = now_ms(c);
    ws__outq_push(c, ws_chunk_ref(frame));
    return 0;
}

/* Token bucket on inbound messages: 0 to go on, 1 when over the limit. */
static int over_rate(ws_conn_t *c)
{
    if (c->rate <= 0)
        return 0;
    uint64_t now = now_ms(c);
    float t = c->tokens + (float)(now - c->t_tokens) / 1000.0f * c->rate;
    c->tokens = t > c->burst ? c->burst : t;
    c->t_tokens = now;
    if (c->tokens < 1.0f)
        return 1;
    c->tokens -= 1.0f;
    return 0;
}

/* --- inbound WebSocket --- */

static int on_frame(void *ud, unsigned op, unsigned flags, uint8_t *data, size_t len)
{
    ws_conn_t *c = ud;
    ws_lhost_t *lh = c->srv->lh;
    (void)flags;
    switch (op) {
    case WS_OP_TEXT:
    case WS_OP_BINARY:
        /* After our close frame the peer may still be sending; RFC 6455 lets us drop it. */
        if (c->state != WS_CONN_OPEN)
            break;
        if (over_rate(c)) {
            static const char msg[] = "rate limit exceeded";
            ws_conn_close(c, WS_CLOSE_POLICY, msg, sizeof msg - 1);
            break;
        }
        c->t_msg = now_ms(c);
        if (flags & WS_MSG_COMPRESSED) {
            /* The size limit holds for the inflated message, enforced while inflating. */
            ws_buf_t *z = &c->srv->zin;
            z->len = 0;
            int r = ws_deflate_inflate(c->deflate, data, len, c->max_message, z);
            if (r == 0 && op == WS_OP_TEXT && !ws_utf8_valid(z->data, z->len))
                r = WS_EUTF8;
            if (r != 0) {
                ws_buf_reset(z, 1 << 20);
                fail(c, r);
                return 1;
            }
            ws_lhost_message(lh, c, z->len ? z->data : (const uint8_t *)"", z->len,
                             op == WS_OP_BINARY);
            ws_buf_reset(z, 1 << 20);
            break;
        }
        ws_lhost_message(lh, c, data, len, op == WS_OP_BINARY);
        break;
    case WS_OP_PING:
        if (c->state == WS_CONN_OPEN) {
            ws__outq_frame(c, WS_OP_PONG, data, len);
            ws_lhost_control(lh, c, op, data, len);
        }
        break;
    case WS_OP_PONG:
        if (c->state == WS_CONN_OPEN)
            ws_lhost_control(lh, c, op, data, len);
        break;
    case WS_OP_CLOSE: {
        unsigned code;
        const uint8_t *reason;
        size_t rlen;
        ws_msg_close_parse(data, len, &code, &reason, &rlen);
        c->close_received = 1;
        c->close_code = code;
        free(c->close_reason);
        c->close_reason = ws_strndup((const char *)reason, rlen);
        if (!c->close_sent)
            send_close_frame(c, code, (const char *)reason, 0);
        c->end_after_write = 1;
        ws_server_mark_dirty(c->srv, c);
        return 1;
    }
    }
    return c->state == WS_CONN_CLOSED || c->end_after_write;
}

/* --- inbound HTTP --- */

static void http_error(ws_conn_t *c, int status, const char *reason, const char *extra)
{
    char head[512];
    size_t rlen = strlen(reason);
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n%s\r\n",
                     status, ws_http_status_text(status), rlen + 1, extra ? extra : "");
    ws__outq_raw(c, head, (size_t)n);
    ws__outq_raw(c, reason, rlen);
    ws__outq_raw(c, "\n", 1);
    c->end_after_write = 1;
    set_deadline(c);
}

/* permessage-deflate: every Sec-WebSocket-Extensions header, joined, against
 * the route's configuration. Returns the response extension or NULL. */
static const char *negotiate_deflate(ws_conn_t *c, const ws_hs_request_t *req,
                                     const ws_deflate_config_t *cfg, char *ext, size_t cap)
{
    if (!cfg->enabled)
        return NULL;
    /* A connection that keeps deflate context holds its zlib state (~300 KB)
     * for life: decline the extension once the memory cap cannot take one
     * more, rather than accept it and fail its first message with 1013. */
    ws_deflate_stats_t st;
    ws_deflate_stats(&st);
    if (!cfg->release_idle && st.mem_limit && st.mem + WS_DEFLATE_CONN_ESTIMATE > st.mem_limit)
        return NULL;
    ws_buf_t offers;
    ws_buf_init(&offers);
    for (size_t i = 0; i < req->nheaders; i++) {
        const ws_header_t *h = &req->headers[i];
        if (h->name_len == 24 && strncasecmp(h->name, "sec-websocket-extensions", 24) == 0) {
            if (offers.len)
                ws_buf_append(&offers, ", ", 2);
            ws_buf_append(&offers, h->value, h->value_len);
        }
    }
    ws_deflate_params_t params;
    const char *out = NULL;
    if (offers.len &&
        ws_deflate_negotiate(cfg, (const char *)offers.data, offers.len, &params, ext, cap) == 1) {
        c->deflate = ws_malloc(sizeof *c->deflate);
        ws_deflate_init(c->deflate, cfg, &params);
        out = ext;
    }
    ws_buf_free(&offers);
    return out;
}

static void upgrade(ws_conn_t *c, const ws_hs_request_t *req)
{
    ws_server_t *s = c->srv;
    ws_hs_result_t hs;
    if (ws_handshake_check(req, &hs) != 0) {
        http_error(c, hs.status, hs.reason,
                   hs.status == 426 ? "Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n" : NULL);
        return;
    }
    if (s->stopping) {
        http_error(c, 503, "server shutting down", NULL);
        return;
    }
    if (s->nopen >= (size_t)s->cfg.max_connections) {
        http_error(c, 503, "too many connections", "Retry-After: 1\r\n");
        return;
    }
    char ip[WS_REMOTE_MAX];
    ws_conn_ip(c, ip, sizeof ip);
    if (s->cfg.max_per_ip > 0 && ws_iptab_count(&s->ips, ip) >= (uint32_t)s->cfg.max_per_ip) {
        http_error(c, 503, "too many connections from your address", "Retry-After: 1\r\n");
        return;
    }
    ws_buf_t extra, reason;
    ws_buf_init(&extra);
    ws_buf_init(&reason);
    ws_deflate_config_t dcfg = s->deflate_cfg; /* the route may change it */
    int st = ws_lhost_upgrade(c->srv->lh, c, c->http, req, &hs, &dcfg, &extra, &reason);
    if (st != 0) {
        ws_buf_append(&extra, "", 1);
        ws_buf_append(&reason, "", 1);
        http_error(c, st, (char *)reason.data, (char *)extra.data);
        ws_buf_free(&extra);
        ws_buf_free(&reason);
        return;
    }
    ws_buf_free(&extra);
    ws_buf_free(&reason);
    char ext[WS_DEFLATE_RESPONSE_MAX];
    const char *exts = negotiate_deflate(c, req, &dcfg, ext, sizeof ext);
    char resp[512];
    long n = ws_handshake_response(resp, sizeof resp, hs.accept, c->subprotocol, exts);
    /* Lua keeps it (conn.subprotocol); the connection needs it no more. */
    free(c->subprotocol);
    c->subprotocol = NULL;
    if (n < 0) {
        http_error(c, 500, "response too large", NULL);
        return;
    }
    ws__outq_raw(c, resp, (size_t)n);
    http_release(c->http);
    c->http = NULL;
    ws_msg_reader_init(&c->reader, c->max_message, on_frame, c);
    if (c->deflate) {
        c->reader.rsv_allowed = WS_FRAME_RSV1;
        /* The limit is on the inflated size (checked while inflating); on the
         * wire an incompressible message may be slightly larger than itself. */
        c->reader.max_message = c->max_message + (c->max_message >> 8) + 1024;
    }
    c->state = WS_CONN_OPEN;
    unlink(c);
    link(c, &s->open);
    c->is_ws = 1;
    c->srv->nopen++;
    ws_iptab_inc(&s->ips, ip);
    c->ip_counted = 1;
    c->t_msg = c->t_tokens = now_ms(c);
    c->t_ping = 0; /* shares its place with t_http, which the HTTP phase used */
    ws_lhost_open(c->srv->lh, c);
}

static void request(ws_conn_t *c)
{
    ws_hs_request_t req;
    ws_header_t hdrs[WS_HTTP_MAX_HEADERS];
    ws_http_request(c->http, &req, hdrs);
    if (ws_handshake_is_upgrade(&req)) {
        upgrade(c, &req);
        return;
    }
    ws_buf_t resp;
    ws_buf_init(&resp);
    /* After an upgrade to anything but WebSocket the bytes that follow are not HTTP. */
    int keep = c->http->keep_alive && !c->http->upgrade && !c->srv->stopping;
    ws_lhost_http(c->srv->lh, c, c->http, &req, keep, &resp);
    ws__outq_raw(c, resp.data, resp.len);
    ws_buf_free(&resp);
    if (!keep) {
        c->end_after_write = 1;
        set_deadline(c);
    }
    c->http_partial = 0;
    c->t_http = now_ms(c) + (uint64_t)(c->srv->cfg.keepalive_timeout * 1000);
}

static void process(ws_conn_t *c, uint8_t *p, size_t n)
{
    while (n > 0) {
        if (c->state == WS_CONN_HTTP) {
            if (c->end_after_write)
                return; /* answered with Connection: close; ignore the rest */
            long r = ws_http_feed(c->http, (const char *)p, n);
            if (r < 0) {
                http_error(c, ws_http_error_status((int)r), ws_strerror((int)r), NULL);
                return;
            }
            p += r;
            n -= (size_t)r;
            if (!c->http->complete)
                continue;
            request(c);
            if (c->state == WS_CONN_HTTP)
                ws_http_next(c->http);
        } else if (c->state == WS_CONN_OPEN || c->state == WS_CONN_CLOSING) {
            if (c->end_after_write)
                return; /* the close handshake is over or failed: drain */
            long r = ws_msg_feed(&c->reader, p, n);
            if (r < 0) {
                fail(c, (int)r);
                return;
            }
            p += r;
            n -= (size_t)r;
        } else {
            return;
        }
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    ws_conn_t *c = (ws_conn_t *)h;
    (void)suggested;
    /* One read buffer serves every connection: reads are processed to the end
     * before the next one starts, and partial frames are copied out. */
    *buf = uv_buf_init((char *)c->srv->rbuf, sizeof c->srv->rbuf);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    ws_conn_t *c = (ws_conn_t *)st;
    if (nread < 0) {
        ws_conn_abort(c, WS_CLOSE_ABNORMAL);
        return;
    }
    if (nread == 0 || c->state == WS_CONN_CLOSED)
        return;
    c->t_rx = now_ms(c);
    c->srv->reads++;
    if (c->state == WS_CONN_HTTP && !c->http_partial) {
        c->http_partial = 1;
        c->t_http = c->t_rx + (uint64_t)(c->srv->cfg.handshake_timeout * 1000);
    }
    process(c, (uint8_t *)buf->base, (size_t)nread);
}

void ws_conn_accept(ws_server_t *s)
{
    ws_conn_t *c = ws_calloc(1, sizeof *c);
    uv_tcp_init(s->loop, &c->tcp);
    if (uv_accept((uv_stream_t *)&s->listener, (uv_stream_t *)&c->tcp) != 0) {
        free(c);
        return;
    }
    c->srv = s;
    c->id = ++s->next_id;
    c->state = WS_CONN_HTTP;
    c->handler_ref = -2; /* LUA_NOREF */
    c->close_code = WS_CLOSE_ABNORMAL;
    c->max_buffered = s->cfg.max_buffered;
    c->max_message = s->cfg.max_message;
    c->backpressure = (unsigned)s->cfg.backpressure & 3;
    c->idle_ms = (uint32_t)(s->cfg.idle_timeout * 1000);
    c->rate = (float)s->cfg.rate_limit;
    c->burst = c->tokens = (float)s->cfg.rate_burst;
    c->t_rx = uv_now(s->loop);
    c->t_http = c->t_rx + (uint64_t)(s->cfg.handshake_timeout * 1000);
    link(c, &s->conns);
    s->nconns++;
    uv_tcp_nodelay(&c->tcp, 1);

    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6) {
            const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
            memcpy(c->peer_addr, &a->sin6_addr, 16);
            c->peer_port = ntohs(a->sin6_port);
            c->peer_family = AF_INET6;
        } else if (ss.ss_family == AF_INET) {
            const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
            memcpy(c->peer_addr, &a->sin_addr, 4);
            c->peer_port = ntohs(a->sin_port);
            c->peer_family = AF_INET;
        }
    }

    c->http = http_new();
    ws_http_init(c->http, s->cfg.max_header, s->cfg.max_body);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}
