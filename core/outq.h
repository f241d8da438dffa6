/*
 * outq.h: a connection's outbound queue. Frames queue as refcounted chunks
 * (a published frame is one chunk shared by every subscriber); small private
 * frames coalesce into one chunk; a write takes the first chunks of the queue
 * into a ws_write_t that owns them until its completion.
 *
 * The queue knows nothing of connections or policies: the connection decides
 * what to drop (ws_outq_drop) and when to write (ws_outq_take). Loop thread
 * only. Write requests come from a process-wide pool (see
 * ws_outq_release_pool).
 */
#ifndef WS_OUTQ_H
#define WS_OUTQ_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "transport.h"

typedef struct {
    ws_chunk_t **q;
    uint32_t qn, qcap;
    size_t queued;     /* bytes in q not yet taken by a write */
    size_t keep;       /* bytes at the front that are not frames (the 101 and
                          earlier HTTP answers): never dropped */
    ws_write_t *w;     /* the write in flight, or NULL */
} ws_outq_t;

/* Bytes queued and in flight (what the write in flight has not sent yet). */
static inline size_t ws_outq_buffered(const ws_outq_t *q)
{
    return q->queued + (q->w ? q->w->unsent : 0);
}

/* Bytes the queue keeps alive: queued, and the whole of the write in flight
 * (its chunks are freed only when it completes, however much has left). */
size_t ws_outq_held(const ws_outq_t *q);

/* The rest of ws_outq_push (below): the array grows, or a last chunk the queue
 * alone holds shrinks. */
void ws__outq_push_slow(ws_outq_t *q, ws_chunk_t *k);
/* Queue a chunk; the caller's reference becomes the queue's. Inline: a
 * publish pushes its frame to every subscriber's queue. The usual push (room
 * in the array, the last chunk shared, as the frame of the publish before)
 * is done here; the rest in ws__outq_push_slow. */
static inline void ws_outq_push(ws_outq_t *q, ws_chunk_t *k)
{
    if (q->qn == q->qcap || (q->qn && q->q[q->qn - 1]->refs == 1)) {
        ws__outq_push_slow(q, k);
        return;
    }
    q->q[q->qn++] = k;
    q->queued += k->len;
}
/* Queue raw bytes (an HTTP response). */
void ws_outq_raw(ws_outq_t *q, const void *data, size_t len);
/* Queue one whole frame; op may carry WS_FRAME_RSV1. */
void ws_outq_frame(ws_outq_t *q, unsigned op, const void *data, size_t len);
/* The same for a frame that is most often alone in its write (a ping, a
 * pong): when it does not fit in the last chunk it gets a chunk of its own
 * size, not a standard one, so pinging every idle connection at once does
 * not take a standard chunk each. */
void ws_outq_control(ws_outq_t *q, unsigned op, const void *data, size_t len);

/* Drop queued frames, oldest first, until n more bytes fit under limit (or
 * every one when all is set). Whole frames only, and never the first keep
 * bytes (set q->keep after queueing the handshake's answer). Returns 1 when
 * n bytes now fit. */
int ws_outq_drop(ws_outq_t *q, size_t limit, size_t n, int all);

/* Move the first chunks of the queue (there must be some) into a write
 * request that owns them, with cb and data set; q->w describes it until
 * ws_outq_written. */
ws_write_t *ws_outq_take(ws_outq_t *q, ws_write_cb cb, void *data);
/* The write w ended (from its cb): release its chunks and recycle it. q is
 * the queue it came from, or NULL when that is gone. */
void ws_outq_written(ws_outq_t *q, ws_write_t *w);

/* Release everything queued (the connection is being freed). A write in
 * flight is left to finish: its cb will see data NULL and must only call
 * ws_outq_written(NULL, w). */
void ws_outq_free(ws_outq_t *q);
/* Release the queue's array when nothing is queued or being written.
 * Returns 1 if there was one to release. */
int ws_outq_trim(ws_outq_t *q);
/* Free the pool of write requests (the server is quiet); returns how many. */
size_t ws_outq_release_pool(void);
/* Free the pooled write requests that no write needed since the last call
 * (a sweep period): a burst's requests do not stay while the server is never
 * quiet (pings every few seconds). */
void ws_outq_trim_pool(void);

#endif
