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
    size_t held;                 /* bytes of its chunks (sent or not: freed at completion) */
    uint32_t n;
    uint16_t cap;                /* at most IOV_MAX_WRITE */
    int16_t pool;                /* index in pools, or -1 when made to measure */
    ws_chunk_t **chunks;         /* [cap], after iov */
    uv_buf_t iov[];              /* [cap] */
} wreq_t;

/* Most writes carry one chunk (small frames coalesce into one; a ping to
 * every idle connection is one each), the others a few. Pooled by these two
 * capacities; longer ones are made to measure. */
#define WREQ_ONE 1
#define WREQ_SMALL 8
#define WREQ_POOL_MAX 16384
static struct {
    wreq_t *head;
    size_t n;
    size_t low; /* the fewest pooled since the last ws_outq_trim_pool: that
                   many were not needed for a whole period */
} pools[2];

static wreq_t *wreq_new(size_t n)
{
    int k = n <= WREQ_ONE ? 0 : n <= WREQ_SMALL ? 1 : -1;
    wreq_t *r = k >= 0 ? pools[k].head : NULL;
    if (r) {
        pools[k].head = r->next_free;
        if (--pools[k].n < pools[k].low)
            pools[k].low = pools[k].n;
    } else {
        uint16_t room = k == 0 ? WREQ_ONE : k == 1 ? WREQ_SMALL : (uint16_t)n;
        r = ws_malloc(sizeof *r + room * (sizeof *r->iov + sizeof *r->chunks));
        r->cap = room;
        r->pool = (int16_t)k;
        r->w._uv = NULL;
        r->chunks = (ws_chunk_t **)(r->iov + room);
    }
    r->n = 0;
    return r;
}

static void wreq_free(wreq_t *r)
{
    ws_write_release(&r->w);
    free(r);
}

/* Free up to n of pool k's requests. */
static size_t pool_free(int k, size_t n)
{
    size_t freed = 0;
    for (; freed < n && pools[k].head; freed++) {
        wreq_t *r = pools[k].head;
        pools[k].head = r->next_free;
        wreq_free(r);
    }
    pools[k].n -= freed;
    pools[k].low = pools[k].n;
    return freed;
}

size_t ws_outq_release_pool(void)
{
    return pool_free(0, SIZE_MAX) + pool_free(1, SIZE_MAX);
}

void ws_outq_trim_pool(void)
{
    pool_free(0, pools[0].low);
    pool_free(1, pools[1].low);
}

/* ws_chunk_unref without the call while others still hold the chunk: a
 * published frame is let go of by every subscriber's write but the last. */
static inline void chunk_unref(ws_chunk_t *k)
{
    if (k->refs > 1)
        k->refs--;
    else
        ws_chunk_unref(k);
}

void ws__outq_push_slow(ws_outq_t *q, ws_chunk_t *k)
{
    /* Nothing more will be appended to the chunk before k: a connection that
     * is not reading must not hold a standard chunk per few bytes queued.
     * Only a chunk the queue alone holds can shrink (a shared one, as a
     * published frame, never does): the call is skipped for the others. */
    if (q->qn && q->q[q->qn - 1]->refs == 1)
        q->q[q->qn - 1] = ws_chunk_shrink(q->q[q->qn - 1]);
    if (q->qn == q->qcap) {
        q->qcap = q->qcap ? q->qcap * 2 : 4;
        q->q = ws_realloc(q->q, q->qcap * sizeof *q->q);
    }
    q->q[q->qn++] = k;
    q->queued += k->len;
}

/* Room for n private bytes at the end of the queue. Appending to the last
 * chunk when we are its only owner coalesces small frames into one write.
 * Otherwise a standard chunk, for the frames that may follow; or, when exact,
 * one of n bytes. */
static inline uint8_t *reserve(ws_outq_t *q, size_t n, int exact)
{
    ws_chunk_t *t = q->qn ? q->q[q->qn - 1] : NULL;
    if (!q->qn || t->refs != 1 || t->cap - t->len < n) {
        t = exact ? ws_chunk_new_exact(n) : ws_chunk_new(n);
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
        memcpy(reserve(q, len, 0), data, len);
}

static inline void frame(ws_outq_t *q, unsigned op, const void *data, size_t len, int exact)
{
    /* Room for the whole frame first, so that the header is written in its
     * place rather than copied there. */
    size_t hl = ws_frame_header_len(len, 0);
    uint8_t *p = reserve(q, hl + len, exact);
    ws_frame_write_header(p, WS_FRAME_FIN | op, len, NULL);
    if (len)
        memcpy(p + hl, data, len);
}

void ws_outq_frame(ws_outq_t *q, unsigned op, const void *data, size_t len)
{
    frame(q, op, data, len, 0);
}

void ws_outq_control(ws_outq_t *q, unsigned op, const void *data, size_t len)
{
    frame(q, op, data, len, 1);
}

/* Drop whole frames from a chunk only the queue holds, from offset off on,
 * until at least need bytes are gone or none is left. Returns the bytes
 * dropped. */
static size_t drop_frames(ws_chunk_t *k, size_t off, size_t need)
{
    size_t end = off;
    while (end < k->len && end - off < need) {
        ws_frame_hdr_t h;
        int hl = ws_frame_parse_header(k->data + end, k->len - end, WS_FRAME_RSV1, 0, &h);
        if (hl < 0 || h.len > k->len - end - (size_t)hl)
            break; /* not a frame we wrote (cannot happen): keep the rest */
        end += (size_t)hl + (size_t)h.len;
    }
    memmove(k->data + off, k->data + end, k->len - end);
    k->len -= end - off;
    return end - off;
}

static size_t need_of(const ws_outq_t *q, size_t limit, size_t n, int all)
{
    size_t b = ws_outq_buffered(q);
    return all ? SIZE_MAX : b + n > limit ? b + n - limit : 0;
}

int ws_outq_drop(ws_outq_t *q, size_t limit, size_t n, int all)
{
    /* Chunks wholly within the protected front stay as they are... */
    size_t i = 0, protect = q->keep;
    while (i < q->qn && protect >= q->q[i]->len) {
        protect -= q->q[i]->len;
        i++;
    }
    /* ...and of one that begins with protected bytes only the frames after
     * them may go (frames coalesce into the chunk of the handshake's answer). */
    if (protect && i < q->qn) {
        if (q->q[i]->refs == 1)
            q->queued -= drop_frames(q->q[i], protect, need_of(q, limit, n, all));
        i++;
    }
    size_t kept = i;
    for (; i < q->qn; i++) {
        size_t need = need_of(q, limit, n, all);
        if (!need)
            break;
        ws_chunk_t *k = q->q[i];
        /* Small frames coalesce into one private chunk: drop only as many of
         * them as must go. */
        if (!all && k->refs == 1 && k->len > need) {
            q->queued -= drop_frames(k, 0, need);
            if (k->len)
                break; /* the rest of it stays, first in line */
        }
        q->queued -= k->len;
        ws_chunk_unref(k);
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
        /* What uv_buf_init does, without a call into libuv per chunk. */
        r->iov[i].base = (char *)q->q[i]->data;
        r->iov[i].len = (unsigned)q->q[i]->len;
        total += q->q[i]->len;
    }
    memcpy(r->chunks, q->q, n * sizeof *q->q);
    r->n = (uint32_t)n;
    memmove(q->q, q->q + n, (q->qn - n) * sizeof *q->q);
    q->qn -= (uint32_t)n;
    q->queued -= total;
    q->keep = q->keep > total ? q->keep - total : 0;
    r->held = total;
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
        chunk_unref(r->chunks[i]);
    int k = r->pool;
    if (k >= 0 && pools[k].n < WREQ_POOL_MAX) {
        r->next_free = pools[k].head;
        pools[k].head = r;
        pools[k].n++;
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
    q->queued = q->keep = 0;
}

size_t ws_outq_held(const ws_outq_t *q)
{
    return q->queued + (q->w ? ((const wreq_t *)q->w)->held : 0);
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
