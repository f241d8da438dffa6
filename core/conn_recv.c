/* What arrives on a connection: HTTP requests (answered by the host, maybe
 * later), the upgrade (decided by the host, maybe later), then WebSocket
 * frames handed to the host. Also the making of a connection, since the
 * transport's callbacks start here. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conn_int.h"
#include "error.h"
#include "frame.h"
#include "log.h"
#include "stats.h"
#include "utf8.h"

static uint64_t now_ms(const ws_conn_t *c) { return ws_hub_now(c->hub); }

static void on_read(void *ud, uint8_t *data, size_t len);

static const ws_transport_cb_t conn_transport_cb = {
    .on_read = on_read,
    .on_end = ws__conn_on_end,
    .on_shutdown = ws__conn_on_shutdown,
    .on_close = ws__conn_on_close,
};

/* Over a per-address limit: answered at once, and the connection ends. Not
 * through a handshake that has not happened (TLS): finishing it would cost
 * more than the refusal saves, so such a connection is cut. */
static void refuse(ws_conn_t *c, int status, const char *reason)
{
    ws_stats_inc(WS_STAT_CONN_REFUSED);
    if (c->t->hs_pending) {
        ws_conn_abort(c, WS_CLOSE_ABNORMAL);
        return;
    }
    ws__conn_http_error(c, status, reason, "Retry-After: 1\r\n");
}

/* The per-address limits that hold before any request: connections at
 * once (--max-tcp-per-ip) and new ones per second (--accept-rate, a fixed
 * one-second window). Over either, the connection is refused (see refuse);
 * it reads nothing more. */
static void admit(ws_conn_t *c)
{
    ws_hub_t *h = c->hub;
    const ws_config_t *cfg = &h->cfg;
    char ip[WS_REMOTE_MAX];
    ws_transport_ip(c->t, ip, sizeof ip); /* no header read yet: the peer's, proxy or not */
    if (cfg->accept_rate > 0) {
        uint64_t now = now_ms(c);
        if (now - h->accepts_since >= 1000) {
            ws_iptab_free(&h->accepts);
            ws_iptab_init(&h->accepts);
            h->accepts_since = now;
        }
        if (ws_iptab_inc(&h->accepts, ip) > (uint32_t)cfg->accept_rate) {
            refuse(c, 429, "too many new connections from your address");
            return;
        }
    }
    if (cfg->max_tcp_per_ip > 0) {
        uint32_t n = ws_hub_ip_inc(h, WS_TALLY_IP_TCP, ip);
        c->tcp_counted = n != UINT32_MAX;
        if (n > (uint32_t)cfg->max_tcp_per_ip)
            refuse(c, 503, "too many connections from your address");
    }
}

ws_conn_t *ws_conn_new(ws_hub_t *h, ws_transport_t *t)
{
    const ws_config_t *cfg = &h->cfg;
    ws_conn_t *c = ws_calloc(1, sizeof *c);
    ws_stats_inc(WS_STAT_ACCEPTED);
    c->hub = h;
    c->t = t;
    c->id = ws_hub_new_id(h);
    h->work++;
    c->state = WS_CONN_HTTP;
    c->close_code = WS_CLOSE_ABNORMAL;
    c->max_buffered = cfg->max_buffered;
    c->backpressure = (unsigned)cfg->backpressure & 3;
    c->t_rx = now_ms(c);
    c->t_http = c->t_rx + (uint64_t)(cfg->handshake_timeout * 1000);
    ws__conn_link(c, &h->conns);
    h->nconns++;
    c->http = ws__conn_http_new();
    ws_http_init(c->http, cfg->max_header, cfg->max_body);
    ws_transport_start(t, &conn_transport_cb, c);
    if (cfg->max_tcp_per_ip > 0 || cfg->accept_rate > 0)
        admit(c);
    return c;
}

/* Token bucket on inbound messages: 0 to go on, 1 when over the limit. */
static int over_rate(ws_conn_t *c)
{
    ws_conn_rare_t *r = c->rare;
    if (!r || r->rate <= 0)
        return 0;
    uint64_t now = now_ms(c);
    float t = r->tokens + (float)(now - r->t_tokens) / 1000.0f * r->rate;
    r->tokens = t > r->burst ? r->burst : t;
    r->t_tokens = now;
    if (r->tokens < 1.0f)
        return 1;
    r->tokens -= 1.0f;
    return 0;
}

/* --- inbound WebSocket --- */

/* A compressed message: inflated into the hub's scratch buffer, then handed
 * to the host like any other. Out of line (as on_control), so that the
 * plain message path of on_frame saves few registers. Returns 1 when the
 * connection failed (on_frame returns 1 at once). */
static __attribute__((noinline)) int on_compressed(ws_conn_t *c, unsigned op, uint8_t *data,
                                                   size_t len)
{
    /* The size limit holds for the inflated message, enforced while inflating. */
    ws_buf_t *z = &c->hub->zin;
    z->len = 0;
    int r = ws_deflate_inflate(c->deflate, data, len, c->reader.max_message, z);
    if (r == 0 && op == WS_OP_TEXT && !ws_utf8_valid(z->data, z->len))
        r = WS_EUTF8;
    if (r != 0) {
        ws_buf_reset(z, 1 << 20);
        ws__conn_fail(c, r);
        return 1;
    }
    ws_stats_inc(WS_STAT_MSGS_IN);
    ws_stats_add(WS_STAT_BYTES_IN, z->len);
    c->hub->host->message(c->hub->host_ud, c, z->len ? z->data : (const uint8_t *)"", z->len,
                          op == WS_OP_BINARY);
    ws_buf_reset(z, 1 << 20);
    return 0;
}

/* PING, PONG and CLOSE. Returns 1 when on_frame returns 1 at once (a close). */
static __attribute__((noinline)) int on_control(ws_conn_t *c, unsigned op, uint8_t *data,
                                                size_t len)
{
    const ws_host_ops_t *host = c->hub->host;
    void *hud = c->hub->host_ud;
    switch (op) {
    case WS_OP_PING:
        ws__conn_settle(c);
        if (c->state == WS_CONN_OPEN) {
            ws_outq_control(&c->out, WS_OP_PONG, data, len);
            ws__conn_mark_dirty(c);
            host->control(hud, c, op, data, len);
        }
        break;
    case WS_OP_PONG:
        ws__conn_settle(c);
        if (c->state == WS_CONN_OPEN)
            host->control(hud, c, op, data, len);
        break;
    case WS_OP_CLOSE: {
        unsigned code;
        const uint8_t *reason;
        size_t rlen;
        ws_msg_close_parse(data, len, &code, &reason, &rlen);
        ws__conn_settle(c);
        c->close_received = 1;
        c->close_code = code;
        ws__conn_set_close_reason(c, (const char *)reason, rlen);
        if (!c->close_sent)
            ws__conn_send_close_frame(c, code, (const char *)reason, 0);
        c->end_after_write = 1;
        ws__conn_mark_dirty(c);
        return 1;
    }
    }
    return 0;
}

static int on_frame(void *ud, unsigned op, unsigned flags, uint8_t *data, size_t len)
{
    ws_conn_t *c = ud;
    if (op != WS_OP_TEXT && op != WS_OP_BINARY) {
        if (on_control(c, op, data, len))
            return 1;
    } else if (c->state != WS_CONN_OPEN) {
        /* After our close frame the peer may still be sending; RFC 6455 lets us drop it. */
    } else if (over_rate(c)) {
        static const char msg[] = "rate limit exceeded";
        ws_conn_close(c, WS_CLOSE_POLICY, msg, sizeof msg - 1);
    } else {
        c->t_msg = now_ms(c);
        if (ws__conn_acc(c))
            c->rare->acc->msgs_in++;
        c->hub->work++;
        if (flags & WS_MSG_COMPRESSED) {
            if (on_compressed(c, op, data, len))
                return 1;
        } else {
            ws_stats_inc(WS_STAT_MSGS_IN);
            ws_stats_add(WS_STAT_BYTES_IN, len);
            c->hub->host->message(c->hub->host_ud, c, data, len, op == WS_OP_BINARY);
        }
    }
    if (c->state == WS_CONN_OPEN && ws__conn_over_high_water(c)) {
        /* Our replies are piling up: read no more until they drain. */
        ws_transport_pause(c->t, WS_PAUSE_BACKPRESSURE);
        return 1;
    }
    /* The host held it (ws_conn_hold): the next message waits. */
    return c->state == WS_CONN_CLOSED || c->end_after_write || ws_transport_paused(c->t);
}

/* --- HTTP answers --- */

/* Queue the host's answer to the request p describes. */
static void respond(ws_conn_t *c, ws_pending_t *p)
{
    ws_response_t *r = &p->res;
    int head = p->hs.method_len == 4 && memcmp(p->hs.method, "HEAD", 4) == 0;
    int status = r->status >= 100 && r->status <= 999 ? r->status : 500;
    char line[256];
    int n = snprintf(line, sizeof line, "HTTP/1.1 %d %s\r\n", status, ws_http_status_text(status));
    ws_outq_raw(&c->out, line, (size_t)n);
    ws_outq_raw(&c->out, r->headers.data, r->headers.len);
    n = snprintf(line, sizeof line, "Content-Length: %zu\r\n%s\r\n", r->body.len,
                 p->req.keep_alive ? "" : "Connection: close\r\n");
    ws_outq_raw(&c->out, line, (size_t)n);
    if (!head)
        ws_outq_raw(&c->out, r->body.data, r->body.len);
    ws__conn_mark_dirty(c);
    if (c->hub->cfg.access_log)
        ws__conn_access_http(c, status, NULL);
    c->requests++;
    if (!p->req.keep_alive) {
        c->end_after_write = 1;
        ws__conn_set_deadline(c);
    }
    c->http_partial = 0;
    c->t_http = now_ms(c) + (uint64_t)(c->hub->cfg.keepalive_timeout * 1000);
}

/* --- the upgrade --- */

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

/* Room left under the server's limits for one more WebSocket; 0 when there
 * is. With hold, the room is taken (a place under --max-connections, the
 * address counted): with workers, another worker may be upgrading at the
 * same moment, and only one of them may have the last place. */
static int refuse_for_limits(ws_conn_t *c, int hold)
{
    ws_hub_t *h = c->hub;
    if (h->stopping) {
        ws__conn_http_error(c, 503, "server shutting down", NULL);
        return 1;
    }
    if (ws_hub_memory_tight(h)) {
        ws__conn_http_error(c, 503, "server low on memory", "Retry-After: 5\r\n");
        return 1;
    }
    if (hold ? !ws_hub_hold_open(h) : ws_hub_open_total(h) >= (size_t)h->cfg.max_connections) {
        ws__conn_http_error(c, 503, "too many connections", "Retry-After: 1\r\n");
        return 1;
    }
    if (h->cfg.max_per_ip > 0) {
        char ip[WS_REMOTE_MAX];
        ws_conn_ip(c, ip, sizeof ip);
        uint32_t max = (uint32_t)h->cfg.max_per_ip, n;
        if (!hold) {
            n = ws_hub_ip_count(h, WS_TALLY_IP_WS, ip) + 1;
        } else if ((n = ws_hub_ip_inc(h, WS_TALLY_IP_WS, ip)) != UINT32_MAX) {
            c->ip_counted = 1;
        }
        if (n > max) {
            if (hold)
                ws_hub_release_open(h);
            ws__conn_http_error(c, 503, "too many connections from your address",
                                "Retry-After: 1\r\n");
            return 1;
        }
    }
    return 0;
}

/* Apply the host's decision on the upgrade p describes. */
static void upgraded(ws_conn_t *c, ws_pending_t *p)
{
    ws_hub_t *h = c->hub;
    ws_upgrade_t *up = &p->up;
    if (up->status != 0) {
        ws_buf_append(&up->headers, "", 1);
        ws_buf_append(&up->reason, "", 1);
        int st = up->status >= 400 && up->status <= 599 ? up->status : 500;
        ws__conn_http_error(c, st, (char *)up->reason.data, (char *)up->headers.data);
        return;
    }
    /* A decision that took a while: the limits may have filled meanwhile. */
    if (refuse_for_limits(c, 1)) {
        ws_stats_inc(WS_STAT_REFUSED_LIMIT);
        return;
    }
    const ws_route_limits_t *lim = &up->limits;
    c->max_buffered = lim->max_buffered;
    if (lim->idle_ms || lim->rate > 0) {
        ws_conn_rare_t *r = ws__conn_rare(c);
        r->idle_ms = lim->idle_ms;
        r->rate = lim->rate;
        r->burst = r->tokens = lim->burst;
        r->t_tokens = now_ms(c);
    }
    c->backpressure = (unsigned)lim->backpressure & 3;
    char ext[WS_DEFLATE_RESPONSE_MAX];
    const char *exts = negotiate_deflate(c, &p->hs, &lim->deflate, ext, sizeof ext);
    char resp[512];
    long n = ws_handshake_response(resp, sizeof resp, p->check.accept, up->subprotocol, exts);
    if (n < 0) {
        ws_hub_release_open(h); /* its address is counted until it is freed */
        ws__conn_http_error(c, 500, "response too large", NULL);
        return;
    }
    ws_outq_raw(&c->out, resp, (size_t)n);
    /* What is queued so far is HTTP (the 101, answers before it): no
     * backpressure policy may drop it. */
    c->out.keep = c->out.queued;
    ws__conn_mark_dirty(c);
    /* Before the parser goes: the path points into its buffer. */
    if (h->cfg.access_log)
        ws__conn_access_open(c, p);
    /* The reader takes the place of the parser (a union): is_ws says which. */
    ws__conn_http_release(c->http);
    c->is_ws = 1;
    ws_msg_reader_init(&c->reader, lim->max_message, on_frame, c);
    if (c->deflate)
        c->reader.rsv_allowed = WS_FRAME_RSV1;
    c->state = WS_CONN_OPEN;
    ws__conn_unlink(c);
    ws__conn_link(c, &h->open);
    ws_hub_count_open(h, 1);
    ws_stats_inc(WS_STAT_OPENED);
    c->t_msg = now_ms(c);
    c->t_ping = 0; /* shares its place with t_http, which the HTTP phase used */
    h->host->open(h->host_ud, c);
}

/* --- requests --- */

static void forget_client(ws_conn_t *c)
{
    if (c->rare)
        c->rare->has_client = 0;
}

/* A one-element cache: requests answered at once need no allocation. */
static ws_pending_t *spare;

static ws_pending_t *pending_new(void)
{
    ws_pending_t *p = spare ? spare : ws_malloc(sizeof *p);
    spare = NULL;
    memset(p, 0, offsetof(ws_pending_t, hdrs));
    return p;
}

/* p is finished with: keep it as the spare (without its buffers) or free it. */
static void pending_done(ws_pending_t *p)
{
    if (!spare) {
        free(p->up.subprotocol);
        ws_buf_free(&p->res.headers);
        ws_buf_free(&p->res.body);
        ws_buf_free(&p->up.headers);
        ws_buf_free(&p->up.reason);
        spare = p;
        return;
    }
    ws__conn_pending_free(p);
}

/* The host has answered the request c->pending describes: queue the answer,
 * and get ready for the next request or the WebSocket frames. */
static void answered(ws_conn_t *c)
{
    ws_pending_t *p = c->pending;
    /* c->pending names the request while its answer is made (for the access
     * record); an accepted upgrade puts the reader in its place. */
    if (p->upgrade)
        upgraded(c, p);
    else
        respond(c, p);
    if (!c->is_ws)
        c->pending = NULL;
    pending_done(p);
    if (c->state == WS_CONN_HTTP) {
        /* A bad next request is the proxy's until it names its client. A
         * connection that ends here keeps its client: an address counted
         * (--max-per-ip, a refused upgrade) is released under that name. */
        if (!c->end_after_write)
            forget_client(c);
        ws_http_next(c->http);
    }
}

/* Behind a trusted proxy the client is who X-Forwarded-For says (proxy.h).
 * Each request says it anew: a proxy's keep-alive connection carries the
 * requests of many clients. */
static void find_client(ws_conn_t *c, const ws_hs_request_t *hs)
{
    /* A counted address is released under the name it was counted under. */
    assert(!c->ip_counted);
    const ws_proxy_t *px = c->hub->proxies;
    ws_transport_t *t = c->t;
    ws_ipaddr_t peer = {.v6 = t->peer_v6}, client;
    memcpy(peer.addr, t->peer_addr, sizeof peer.addr);
    if (t->peer_known && ws_proxy_trusts(px, &peer) &&
        ws_proxy_client(px, hs->headers, hs->nheaders, &client)) {
        ws_conn_rare_t *r = ws__conn_rare(c);
        r->client = client;
        r->has_client = 1;
    } else {
        forget_client(c);
    }
}

static void request(ws_conn_t *c)
{
    ws_hub_t *h = c->hub;
    ws_pending_t *p = pending_new();
    h->work++;
    ws_http_request(c->http, &p->hs, p->hdrs);
    if (h->proxies)
        find_client(c, &p->hs);
    p->req.hs = &p->hs;
    p->req.url = ws_http_url(c->http, &p->req.url_len);
    p->req.body = ws_http_body(c->http, &p->req.body_len);
    if (h->cfg.access_log)
        p->t0 = now_ms(c);
    c->pending = p;
    ws_stats_inc(WS_STAT_HTTP_REQUESTS);
    int r;
    if (ws_handshake_is_upgrade(&p->hs)) {
        if (ws_handshake_check(&p->hs, &p->check) != 0) {
            ws_stats_inc(WS_STAT_REFUSED_HANDSHAKE);
            ws__conn_http_error(c, p->check.status, p->check.reason,
                                p->check.status == 426
                                    ? "Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n"
                                    : NULL);
            c->pending = NULL;
            pending_done(p);
            return;
        }
        if (refuse_for_limits(c, 0)) {
            ws_stats_inc(WS_STAT_REFUSED_LIMIT);
            c->pending = NULL;
            pending_done(p);
            return;
        }
        p->upgrade = 1;
        p->req.keep_alive = 1;
        ws_route_limits_t *lim = &p->up.limits;
        lim->max_message = h->cfg.max_message;
        lim->max_buffered = c->max_buffered;
        lim->idle_ms = (uint32_t)(h->cfg.idle_timeout * 1000);
        lim->rate = (float)h->cfg.rate_limit;
        lim->burst = (float)h->cfg.rate_burst;
        lim->backpressure = c->backpressure;
        lim->deflate = h->deflate_cfg;
        r = h->host->upgrade(h->host_ud, c, &p->req, p->check.protocols, p->check.protocols_len,
                             &p->up);
    } else {
        /* After an upgrade to anything but WebSocket the bytes that follow are
         * not HTTP; the last request a connection may make is told so. */
        p->req.keep_alive = c->http->keep_alive && !c->http->upgrade && !h->stopping &&
                            !(h->cfg.max_requests_per_conn > 0 &&
                              c->requests + 1 >= (uint32_t)h->cfg.max_requests_per_conn);
        r = h->host->http(h->host_ud, c, &p->req, &p->res);
    }
    if (r == WS_HOST_PENDING && !p->done) {
        ws_transport_pause(c->t, p->upgrade ? WS_PAUSE_UPGRADE : WS_PAUSE_HOST);
        return;
    }
    if (c->state == WS_CONN_CLOSED) {
        c->pending = NULL;
        pending_done(p);
        return;
    }
    answered(c);
}

/* Finish an answer the host gave later (WS_HOST_PENDING). */
static void done_later(ws_conn_t *c, int upgrade)
{
    ws_pending_t *p = c->state == WS_CONN_HTTP ? c->pending : NULL;
    if (!p || p->upgrade != upgrade)
        return; /* nothing of that kind was asked (host misuse): ignore */
    p->done = 1;
    /* Answered from inside the host's own call: request() goes on from there. */
    if (!ws_transport_paused(c->t) || c->state == WS_CONN_CLOSED)
        return;
    answered(c);
    ws_transport_resume(c->t, upgrade ? WS_PAUSE_UPGRADE : WS_PAUSE_HOST);
}

void ws_conn_http_done(ws_conn_t *c) { done_later(c, 0); }
void ws_conn_upgrade_done(ws_conn_t *c) { done_later(c, 1); }

/* --- reading --- */

static void process(ws_conn_t *c, uint8_t *p, size_t n)
{
    while (n > 0) {
        if (c->state == WS_CONN_HTTP) {
            if (c->end_after_write)
                return; /* answered with Connection: close; ignore the rest */
            long r = ws_http_feed(c->http, (const char *)p, n);
            if (r < 0) {
                ws__conn_http_error(c, ws_http_error_status((int)r), ws_strerror((int)r), NULL);
                return;
            }
            /* The first bytes of a request (after an earlier one, in the same
             * read too) start its deadline: it must be whole in time. */
            if (r > 0 && !c->http_partial) {
                c->http_partial = 1;
                c->t_http = now_ms(c) + (uint64_t)(c->hub->cfg.handshake_timeout * 1000);
            }
            p += r;
            n -= (size_t)r;
            if (!c->http->complete)
                continue;
            request(c);
            if (c->state == WS_CONN_HTTP && c->pending) {
                /* The host answers later: keep what followed the request. */
                ws_transport_unread(c->t, p, n);
                return;
            }
        } else if (c->state == WS_CONN_OPEN || c->state == WS_CONN_CLOSING) {
            if (c->end_after_write)
                return; /* the close handshake is over or failed: drain */
            long r = ws_msg_feed(&c->reader, p, n);
            if (r < 0) {
                ws__conn_fail(c, (int)r);
                return;
            }
            p += r;
            n -= (size_t)r;
            if (ws_transport_paused(c->t)) {
                /* Kept for when reading resumes. */
                ws_transport_unread(c->t, p, n);
                return;
            }
        } else {
            return;
        }
    }
}

static void on_read(void *ud, uint8_t *data, size_t len)
{
    ws_conn_t *c = ud;
    if (c->state == WS_CONN_CLOSED)
        return;
    c->t_rx = now_ms(c);
    if (ws__conn_acc(c))
        c->rare->acc->bytes_in += len;
    process(c, data, len);
    ws__conn_settle(c);
    /* The handlers of what the host held replied only now. */
    if (c->state == WS_CONN_OPEN && ws__conn_over_high_water(c))
        ws_transport_pause(c->t, WS_PAUSE_BACKPRESSURE);
}
