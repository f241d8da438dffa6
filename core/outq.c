/* The outbound side of a connection: frames queue as refcounted chunks
 * (a published frame is one chunk shared by every subscriber), small ones
 * coalesce, the backpressure policy bounds the queue, and a flush writes it
 * with one send (through the server's io_uring, submitted with every other
 * connection's of the turn, or a try_write without one) and, for what the
 * socket did not take, one uv_write. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "error.h"
#include "frame.h"
#include "lhost.h"
#include "outq.h"
#include "ring.h"

#define IOV_MAX_WRITE 64

/* A write in flight: a ring send or a uv_write, and the chunks it owns until
 * it completes. Only a connection with a write in flight has one, so they
 * live outside ws_conn_t (idle connections stay small). With the ring every
 * connection written in a turn has one at once (a publish to 10k subscribers:
 * 10k), so the small ones are pooled; the pool is emptied when the server
 * goes quiet (ws__outq_release_pool). */
typedef struct ws_wreq_s {
    struct msghdr msg;           /* the ring send's */
    uv_write_t *uv;              /* the slow path's request, made when first needed */
    ws_conn_t *c;                /* NULL once the connection is freed (ring send) */
    struct ws_wreq_s *next_free;
    uint32_t n, cap;
    int ring;                    /* a ring send, not a uv_write */
    ws_chunk_t **chunks;         /* [cap], after iov */
    uv_buf_t iov[];              /* [cap]; laid out as struct iovec on Unix (libuv's promise) */
} ws_wreq_t;

/* Most writes carry a few chunks (small frames coalesce into one). */
#define WREQ_SMALL 8
#define WREQ_POOL_MAX 16384
static ws_wreq_t *wreq_pool;
static size_t wreq_npool;

static ws_wreq_t *wreq_new(ws_conn_t *c, size_t n)
{
    ws_wreq_t *w = wreq_pool;
    if (n <= WREQ_SMALL && w) {
        wreq_pool = w->next_free;
        wreq_npool--;
    } else {
        uint32_t cap = n <= WREQ_SMALL ? WREQ_SMALL : (uint32_t)n;
        w = ws_malloc(sizeof *w + cap * (sizeof *w->iov + sizeof *w->chunks));
        w->cap = cap;
        w->uv = NULL;
        w->chunks = (ws_chunk_t **)(w->iov + cap);
    }
    w->c = c;
    w->n = 0;
    return w;
}

static void wreq_free(ws_wreq_t *w)
{
    free(w->uv);
    free(w);
}

/* Release the chunks of a finished write and recycle it. */
static void wreq_done(ws_wreq_t *w)
{
    for (size_t i = 0; i < w->n; i++)
        ws_chunk_unref(w->chunks[i]);
    if (w->cap == WREQ_SMALL && wreq_npool < WREQ_POOL_MAX) {
        w->next_free = wreq_pool;
        wreq_pool = w;
        wreq_npool++;
    } else {
        wreq_free(w);
    }
}

void ws__outq_release_pool(void)
{
    while (wreq_pool) {
        ws_wreq_t *w = wreq_pool;
        wreq_pool = w->next_free;
        wreq_free(w);
    }
    wreq_npool = 0;
}

void ws__outq_push(ws_conn_t *c, ws_chunk_t *k)
{
    /* Nothing more will be appended to the chunk before k: a connection that
     * is not reading must not hold a standard chunk per few bytes queued. */
    if (c->qn)
        c->q[c->qn - 1] = ws_chunk_shrink(c->q[c->qn - 1]);
    if (c->qn == c->qcap) {
        c->qcap = c->qcap ? c->qcap * 2 : 4;
        c->q = ws_realloc(c->q, c->qcap * sizeof *c->q);
    }
    c->q[c->qn++] = k;
    c->queued += k->len;
    ws_server_mark_dirty(c->srv, c);
}

/* Room for n private bytes at the end of the queue. Appending to the last
 * chunk when we are its only owner coalesces small frames into one write. */
static uint8_t *reserve(ws_conn_t *c, size_t n)
{
    ws_chunk_t *t = c->qn ? c->q[c->qn - 1] : NULL;
    if (!t || t->refs != 1 || t->cap - t->len < n) {
        t = ws_chunk_new(n);
        ws__outq_push(c, t);
    }
    uint8_t *p = t->data + t->len;
    t->len += n;
    c->queued += n;
    ws_server_mark_dirty(c->srv, c);
    return p;
}

/* Drop queued chunks from the front (the oldest) until n more bytes fit, or
 * all of them when all is set. A chunk partly written already stays: the
 * frame it began must be finished. Chunks hold whole frames only, so what
 * remains is still a valid frame stream. Returns 1 if n bytes now fit. */
static int drop_queued(ws_conn_t *c, size_t n, int all)
{
    size_t i = c->qoff ? 1 : 0, kept = i;
    for (; i < c->qn; i++) {
        if (!all && ws_conn_buffered(c) + n <= c->max_buffered)
            break;
        c->queued -= c->q[i]->len;
        ws_chunk_unref(c->q[i]);
    }
    memmove(c->q + kept, c->q + i, (c->qn - i) * sizeof *c->q);
    c->qn -= i - kept;
    return ws_conn_buffered(c) + n <= c->max_buffered;
}

/* Apply the backpressure policy before queueing a data frame of n bytes.
 * A message always fits into an empty queue, so one larger than the limit
 * can still be sent: the limit bounds the backlog, not the message size. */
int ws__outq_make_room(ws_conn_t *c, size_t n)
{
    size_t b = ws_conn_buffered(c);
    if (b == 0 || b + n <= c->max_buffered)
        return 0;
    switch (c->backpressure) {
    case WS_BP_DROP_OLDEST:
        if (c->deflate && !c->deflate->params.server_no_context_takeover) {
            /* With deflate context every queued message may refer back to the
             * one before: dropping one breaks all that follow. Drop them all
             * and start the compressor afresh. */
            drop_queued(c, 0, 1);
            ws_deflate_forget(c->deflate);
            return ws_conn_buffered(c) + n <= c->max_buffered || ws_conn_buffered(c) == 0 ? 0 : WS_EFULL;
        }
        return drop_queued(c, n, 0) ? 0 : WS_EFULL;
    case WS_BP_DROP:
        return WS_EFULL;
    default: {
        /* The peer is not reading: what is queued will never matter, free it now. */
        static const char msg[] = "too slow: send buffer full";
        drop_queued(c, 0, 1);
        ws_conn_close(c, WS_CLOSE_POLICY, msg, sizeof msg - 1);
        return WS_EFULL;
    }
    }
}

void ws__outq_raw(ws_conn_t *c, const void *data, size_t len)
{
    if (len)
        memcpy(reserve(c, len), data, len);
}

/* Queue one whole frame; op may carry WS_FRAME_RSV1 (a compressed message). */
void ws__outq_frame(ws_conn_t *c, unsigned op, const void *data, size_t len)
{
    uint8_t hdr[WS_FRAME_HDR_MAX];
    size_t hl = ws_frame_write_header(hdr, WS_FRAME_FIN | op, len, NULL);
    uint8_t *p = reserve(c, hl + len);
    memcpy(p, hdr, hl);
    if (len)
        memcpy(p + hl, data, len);
}

size_t ws_conn_buffered(const ws_conn_t *c) { return c->queued + c->inflight; }

static void release(ws_chunk_t **arr, uint32_t *n)
{
    for (uint32_t i = 0; i < *n; i++)
        ws_chunk_unref(arr[i]);
    *n = 0;
}

/* Drop the first `done` bytes of the queue. */
static void consume(ws_conn_t *c, size_t done)
{
    size_t i = 0;
    c->queued -= done;
    while (i < c->qn && done >= c->q[i]->len - c->qoff) {
        done -= c->q[i]->len - c->qoff;
        c->qoff = 0;
        ws_chunk_unref(c->q[i++]);
    }
    c->qoff += done;
    memmove(c->q, c->q + i, (c->qn - i) * sizeof *c->q);
    c->qn -= i;
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    ws_conn_t *c = req->data;
    free(req);
    /* After our FIN we only wait for the peer's; a failed shutdown means the
     * peer is gone already (or the handle is closing: UV_ECANCELED). */
    if (status < 0 && c->state != WS_CONN_CLOSED)
        ws__conn_finish(c);
}

/* Everything is written and the connection is to end: send FIN and wait
 * (bounded by the deadline) for the peer to close its side, so our last bytes
 * are not destroyed by a reset. */
static void end_tcp(ws_conn_t *c)
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
    uv_shutdown_t *req = ws_malloc(sizeof *req);
    req->data = c;
    if (uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
        free(req);
        ws__conn_finish(c);
    }
}

/* The queue is empty: tell a handler that was waiting for it (on_drain). */
static void drained(ws_conn_t *c)
{
    if (c->want_drain && c->state == WS_CONN_OPEN) {
        c->want_drain = 0;
        ws_lhost_drain(c->srv->lh, c);
    }
}

/* Nothing is queued: end the connection if it was to end, or tell Lua. */
static void idle(ws_conn_t *c)
{
    if (c->end_after_write)
        end_tcp(c);
    else
        drained(c);
}

static void on_write(uv_write_t *req, int status);

/* How many queued chunks one write takes. */
static size_t write_count(const ws_conn_t *c) { return c->qn < IOV_MAX_WRITE ? c->qn : IOV_MAX_WRITE; }

/* The unwritten bytes of the first n queued chunks, into iov. Returns their total. */
static size_t queue_iov(const ws_conn_t *c, uv_buf_t *iov, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        size_t off = i == 0 ? c->qoff : 0;
        iov[i] = uv_buf_init((char *)c->q[i]->data + off, (unsigned)(c->q[i]->len - off));
        total += c->q[i]->len - off;
    }
    return total;
}

/* Move the first chunks of the queue into w, which owns them until it completes. */
static ws_wreq_t *take(ws_conn_t *c)
{
    size_t n = write_count(c);
    ws_wreq_t *w = wreq_new(c, n);
    size_t total = queue_iov(c, w->iov, n);
    memcpy(w->chunks, c->q, n * sizeof *c->q);
    w->n = (uint32_t)n;
    memmove(c->q, c->q + n, (c->qn - n) * sizeof *c->q);
    c->qn -= (uint32_t)n;
    c->qoff = 0;
    c->queued -= total;
    c->inflight = total;
    c->w = w;
    return w;
}

/* The socket is full: libuv waits for room and writes iov[0..n) of w. */
static void wait_write(ws_conn_t *c, ws_wreq_t *w, uv_buf_t *iov, size_t n)
{
    w->ring = 0;
    c->want_drain = c->is_ws;
    if (!w->uv)
        w->uv = ws_malloc(sizeof *w->uv);
    w->uv->data = w;
    if (uv_write(w->uv, (uv_stream_t *)&c->tcp, iov, (unsigned)n, on_write) < 0) {
        c->w = NULL;
        wreq_done(w);
        c->inflight = 0;
        ws__conn_finish(c);
    }
}

/* The write of w ended: clear it from c. Returns c if it is still to be served. */
static ws_conn_t *write_ended(ws_wreq_t *w)
{
    ws_conn_t *c = w->c;
    wreq_done(w);
    if (!c)
        return NULL;
    c->w = NULL;
    c->inflight = 0;
    return c->state == WS_CONN_CLOSED ? NULL : c;
}

static void on_write(uv_write_t *req, int status)
{
    ws_conn_t *c = write_ended(req->data);
    if (c && status < 0)
        ws__conn_finish(c);
    else if (c)
        ws_conn_flush(c);
}

void ws__outq_sent(void *req, int res)
{
    ws_wreq_t *w = req;
    ws_conn_t *c = w->c;
    if (res == -EAGAIN)
        res = 0;
    if (res < 0 || !c || c->state == WS_CONN_CLOSED || (size_t)res == c->inflight) {
        c = write_ended(w);
        if (c && res < 0)
            ws__conn_finish(c);
        else if (c)
            ws_conn_flush(c);
        return;
    }
    /* The socket took part of it: the rest waits in a uv_write. */
    size_t i = 0, done = (size_t)res;
    while (done >= w->iov[i].len)
        done -= w->iov[i++].len;
    w->iov[i].base += done;
    w->iov[i].len -= done;
    c->inflight -= (size_t)res;
    wait_write(c, w, w->iov + i, w->n - i);
}

void ws__outq_cancel(ws_conn_t *c)
{
    if (c->w && c->w->ring)
        ws_ring_cancel(c->srv->ring, c->w);
}

void ws_conn_flush(ws_conn_t *c)
{
    if (c->state == WS_CONN_CLOSED || c->w)
        return;
    if (c->qn == 0) {
        idle(c);
        return;
    }
    if (c->srv->ring) {
        ws_wreq_t *w = take(c);
        w->ring = 1;
        memset(&w->msg, 0, sizeof w->msg);
        w->msg.msg_iov = (struct iovec *)w->iov;
        w->msg.msg_iovlen = w->n;
        uv_os_fd_t fd;
        uv_fileno((uv_handle_t *)&c->tcp, &fd);
        ws_ring_send(c->srv->ring, fd, &w->msg, w);
        return;
    }
    uv_buf_t iov[IOV_MAX_WRITE];
    size_t n = write_count(c);
    queue_iov(c, iov, n);
    /* Most writes fit in the socket buffer: try first, queue only the rest. */
    int r = uv_try_write((uv_stream_t *)&c->tcp, iov, (unsigned)n);
    if (r == UV_EAGAIN || r == UV_ENOSYS)
        r = 0;
    if (r < 0) {
        ws__conn_finish(c);
        return;
    }
    consume(c, (size_t)r);
    if (c->qn == 0) {
        idle(c);
        return;
    }
    ws_wreq_t *w = take(c);
    wait_write(c, w, w->iov, w->n);
}

void ws__outq_free(ws_conn_t *c)
{
    /* A ring send outlives the connection: its completion only frees it. */
    if (c->w && c->w->ring)
        c->w->c = NULL;
    release(c->q, &c->qn);
    free(c->q);
    c->q = NULL;
    c->qcap = 0;
}

int ws__outq_trim(ws_conn_t *c)
{
    if (c->qn != 0 || c->w || !c->q)
        return 0;
    ws__outq_free(c);
    return 1;
}
