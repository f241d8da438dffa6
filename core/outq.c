/* A connection's outbound queue: chunks, coalescing, dropping, and the
 * pooled write requests that carry the chunks to the transport. */
#include "outq.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

#define IOV_MAX_WRITE 64

/* A write in flight and the chunks it owns until it completes. Only a
 * connection with a write in flight has one, so they live outside the
 * connection (idle connections stay small). With the ring every connection
 * written in a turn has one at once (a publish to 10k subscribers: 10k), so
 * the small ones are pooled; the pool is emptied when the server goes quiet
 * (ws_outq_release_pool). Process-wide, loop thread only. */
typedef struct wreq_s {
    ws_write_t w;                /* first: a ws_write_t is its wreq */
    struct wreq_s *next_free;
    uint32_t n, cap;
    ws_chunk_t **chunks;         /* [cap], after iov */
    uv_buf_t iov[];              /* [cap] */
} wreq_t;

/* Most writes carry a few chunks (small frames coalesce into one). */
#define WREQ_SMALL 8
#define WREQ_POOL_MAX 16384
static wreq_t *wreq_pool;
static size_t wreq_npool;

static wreq_t *wreq_new(size_t n)
{
    wreq_t *r = wreq_pool;
    if (n <= WREQ_SMALL && r) {
        wreq_pool = r->next_free;
        wreq_npool--;
    } else {
        uint32_t cap = n <= WREQ_SMALL ? WREQ_SMALL : (uint32_t)n;
        r = ws_malloc(sizeof *r + cap * (sizeof *r->iov + sizeof *r->chunks));
        r->cap = cap;
        r->w._uv = NULL;
        r->chunks = (ws_chunk_t **)(r->iov + cap);
    }
    r->n = 0;
    return r;
}

static void wreq_free(wreq_t *r)
{
    ws_write_release(&r->w);
    free(r);
}

void ws_outq_release_pool(void)
{
    while (wreq_pool) {
        wreq_t *r = wreq_pool;
        wreq_pool = r->next_free;
        wreq_free(r);
    }
    wreq_npool = 0;
}

void ws_outq_push(ws_outq_t *q, ws_chunk_t *k)
{
    /* Nothing more will be appended to the chunk before k: a connection that
     * is not reading must not hold a standard chunk per few bytes queued. */
    if (q->qn)
        q->q[q->qn - 1] = ws_chunk_shrink(q->q[q->qn - 1]);
    if (q->qn == q->qcap) {
        q->qcap = q->qcap ? q->qcap * 2 : 4;
        q->q = ws_realloc(q->q, q->qcap * sizeof *q->q);
    }
    q->q[q->qn++] = k;
    q->queued += k->len;
}

/* Room for n private bytes at the end of the queue. Appending to the last
 * chunk when we are its only owner coalesces small frames into one write. */
static uint8_t *reserve(ws_outq_t *q, size_t n)
{
    ws_chunk_t *t = q->qn ? q->q[q->qn - 1] : NULL;
    if (!t || t->refs != 1 || t->cap - t->len < n) {
        t = ws_chunk_new(n);
        ws_outq_push(q, t);
    }
    uint8_t *p = t->data + t->len;
    t->len += n;
    q->queued += n;
    return p;
}

void ws_outq_raw(ws_outq_t *q, const void *data, size_t len)
{
    if (len)
        memcpy(reserve(q, len), data, len);
}

void ws_outq_frame(ws_outq_t *q, unsigned op, const void *data, size_t len)
{
    uint8_t hdr[WS_FRAME_HDR_MAX];
    size_t hl = ws_frame_write_header(hdr, WS_FRAME_FIN | op, len, NULL);
    uint8_t *p = reserve(q, hl + len);
    memcpy(p, hdr, hl);
    if (len)
        memcpy(p + hl, data, len);
}

/* Drop whole frames from the front of a chunk only the queue holds, until
 * at least need bytes are gone or it is empty. Returns the bytes dropped. */
static size_t drop_front(ws_chunk_t *k, size_t need)
{
    size_t off = 0;
    while (off < k->len && off < need) {
        ws_frame_hdr_t h;
        int hl = ws_frame_parse_header(k->data + off, k->len - off, WS_FRAME_RSV1, 0, &h);
        if (hl < 0 || h.len > k->len - off - (size_t)hl)
            break; /* not a frame we wrote (cannot happen): keep the rest */
        off += (size_t)hl + (size_t)h.len;
    }
    memmove(k->data, k->data + off, k->len - off);
    k->len -= off;
    return off;
}

int ws_outq_drop(ws_outq_t *q, size_t limit, size_t n, int all)
{
    size_t i = q->qoff ? 1 : 0, kept = i;
    for (; i < q->qn; i++) {
        size_t b = ws_outq_buffered(q);
        if (!all && b + n <= limit)
            break;
        /* Small frames coalesce into one chunk: drop only as many of them as
         * must go, not the whole chunk. */
        size_t excess = b + n - limit;
        if (!all && q->q[i]->refs == 1 && q->q[i]->len > excess) {
            q->queued -= drop_front(q->q[i], excess);
            if (q->q[i]->len)
                break;
        }
        q->queued -= q->q[i]->len;
        ws_chunk_unref(q->q[i]);
    }
    memmove(q->q + kept, q->q + i, (q->qn - i) * sizeof *q->q);
    q->qn -= (uint32_t)(i - kept);
    return ws_outq_buffered(q) + n <= limit;
}

ws_write_t *ws_outq_take(ws_outq_t *q, ws_write_cb cb, void *data)
{
    assert(q->qn > 0 && !q->w); /* one write at a time, and something to write */
    size_t n = q->qn < IOV_MAX_WRITE ? q->qn : IOV_MAX_WRITE;
    wreq_t *r = wreq_new(n);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        size_t off = i == 0 ? q->qoff : 0;
        r->iov[i] = uv_buf_init((char *)q->q[i]->data + off, (unsigned)(q->q[i]->len - off));
        total += q->q[i]->len - off;
    }
    memcpy(r->chunks, q->q, n * sizeof *q->q);
    r->n = (uint32_t)n;
    memmove(q->q, q->q + n, (q->qn - n) * sizeof *q->q);
    q->qn -= (uint32_t)n;
    q->qoff = 0;
    q->queued -= total;
    r->w.unsent = total;
    r->w.iov = r->iov;
    r->w.n = r->n;
    r->w.cb = cb;
    r->w.data = data;
    q->w = &r->w;
    return &r->w;
}

void ws_outq_written(ws_outq_t *q, ws_write_t *w)
{
    wreq_t *r = (wreq_t *)w;
    if (q) {
        assert(q->w == w);
        q->w = NULL;
    }
    for (size_t i = 0; i < r->n; i++)
        ws_chunk_unref(r->chunks[i]);
    if (r->cap == WREQ_SMALL && wreq_npool < WREQ_POOL_MAX) {
        r->next_free = wreq_pool;
        wreq_pool = r;
        wreq_npool++;
    } else {
        wreq_free(r);
    }
}

void ws_outq_free(ws_outq_t *q)
{
    if (q->w) {
        q->w->data = NULL;
        q->w = NULL;
    }
    for (uint32_t i = 0; i < q->qn; i++)
        ws_chunk_unref(q->q[i]);
    free(q->q);
    q->q = NULL;
    q->qn = q->qcap = 0;
    q->qoff = q->queued = 0;
}

int ws_outq_trim(ws_outq_t *q)
{
    if (q->qn != 0 || q->w || !q->q)
        return 0;
    free(q->q);
    q->q = NULL;
    q->qcap = 0;
    return 1;
}
