/* A connection's life: its place in the hub, the outbound side (sending,
 * backpressure, writing through the transport, ending), the close
 * handshake, deadlines and heartbeats, and its accessors. What arrives on a
 * connection is conn_recv.c's. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn_int.h"
#include "error.h"
#include "frame.h"
#include "handshake.h"
#include "log.h"
#include "stats.h"

static uint64_t now_ms(const ws_conn_t *c) { return ws_hub_now(c->hub); }

/* --- accessors --- */

uint64_t ws_conn_id(const ws_conn_t *c) { return c->id; }
ws_conn_state_t ws_conn_state(const ws_conn_t *c) { return (ws_conn_state_t)c->state; }
ws_hub_t *ws_conn_hub(const ws_conn_t *c) { return c->hub; }
ws_transport_t *ws_conn_transport(const ws_conn_t *c) { return c->t; }
void *ws_conn_host_data(const ws_conn_t *c) { return c->host_data; }
void ws_conn_set_host_data(ws_conn_t *c, void *data) { c->host_data = data; }
ws_deflate_t *ws_conn_deflate(const ws_conn_t *c) { return c->deflate; }
ws_pubsub_member_t *ws_conn_topics(ws_conn_t *c) { return &c->subs; }
size_t ws_conn_buffered(const ws_conn_t *c) { return ws_outq_buffered(&c->out); }

size_t ws_conn_memory(const ws_conn_t *c)
{
    size_t n = ws_outq_held(&c->out);
    if (c->is_ws)
        n += c->reader._msg.cap;
    if (c->deflate)
        n += ws_deflate_mem(c->deflate);
    return n;
}

/* A write that waits for the peer completes only once all of it has left:
 * take what the peer has taken since as progress too. */
static void note_progress(ws_conn_t *c, uint64_t now)
{
    ws_write_t *w = c->out.w;
    if (!w)
        return;
    size_t unsent = ws_transport_unsent(c->t);
    if (unsent < w->unsent) {
        w->unsent = unsent;
        c->t_drain = (uint32_t)now;
    }
}

int ws_conn_draining(ws_conn_t *c, uint64_t now, uint32_t stall_ms)
{
    note_progress(c, now);
    return !c->out.w || (uint32_t)now - c->t_drain < stall_ms;
}

void ws_conn_shed(ws_conn_t *c, uint64_t now)
{
    static const char msg[] = "server overloaded, try again later";
    if (c->state != WS_CONN_OPEN)
        return;
    (void)now;
    ws_outq_drop(&c->out, 0, 0, 1);
    /* A write in flight holds its memory until it completes: only a cut
     * frees it now (the peer then gets no close frame). */
    if (c->out.w) {
        ws_conn_abort(c, WS_CLOSE_TRY_AGAIN);
        return;
    }
    ws_conn_close(c, WS_CLOSE_TRY_AGAIN, msg, sizeof msg - 1);
}
void ws_conn_want_drain(ws_conn_t *c) { c->want_drain = 1; }
/* The client's address, which everyone reads (limits, logs, Lua): behind a
 * trusted proxy the forwarded one, which has no port. */
void ws_conn_ip(const ws_conn_t *c, char *out, size_t len)
{
    if (c->rare && c->rare->has_client)
        ws_ipaddr_format(&c->rare->client, out, len);
    else
        ws_transport_ip(c->t, out, len);
}
void ws_conn_remote(const ws_conn_t *c, char *out, size_t len)
{
    if (c->rare && c->rare->has_client)
        ws_ipaddr_format(&c->rare->client, out, len);
    else
        ws_transport_peer(c->t, out, len);
}

/* --- lifecycle --- */

/* HTTP parsers (1.8 KB each) live only until the upgrade. Recycling them,
 * instead of freeing, keeps them from leaving holes between the connections
 * allocated during a burst of handshakes: fragmentation that would stay in
 * the RSS for as long as those connections live. Process-wide. */
#define HTTP_POOL_MAX 64
static ws_http_t *http_pool[HTTP_POOL_MAX];
static size_t http_pooled;

ws_http_t *ws__conn_http_new(void)
{
    return http_pooled ? http_pool[--http_pooled] : ws_malloc(sizeof(ws_http_t));
}

void ws__conn_http_release(ws_http_t *h)
{
    ws_http_free(h);
    if (http_pooled < HTTP_POOL_MAX)
        http_pool[http_pooled++] = h;
    else
        free(h);
}

/* The hub keeps open WebSocket connections apart from the others (HTTP,
 * closing): the others have deadlines checked every sweep, open ones only
 * need the slower heartbeat sweep. */
void ws__conn_link(ws_conn_t *c, ws_conn_t **list)
{
    c->on_open_list = list == &c->hub->open;
    c->prev = NULL;
    c->next = *list;
    if (*list)
        (*list)->prev = c;
    *list = c;
}

void ws__conn_unlink(ws_conn_t *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        *(c->on_open_list ? &c->hub->open : &c->hub->conns) = c->next;
    if (c->next)
        c->next->prev = c->prev;
}

/* Leaving state OPEN: back on the list the fast sweep visits. */
static void leave_open(ws_conn_t *c)
{
    if (c->on_open_list) {
        ws__conn_unlink(c);
        ws__conn_link(c, &c->hub->conns);
    }
}

ws_conn_t *ws_conn_dirty_pop(ws_hub_t *h)
{
    ws_conn_t *c = h->dirty;
    if (c) {
        h->dirty = c->dirty_next;
        c->in_dirty = 0;
    }
    return c;
}

ws_conn_t *ws_conn_next(const ws_conn_t *c) { return c->next; }


void ws__conn_pending_free(ws_pending_t *p)
{
    if (!p)
        return;
    ws_buf_free(&p->res.headers);
    ws_buf_free(&p->res.body);
    ws_buf_free(&p->up.headers);
    ws_buf_free(&p->up.reason);
    free(p->up.subprotocol);
    free(p);
}

/* The transport is closed: free the connection. */
void ws__conn_on_close(void *ud)
{
    ws_conn_t *c = ud;
    ws_hub_t *h = c->hub;
    /* Only ws__conn_finish closes the transport: the host has heard of the
     * end, and no box in Lua points here any more. */
    assert(c->state == WS_CONN_CLOSED);
    /* Unlinked from the dirty list only by the flush: it may still be on it. */
    if (c->in_dirty) {
        ws_conn_t **p = &h->dirty;
        while (*p != c)
            p = &(*p)->dirty_next;
        *p = c->dirty_next;
    }
    ws__conn_unlink(c);
    h->nconns--;
    if (c->tcp_counted) {
        char ip[WS_REMOTE_MAX];
        ws_transport_ip(c->t, ip, sizeof ip); /* counted before any header was read */
        ws_hub_ip_dec(h, WS_TALLY_IP_TCP, ip);
    }
    ws_outq_free(&c->out);
    if (c->is_ws) {
        ws_msg_reader_free(&c->reader);
    } else {
        if (c->http)
            ws__conn_http_release(c->http);
        ws__conn_pending_free(c->pending);
    }
    if (c->deflate) {
        ws_deflate_close(c->deflate);
        free(c->deflate);
    }
    if (c->rare) {
        free(c->rare->acc);
        free(c->rare->close_reason);
        free(c->rare);
    }
    free(c);
    if (h->gone)
        h->gone(h->gone_ud);
}

void ws__conn_finish(ws_conn_t *c)
{
    ws__conn_settle(c);
    if (c->state == WS_CONN_CLOSED)
        return;
    leave_open(c);
    c->state = WS_CONN_CLOSED;
    ws_hub_t *h = c->hub;
    if (c->ip_counted) {
        char ip[WS_REMOTE_MAX];
        ws_conn_ip(c, ip, sizeof ip);
        ws_hub_ip_dec(h, WS_TALLY_IP_WS, ip);
    }
    if (!c->is_ws && c->pending && h->host->cancel)
        h->host->cancel(h->host_ud, c);
    if (c->is_ws) {
        ws_stats_close(c->close_code);
        ws_hub_count_open(h, -1);
        ws_pubsub_leave_all(&h->pubsub, &c->subs);
        if (ws__conn_acc(c))
            ws__conn_access_close(c);
        h->host->closed(h->host_ud, c, c->close_code, ws__conn_close_reason(c));
    }
    ws_transport_close(c->t);
}

void ws_conn_abort(ws_conn_t *c, unsigned code)
{
    if (!c->close_received && !c->close_sent)
        c->close_code = code;
    ws__conn_finish(c);
}

void ws__conn_on_end(void *ud, int err)
{
    (void)err;
    ws_conn_abort(ud, WS_CLOSE_ABNORMAL);
}

void ws__conn_set_deadline(ws_conn_t *c)
{
    if (!c->deadline)
        c->deadline = now_ms(c) + (uint64_t)(c->hub->cfg.close_timeout * 1000.0);
}

void ws__conn_http_error(ws_conn_t *c, int status, const char *reason, const char *extra)
{
    /* What the operator must hear of even without an access log: clients
     * turned away by the limits, the origin check or the size limits. */
    if (status == 403 || status == 413 || status == 429 || status == 503 || status == 431 ||
        status == 414) {
        char ip[WS_REMOTE_MAX];
        ws_conn_ip(c, ip, sizeof ip);
        ws_refusals_note(&c->hub->refusals, ws_hub_now(c->hub), status, reason, ip);
    }
    if (c->hub->cfg.access_log)
        ws__conn_access_http(c, status, reason);
    char head[256];
    size_t rlen = strlen(reason);
    /* The host's extra headers go as they are: they may be longer than head. */
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n",
                     status, ws_http_status_text(status), rlen + 1);
    ws_outq_raw(&c->out, head, (size_t)n);
    if (extra)
        ws_outq_raw(&c->out, extra, strlen(extra));
    ws_outq_raw(&c->out, "\r\n", 2);
    ws_outq_raw(&c->out, reason, rlen);
    ws_outq_raw(&c->out, "\n", 1);
    ws__conn_mark_dirty(c);
    c->end_after_write = 1;
    ws__conn_set_deadline(c);
}

/* --- deadlines and heartbeat --- */

/* How long a connection must be quiet before its buffers are released. */
#define IDLE_TRIM_MS 1000

void ws_conn_sweep(ws_conn_t *c, uint64_t now)
{
    const ws_config_t *cfg = &c->hub->cfg;
    if (c->deadline && now >= c->deadline) {
        ws_conn_abort(c, WS_CLOSE_ABNORMAL);
        return;
    }
    /* A peer that takes nothing of what we send is gone, whatever it says:
     * while reading is paused its pongs are not even seen. */
    if (c->out.w && cfg->send_timeout > 0 &&
        !ws_conn_draining(c, now, (uint32_t)(cfg->send_timeout * 1000))) {
        ws_log_debug("conn %llu: nothing sent for %.1f s, closing", (unsigned long long)c->id,
                     cfg->send_timeout);
        ws_conn_abort(c, WS_CLOSE_ABNORMAL);
        return;
    }
    if (c->state == WS_CONN_HTTP) {
        /* Slowloris: a request must be whole by its deadline; an idle
         * keep-alive connection simply ends. A request the host is still
         * answering is not the peer's delay. */
        if (!c->end_after_write && !c->pending && now >= c->t_http) {
            if (c->http_partial)
                ws__conn_http_error(c, 408, "request not received in time", NULL);
            else
                ws__conn_finish(c);
        }
        return;
    }
    if (c->state != WS_CONN_OPEN)
        return;
    /* While reading is paused the peer's pongs wait unread: the send
     * timeout above judges it then. */
    if (cfg->ping_interval > 0 && !ws_transport_paused(c->t)) {
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
            ws_outq_push(&c->out, ws_chunk_ref(c->hub->ping));
            c->hub->pings++;
            ws__conn_mark_dirty(c);
            c->t_ping = now;
        }
    }
    uint32_t idle_ms = c->rare ? c->rare->idle_ms : 0;
    if (idle_ms && now - c->t_msg >= idle_ms && !(c->t->paused & WS_PAUSE_HANDLER)) {
        static const char msg[] = "idle timeout";
        ws_conn_close(c, WS_CLOSE_GOING_AWAY, msg, sizeof msg - 1);
        return;
    }
    /* A quiet connection holds no buffers: they come back on the next use. */
    if (now - c->t_rx >= IDLE_TRIM_MS && now - c->t_msg >= IDLE_TRIM_MS) {
        int released = ws_msg_reader_trim(&c->reader);
        released |= ws_outq_trim(&c->out);
        if (released)
            ws_log_debug("conn %llu: idle, buffers released", (unsigned long long)c->id);
    }
}

void ws_conn_shutdown(ws_conn_t *c, const char *reason)
{
    if (c->state == WS_CONN_OPEN) {
        ws_conn_close(c, WS_CLOSE_GOING_AWAY, reason, strlen(reason));
    } else if (c->state == WS_CONN_HTTP) {
        if (c->out.qn == 0 && !c->out.w) {
            ws__conn_finish(c);
        } else {
            c->end_after_write = 1;
            ws__conn_set_deadline(c);
        }
    }
}

/* --- the close handshake --- */

void ws__conn_send_close_frame(ws_conn_t *c, unsigned code, const char *reason, size_t len)
{
    uint8_t payload[125];
    size_t n = 0;
    if (code != WS_CLOSE_NO_STATUS) {
        if (len > 123)
            len = 123;
        payload[0] = (uint8_t)(code >> 8);
        payload[1] = (uint8_t)code;
        if (len)
            memcpy(payload + 2, reason, len);
        n = 2 + len;
    }
    ws_outq_frame(&c->out, WS_OP_CLOSE, payload, n);
    ws__conn_mark_dirty(c);
    c->close_sent = 1;
    leave_open(c);
    c->state = WS_CONN_CLOSING;
    ws__conn_set_deadline(c);
}

ws_conn_rare_t *ws__conn_rare(ws_conn_t *c)
{
    if (!c->rare)
        c->rare = ws_calloc(1, sizeof *c->rare);
    return c->rare;
}

void ws__conn_set_close_reason(ws_conn_t *c, const char *reason, size_t len)
{
    ws_conn_rare_t *r = ws__conn_rare(c);
    free(r->close_reason);
    r->close_reason = ws_strndup(reason, len);
}

int ws_conn_close(ws_conn_t *c, unsigned code, const char *reason, size_t len)
{
    ws__conn_settle(c);
    if (c->state != WS_CONN_OPEN)
        return WS_EINVAL;
    c->close_code = code;
    ws__conn_set_close_reason(c, reason ? reason : "", reason ? len : 0);
    ws__conn_send_close_frame(c, code, reason, len);
    return 0;
}

void ws__conn_fail(ws_conn_t *c, int err)
{
    ws__conn_settle(c);
    unsigned code = (unsigned)ws_err_close_code(err);
    const char *why = ws_strerror(err);
    ws_log_debug("conn %llu: %s -> close %u", (unsigned long long)c->id, why, code);
    if (!c->close_sent) {
        c->close_code = code;
        ws__conn_set_close_reason(c, why, strlen(why));
        ws__conn_send_close_frame(c, code, why, strlen(why));
    }
    c->end_after_write = 1;
}

/* --- sending --- */

static int apply_policy(ws_conn_t *c, size_t n);

/* Apply the backpressure policy before queueing a data frame of n bytes. A
 * message always fits into a queue with no frame in it (the 101 that has not
 * left yet does not count), so one larger than the limit can still be sent:
 * the limit bounds the backlog, not the message size. */
static inline int make_room(ws_conn_t *c, size_t n)
{
    size_t b = ws_outq_buffered(&c->out);
    if (b == c->out.keep || b + n <= c->max_buffered)
        return 0;
    return apply_policy(c, n);
}

/* The queue is over its bound: drop, refuse or close. */
static int apply_policy(ws_conn_t *c, size_t n)
{
    ws_outq_t *q = &c->out;
    size_t b;
    ws_stats_inc(c->backpressure == WS_BP_DROP || c->backpressure == WS_BP_DROP_OLDEST
                     ? WS_STAT_BP_DROPS
                     : WS_STAT_SLOW_CLOSES);
    switch (c->backpressure) {
    case WS_BP_DROP_OLDEST:
        if (c->deflate && !c->deflate->params.server_no_context_takeover) {
            /* With deflate context every queued message may refer back to the
             * one before: dropping one breaks all that follow. Drop them all
             * and start the compressor afresh. */
            ws_outq_drop(q, c->max_buffered, 0, 1);
            ws_deflate_forget(c->deflate);
            b = ws_outq_buffered(q);
            return b + n <= c->max_buffered || b == q->keep ? 0 : WS_EFULL;
        }
        if (ws_outq_drop(q, c->max_buffered, n, 0))
            return 0;
        return ws_outq_buffered(q) == q->keep ? 0 : WS_EFULL;
    case WS_BP_DROP:
        return WS_EFULL;
    default: {
        /* The peer is not reading: what is queued will never matter, free it now. */
        static const char msg[] = "too slow: send buffer full";
        ws_outq_drop(q, c->max_buffered, 0, 1);
        ws_conn_close(c, WS_CLOSE_POLICY, msg, sizeof msg - 1);
        return WS_EFULL;
    }
    }
}

int ws_conn_send(ws_conn_t *c, unsigned op, const void *data, size_t len, unsigned flags)
{
    if (c->state != WS_CONN_OPEN)
        return WS_EINVAL;
    if (op < WS_OP_CLOSE) {
        int r = make_room(c, len + WS_FRAME_HDR_MAX);
        if (r)
            return r;
        ws_stats_inc(WS_STAT_MSGS_OUT);
        ws_stats_add(WS_STAT_BYTES_OUT, len);
        c->t_msg = now_ms(c);
        if (ws__conn_acc(c))
            c->rare->acc->msgs_out++;
        if (c->deflate && !(flags & WS_SEND_PLAIN) && ws_deflate_should_compress(c->deflate, len)) {
            ws_buf_t *z = &c->hub->zout;
            z->len = 0;
            /* WS_ENOMEM (the zlib memory cap) means: send it plain. */
            if (ws_deflate_compress(c->deflate, data, len, z) == 0) {
                ws_outq_frame(&c->out, op | WS_FRAME_RSV1, z->data, z->len);
                ws__conn_mark_dirty(c);
                ws_buf_reset(z, 1 << 20);
                return 0;
            }
        }
    }
    ws_outq_frame(&c->out, op, data, len);
    ws__conn_mark_dirty(c);
    return 0;
}

int ws_conn_send_chunk(ws_conn_t *c, ws_chunk_t *frame)
{
    if (c->state != WS_CONN_OPEN)
        return WS_EINVAL;
    int r = make_room(c, frame->len);
    if (r)
        return r;
    c->t_msg = now_ms(c);
    if (ws__conn_acc(c))
        c->rare->acc->msgs_out++;
    ws_outq_push(&c->out, ws_chunk_ref(frame));
    ws__conn_mark_dirty(c);
    return 0;
}

/* --- writing --- */

void ws__conn_on_shutdown(void *ud, int status)
{
    ws_conn_t *c = ud;
    /* After our FIN we only wait for the peer's; a failed shutdown means the
     * peer is gone already. */
    if (status < 0 && c->state != WS_CONN_CLOSED)
        ws__conn_finish(c);
}

/* Everything is written and the connection is to end: shut our side and
 * wait (bounded by the deadline) for the peer to close its side, so our last
 * bytes are not destroyed by a reset. */
static void end_stream(ws_conn_t *c)
{
    if (c->shutdown || c->state == WS_CONN_CLOSED)
        return;
    /* A completed close handshake: both close frames are through and the
     * peer sends nothing more, so closing now cannot reset unread data. */
    if (c->close_sent && c->close_received) {
        ws__conn_finish(c);
        return;
    }
    c->shutdown = 1;
    ws_transport_shutdown(c->t);
}

/* Nothing is queued: end the connection if it was to end, or tell the host
 * that was waiting for the queue to empty. */
static void idle(ws_conn_t *c)
{
    if (c->end_after_write) {
        end_stream(c);
    } else if (c->want_drain && c->state == WS_CONN_OPEN) {
        c->want_drain = 0;
        c->hub->host->drain(c->hub->host_ud, c);
    }
}

static void on_written(ws_write_t *w, int status, int waited)
{
    ws_conn_t *c = w->data;
    ws_outq_written(c ? &c->out : NULL, w);
    if (!c || c->state == WS_CONN_CLOSED)
        return;
    c->t_drain = (uint32_t)now_ms(c);
    if (waited)
        c->want_drain = c->is_ws;
    if (status < 0) {
        ws__conn_finish(c);
        return;
    }
    ws_conn_flush(c);
    if (c->state != WS_CONN_CLOSED && (c->t->paused & WS_PAUSE_BACKPRESSURE) &&
        ws_outq_buffered(&c->out) <= c->max_buffered / 4) {
        /* It drained: it is alive, and the heartbeat starts over. */
        if (c->state == WS_CONN_OPEN) {
            c->t_ping = 0;
            c->t_rx = now_ms(c);
        }
        ws_transport_resume(c->t, WS_PAUSE_BACKPRESSURE);
    }
}

void ws_conn_hold(ws_conn_t *c, int on)
{
    if (c->state == WS_CONN_CLOSED)
        return;
    if (on) {
        ws_transport_pause(c->t, WS_PAUSE_HANDLER);
        return;
    }
    if (!(c->t->paused & WS_PAUSE_HANDLER))
        return;
    /* What the peer sent meanwhile is read now: judge it from here on. */
    c->t_ping = 0;
    c->t_rx = c->t_msg = now_ms(c);
    ws_transport_resume(c->t, WS_PAUSE_HANDLER);
}

void ws_conn_flush(ws_conn_t *c)
{
    if (c->state == WS_CONN_CLOSED || c->out.w)
        return;
    if (c->out.qn == 0) {
        idle(c);
        return;
    }
    ws_write_t *w = ws_outq_take(&c->out, on_written, c);
    c->t_drain = (uint32_t)now_ms(c);
    if (ws__conn_acc(c))
        c->rare->acc->bytes_out += (int64_t)w->unsent;
    if (ws_transport_write(c->t, w) < 0) {
        ws_outq_written(&c->out, w);
        ws__conn_finish(c);
    }
}

/* --- the access log (--access-log) ---
 *
 * One record for every HTTP answer (a refused upgrade included) and one for
 * every WebSocket that ends. Nothing here runs when the access log is off;
 * the hot path only counts for a connection that has a record (ws__conn_acc). */

/* The path without its query: a WebSocket URL often carries a token there
 * (browsers cannot set headers on a WebSocket), and a log is read by more
 * people than the secrets are meant for. */
static size_t path_len(const char *url, size_t n)
{
    const char *q = memchr(url, '?', n);
    return q ? (size_t)(q - url) : n;
}

void ws__conn_access_http(ws_conn_t *c, int status, const char *reason)
{
    const ws_pending_t *p = c->is_ws ? NULL : c->pending;
    char remote[WS_REMOTE_MAX];
    ws_conn_remote(c, remote, sizeof remote);
    ws_log_field_t f[7];
    size_t n = 0;
    int upgrade = p && ws_handshake_is_upgrade(&p->hs);
    f[n++] = upgrade ? WS_LOG_STR("kind", "upgrade", 7) : WS_LOG_STR("kind", "http", 4);
    /* A request that did not parse has neither. */
    if (p) {
        f[n++] = WS_LOG_STR("method", p->hs.method, p->hs.method_len);
        f[n++] = WS_LOG_STR("path", p->req.url, path_len(p->req.url, p->req.url_len));
    }
    f[n++] = WS_LOG_INT("status", status);
    if (reason)
        f[n++] = WS_LOG_STR("reason", reason, strlen(reason));
    f[n++] = WS_LOG_STR("remote", remote, strlen(remote));
    f[n++] = WS_LOG_INT("duration_ms", p && p->t0 ? ws_hub_now(c->hub) - p->t0 : 0);
    ws_log_access(f, n);
}

void ws__conn_access_open(ws_conn_t *c, const ws_pending_t *p)
{
    size_t len = path_len(p->req.url, p->req.url_len);
    ws_conn_access_t *a = ws_calloc(1, sizeof *a + len + 1);
    memcpy(a->path, p->req.url, len);
    a->t0 = ws_hub_now(c->hub);
    /* What is queued now is HTTP (the 101, answers before it), not WebSocket. */
    a->bytes_out = -(int64_t)c->out.queued;
    ws__conn_rare(c)->acc = a;
}

void ws__conn_access_close(ws_conn_t *c)
{
    const ws_conn_access_t *a = ws__conn_acc(c);
    char remote[WS_REMOTE_MAX];
    ws_conn_remote(c, remote, sizeof remote);
    const char *why = ws__conn_close_reason(c);
    ws_log_field_t f[10];
    size_t n = 0;
    f[n++] = WS_LOG_STR("kind", "ws", 2);
    f[n++] = WS_LOG_STR("path", a->path, strlen(a->path));
    f[n++] = WS_LOG_INT("code", c->close_code);
    if (*why)
        f[n++] = WS_LOG_STR("reason", why, strlen(why));
    f[n++] = WS_LOG_STR("remote", remote, strlen(remote));
    f[n++] = WS_LOG_INT("duration_ms", ws_hub_now(c->hub) - a->t0);
    f[n++] = WS_LOG_INT("bytes_in", a->bytes_in);
    f[n++] = WS_LOG_INT("bytes_out", a->bytes_out > 0 ? a->bytes_out : 0);
    f[n++] = WS_LOG_INT("msgs_in", a->msgs_in);
    f[n++] = WS_LOG_INT("msgs_out", a->msgs_out);
    ws_log_access(f, n);
}
